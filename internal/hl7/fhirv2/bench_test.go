package fhirv2

import (
	"strings"
	"testing"
)

func BenchmarkNote200Lines(b *testing.B) {
	line := "Assessment: stable, continue current medication | recheck labs ^ in 3 months & call if worse.\n"
	doc := docWithText(b, strings.Repeat(line, 200))
	pat := read(b, "patient.json")
	e := testEncoder("BENCH")
	b.SetBytes(int64(len(line) * 200))
	b.ReportAllocs()
	for b.Loop() {
		m, err := e.Note(doc, pat, nil)
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Encode()
	}
}

func BenchmarkBook(b *testing.B) {
	appt, pat, refs := read(b, "appointment.json"), read(b, "patient.json"), testRefs(b)
	e := testEncoder("BENCH")
	b.ReportAllocs()
	for b.Loop() {
		m, err := e.Book(appt, pat, refs)
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Encode()
	}
}

func BenchmarkCharges10(b *testing.B) {
	pat, refs := read(b, "patient.json"), testRefs(b)
	charges := make([]Charge, 10)
	for i := range charges {
		charges[i] = Charge{Item: read(b, "chargeitem-1.json"), Coverage: read(b, "coverage.json")}
	}
	e := testEncoder("BENCH")
	b.ReportAllocs()
	for b.Loop() {
		m, err := e.Charges(pat, charges, refs)
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Encode()
	}
}
