package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/storetest"
)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mediflow.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		return s
	})
}

func TestOpenRejectsBadPath(t *testing.T) {
	for _, p := range []string{"", "x.db?mode=ro"} {
		if _, err := Open(context.Background(), p, Options{}); err == nil {
			t.Errorf("Open(%q): no error", p)
		}
	}
}

func TestMigrationsRecorded(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n, maxV int
	if err := s.r.QueryRow(`SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || maxV != ms[len(ms)-1].version {
		t.Errorf("schema_migrations has %d rows (max %d), want %d", n, maxV, len(ms))
	}
	var mode string
	if err := s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}
	// The read pool must not be able to write.
	if _, err := s.r.Exec(`INSERT INTO audit_events (practice, actor, action, entity, outcome, detail) VALUES ('p','a','b','c','d','e')`); err == nil {
		t.Error("read pool accepted a write")
	}
}

// TestReopenRebuildsState: everything derived (current versions, hashes,
// search index, sequence) must be there again after a reopen.
func TestReopenRebuildsState(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	var ws []store.ResourceWrite
	for i := 0; i < 30; i++ {
		id := fmt.Sprint("r", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, i)})
	}
	if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
		t.Fatal(err)
	}
	upd := ws[3]
	upd.Body = patientBody("r3", 1003)
	del := store.ResourceWrite{ResourceType: "Patient", ID: "r4", Deleted: true}
	if _, err := s.WriteResources(ctx, "p1", []store.ResourceWrite{upd, del}); err != nil {
		t.Fatal(err)
	}
	beforeSearch, err := s.Search(ctx, "p1", store.Query{ResourceType: "Patient", Count: 100, Params: []store.SearchParam{{Name: "gender", Values: []string{"female"}}}})
	if err != nil {
		t.Fatal(err)
	}
	lastSeq := s.nextSeq
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.nextSeq != lastSeq {
		t.Errorf("sequence %d after reopen, want %d", s.nextSeq, lastSeq)
	}
	res, err := s.WriteResources(ctx, "p1", []store.ResourceWrite{ws[0], upd, del, ws[4]})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Outcome{store.Unchanged, store.Unchanged, store.Unchanged, store.Updated}
	for i, r := range res {
		if r.Outcome != want[i] {
			t.Errorf("write %d after reopen: %v, want %v", i, r.Outcome, want[i])
		}
	}
	if res[3].Version != 3 || res[3].Seq != lastSeq+1 {
		t.Errorf("re-created r4: %+v, want version 3 seq %d", res[3], lastSeq+1)
	}
	after, err := s.Search(ctx, "p1", store.Query{ResourceType: "Patient", Count: 100, Params: []store.SearchParam{{Name: "gender", Values: []string{"female"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(p store.SearchPage) []string {
		var out []string
		for _, r := range p.Resources {
			if r.ID != "r4" {
				out = append(out, r.ID)
			}
		}
		return out
	}
	if !slices.Equal(ids(beforeSearch), ids(after)) {
		t.Errorf("search differs after reopen:\n%v\n%v", ids(beforeSearch), ids(after))
	}
	r3, err := s.GetResource(ctx, "p1", "Patient", "r3")
	if err != nil || r3.Version != 2 {
		t.Errorf("r3 after reopen: v%d %v", r3.Version, err)
	}
}

func TestContextCancelledWriteLeavesNoTrace(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.WriteResources(ctx, "p1", []store.ResourceWrite{{ResourceType: "Patient", ID: "a", Body: patientBody("a", 1)}})
	if err == nil {
		t.Fatal("write with a cancelled context succeeded")
	}
	if _, err := s.GetResource(context.Background(), "p1", "Patient", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed write is visible: %v", err)
	}
	res, err := s.WriteResources(context.Background(), "p1", []store.ResourceWrite{{ResourceType: "Patient", ID: "a", Body: patientBody("a", 1)}})
	if err != nil || res[0].Outcome != store.Created || res[0].Seq != 1 {
		t.Errorf("write after failure: %+v %v", res, err)
	}
}

// TestSearchAgreesWithMatch writes random resources, updates and deletes a
// share of them, and checks every query against searchparam.Match applied to
// the stored bodies.
func TestSearchAgreesWithMatch(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	r := rand.New(rand.NewPCG(3, 4))
	bodies := map[string][]byte{}
	for round := 0; round < 6; round++ {
		var ws []store.ResourceWrite
		for i := 0; i < 80; i++ {
			id := fmt.Sprint("x", r.IntN(200))
			if _, ok := bodies[id]; ok && r.IntN(8) == 0 {
				ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Deleted: true})
				delete(bodies, id)
				continue
			}
			b := patientBody(id, r.IntN(1000))
			ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: b})
			bodies[id] = b
		}
		if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
			t.Fatal(err)
		}
	}
	queries := [][]store.SearchParam{
		nil,
		{{Name: "family", Values: []string{"ga"}}},
		{{Name: "family", Values: []string{"müll", "smi"}}},
		{{Name: "gender", Values: []string{"female"}}, {Name: "birthdate", Prefix: "ge", Values: []string{"1980"}}},
		{{Name: "birthdate", Prefix: "lt", Values: []string{"1975-06"}}},
		{{Name: "identifier", Values: []string{"urn:mrn|17"}}},
		{{Name: "phone", Values: []string{"555-0117"}}},
		{{Name: "address-postalcode", Values: []string{"627"}}},
		{{Name: "family:exact", Values: []string{"García"}}},
		{{Name: "gender:missing", Values: []string{"true"}}},
	}
	for _, q := range queries {
		var want []string
		for id, b := range bodies {
			es, err := searchparam.Extract("Patient", b)
			if err != nil {
				t.Fatal(err)
			}
			ok := true
			for _, p := range q {
				ok = ok && searchparam.Match(es, p)
			}
			if ok {
				want = append(want, id)
			}
		}
		var got []string
		after := ""
		for {
			page, err := s.Search(ctx, "p1", store.Query{ResourceType: "Patient", Params: q, Count: 13, After: after})
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != len(want) {
				t.Errorf("%v: Total %d, want %d", q, page.Total, len(want))
			}
			for _, res := range page.Resources {
				got = append(got, res.ID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%v:\n got %v\nwant %v", q, got, want)
		}
	}
}

var (
	families = []string{"Smith", "Johnson", "García", "Müller", "Nguyen", "O'Brien", "Kowalski", "Hernández", "Lee", "Okafor"}
	givens   = []string{"Maria", "James", "Ana", "Wei", "Fatima", "John", "Zoë", "Liam", "Aisha", "Noah"}
)

// patientBody is a realistic ~1.5 KB Patient; n varies every field.
func patientBody(id string, n int) []byte {
	gender := []string{"male", "female", "other", ""}[n%4]
	g := ""
	if gender != "" {
		g = fmt.Sprintf(`"gender":%q,`, gender)
	}
	return fmt.Appendf(nil, `{"resourceType":"Patient","id":%q,"meta":{"versionId":"%d","lastUpdated":"2024-%02d-%02dT%02d:%02d:11.482Z","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},`+
		`"extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},{"url":"text","valueString":"White"}]},`+
		`{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"F"}],`+
		`"identifier":[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical record number"}]},"system":"urn:mrn","value":"%d"},`+
		`{"use":"official","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-%02d-%04d"}],"active":true,`+
		`"name":[{"use":"official","family":%q,"given":[%q,"Q"],"prefix":["Ms."]}],`+
		`"telecom":[{"system":"phone","value":"555-%04d","use":"home"},{"system":"email","value":"person%d@example.com"}],%s"birthDate":"19%02d-%02d-%02d",`+
		`"address":[{"use":"home","line":["%d Oak Street","Apt %d"],"city":"Springfield","state":"IL","postalCode":"62%03d","country":"US"}],`+
		`"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}]},`+
		`"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en","display":"English"}]},"preferred":true}],`+
		`"generalPractitioner":[{"reference":"Practitioner/prac-%d","display":"Dr. Alan Chu"}],"managingOrganization":{"reference":"Organization/org-1"}}`,
		id, n%9+1, n%12+1, n%28+1, n%24, n%60, n, n%100, n, families[n%len(families)], givens[n/10%len(givens)], n, n, g,
		40+n%60, n%12+1, n%28+1, n, n%50, n%1000, n%40)
}

// observationBody is a realistic ~1.4 KB vital-signs Observation.
func observationBody(id string, n int) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":"2024-%02d-%02dT%02d:%02d:00.000Z","profile":["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},`+
		`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}],"text":"Vital Signs"}],`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel with all children optional"}],"text":"Blood pressure"},`+
		`"subject":{"reference":"Patient/pat-%d"},"encounter":{"reference":"Encounter/enc-%d"},"effectiveDateTime":"2024-%02d-%02dT%02d:15:00Z","issued":"2024-%02d-%02dT%02d:20:00.000Z",`+
		`"performer":[{"reference":"Practitioner/prac-%d"}],`+
		`"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},"valueQuantity":{"value":%d,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},`+
		`{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4","display":"Diastolic blood pressure"}]},"valueQuantity":{"value":%d,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}],`+
		`"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"N","display":"Normal"}]}]}`,
		id, n%12+1, n%28+1, n%24, n%60, n%5000, n%20000, n%12+1, n%28+1, n%24, n%12+1, n%28+1, n%24, n%40, 100+n%60, 60+n%30)
}

