package sync

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// pageMarker is replaced by the zero-padded page number in every served
// page, so each page holds different ids while the server does almost no work.
const pageMarker = "PG@@@@@@"

// benchPatient is a US Core shaped Patient of about 1.1 KB.
func benchPatient(i int) string {
	return fmt.Sprintf(`{"resourceType":"Patient","id":"%s-%04d","meta":{"versionId":"1","lastUpdated":"2025-06-01T08:%02d:%02d.000Z","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},`+
		`"extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},{"url":"text","valueString":"White"}]}],`+
		`"identifier":[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:1.2.3.4","value":"MRN%07d"}],`+
		`"active":true,"name":[{"use":"official","family":"Family%d","given":["Given%d","Middle"]}],`+
		`"telecom":[{"system":"phone","value":"555-01%02d-%04d","use":"home"},{"system":"email","value":"person%d@example.org"}],`+
		`"gender":"%s","birthDate":"19%02d-%02d-%02d",`+
		`"address":[{"use":"home","line":["%d Main Street","Apt %d"],"city":"Springfield","state":"IL","postalCode":"627%02d","country":"US"}],`+
		`"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]},`+
		`"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en-US"}]},"preferred":true}]}`,
		pageMarker, i, (i/60)%60, i%60, i, i, i, i%100, i, i, []string{"female", "male"}[i%2], 40+i%60, 1+i%12, 1+i%28, 100+i, i%50, i%100)
}

// benchServer serves pages of perPage Patients, numbered 1..pages.
func benchServer(b *testing.B, perPage, pages int) *httptest.Server {
	var tmpl bytes.Buffer
	tmpl.WriteString(`{"resourceType":"Bundle","type":"searchset","link":[`)
	tmpl.WriteString(`{"relation":"next","url":"NEXTLINK"}],"entry":[`)
	for i := 0; i < perPage; i++ {
		if i > 0 {
			tmpl.WriteByte(',')
		}
		fmt.Fprintf(&tmpl, `{"fullUrl":"http://x/Patient/%s-%04d","resource":%s,"search":{"mode":"match"}}`, pageMarker, i, benchPatient(i))
	}
	tmpl.WriteString(`]}`)
	base := tmpl.Bytes()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 1
		if p := r.URL.Query().Get("page"); p != "" {
			n, _ = strconv.Atoi(p)
		}
		next := ""
		if n < pages {
			next = srv.URL + "/fhir/Patient?page=" + strconv.Itoa(n+1)
		}
		body := bytes.ReplaceAll(base, []byte(pageMarker), fmt.Appendf(nil, "PG%06d", n))
		if next == "" {
			body = bytes.Replace(body, []byte(`{"relation":"next","url":"NEXTLINK"}`), []byte(`{"relation":"self","url":"x"}`), 1)
		} else {
			body = bytes.Replace(body, []byte("NEXTLINK"), []byte(next), 1)
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchStoreFactory returns the store the benchmark writes into: the real
// SQLite store in a temporary folder, or with MEDIFLOW_BENCH_STORE=memstore
// or =null the test doubles (null measures the client and sync pipeline alone).
// benchStore is a sync Store the benchmark closes afterwards.
type benchStore interface {
	Store
	Close() error
}

func benchStoreFactory(b *testing.B) (benchStore, string) {
	switch os.Getenv("MEDIFLOW_BENCH_STORE") {
	case "null":
		return newNullStore(), "null"
	case "memstore":
		return newMemStore(), "memstore"
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return st, "sqlite"
}

// BenchmarkSync measures the end-to-end sync (HTTP on loopback → client →
// parse → raw + resources in the store) of 200,000 Patients in pages of 1000.
// Set MEDIFLOW_BENCH_RESOURCES to change the count.
func BenchmarkSync(b *testing.B) {
	total := 200_000
	if v, err := strconv.Atoi(os.Getenv("MEDIFLOW_BENCH_RESOURCES")); err == nil && v > 0 {
		total = v
	}
	const perPage = 1000
	pages := (total + perPage - 1) / perPage
	total = pages * perPage
	srv := benchServer(b, perPage, pages)
	client, err := fhirrest.New(fhirrest.Config{BaseURL: srv.URL + "/fhir"})
	if err != nil {
		b.Fatal(err)
	}
	var storeName string
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st, name := benchStoreFactory(b)
		storeName = name
		s := &Syncer{Store: st}
		src := Source{Practice: "bench", Connection: "c", Client: client, ResourceTypes: []string{"Patient"}, PageSize: perPage}
		runtime.GC()
		b.StartTimer()
		run, err := s.Run(context.Background(), src, "bench")
		b.StopTimer()
		if err != nil || run.Status != store.RunSucceeded {
			b.Fatalf("run %s: %v", run.Status, err)
		}
		if ts := run.Stats["Patient"]; ts.New != total || ts.Failed != 0 {
			b.Fatalf("stats %+v", ts)
		}
		st.Close()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
	b.ReportMetric(0, "ns/op")
	if rss := peakRSSMiB(); rss > 0 {
		b.ReportMetric(rss, "peak-RSS-MiB")
	}
	b.Logf("store=%s resources/run=%d pages=%d GOMAXPROCS=%d", storeName, total, pages, runtime.GOMAXPROCS(0))
}

// peakRSSMiB reads VmHWM from /proc/self/status (Linux); 0 elsewhere.
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// nullStore keeps only what the sync needs to count outcomes: it measures
// the client and sync pipeline without a storage engine behind it.
type nullStore struct {
	*memStore
	seed   maphash.Seed
	hashes map[string]uint64
	rawID  int64
}

func newNullStore() *nullStore {
	return &nullStore{memStore: newMemStore(), seed: maphash.MakeSeed(), hashes: map[string]uint64{}}
}

func (n *nullStore) PutRaw(ctx context.Context, p store.RawPayload) (int64, error) {
	n.rawID++
	return n.rawID, ctx.Err()
}

func (n *nullStore) WriteResources(ctx context.Context, practice string, ws []store.ResourceWrite) ([]store.WriteResult, error) {
	out := make([]store.WriteResult, len(ws))
	for i, w := range ws {
		h := maphash.Bytes(n.seed, w.Body)
		k := w.ResourceType + "/" + w.ID
		prev, ok := n.hashes[k]
		switch {
		case !ok:
			out[i].Outcome = store.Created
		case prev != h:
			out[i].Outcome = store.Updated
		}
		n.hashes[k] = h
	}
	return out, ctx.Err()
}
