package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor"
)

// testManifest is the Bulk Data manifest as the IG names its members
// (decoded independently of the server's own types).
type testManifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Deleted []struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"deleted"`
	Error []struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"error"`
}

var asyncHdr = map[string]string{"Prefer": "respond-async", "Accept": "application/fhir+json"}

func bulkFixture(t *testing.T, flavorName string, opts BulkOptions, clk *clock) *fixture {
	t.Helper()
	cfg := Config{Tenants: []TenantConfig{{ID: "b", Flavor: flavorName, Seed: 7, Data: smallData(25), Bulk: opts}}}
	if clk != nil {
		cfg.Now = clk.Now
	}
	return newFixture(t, cfg)
}

// kickoff starts an export and returns the status URL.
func (f *fixture) kickoff(u, tok string) string {
	f.t.Helper()
	r := f.do(http.MethodGet, u, tok, nil, asyncHdr)
	if r.status != http.StatusAccepted {
		f.t.Fatalf("kick-off %s: %d %s", u, r.status, r.body)
	}
	loc := r.header.Get("Content-Location")
	if loc == "" {
		f.t.Fatalf("kick-off: no Content-Location")
	}
	return loc
}

// manifest polls a status URL until the manifest (at most maxPolls polls)
// and returns it with the number of 202 answers seen.
func (f *fixture) manifest(status, tok string, maxPolls int) (testManifest, resp, int) {
	f.t.Helper()
	waits := 0
	for range maxPolls {
		r := f.get(status, tok)
		switch r.status {
		case http.StatusAccepted:
			waits++
			if r.header.Get("X-Progress") == "" || r.header.Get("Retry-After") == "" {
				f.t.Fatalf("in-progress answer without X-Progress or Retry-After: %v", r.header)
			}
			continue
		case http.StatusOK:
			var m testManifest
			if err := json.Unmarshal(r.body, &m); err != nil {
				f.t.Fatalf("manifest: %v: %s", err, r.body)
			}
			return m, r, waits
		default:
			f.t.Fatalf("status poll: %d %s", r.status, r.body)
		}
	}
	f.t.Fatalf("no manifest after %d polls", maxPolls)
	return testManifest{}, resp{}, 0
}

// ndjson downloads a file and returns its lines.
func (f *fixture) ndjson(u, tok string) [][]byte {
	f.t.Helper()
	r := f.get(u, tok)
	if r.status != http.StatusOK {
		f.t.Fatalf("file %s: %d %s", u, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+ndjson" {
		f.t.Errorf("file content type %q", ct)
	}
	return splitLines(f.t, r.body)
}

func splitLines(t testing.TB, b []byte) [][]byte {
	t.Helper()
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("NDJSON does not end with a newline")
	}
	var out [][]byte
	for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// outputByType downloads every output file: type → id → line, checking
// each file's type, count and that no id repeats.
func (f *fixture) outputByType(m testManifest, tok string) map[string]map[string][]byte {
	f.t.Helper()
	out := map[string]map[string][]byte{}
	for _, o := range m.Output {
		lines := f.ndjson(o.URL, tok)
		if o.Count != len(lines) {
			f.t.Errorf("%s: manifest count %d, file has %d lines", o.URL, o.Count, len(lines))
		}
		if out[o.Type] == nil {
			out[o.Type] = map[string][]byte{}
		}
		for _, l := range lines {
			h, err := fhir.ParseHeader(l)
			if err != nil {
				f.t.Fatalf("%s: %v", o.URL, err)
			}
			if h.ResourceType != o.Type {
				f.t.Errorf("%s: a %s in the %s file", o.URL, h.ResourceType, o.Type)
			}
			if _, dup := out[o.Type][h.ID]; dup {
				f.t.Errorf("%s/%s exported twice", o.Type, h.ID)
			}
			out[o.Type][h.ID] = l
		}
	}
	return out
}

// sameResources compares exported lines with expected bodies byte for byte.
func sameResources(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: exported %d resources, want %d", what, len(got), len(want))
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s: %s missing from the export", what, id)
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s/%s: exported body differs from the current version", what, id)
		}
	}
}