// BenchmarkWriteResources stores batches of 500 realistic resources (half
// Patients, half Observations): new ones, then unchanged re-writes.
func BenchmarkWriteResources(b *testing.B) {
	const batch = 500
	mk := func(start int) []store.ResourceWrite {
		ws := make([]store.ResourceWrite, batch)
		for i := range ws {
			n := start + i
			if i%2 == 0 {
				id := fmt.Sprint("pat-", n)
				ws[i] = store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, n), Connection: "sim", SourceLastUpdated: time.Unix(int64(n), 0)}
			} else {
				id := fmt.Sprint("obs-", n)
				ws[i] = store.ResourceWrite{ResourceType: "Observation", ID: id, Body: observationBody(id, n), Connection: "sim"}
			}
		}
		return ws
	}
	b.Run("new", func(b *testing.B) {
		s, _ := openTemp(b)
		defer s.Close()
		n := 0
		var bytes int64
		for b.Loop() {
			b.StopTimer() // building the bodies is not the store's cost
			ws := mk(n)
			n += batch
			for _, w := range ws {
				bytes += int64(len(w.Body))
			}
			b.StartTimer()
			if _, err := s.WriteResources(context.Background(), "p1", ws); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/resource")
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
		b.ReportMetric(float64(bytes)/float64(n), "bytes/resource")
	})
	b.Run("unchanged", func(b *testing.B) {
		s, _ := openTemp(b)
		defer s.Close()
		const pool = 20
		batches := make([][]store.ResourceWrite, pool)
		for i := range batches {
			batches[i] = mk(i * batch)
			if _, err := s.WriteResources(context.Background(), "p1", batches[i]); err != nil {
				b.Fatal(err)
			}
		}
		n := 0
		for b.Loop() {
			res, err := s.WriteResources(context.Background(), "p1", batches[n/batch%pool])
			if err != nil {
				b.Fatal(err)
			}
			if res[0].Outcome != store.Unchanged {
				b.Fatal("re-write was not unchanged")
			}
			n += batch
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/resource")
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
	})
}

// BenchmarkSearch runs 20-result page searches over 100k stored resources
// (50k Patients, 50k Observations) and reports the memory the state takes.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	s, path := openTemp(b)
	defer s.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const total, batch = 100000, 1000
	start := time.Now()
	loadPatientsAndObservations(b, s, total, batch)
	load := time.Since(start)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("loaded %d resources in %v (%.0f/s); Go heap growth %.0f bytes/resource", total, load, total/load.Seconds(), float64(after.HeapAlloc-before.HeapAlloc)/total)
	queries := map[string][]store.SearchParam{
		"all-patients":     nil,
		"family":           {{Name: "family", Values: []string{"kowal"}}},
		"family+gender":    {{Name: "family", Values: []string{"johnson"}}, {Name: "gender", Values: []string{"female"}}},
		"identifier":       {{Name: "identifier", Values: []string{"urn:mrn|4242"}}},
		"birthdate-range":  {{Name: "birthdate", Prefix: "ge", Values: []string{"1990-03-01"}}, {Name: "birthdate", Prefix: "lt", Values: []string{"1990-05-01"}}},
		"obs-patient":      {{Name: "patient", Values: []string{"Patient/pat-4242"}}},
		"obs-code+date":    {{Name: "code", Values: []string{"http://loinc.org|85354-9"}}, {Name: "date", Prefix: "ge", Values: []string{"2024-06-01"}}},
		"obs-encounter":    {{Name: "encounter", Values: []string{"enc-777"}}},
		"patient-page-two": nil,
	}
	for name, params := range queries {
		rt := "Patient"
		if name[:3] == "obs" {
			rt = "Observation"
		}
		q := store.Query{ResourceType: rt, Params: params, Count: 20}
		if name == "patient-page-two" {
			first, err := s.Search(ctx, "p1", q)
			if err != nil {
				b.Fatal(err)
			}
			q.After = first.Next
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				page, err := s.Search(ctx, "p1", q)
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Resources) == 0 {
					b.Fatal("no results")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
		})
	}
	b.Run("parallel-family", func(b *testing.B) {
		q := store.Query{ResourceType: "Patient", Params: queries["family"], Count: 20}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Search(ctx, "p1", q); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
	})
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	s2, err := Open(ctx, path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("reopen with %d resources: %v", total, time.Since(start))
	s2.Close()
}

