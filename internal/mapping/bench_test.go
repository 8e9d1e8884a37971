package mapping

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/profiles"
)

// mixTypes is the mix of BenchmarkMapMix: the types a practice has most of.
var mixTypes = []string{"Patient", "Appointment", "Coverage"}

// benchMix returns simulator resources of a flavour of the given types
// (default mixTypes), interleaved, 200 of each.
func benchMix(b *testing.B, flavor string, types ...string) [][]byte {
	b.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "bench", Flavor: flavor, Seed: 9, Data: &gen.Options{Patients: 200}}}})
	if err != nil {
		b.Fatal(err)
	}
	if len(types) == 0 {
		types = mixTypes
	}
	lists := make([][][]byte, len(types))
	for i, rt := range types {
		for _, body := range s.Current("bench", rt) {
			lists[i] = append(lists[i], body)
		}
	}
	var out [][]byte
	for i := 0; i < 200; i++ {
		for _, l := range lists {
			out = append(out, l[i%len(l)])
		}
	}
	return out
}

func benchmarkMap(b *testing.B, vendor, flavor string, types ...string) {
	set, err := Load(profiles.FS, vendor, "", goldenPractice(b))
	if err != nil {
		b.Fatal(err)
	}
	mix := benchMix(b, flavor, types...)
	var unmapped conceptmap.Unmapped
	opts := MapOptions{Unmapped: &unmapped}
	ctx := context.Background()
	bytes := 0
	for _, m := range mix {
		bytes += len(m)
	}
	b.SetBytes(int64(bytes / len(mix)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	for i := 0; i < b.N; i++ {
		if _, _, err := set.Map(ctx, mix[i%len(mix)], opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
	if cpu1, ok := processCPU(); ok && cpuOK && cpu1 > cpu0 {
		// Resources per second of CPU the process used (GC included):
		// the per-core rate, whatever else runs on the machine.
		b.ReportMetric(float64(b.N)/(cpu1-cpu0).Seconds(), "resources/cpu-s")
	}
}

// BenchmarkMapMix maps a Patient + Appointment + Coverage mix (equal
// parts) with the Epic profile and a practice layer, on one goroutine: run
// with -cpu 1 for the per-core rate.
func BenchmarkMapMix(b *testing.B) { benchmarkMap(b, "epic", "epic") }

// BenchmarkMapMixGeneric is the same mix from the generic flavour.
func BenchmarkMapMixGeneric(b *testing.B) { benchmarkMap(b, "generic", "generic") }

// BenchmarkMapNewTypes maps the types that got canonical rules last
// (DocumentReference, MedicationRequest, Slot, Schedule, Location,
// Organization; equal parts) with the generic profile.
func BenchmarkMapNewTypes(b *testing.B) {
	benchmarkMap(b, "generic", "generic", "DocumentReference", "MedicationRequest", "Slot", "Schedule", "Location", "Organization")
}

// BenchmarkMapOracle maps Oracle Health's published Patient, Appointment
// and Coverage examples with the Oracle Health profile (its codeSet rule
// walks every coded element of a resource).
func BenchmarkMapOracle(b *testing.B) {
	set, err := Load(profiles.FS, "oracle-health", "", goldenPractice(b))
	if err != nil {
		b.Fatal(err)
	}
	var docs [][]byte
	for _, in := range oracleInputs(b) {
		if strings.HasPrefix(in.name, "r4_patient") || strings.HasPrefix(in.name, "r4_appointment") || strings.HasPrefix(in.name, "r4_coverage") {
			for _, r := range in.resources {
				if bytes.Contains(r[:min(len(r), 40)], []byte(`"Patient"`)) || bytes.Contains(r[:min(len(r), 40)], []byte(`"Appointment"`)) || bytes.Contains(r[:min(len(r), 40)], []byte(`"Coverage"`)) {
					docs = append(docs, r)
				}
			}
		}
	}
	if len(docs) < 10 {
		b.Fatalf("%d documents", len(docs))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := set.Map(ctx, docs[i%len(docs)], MapOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkMapBulkMix maps what a bulk export of the generic simulator
// holds, in the generator's own proportions (Observation about half of it,
// then Encounter, Slot, Appointment...), with the generic profile and no
// practice layer: the mapping work of `mediflow bench bulk`. The order is
// a fixed interleaving, so types alternate the way NDJSON files of several
// workers do not, but the per-resource cost is what the bench sees.
func BenchmarkMapBulkMix(b *testing.B) {
	set, err := Load(profiles.FS, "generic", "")
	if err != nil {
		b.Fatal(err)
	}
	mix := bulkMixCorpus(b) // fastmap_test.go
	// A fixed permutation (stride coprime with the length) interleaves
	// the types.
	stride := 7919
	for len(mix)%stride == 0 {
		stride++
	}
	perm := make([][]byte, len(mix))
	for i := range mix {
		perm[i] = mix[(i*stride)%len(mix)]
	}
	total := 0
	for _, m := range perm {
		total += len(m)
	}
	opts := MapOptions{TimeZone: time.UTC, Direction: DirectionIn}
	ctx := context.Background()
	var rep Report
	b.SetBytes(int64(total / len(perm)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := set.MapInto(ctx, perm[i%len(perm)], opts, &rep); err != nil {
			b.Fatal(err)
		}
	}
	if cpu1, ok := processCPU(); ok && cpuOK && cpu1 > cpu0 {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
	}
}