func TestBulkKickoffValidation(t *testing.T) {
	f := bulkFixture(t, "generic", BulkOptions{}, nil)
	tok := f.token("b")
	base := f.sim.BaseURL("b")

	r := f.do(http.MethodGet, base+"/$export", tok, nil, map[string]string{"Accept": "application/fhir+json"})
	if oo := outcomeOf(t, r); r.status != http.StatusBadRequest || !strings.Contains(oo.Issue[0].Diagnostics, "respond-async") {
		t.Errorf("without Prefer: %d %s", r.status, r.body)
	}
	if r := f.do(http.MethodGet, base+"/$export", "", nil, asyncHdr); r.status != http.StatusUnauthorized {
		t.Errorf("without a token: %d %s", r.status, r.body)
	}
	if r := f.do(http.MethodGet, base+"/$export?_typeFilter=Patient%3Factive%3Dtrue", tok, nil, asyncHdr); r.status != http.StatusBadRequest {
		t.Errorf("unsupported _typeFilter: %d %s", r.status, r.body)
	}
	lenient := map[string]string{"Prefer": "respond-async, handling=lenient", "Accept": "application/fhir+json"}
	if r := f.do(http.MethodGet, base+"/$export?_typeFilter=Patient%3Factive%3Dtrue", tok, nil, lenient); r.status != http.StatusAccepted {
		t.Errorf("lenient _typeFilter: %d %s", r.status, r.body)
	}
	for _, q := range []string{"_outputFormat=text/csv", "_since=yesterday", "_type=patient%20x"} {
		if r := f.do(http.MethodGet, base+"/$export?"+q, tok, nil, asyncHdr); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
	for _, q := range []string{"_outputFormat=application/fhir%2Bndjson", "_outputFormat=application/ndjson", "_outputFormat=ndjson"} {
		if r := f.do(http.MethodGet, base+"/$export?"+q, tok, nil, asyncHdr); r.status != http.StatusAccepted {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
	if r := f.do(http.MethodGet, base+"/$export", tok, nil, map[string]string{"Prefer": "respond-async", "Accept": "application/xml"}); r.status != http.StatusNotAcceptable {
		t.Errorf("Accept xml: %d %s", r.status, r.body)
	}
	if r := f.do(http.MethodGet, base+"/Group/nosuchgroup/$export", tok, nil, asyncHdr); r.status != http.StatusNotFound {
		t.Errorf("unknown group: %d %s", r.status, r.body)
	}
	if r := f.do(http.MethodPut, base+"/$export", tok, []byte(`{}`), asyncHdr); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT $export: %d %s", r.status, r.body)
	}
	// A token for Patient only: the export narrows to Patient; asking for
	// Observation alone is forbidden.
	ptok := f.token("b", "system/Patient.rs")
	if r := f.do(http.MethodGet, base+"/$export?_type=Observation", ptok, nil, asyncHdr); r.status != http.StatusForbidden {
		t.Errorf("Observation with a Patient-only token: %d %s", r.status, r.body)
	}
	m, _, _ := f.manifest(f.kickoff(base+"/$export", ptok), ptok, 5)
	if len(m.Output) == 0 || len(m.Error) != 0 {
		t.Fatalf("Patient-only export: %+v", m)
	}
	for _, o := range m.Output {
		if o.Type != "Patient" {
			t.Errorf("Patient-only token exported %s", o.Type)
		}
	}

	// The CapabilityStatement declares the operations.
	r = f.get(base+"/metadata", "")
	for _, want := range []string{flavor.ExportOperation, flavor.PatientExportOperation, flavor.GroupExportOperation, flavor.BulkDataCapability} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metadata does not declare %s", want)
		}
	}
}

