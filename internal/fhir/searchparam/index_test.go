package searchparam

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// genDoc builds a random Patient or Observation with values drawn from small
// pools, so queries hit many documents and edge cases (periods, missing
// elements, several names) occur often.
func genDoc(r *rand.Rand, rt, id string) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	day := func() string {
		return fmt.Sprintf("20%02d-%02d-%02d", 20+r.IntN(5), 1+r.IntN(12), 1+r.IntN(28))
	}
	lu := fmt.Sprintf("2024-0%d-1%dT0%d:00:00Z", 1+r.IntN(3), r.IntN(10), r.IntN(10))
	switch rt {
	case "Patient":
		var parts []string
		parts = append(parts, fmt.Sprintf(`"resourceType":"Patient","id":%q,"meta":{"lastUpdated":%q}`, id, lu))
		if r.IntN(5) > 0 {
			parts = append(parts, fmt.Sprintf(`"name":[{"family":%q,"given":[%q]}]`, pick("Smith", "Smyth", "Müller", "Muller", "García", "Garcia", "Lee", "O'Neil"), pick("Ana", "Anabel", "José", "Jo", "Li")))
		}
		if r.IntN(4) > 0 {
			parts = append(parts, fmt.Sprintf(`"gender":%q`, pick("male", "female", "other")))
		}
		if r.IntN(4) > 0 {
			parts = append(parts, fmt.Sprintf(`"birthDate":%q`, pick("1980", "1980-05", day(), "1980-05-17")))
		}
		parts = append(parts, fmt.Sprintf(`"identifier":[{"system":%q,"value":"%d"}]`, pick("urn:mrn", "urn:ssn", ""), r.IntN(20)))
		return "{" + strings.Join(parts, ",") + "}"
	default:
		var parts []string
		parts = append(parts, fmt.Sprintf(`"resourceType":"Observation","id":%q,"meta":{"lastUpdated":%q}`, id, lu))
		parts = append(parts, fmt.Sprintf(`"status":%q`, pick("final", "amended", "preliminary")))
		parts = append(parts, fmt.Sprintf(`"code":{"coding":[{"system":"http://loinc.org","code":%q}]}`, pick("8867-4", "8480-6", "29463-7")))
		parts = append(parts, fmt.Sprintf(`"subject":{"reference":%q}`, pick("Patient/p1", "Patient/p2", "urn:uuid:p3", "Group/g1")))
		switch r.IntN(4) {
		case 0:
			parts = append(parts, fmt.Sprintf(`"effectiveDateTime":"%sT1%d:30:00Z"`, day(), r.IntN(10)))
		case 1:
			parts = append(parts, fmt.Sprintf(`"effectivePeriod":{"start":%q,"end":%q}`, "2021-03-01", day()))
		case 2:
			parts = append(parts, fmt.Sprintf(`"effectivePeriod":{"start":%q}`, day()))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
}

var patientQueries = []string{
	"", "family=smi", "family=muller", "family=MÜL", "family:exact=Müller", "family:contains=ll", "name=jo",
	"gender=female", "gender=male,other", "gender:missing=true", "birthdate:missing=false",
	"birthdate=1980", "birthdate=1980-05", "birthdate=1980-05-17", "birthdate=ge1980-05-17", "birthdate=gt1980-05",
	"birthdate=lt2022-06", "birthdate=le1980-05-17", "birthdate=sa2021", "birthdate=eb2023", "birthdate=ne1980",
	"birthdate=ap2022-02", "birthdate=ge2021&birthdate=lt2023", "identifier=3", "identifier=urn:mrn|3", "identifier=|3",
	"identifier=urn:ssn|", "family=garc&gender=female", "_id=pat-3,pat-5", "_lastUpdated=ge2024-02", "_lastUpdated=lt2024-01-15",
	"_lastUpdated=2024-02", "_lastUpdated=gt2024-02-13T05:00:00Z", "_lastUpdated=sa2024-02-13", "_lastUpdated=eb2024-02-13T05:00",
	"_lastUpdated=ap2024-03", "_lastUpdated=ne2024-01", "_lastUpdated=le2024-01-11T02:00:00Z", "_id:missing=false", "_lastUpdated:missing=true",
}

var observationQueries = []string{
	"", "status=final", "code=http://loinc.org|8867-4", "code=8480-6,29463-7", "patient=p1", "patient=Patient/p3",
	"subject=Group/g1", "subject=g1", "date=2022", "date=ge2023-06-01", "date=lt2021-03-02", "date=sa2023", "date=eb2021-04",
	"date:missing=true", "date=ne2022", "date=ap2021-03", "patient=p2&status=amended&date=ge2021",
	"date=le2021-06", "date=ge2022-02-10", "date=le2021-03-01T10:30:00Z",
}

func parseQuery(t testing.TB, rt, q string) []store.SearchParam {
	t.Helper()
	vals, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	ps, _, err := Parse(rt, vals)
	if err != nil {
		t.Fatalf("%s?%s: %v", rt, q, err)
	}
	return ps
}

// TestIndexAgreesWithMatch applies random puts, updates and removals to an
// Index and to a plain map, then checks every query against brute-force
// Match, page by page.
func TestIndexAgreesWithMatch(t *testing.T) {
	for _, rt := range []string{"Patient", "Observation"} {
		t.Run(rt, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(len(rt))))
			ix := NewIndex()
			type doc struct {
				entries []Entry
				lu      time.Time
			}
			truth := map[string]doc{}
			prefix := strings.ToLower(rt[:3]) + "-"
			for step := 0; step < 1500; step++ {
				id := fmt.Sprintf("%s%d", prefix, r.IntN(400))
				old, exists := truth[id]
				if exists && r.IntN(6) == 0 {
					ix.Remove(id, old.entries)
					delete(truth, id)
					continue
				}
				es, err := Extract(rt, []byte(genDoc(r, rt, id)))
				if err != nil {
					t.Fatal(err)
				}
				lu := luOf(es)
				ix.Put(id, lu, old.entries, es)
				truth[id] = doc{es, lu}
			}
			if ix.Len() != len(truth) {
				t.Fatalf("Len = %d, want %d", ix.Len(), len(truth))
			}
			queries := patientQueries
			if rt == "Observation" {
				queries = observationQueries
			}
			for _, q := range queries {
				params := parseQuery(t, rt, q)
				var want []string
				for id, d := range truth {
					ok := true
					for _, p := range params {
						if !Match(d.entries, p) {
							ok = false
							break
						}
					}
					if ok {
						want = append(want, id)
					}
				}
				slices.SortFunc(want, func(a, b string) int {
					return cmp.Or(cmp.Compare(UnixNanos(truth[a].lu), UnixNanos(truth[b].lu)), strings.Compare(a, b))
				})
				var cs []Criterion
				for _, p := range params {
					c, err := Compile(rt, p)
					if err != nil {
						t.Fatal(err)
					}
					cs = append(cs, c)
				}
				t.Logf("%s?%s: %d", rt, q, len(want))
				for _, pageSize := range []int{7, 1000} {
					var got []string
					var pos *Position
					for pages := 0; ; pages++ {
						hits, total, more := ix.Search(cs, pos, pageSize)
						if total != len(want) {
							t.Fatalf("%s?%s: total %d, want %d", rt, q, total, len(want))
						}
						for _, h := range hits {
							got = append(got, h.ID)
						}
						if !more {
							break
						}
						if len(hits) != pageSize {
							t.Fatalf("%s?%s: short page (%d) with more=true", rt, q, len(hits))
						}
						last := hits[len(hits)-1]
						pos = &Position{LastUpdated: last.LastUpdated, ID: last.ID}
						if pages > len(want) {
							t.Fatalf("%s?%s: paging does not end", rt, q)
						}
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s?%s (page %d): index and Match disagree\n got %d: %v\nwant %d: %v", rt, q, pageSize, len(got), head(got), len(want), head(want))
					}
				}
			}
		})
	}
}

