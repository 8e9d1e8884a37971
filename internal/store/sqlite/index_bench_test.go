package sqlite

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
)

// bulkCorpus makes resources shaped like the bulk benchmark's synthetic
// export (docs/benchmarks.md, "Bulk ingest"): UUID ids, coded categories
// and codes with long system URLs, references by UUID, instants.
type bulkCorpus struct {
	r *rand.Rand
}

func (g *bulkCorpus) uuid() string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", g.r.Uint32(), g.r.Uint32()&0xffff, g.r.Uint32()&0xffff, g.r.Uint32()&0xffff, g.r.Uint64()&0xffffffffffff)
}

func (g *bulkCorpus) instant() string {
	t := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.r.Int64N(int64(600 * 24 * time.Hour))))
	return t.Format("2006-01-02T15:04:05.000Z")
}

func (g *bulkCorpus) resource() store.ResourceWrite {
	id := g.uuid()
	lu := g.instant()
	var body string
	var rt string
	switch g.r.IntN(3) {
	case 0, 1:
		rt = "Observation"
		cat := []string{"vital-signs", "laboratory", "social-history"}[g.r.IntN(3)]
		code := fmt.Sprintf("%d-%d", 1000+g.r.IntN(200), g.r.IntN(10))
		body = fmt.Sprintf(`{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"final",`+
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":%q}]}],`+
			`"code":{"coding":[{"system":"http://loinc.org","code":%q,"display":"Body mass index (BMI) [Ratio]"}]},`+
			`"subject":{"reference":"Patient/%s"},"encounter":{"reference":"Encounter/%s"},"effectiveDateTime":%q,`+
			`"valueQuantity":{"value":37.9,"unit":"kg/m2","system":"http://unitsofmeasure.org","code":"kg/m2"}}`,
			id, lu, cat, code, g.uuid(), g.uuid(), g.instant())
	default:
		rt = "Encounter"
		body = fmt.Sprintf(`{"resourceType":"Encounter","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"finished",`+
			`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},`+
			`"type":[{"coding":[{"system":"http://snomed.info/sct","code":"%d"}]}],"subject":{"reference":"Patient/%s"},`+
			`"participant":[{"individual":{"reference":"Practitioner/%s"}}],"period":{"start":%q,"end":%q},`+
			`"location":[{"location":{"reference":"Location/%s"}}],"serviceProvider":{"reference":"Organization/%s"}}`,
			id, lu, 410620000+g.r.IntN(50), g.uuid(), g.uuid(), g.instant(), g.instant(), g.uuid(), g.uuid())
	}
	return store.ResourceWrite{ResourceType: rt, ID: id, Body: []byte(body)}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIndexApply measures the index update of new resources alone
// (keys, entries, sort, the Pebble batch), in batches of 1,000: extraction
// is done before the timer, and Pebble's flushes and compactions run in the
// background (their CPU is in cpu-µs/resource, not in ns/resource).
func BenchmarkIndexApply(b *testing.B) {
	ix, err := openIndex(filepath.Join(b.TempDir(), "ix"), indexOptions{CacheMB: 16, MemTableMB: 8}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.close()
	g := &bulkCorpus{r: rand.New(rand.NewPCG(1, 2))}
	const batch = 1000
	var seq int64
	mk := func() []indexedVersion {
		vs := make([]indexedVersion, batch)
		for i := range vs {
			w := g.resource()
			es, err := searchparam.Extract(w.ResourceType, w.Body)
			if err != nil {
				b.Fatal(err)
			}
			es, lu := lastUpdatedOf(es, time.Time{}, time.Now())
			seq++
			vs[i] = indexedVersion{practice: "p1", rt: w.ResourceType, id: w.ID, entries: es,
				cur: curState{seq: seq, version: 1, lu: searchparam.UnixNanos(lu)}}
		}
		return vs
	}
	n := 0
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		vs := mk()
		c0 := processCPU()
		b.StartTimer()
		if err := ix.apply(vs, tip{seq: seq}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += processCPU() - c0
		b.StartTimer()
		n += batch
	}
	// Flush and let the compactions this load triggered finish, so their
	// work is in a whole-process measurement (cachegrind, getrusage).
	b.StopTimer()
	if err := ix.db.Flush(); err != nil {
		b.Fatal(err)
	}
	for quiet := 0; quiet < 5; {
		time.Sleep(100 * time.Millisecond)
		if ix.db.Metrics().Compact.NumInProgress == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/resource")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/resource")
}