func TestBulkSystemExportFlow(t *testing.T) {
	f := bulkFixture(t, "generic", BulkOptions{Polls: 2, PerFile: 40}, nil)
	tok := f.token("b")
	base := f.sim.BaseURL("b")
	kick := base + "/$export?_outputFormat=application%2Ffhir%2Bndjson"
	status := f.kickoff(kick, tok)
	if !strings.HasPrefix(status, base+"/$export-poll-status?_jobId=") {
		t.Errorf("status URL %q", status)
	}
	m, r, waits := f.manifest(status, tok, 10)
	if waits != 2 {
		t.Errorf("%d in-progress answers, want 2", waits)
	}
	if r.header.Get("Expires") == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("manifest headers: %v", r.header)
	}
	if m.Request != kick || !m.RequiresAccessToken || len(m.Error) != 0 || m.Deleted != nil {
		t.Errorf("manifest: request %q requiresAccessToken %v error %v deleted %v", m.Request, m.RequiresAccessToken, m.Error, m.Deleted)
	}
	if _, err := fhir.ParseInstant(m.TransactionTime); err != nil {
		t.Errorf("transactionTime %q: %v", m.TransactionTime, err)
	}
	parts := map[string]int{}
	for _, o := range m.Output {
		parts[o.Type]++
		if o.Count < 1 || o.Count > 40 {
			t.Errorf("%s has %d resources; want 1..40", o.URL, o.Count)
		}
	}
	got := f.outputByType(m, tok)
	counts := f.sim.Counts("b")
	for _, rt := range f.sim.ResourceTypes("b") {
		sameResources(t, rt, got[rt], f.sim.Current("b", rt))
		if want := (counts[rt] + 39) / 40; parts[rt] != want {
			t.Errorf("%s: %d files for %d resources, want %d", rt, parts[rt], counts[rt], want)
		}
	}
	// Files need the token; the status URL too.
	if r := f.get(m.Output[0].URL, ""); r.status != http.StatusUnauthorized {
		t.Errorf("file without a token: %d", r.status)
	}
	if r := f.get(status, ""); r.status != http.StatusUnauthorized {
		t.Errorf("status without a token: %d", r.status)
	}
	// The manifest stays until the job expires.
	if r := f.get(status, tok); r.status != http.StatusOK {
		t.Errorf("second manifest read: %d", r.status)
	}
	if r := f.get(m.Output[0].URL+"x", tok); r.status != http.StatusNotFound {
		t.Errorf("unknown file: %d", r.status)
	}
}

// TestBulkFilesAsOfTransactionTime: changes after kick-off do not leak into
// the files; each holds the versions current at transactionTime.
func TestBulkFilesAsOfTransactionTime(t *testing.T) {
	clk := newClock(time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC))
	f := bulkFixture(t, "generic", BulkOptions{PerFile: 30}, clk)
	tok := f.token("b")
	before := map[string]map[string][]byte{}
	for _, rt := range f.sim.ResourceTypes("b") {
		before[rt] = f.sim.Current("b", rt)
	}
	status := f.kickoff(f.sim.BaseURL("b")+"/$export", tok)
	clk.Advance(time.Minute)
	changes, err := f.sim.Tick("b", 60)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := f.manifest(status, tok, 5)
	clk.Advance(time.Minute)
	if _, err := f.sim.Tick("b", 60); err != nil { // and more after completion
		t.Fatal(err)
	}
	got := f.outputByType(m, tok)
	for rt, want := range before {
		sameResources(t, rt, got[rt], want)
	}
	if len(changes) == 0 {
		t.Fatal("the change generator made no changes")
	}
}

func TestBulkSinceTypeAndPost(t *testing.T) {
	clk := newClock(time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC))
	f := bulkFixture(t, "generic", BulkOptions{}, clk)
	base := f.sim.BaseURL("b")
	clk.Advance(time.Hour)
	tok := f.token("b")
	since := clk.Now()
	if _, err := f.sim.Tick("b", 80); err != nil {
		t.Fatal(err)
	}
	// Expected: resources whose meta.lastUpdated is not before since.
	want := func(rt string) map[string][]byte {
		out := map[string][]byte{}
		for id, b := range f.sim.Current("b", rt) {
			h, err := fhir.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if !h.LastUpdated.Before(since) {
				out[id] = b
			}
		}
		return out
	}
	check := func(m testManifest) {
		t.Helper()
		got := f.outputByType(m, tok)
		for rt := range got {
			if rt != "Patient" && rt != "Observation" {
				t.Errorf("_type=Patient,Observation exported %s", rt)
			}
		}
		total := 0
		for _, rt := range []string{"Patient", "Observation"} {
			w := want(rt)
			total += len(w)
			sameResources(t, rt+" since", got[rt], w)
		}
		if total == 0 || total == len(f.sim.Current("b", "Patient"))+len(f.sim.Current("b", "Observation")) {
			t.Fatalf("test data does not separate old and new resources (%d new)", total)
		}
		if m.Deleted == nil {
			t.Errorf("an export with _since has no deleted array")
		}
	}
	// GET.
	q := url.Values{"_type": {"Patient,Observation"}, "_since": {fhir.FormatInstant(since)}}
	m, _, _ := f.manifest(f.kickoff(base+"/$export?"+q.Encode(), tok), tok, 5)
	check(m)
	// POST with a Parameters body.
	body := fmt.Sprintf(`{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"},{"name":"_type","valueString":"Observation"},{"name":"_since","valueInstant":%q},{"name":"_outputFormat","valueString":"application/fhir+ndjson"}]}`, fhir.FormatInstant(since))
	r := f.do(http.MethodPost, base+"/$export", tok, []byte(body), asyncHdr)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST kick-off: %d %s", r.status, r.body)
	}
	m, _, _ = f.manifest(r.header.Get("Content-Location"), tok, 5)
	check(m)
	if r := f.do(http.MethodPost, base+"/$export", tok, []byte(`{"resourceType":"Patient"}`), asyncHdr); r.status != http.StatusBadRequest {
		t.Errorf("POST with a non-Parameters body: %d", r.status)
	}
}