func head(xs []string) []string {
	if len(xs) > 12 {
		return xs[:12]
	}
	return xs
}

func luOf(es []Entry) time.Time {
	for _, e := range es {
		if e.Name == "_lastUpdated" {
			return e.Low
		}
	}
	return time.Time{}
}

func TestIndexCountZeroAndEmpty(t *testing.T) {
	ix := NewIndex()
	hits, total, more := ix.Search(nil, nil, 20)
	if len(hits) != 0 || total != 0 || more {
		t.Fatalf("empty index: %v %d %v", hits, total, more)
	}
	es, err := Extract("Patient", []byte(`{"resourceType":"Patient","id":"a","gender":"male"}`))
	if err != nil {
		t.Fatal(err)
	}
	ix.Put("a", time.Unix(10, 0), nil, es)
	hits, total, more = ix.Search(nil, nil, 0)
	if len(hits) != 0 || total != 1 || more {
		t.Fatalf("count-only search: %v %d %v", hits, total, more)
	}
	c, err := Compile("Patient", store.SearchParam{Name: "gender", Values: []string{"female"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, total, _ := ix.Search([]Criterion{c}, nil, 10); total != 0 {
		t.Fatalf("gender=female total %d", total)
	}
	// Updating the same document must not duplicate it.
	ix.Put("a", time.Unix(20, 0), es, es)
	ix.Put("a", time.Unix(10, 0), es, es)
	hits, total, _ = ix.Search(nil, nil, 10)
	if total != 1 || len(hits) != 1 {
		t.Fatalf("after re-puts: %v total %d", hits, total)
	}
	ix.Remove("a", es)
	ix.Remove("a", es)
	if _, total, _ := ix.Search(nil, nil, 10); total != 0 || ix.Len() != 0 {
		t.Fatalf("after remove: total %d len %d", total, ix.Len())
	}
}

func BenchmarkIndexPut(b *testing.B) {
	es, err := Extract("Patient", []byte(typicalPatient))
	if err != nil {
		b.Fatal(err)
	}
	ix := NewIndex()
	lu := time.Now()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		ix.Put(fmt.Sprintf("p%d", i), lu.Add(time.Duration(i)), nil, es)
	}
}

// BenchmarkIndexSearch: a 20-hit page from 100k patients.
func BenchmarkIndexSearch(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	ix := NewIndex()
	for i := 0; i < 100000; i++ {
		id := fmt.Sprintf("pat-%d", i)
		es, err := Extract("Patient", []byte(genDoc(r, "Patient", id)))
		if err != nil {
			b.Fatal(err)
		}
		ix.Put(id, luOf(es), nil, es)
	}
	for _, q := range []string{"family=smi&gender=female", "identifier=urn:mrn|3", "birthdate=1980-05-17", "", "gender=female",
		"birthdate=ge2021", "birthdate=le2021-06", "birthdate=ge2021&gender=female"} {
		params := parseQuery(b, "Patient", q)
		var cs []Criterion
		for _, p := range params {
			c, _ := Compile("Patient", p)
			cs = append(cs, c)
		}
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				hits, _, _ := ix.Search(cs, nil, 20)
				if len(hits) == 0 {
					b.Fatal("no hits")
				}
			}
		})
	}
}
