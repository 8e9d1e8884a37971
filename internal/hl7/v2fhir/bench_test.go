package v2fhir_test

import (
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
)

func benchConvert(b *testing.B, golden string) {
	conv := newConverter(b, v2fhir.Options{})
	m := readMessage(b, filepath.Join("testdata", "golden", golden))
	res, err := conv.Convert(m)
	if err != nil {
		b.Fatal(err)
	}
	size := 0
	for _, r := range res.Resources {
		size += len(r.Body)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := conv.Convert(m); err != nil {
			b.Fatal(err)
		}
	}
}

// An ORU^R01 with one report, ten observations of every value type,
// practitioners and an organization (16 resources).
func BenchmarkConvertORU(b *testing.B) { benchConvert(b, "ORU_R01.hl7") }

// An ADT^A01 with patient, visit, next of kin, observations, allergy and
// diagnosis (10 resources).
func BenchmarkConvertADT(b *testing.B) { benchConvert(b, "ADT_A01.hl7") }

// Loading and checking the embedded specs (New).
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v2fhir.New(v2fhir.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
