package searchparam_test

// The bulk-mix corpus: canonical resources like those `mediflow bench bulk`
// stores, made the way the bench makes them. The generic simulator tenant
// generates the synthetic data (internal/bench builds its simulator the same
// way, with the generic flavour and a 60-day past, 30-day future schedule)
// and the production mapper (the generic profile, as the bench's engine
// uses for its generic connection; see internal/mapping's
// BenchmarkMapBulkMix) maps every resource to canonical FHIR R4 JSON, which
// is the body the store hands to Extract. This is an external test package
// because the simulator and the mapper import searchparam.

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/profiles"
)

type resource struct {
	rt   string
	body []byte
}

// bulkShare is the share of each type, in resources per thousand, in the
// export `mediflow bench bulk` ingests (1,157,164 resources). Types not
// listed (Practitioner, Organization, Location, Schedule) are well under
// one per thousand there.
var bulkShare = map[string]int{
	"Observation":        460,
	"Slot":               110,
	"Encounter":          110,
	"Appointment":        75,
	"DocumentReference":  60,
	"Condition":          60,
	"MedicationRequest":  45,
	"Patient":            40,
	"Coverage":           34,
	"AllergyIntolerance": 15,
}

var corpus struct {
	once sync.Once
	all  []resource // every mapped resource of the simulator, type by type
	mix  []resource // about bulkMixSize of them in bulkShare proportions
	err  error
}

// bulkMixSize is the number of resources the benchmark cycles through:
// enough that the branch predictor cannot learn the sequence.
const bulkMixSize = 2000

// bulkCorpus generates and maps the corpus once per test binary (about a
// second).
func bulkCorpus(tb testing.TB) (all, mix []resource) {
	tb.Helper()
	corpus.once.Do(func() { corpus.all, corpus.mix, corpus.err = makeCorpus() })
	if corpus.err != nil {
		tb.Fatal(corpus.err)
	}
	return corpus.all, corpus.mix
}

