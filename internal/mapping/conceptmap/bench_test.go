package conceptmap_test

import (
	"testing"

	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
)

// BenchmarkTranslate measures lookups the mapping engine makes per resource:
// an exact source system, a per-tenant system matched by a source pattern,
// and a code of the 900-row race table.
func BenchmarkTranslate(b *testing.B) {
	set := shipped(b)
	cases := []struct {
		name, id, system, code string
	}{
		{"exact", "administrative-gender", v2 + "0001", "F"},
		{"pattern", "oracle-health-codesets", "https://fhir.cerner.com/2c400054-42d8-4e74-87b7-80b5bd5fde9f/codeSet/72", "3623994"},
		{"race", "omb-race", "urn:oid:2.16.840.1.113883.6.238", "2039-6"},
		{"reverse", "administrative-gender", gender, "other"},
	}
	for _, c := range cases {
		m := mustGet(b, set, c.id)
		if c.name == "reverse" {
			m = m.Reverse()
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, ok := m.Translate(c.system, c.code); !ok {
					b.Fatal("no translation")
				}
			}
		})
	}
}

func BenchmarkUnmappedAddParallel(b *testing.B) {
	var u conceptmap.Unmapped
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u.Add("http://mediflow.dev/fhir/ConceptMap/administrative-gender", "urn:oid:1.2.3", "X")
		}
	})
}