func TestBulkDeleted(t *testing.T) {
	clk := newClock(time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC))
	f := bulkFixture(t, "generic", BulkOptions{PerFile: 2}, clk)
	tok := f.token("b")
	base := f.sim.BaseURL("b")
	since := clk.Now()
	clk.Advance(time.Second)
	var gone []string
	for _, rt := range []string{"Patient", "Observation", "Observation"} {
		id := ""
		for cand := range f.sim.Current("b", rt) {
			if !contains(gone, rt+"/"+cand) {
				id = cand
				break
			}
		}
		if err := f.sim.MarkDeleted("b", rt, id); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, rt+"/"+id)
	}
	if err := f.sim.MarkDeleted("b", "Patient", "no-such-id"); err == nil {
		t.Error("MarkDeleted of an unknown resource succeeded")
	}
	sort.Strings(gone)
	q := url.Values{"_type": {"Patient,Observation"}, "_since": {fhir.FormatInstant(since)}}
	m, _, _ := f.manifest(f.kickoff(base+"/$export?"+q.Encode(), tok), tok, 5)
	if len(m.Deleted) != 2 { // three deletions, two per file
		t.Fatalf("deleted files: %+v", m.Deleted)
	}
	var listed []string
	for _, d := range m.Deleted {
		if d.Type != "Bundle" {
			t.Errorf("deleted file type %q", d.Type)
		}
		for _, l := range f.ndjson(d.URL, tok) {
			var b struct {
				ResourceType string
				Type         string
				Meta         struct{ LastUpdated string }
				Entry        []struct {
					Request struct{ Method, URL string }
				}
			}
			if err := json.Unmarshal(l, &b); err != nil {
				t.Fatal(err)
			}
			if b.ResourceType != "Bundle" || b.Type != "transaction" || len(b.Entry) == 0 || b.Meta.LastUpdated == "" {
				t.Errorf("deleted line: %s", l)
			}
			for _, e := range b.Entry {
				if e.Request.Method != "DELETE" {
					t.Errorf("deleted entry method %q", e.Request.Method)
				}
				listed = append(listed, e.Request.URL)
			}
		}
	}
	sort.Strings(listed)
	if strings.Join(listed, " ") != strings.Join(gone, " ") {
		t.Errorf("deleted lists %v, want %v", listed, gone)
	}
	// The output leaves deleted resources out (there is no change since
	// since besides deletions, so the output is empty).
	if len(m.Output) != 0 {
		t.Errorf("output after deletions only: %+v", m.Output)
	}
	// A full export has no deleted array and leaves them out too.
	m, _, _ = f.manifest(f.kickoff(base+"/$export?_type=Patient,Observation", tok), tok, 5)
	got := f.outputByType(m, tok)
	if m.Deleted != nil {
		t.Errorf("deleted without _since: %+v", m.Deleted)
	}
	for _, rt := range []string{"Patient", "Observation"} {
		want := f.sim.Current("b", rt)
		for _, g := range gone {
			if typ, id, _ := strings.Cut(g, "/"); typ == rt {
				delete(want, id)
			}
		}
		sameResources(t, rt+" after deletions", got[rt], want)
	}
	// BulkExpected agrees.
	exp, del, err := f.sim.BulkExpected("b", BulkQuery{Types: []string{"Patient", "Observation"}, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(del)
	if strings.Join(del, " ") != strings.Join(gone, " ") || len(exp["Patient"])+len(exp["Observation"]) != 0 {
		t.Errorf("BulkExpected: deleted %v, output %d+%d", del, len(exp["Patient"]), len(exp["Observation"]))
	}
	// A later update re-creates a resource: exported again, no longer deleted.
	typ, id, _ := strings.Cut(gone[0], "/")
	body, _ := f.sim.Get("b", typ, id)
	clk.Advance(time.Second)
	if _, _, _, err := f.sim.Put("b", body); err != nil {
		t.Fatal(err)
	}
	m, _, _ = f.manifest(f.kickoff(base+"/$export?"+q.Encode(), tok), tok, 5)
	got = f.outputByType(m, tok)
	if _, ok := got[typ][id]; !ok || len(m.Deleted) != 1 {
		t.Errorf("re-created %s: output %v, deleted files %d", gone[0], ok, len(m.Deleted))
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestBulkErrorFile(t *testing.T) {
	f := bulkFixture(t, "generic", BulkOptions{}, nil)
	tok := f.token("b")
	m, _, _ := f.manifest(f.kickoff(f.sim.BaseURL("b")+"/$export?_type=Patient,Claim", tok), tok, 5)
	if len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" {
		t.Fatalf("error files: %+v", m.Error)
	}
	lines := f.ndjson(m.Error[0].URL, tok)
	if len(lines) != 1 {
		t.Fatalf("%d error lines", len(lines))
	}
	oo, ok := fhir.ParseOutcome(lines[0])
	if !ok || oo.Issue[0].Code != "not-supported" || !strings.Contains(oo.Issue[0].Diagnostics, "Claim") {
		t.Errorf("error line: %s", lines[0])
	}
	got := f.outputByType(m, tok)
	if len(got) != 1 {
		t.Errorf("output types %d, want Patient only", len(got))
	}
	sameResources(t, "Patient", got["Patient"], f.sim.Current("b", "Patient"))
	// Only unexportable types: refused at kick-off.
	if r := f.do(http.MethodGet, f.sim.BaseURL("b")+"/$export?_type=Claim", tok, nil, asyncHdr); r.status != http.StatusBadRequest {
		t.Errorf("only Claim: %d %s", r.status, r.body)
	}
}

func TestBulkCancelAndExpiry(t *testing.T) {
	clk := newClock(time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC))
	f := bulkFixture(t, "generic", BulkOptions{Polls: 3, TTL: 10 * time.Minute}, clk)
	tok := f.token("b")
	base := f.sim.BaseURL("b")

	status := f.kickoff(base+"/Patient/$export", tok)
	if r := f.get(status, tok); r.status != http.StatusAccepted {
		t.Fatalf("first poll: %d", r.status)
	}
	if r := f.do(http.MethodDelete, status, tok, nil, nil); r.status != http.StatusAccepted {
		t.Errorf("cancel: %d %s", r.status, r.body)
	}
	if r := f.get(status, tok); r.status != http.StatusNotFound {
		t.Errorf("poll after cancel: %d", r.status)
	}
	if r := f.do(http.MethodDelete, status, tok, nil, nil); r.status != http.StatusNotFound {
		t.Errorf("second cancel: %d", r.status)
	}

	// Expiry: files answer 410 and the status URL 404 after the TTL.
	status = f.kickoff(base+"/Patient/$export", tok)
	m, _, _ := f.manifest(status, tok, 10)
	if len(m.Output) == 0 {
		t.Fatal("empty Patient export")
	}
	clk.Advance(9 * time.Minute) // tokens live 5 minutes: get a new one
	tok = f.token("b")
	if r := f.get(m.Output[0].URL, tok); r.status != http.StatusOK {
		t.Errorf("file before the TTL: %d", r.status)
	}
	clk.Advance(time.Minute)
	if r := f.get(m.Output[0].URL, tok); r.status != http.StatusGone {
		t.Errorf("file after the TTL: %d", r.status)
	}
	if r := f.get(status, tok); r.status != http.StatusNotFound {
		t.Errorf("status after the TTL: %d", r.status)
	}
	// Cancelling a completed job deletes its files.
	status = f.kickoff(base+"/Patient/$export", tok)
	m, _, _ = f.manifest(status, tok, 10)
	if r := f.do(http.MethodDelete, status, tok, nil, nil); r.status != http.StatusAccepted {
		t.Errorf("cancel a completed job: %d", r.status)
	}
	if r := f.get(m.Output[0].URL, tok); r.status != http.StatusNotFound {
		t.Errorf("file of a cancelled job: %d", r.status)
	}
}

func TestBulkEpic(t *testing.T) {
	f := bulkFixture(t, "epic", BulkOptions{TimeScale: 0.001, Groups: map[string][]string{"cohort": nil}}, nil)
	tok := f.token("b")
	base := f.sim.BaseURL("b")
	// Group export only.
	for _, u := range []string{base + "/$export", base + "/Patient/$export"} {
		if r := f.do(http.MethodGet, u, tok, nil, asyncHdr); r.status != http.StatusNotFound {
			t.Errorf("%s on Epic: %d %s", u, r.status, r.body)
		}
	}
	// Not incremental: _since is refused, or ignored when lenient.
	if r := f.do(http.MethodGet, base+"/Group/all/$export?_since=2026-01-01T00:00:00Z", tok, nil, asyncHdr); r.status != http.StatusBadRequest {
		t.Errorf("_since on Epic: %d %s", r.status, r.body)
	}
	status := f.kickoff(base+"/Group/all/$export?_type=Patient,Observation,Schedule", tok)
	if !strings.HasPrefix(status, base+"/BulkRequest/") {
		t.Errorf("Epic status URL %q", status)
	}
	// One job per client: a second kick-off while it runs gets 429.
	r := f.do(http.MethodGet, base+"/Group/cohort/$export", tok, nil, asyncHdr)
	if oo := outcomeOf(t, r); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "120" || oo.Issue[0].Code != "throttled" {
		t.Errorf("concurrent kick-off: %d %v %s", r.status, r.header, r.body)
	}
	// Polls: Retry-After 120; polling sooner than 120 s × 0.001 gets 429.
	r = f.get(status, tok)
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") != "120" {
		t.Fatalf("first poll: %d %v", r.status, r.header)
	}
	if r := f.get(status, tok); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "120" {
		t.Errorf("poll too soon: %d %v", r.status, r.header)
	}
	time.Sleep(150 * time.Millisecond)
	r = f.get(status, tok)
	if r.status != http.StatusOK {
		t.Fatalf("poll after the scaled Retry-After: %d %s", r.status, r.body)
	}
	var m testManifest
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	got := f.outputByType(m, tok)
	sameResources(t, "Patient", got["Patient"], f.sim.Current("b", "Patient"))
	sameResources(t, "Observation", got["Observation"], f.sim.Current("b", "Observation"))
	if len(m.Error) != 1 || !strings.Contains(string(f.ndjson(m.Error[0].URL, tok)[0]), "Schedule") {
		t.Errorf("Epic has no Schedule in R4: error files %+v", m.Error)
	}
	for _, o := range m.Output {
		if !strings.HasPrefix(o.URL, base+"/BulkRequest/") {
			t.Errorf("Epic file URL %q", o.URL)
		}
	}
	// The job is done: a new one may start.
	if r := f.do(http.MethodGet, base+"/Group/cohort/$export", tok, nil, asyncHdr); r.status != http.StatusAccepted {
		t.Errorf("kick-off after completion: %d %s", r.status, r.body)
	}
	lenient := map[string]string{"Prefer": "respond-async,handling=lenient"}
	if r := f.do(http.MethodGet, base+"/Group/all/$export?_since=2026-01-01T00:00:00Z", tok, nil, lenient); r.status != http.StatusTooManyRequests {
		t.Errorf("kick-off while cohort runs (lenient _since): %d %s", r.status, r.body)
	}
}

