package validate_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
)

// syntheaBundle returns the first Synthea patient Bundle and its entries.
func syntheaBundle(b *testing.B) ([]byte, []json.RawMessage) {
	for _, f := range syntheaFiles(b) {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if es := entries(b, data); len(es) > 100 {
			return data, es
		}
	}
	b.Fatal("no Synthea patient Bundle")
	return nil, nil
}

func firstOfType(b *testing.B, es []json.RawMessage, typ string) []byte {
	for _, e := range es {
		var h struct{ ResourceType string }
		if err := json.Unmarshal(e, &h); err != nil {
			b.Fatal(err)
		}
		if h.ResourceType == typ {
			return e
		}
	}
	b.Fatalf("no %s", typ)
	return nil
}

func benchResource(b *testing.B, body []byte) {
	v := validate.New(model.R4())
	if issues := v.Validate(body); len(issues) != 0 {
		b.Fatalf("issues: %+v", issues)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if v.Validate(body) != nil {
			b.Fatal("issues")
		}
	}
}

func BenchmarkValidatePatient(b *testing.B) {
	_, es := syntheaBundle(b)
	benchResource(b, firstOfType(b, es, "Patient"))
}

func BenchmarkValidateObservation(b *testing.B) {
	_, es := syntheaBundle(b)
	benchResource(b, firstOfType(b, es, "Observation"))
}

func BenchmarkValidateExplanationOfBenefit(b *testing.B) {
	_, es := syntheaBundle(b)
	benchResource(b, firstOfType(b, es, "ExplanationOfBenefit"))
}

// BenchmarkValidateBundle validates a whole Synthea transaction Bundle;
// ns/resource is the time per entry.
func BenchmarkValidateBundle(b *testing.B) {
	data, es := syntheaBundle(b)
	v := validate.New(model.R4())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if v.Validate(data) != nil {
			b.Fatal("issues")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(es)), "ns/resource")
}

// BenchmarkValidateParallel validates Patients from all cores through one
// Validator.
func BenchmarkValidateParallel(b *testing.B) {
	_, es := syntheaBundle(b)
	body := firstOfType(b, es, "Patient")
	v := validate.New(model.R4())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v.Validate(body) != nil {
				b.Error("issues")
				return
			}
		}
	})
}