func makeCorpus() (all, mix []resource, err error) {
	set, err := mapping.Load(profiles.FS, "generic", "")
	if err != nil {
		return nil, nil, err
	}
	// 400 patients give at least bulkShare's count of every type.
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "bench", Flavor: "generic", Seed: 9,
		Data: &gen.Options{Patients: 400, PastDays: 60, FutureDays: 30}}}})
	if err != nil {
		return nil, nil, err
	}
	opts := mapping.MapOptions{TimeZone: time.UTC, Direction: mapping.DirectionIn}
	byType := map[string][]resource{}
	for _, rt := range flavor.AllTypes() {
		cur := s.Current("bench", rt)
		ids := make([]string, 0, len(cur))
		for id := range cur {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			out, _, err := set.Map(context.Background(), cur[id], opts)
			if err != nil {
				return nil, nil, fmt.Errorf("mapping %s/%s: %w", rt, id, err)
			}
			r := resource{rt: rt, body: out}
			all = append(all, r)
			byType[rt] = append(byType[rt], r)
		}
	}
	// Each type contributes its share, spread evenly over its (id-sorted)
	// resources so that every patient's data is represented. The store
	// extracts a batch at a time, and a batch comes from one NDJSON file,
	// which holds one type; two workers ingest files at once. So the mix
	// is runs of one type (mixRun resources), the runs in a fixed shuffled
	// order.
	var runs [][]resource
	for _, rt := range slices.Sorted(maps.Keys(bulkShare)) {
		want := bulkShare[rt] * bulkMixSize / 1000
		list := byType[rt]
		if len(list) < want {
			return nil, nil, fmt.Errorf("%s: %d resources, want %d", rt, len(list), want)
		}
		picked := make([]resource, want)
		for k := range picked {
			picked[k] = list[k*len(list)/want]
		}
		for len(picked) > 0 {
			n := min(mixRun, len(picked))
			runs = append(runs, picked[:n])
			picked = picked[n:]
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	rng.Shuffle(len(runs), func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
	for _, r := range runs {
		mix = append(mix, r...)
	}
	return all, mix, nil
}

// mixRun is the length of the runs of one type in the bulk mix.
const mixRun = 50

// TestExtractBulkCorpusMatchesOld compares Extract with the pre-rewrite
// extractor on every resource of the simulator's data, mapped: the bodies
// the bulk bench stores.
func TestExtractBulkCorpusMatchesOld(t *testing.T) {
	all, _ := bulkCorpus(t)
	entries := 0
	for _, r := range all {
		if d := searchparam.DiffFromOld(r.rt, r.body); d != "" {
			t.Fatalf("%s %s: %s", r.rt, r.body, d)
		}
		es, err := searchparam.Extract(r.rt, r.body)
		if err != nil {
			t.Fatalf("%s %s: %v", r.rt, r.body, err)
		}
		entries += len(es)
	}
	// The corpus must exercise the extractor, not only its error path.
	if entries < 8*len(all) {
		t.Errorf("%d entries from %d resources", entries, len(all))
	}
}

// TestExtractMutatedCorpusMatchesOld compares Extract with the pre-rewrite
// extractor on corpus bodies with random damage (bytes removed, inserted,
// replaced; truncations; another resource type asked for), so that the
// malformed inputs the two accept and reject, and the errors, are the same.
func TestExtractMutatedCorpusMatchesOld(t *testing.T) {
	all, _ := bulkCorpus(t)
	rng := rand.New(rand.NewPCG(1, 2))
	rounds := 10000
	if testing.Short() {
		rounds = 2000
	}
	const special = "{}[]\":,\\ \tnulltruefalse0123456789-.eEu/|abcXYZ\x00\x7f\xc3\xa9"
	types := append(flavor.AllTypes(), "Basic")
	for range rounds {
		r := all[rng.IntN(len(all))]
		b := slices.Clone(r.body)
		rt := r.rt
		for range 1 + rng.IntN(3) {
			if len(b) == 0 {
				break
			}
			p := rng.IntN(len(b))
			switch rng.IntN(7) {
			case 0: // remove a byte
				b = slices.Delete(b, p, p+1)
			case 1: // insert a byte with a meaning in JSON
				b = slices.Insert(b, p, special[rng.IntN(len(special))])
			case 2: // replace a byte
				b[p] = special[rng.IntN(len(special))]
			case 3: // truncate
				b = b[:p]
			case 4: // remove a run
				b = slices.Delete(b, p, min(len(b), p+1+rng.IntN(16)))
			case 5: // duplicate a run elsewhere
				q := rng.IntN(len(b))
				run := slices.Clone(b[p:min(len(b), p+1+rng.IntN(24))])
				b = slices.Insert(b, q, run...)
			case 6: // ask for another type
				rt = types[rng.IntN(len(types))]
			}
		}
		if d := searchparam.DiffFromOld(rt, b); d != "" {
			t.Fatalf("%s %q: %s", rt, b, d)
		}
	}
}

// BenchmarkExtractBulkMix extracts the bulk-mix corpus, one resource per
// op; "new" is Extract, "old" the pre-rewrite extractor it replaced.
func BenchmarkExtractBulkMix(b *testing.B) {
	_, mix := bulkCorpus(b)
	total := 0
	for _, r := range mix {
		total += len(r.body)
	}
	for _, impl := range []struct {
		name string
		fn   func(string, []byte) ([]searchparam.Entry, error)
	}{{"new", searchparam.Extract}, {"old", searchparam.ExtractOld}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(total / len(mix)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := &mix[i]
				if _, err := impl.fn(r.rt, r.body); err != nil {
					b.Fatal(err)
				}
				i++
				if i == len(mix) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkExtractBulkMixPaired times Extract and the pre-rewrite extractor
// in alternating chunks of the corpus (one op is one resource extracted by
// each), so that both see the same machine load: on a shared machine whose
// speed drifts this compares them better than two separate benchmarks. It
// reports the ns per resource of each: the mean, and the best (the sum over
// the chunks of each chunk's fastest pass, which leaves out the passes
// another process interrupted), with the new/old ratio of the best.
func BenchmarkExtractBulkMixPaired(b *testing.B) {
	_, mix := bulkCorpus(b)
	const chunk = 64
	chunks := (len(mix) + chunk - 1) / chunk
	fns := [2]func(string, []byte) ([]searchparam.Entry, error){searchparam.Extract, searchparam.ExtractOld}
	var spent [2]time.Duration
	var done [2]int
	var best [2][]time.Duration
	for k := range best {
		best[k] = make([]time.Duration, chunks)
	}
	n := 0
	for b.Loop() {
		if n%chunk == 0 {
			c := n / chunk % chunks
			from, to := c*chunk, min(c*chunk+chunk, len(mix))
			for k := range 2 {
				impl := (k + n/chunk) % 2 // which goes first alternates
				start := time.Now()
				for i := from; i < to; i++ {
					if _, err := fns[impl](mix[i].rt, mix[i].body); err != nil {
						b.Fatal(err)
					}
				}
				d := time.Since(start)
				spent[impl] += d
				done[impl] += to - from
				if best[impl][c] == 0 || d < best[impl][c] {
					best[impl][c] = d
				}
			}
		}
		n++
	}
	if n < len(mix) {
		return // not every chunk timed yet (the calibration runs)
	}
	var sum [2]time.Duration
	for k := range sum {
		for _, d := range best[k] {
			sum[k] += d
		}
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(done[0]), "new-ns/res")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(done[1]), "old-ns/res")
	b.ReportMetric(float64(sum[0].Nanoseconds())/float64(len(mix)), "new-best-ns/res")
	b.ReportMetric(float64(sum[1].Nanoseconds())/float64(len(mix)), "old-best-ns/res")
	b.ReportMetric(float64(sum[0])/float64(sum[1]), "new/old-best")
}