func TestBulkGroupSubset(t *testing.T) {
	f := bulkFixture(t, "epic", BulkOptions{}, nil)
	ids := sortedIDs(f.sim.Current("b", "Patient"))[:3]
	if err := f.sim.SetBulkOptions("b", BulkOptions{Groups: map[string][]string{"g1": ids}}); err != nil {
		t.Fatal(err)
	}
	tok := f.token("b")
	m, _, _ := f.manifest(f.kickoff(f.sim.BaseURL("b")+"/Group/g1/$export", tok), tok, 5)
	got := f.outputByType(m, tok)
	members := map[string]bool{}
	for _, id := range ids {
		members[id] = true
	}
	// Expected, computed independently: Patients in the group; clinical
	// resources whose subject/patient/beneficiary/participant names a member;
	// directory types in full.
	refersToMember := func(body []byte) bool {
		for id := range members {
			if bytes.Contains(body, []byte(`"reference":"Patient/`+id+`"`)) {
				return true
			}
		}
		return false
	}
	for _, rt := range f.sim.ResourceTypes("b") {
		want := map[string][]byte{}
		for id, b := range f.sim.Current("b", rt) {
			switch rt {
			case "Patient":
				if members[id] {
					want[id] = b
				}
			case "Practitioner", "Organization", "Location":
				want[id] = b
			default:
				if refersToMember(b) {
					want[id] = b
				}
			}
		}
		sameResources(t, "group "+rt, got[rt], want)
	}
	if len(got["Observation"]) == 0 || len(got["Observation"]) == len(f.sim.Current("b", "Observation")) {
		t.Errorf("group Observation export has %d of %d", len(got["Observation"]), len(f.sim.Current("b", "Observation")))
	}
	exp, _, err := f.sim.BulkExpected("b", BulkQuery{Level: flavor.BulkGroup, Group: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	for rt, w := range exp {
		sameResources(t, "BulkExpected "+rt, got[rt], w)
	}
}

func sortedIDs(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func TestBulkRedirectAndTokens(t *testing.T) {
	f := bulkFixture(t, "generic", BulkOptions{Redirect: true}, nil)
	tok := f.token("b")
	m, _, _ := f.manifest(f.kickoff(f.sim.BaseURL("b")+"/$export?_type=Patient", tok), tok, 5)
	if !m.RequiresAccessToken || len(m.Output) != 1 {
		t.Fatalf("manifest: %+v", m)
	}
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(c *http.Client, u, tok string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	if res, _ := get(noRedirect, m.Output[0].URL, ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("file URL without a token: %d", res.StatusCode)
	}
	res, _ := get(noRedirect, m.Output[0].URL, tok)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, f.srv.URL+"/_bulkstore/b/") {
		t.Fatalf("file URL: %d Location %q", res.StatusCode, loc)
	}
	// Storage refuses Authorization (a client that forwards it fails) ...
	if res, body := get(noRedirect, loc, tok); res.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("Authorization")) {
		t.Errorf("storage with Authorization: %d %s", res.StatusCode, body)
	}
	// ... as Go's default client does for a same-host redirect.
	if res, _ := get(&http.Client{Timeout: 10 * time.Second}, m.Output[0].URL, tok); res.StatusCode != http.StatusBadRequest {
		t.Errorf("following the redirect with Authorization forwarded: %d", res.StatusCode)
	}
	res, body := get(noRedirect, loc, "")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/fhir+ndjson" {
		t.Fatalf("storage without Authorization: %d %s", res.StatusCode, body)
	}
	got := map[string][]byte{}
	for _, l := range splitLines(t, body) {
		h, err := fhir.ParseHeader(l)
		if err != nil {
			t.Fatal(err)
		}
		got[h.ID] = l
	}
	sameResources(t, "Patient via storage", got, f.sim.Current("b", "Patient"))
	bad := strings.Replace(loc, "sig=", "sig=x", 1)
	if res, _ := get(noRedirect, bad, ""); res.StatusCode != http.StatusForbidden {
		t.Errorf("storage with a wrong signature: %d", res.StatusCode)
	}

	// requiresAccessToken false: the file is served without a token.
	if err := f.sim.SetBulkOptions("b", BulkOptions{NoFileToken: true}); err != nil {
		t.Fatal(err)
	}
	m, _, _ = f.manifest(f.kickoff(f.sim.BaseURL("b")+"/$export?_type=Patient", tok), tok, 5)
	if m.RequiresAccessToken {
		t.Error("requiresAccessToken with NoFileToken")
	}
	if lines := f.ndjson(m.Output[0].URL, ""); len(lines) != len(f.sim.Current("b", "Patient")) {
		t.Errorf("tokenless file: %d lines", len(lines))
	}
}

func TestBulkFaults(t *testing.T) {
	f := bulkFixture(t, "generic", BulkOptions{}, nil)
	tok := f.token("b")
	err := f.sim.SetFaults("b", []fault.Fault{
		{Endpoint: fault.EndpointBulkStatus, Kind: fault.Unavailable, Limit: 1, RetryAfter: fault.Duration(2 * time.Second)},
		{Endpoint: fault.EndpointBulkFile, Kind: fault.ServerError, Limit: 1},
		{Endpoint: fault.EndpointBulkKickoff, Kind: fault.TooManyRequests, Limit: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	u := f.sim.BaseURL("b") + "/$export?_type=Patient"
	if r := f.do(http.MethodGet, u, tok, nil, asyncHdr); r.status != http.StatusTooManyRequests {
		t.Errorf("kick-off fault: %d", r.status)
	}
	status := f.kickoff(u, tok)
	if r := f.get(status, tok); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" {
		t.Errorf("status fault: %d %v", r.status, r.header)
	}
	m, _, _ := f.manifest(status, tok, 5)
	if r := f.get(m.Output[0].URL, tok); r.status != http.StatusInternalServerError {
		t.Errorf("file fault: %d", r.status)
	}
	if lines := f.ndjson(m.Output[0].URL, tok); len(lines) != len(f.sim.Current("b", "Patient")) {
		t.Errorf("file after the fault: %d lines", len(lines))
	}
}

// largeTenant builds a generic tenant holding n small Observations (loaded
// straight into the store; generating clinical data at this size is slow).
func largeTenant(tb testing.TB, n int) (*fixture, string) {
	tb.Helper()
	f := newFixture(tb, Config{Tenants: []TenantConfig{{ID: "big", Seed: 1, Bulk: BulkOptions{PerFile: n}}}})
	st := f.sim.tenants["big"].store
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	pad := strings.Repeat("x", 200)
	for i := range n {
		id := "o" + strconv.Itoa(i)
		body := `{"resourceType":"Observation","id":"` + id + `","meta":{"versionId":"1","lastUpdated":"2026-05-01T00:00:00.000Z"},"status":"final","code":{"text":"` + pad + `"},"subject":{"reference":"Patient/p` + strconv.Itoa(i%1000) + `"},"valueQuantity":{"value":` + strconv.Itoa(i) + `}}`
		if err := st.Load("Observation", id, at, []byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	tok := f.token("big")
	m, _, _ := f.manifest(f.kickoff(f.sim.BaseURL("big")+"/$export?_type=Observation", tok), tok, 5)
	if len(m.Output) != 1 || m.Output[0].Count != n {
		tb.Fatalf("manifest: %+v", m.Output)
	}
	return f, m.Output[0].URL
}

// TestBulkStreamsInConstantMemory downloads a 200,000-resource file while
// watching the heap: it must not grow with the file (about 70 MB).
func TestBulkStreamsInConstantMemory(t *testing.T) {
	const n = 200_000
	f, fileURL := largeTenant(t, n)
	tok := f.token("big")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	req, err := http.NewRequest(http.MethodGet, fileURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReaderSize(res.Body, 64<<10)
	var lines, bytesRead int
	var peak uint64
	for {
		l, err := br.ReadSlice('\n')
		bytesRead += len(l)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines++
		if lines%20000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	if lines != n {
		t.Fatalf("%d lines, want %d", lines, n)
	}
	const bound = 32 << 20
	if peak > base+bound {
		t.Errorf("heap grew by %d MB while streaming a %d MB file (bound %d MB)", (peak-base)>>20, bytesRead>>20, bound>>20)
	}
	if bytesRead < 2*bound {
		t.Fatalf("the file (%d MB) is too small to show the heap bound", bytesRead>>20)
	}
}

// BenchmarkBulkFile streams one 100,000-resource NDJSON file per iteration
// over loopback.
func BenchmarkBulkFile(b *testing.B) {
	const n = 100_000
	f, fileURL := largeTenant(b, n)
	tok := f.token("big")
	b.ResetTimer()
	var total int64
	for range b.N {
		req, err := http.NewRequest(http.MethodGet, fileURL, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := f.hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		nb, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			b.Fatalf("download: %d %v", res.StatusCode, err)
		}
		total += nb
	}
	b.SetBytes(total / int64(b.N))
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}