// Ensure the driver stays registered under the name Open uses.
var _ = sql.Drivers

// TestBackgroundCheckpoint: commits leave the WAL to the checkpointer, which
// must fold it into the database file soon after; Close empties the WAL.
func TestBackgroundCheckpoint(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size(path)
	var ws []store.ResourceWrite
	for i := 0; i < 1500; i++ {
		id := fmt.Sprint("c", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, i)})
	}
	if _, err := s.WriteResources(ctx, "p1", ws); err != nil {
		t.Fatal(err)
	}
	// The bodies compress against a dictionary (bodydict.go): the 1500
	// versions take about 600 KB.
	deadline := time.Now().Add(5 * time.Second)
	for size(path) < before+256<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (was %d): no background checkpoint", size(path), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := size(path + "-wal"); n != 0 {
		t.Errorf("WAL is %d bytes after Close, want 0", n)
	}
	s2, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, _ := s2.CountResources(ctx, "p1"); n["Patient"] != 1500 {
		t.Errorf("after reopen: %v", n)
	}
}

// loadPatientsAndObservations writes total resources into practice p1,
// Patients and Observations alternating, in batches of batch.
func loadPatientsAndObservations(tb testing.TB, s *Store, total, batch int) {
	tb.Helper()
	for i := 0; i < total; i += batch {
		ws := make([]store.ResourceWrite, 0, batch)
		for j := i; j < i+batch; j++ {
			if j%2 == 0 {
				id := fmt.Sprint("pat-", j/2)
				ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, j/2)})
			} else {
				id := fmt.Sprint("obs-", j/2)
				ws = append(ws, store.ResourceWrite{ResourceType: "Observation", ID: id, Body: observationBody(id, j/2)})
			}
		}
		if _, err := s.WriteResources(context.Background(), "p1", ws); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestVersionRowsKeepEachWritesSource: version rows are inserted many to a
