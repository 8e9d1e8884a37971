package hl7

import (
	"os"
	"path/filepath"
	"testing"
)

// benchMessages are the realistic messages the benchmarks use: an ORU^R01
// with 23 segments (15 OBX) and an ADT^A01 with 9 segments.
func benchMessages(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"oru_r01", "adt_a01"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".hl7"))
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = b
	}
	return out
}

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"oru_r01", "adt_a01"} {
		data := benchMessages(b)[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(data, ParseOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseAndGet parses and reads what an ingest pipeline reads first:
// MSH-9, MSH-10, PID-3, PID-5 and every OBX-3 and OBX-5.
func BenchmarkParseAndGet(b *testing.B) {
	for _, name := range []string{"oru_r01", "adt_a01"} {
		data := benchMessages(b)[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				m, err := Parse(data, ParseOptions{})
				if err != nil {
					b.Fatal(err)
				}
				for _, p := range []string{"MSH-9", "MSH-10", "PID-3", "PID-5"} {
					v, _ := m.Get(p)
					n += len(v)
				}
				o3, _ := m.GetAll("OBX-3")
				o5, _ := m.GetAll("OBX-5")
				n += len(o3) + len(o5)
			}
			if n == 0 {
				b.Fatal("nothing read")
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, name := range []string{"oru_r01", "adt_a01"} {
		data := benchMessages(b)[name]
		m, err := Parse(data, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/unmodified", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_ = m.Encode()
			}
		})
		m2, _ := Parse(data, ParseOptions{})
		if err := m2.Set("PID-5-1", "Changed"); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/modified", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_ = m2.Encode()
			}
		})
	}
}

func BenchmarkParseStrict(b *testing.B) {
	data := benchMessages(b)["oru_r01"]
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse(data, ParseOptions{Strict: true})
	}
}

func BenchmarkSet(b *testing.B) {
	data := benchMessages(b)["adt_a01"]
	b.ReportAllocs()
	for b.Loop() {
		m, _ := Parse(data, ParseOptions{})
		if err := m.Set("PID-5-1", "Other"); err != nil {
			b.Fatal(err)
		}
	}
}