// statement, with the columns the rows share bound once. Every row must
// still carry its own write's connection and raw payload, whether a chunk
// of rows shares them or not, and the practice and stored_at of its write.
func TestVersionRowsKeepEachWritesSource(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	type src struct {
		conn string
		raw  int64
	}
	// 85 rows from one source (chunks of 64, 16, 4 and 1), then 150 rows
	// whose source changes every 7 rows, so most chunks mix sources.
	var ws []store.ResourceWrite
	var want []src
	for i := range 85 {
		id := fmt.Sprint("u", i)
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, i), Connection: "c1", RawID: 11})
		want = append(want, src{"c1", 11})
	}
	for i := range 150 {
		id := fmt.Sprint("m", i)
		k := i / 7
		sc := src{fmt.Sprint("c", 2+k%3), int64(20 + k)}
		ws = append(ws, store.ResourceWrite{ResourceType: "Patient", ID: id, Body: patientBody(id, i), Connection: sc.conn, RawID: sc.raw})
		want = append(want, sc)
	}
	before := time.Now().UnixNano()
	res, err := s.WriteResources(ctx, "p9", ws)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixNano()
	var stored0 int64
	for i, r := range res {
		var practice, rt, id, conn string
		var raw, stored, version int64
		if err := s.r.QueryRow(`SELECT practice, resource_type, id, connection, raw_id, stored_at, version FROM resource_versions WHERE seq = ?`, r.Seq).
			Scan(&practice, &rt, &id, &conn, &raw, &stored, &version); err != nil {
			t.Fatalf("row of write %d (seq %d): %v", i, r.Seq, err)
		}
		if practice != "p9" || rt != "Patient" || id != ws[i].ID || version != 1 {
			t.Errorf("write %d: row (%s, %s, %s, v%d), want (p9, Patient, %s, v1)", i, practice, rt, id, version, ws[i].ID)
		}
		if conn != want[i].conn || raw != want[i].raw {
			t.Errorf("write %d: connection %q raw %d, want %q %d", i, conn, raw, want[i].conn, want[i].raw)
		}
		if stored < before || stored > after {
			t.Errorf("write %d: stored_at %d outside the call [%d, %d]", i, stored, before, after)
		}
		if i == 0 {
			stored0 = stored
		} else if stored != stored0 {
			t.Errorf("write %d: stored_at %d, want the write's %d", i, stored, stored0)
		}
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM resource_versions WHERE practice = 'p9'`).Scan(&n); err != nil || n != len(ws) {
		t.Errorf("%d rows (%v), want %d", n, err, len(ws))
	}
}
