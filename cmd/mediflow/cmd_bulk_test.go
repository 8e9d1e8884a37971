package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// cliBulkServer is a small Bulk Data server: kick-off, one in-progress
// poll with X-Progress, the manifest, files, DELETE.
type cliBulkServer struct {
	srv *httptest.Server

	mu        sync.Mutex
	kickoff   func(w http.ResponseWriter) bool // true: answered
	files     map[string]string
	fileCodes map[string]int // name → status instead of the file
	polls     int
	deletes   int
	query     string
	output    []bulk.FileItem
	deleted   []bulk.FileItem
	errors    []bulk.FileItem
}

func newCLIBulkServer(t *testing.T) *cliBulkServer {
	s := &cliBulkServer{files: map[string]string{}, fileCodes: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *cliBulkServer) add(kind, typ, name, body string) {
	s.files[name] = body
	it := bulk.FileItem{Type: typ, URL: s.srv.URL + "/fhir/files/" + name}
	switch kind {
	case "output":
		s.output = append(s.output, it)
	case "deleted":
		s.deleted = append(s.deleted, it)
	case "error":
		s.errors = append(s.errors, it)
	}
}

func (s *cliBulkServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/$export"):
		s.query = r.URL.RawQuery
		if s.kickoff != nil && s.kickoff(w) {
			return
		}
		w.Header().Set("Content-Location", s.srv.URL+"/fhir/jobs/7")
		w.WriteHeader(http.StatusAccepted)
	case p == "/fhir/jobs/7" && r.Method == http.MethodDelete:
		s.deletes++
		w.WriteHeader(http.StatusAccepted)
	case p == "/fhir/jobs/7":
		s.polls++
		if s.polls == 1 {
			w.Header().Set("X-Progress", "half way")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		m := map[string]any{"transactionTime": "2026-03-01T10:00:00Z", "request": s.srv.URL + "/fhir/$export",
			"requiresAccessToken": false, "output": s.output, "error": s.errors}
		if len(s.deleted) > 0 {
			m["deleted"] = s.deleted
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	case strings.HasPrefix(p, "/fhir/files/"):
		name := strings.TrimPrefix(p, "/fhir/files/")
		if code := s.fileCodes[name]; code != 0 {
			w.WriteHeader(code)
			return
		}
		body, ok := s.files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		fmt.Fprint(w, body)
	default:
		http.NotFound(w, r)
	}
}

func resourcesNDJSON(typ, prefix string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"resourceType":%q,"id":"%s%d"}`+"\n", typ, prefix, i)
	}
	return b.String()
}

// writeBulkConfig writes a configuration with one practice and one
// connection (auth none) to the server.
func writeBulkConfig(t *testing.T, baseURL string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`store:
  path: mediflow.db
practices:
  - id: valley
    name: Valley Family
    connections:
      - name: ehr
        vendor: generic
        base_url: %s
        auth:
          type: none
        sync:
          - class: demographics
            interval: 1m
`, baseURL)
	path := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestBulkExportWritesOneFilePerType(t *testing.T) {
	s := newCLIBulkServer(t)
	s.add("output", "Patient", "Patient.1.ndjson", resourcesNDJSON("Patient", "a", 30))
	s.add("output", "Patient", "Patient.2.ndjson", resourcesNDJSON("Patient", "b", 20))
	s.add("output", "Observation", "Observation.1.ndjson", resourcesNDJSON("Observation", "o", 40))
	s.add("deleted", "Bundle", "del.ndjson", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/gone"}}]}`+"\n")
	s.add("error", "OperationOutcome", "err.ndjson", `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Encounter 9 failed"}]}`+"\n")
	cfg := writeBulkConfig(t, s.srv.URL+"/fhir")
	out := filepath.Join(t.TempDir(), "export")
	env, stdout, stderr := testEnv()
	code := run(context.Background(), env, []string{"bulk", "export", "--config", cfg, "--practice", "valley",
		"--type", "Patient,Observation", "--since", "2026-01-01T00:00:00Z", "--out", out, "--workers", "2", "--poll-min", "5ms"})
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(s.query, "_type=Patient%2CObservation") || !strings.Contains(s.query, "_since=2026-01-01T00%3A00%3A00.000Z") {
		t.Errorf("kick-off query %s", s.query)
	}
	if got := dirNames(t, out); strings.Join(got, " ") != "Observation.ndjson OperationOutcome.ndjson Patient.ndjson deleted.ndjson" {
		t.Errorf("files %v", got)
	}
	pat, _ := os.ReadFile(filepath.Join(out, "Patient.ndjson"))
	lines := strings.Split(strings.TrimSpace(string(pat)), "\n")
	sort.Strings(lines)
	want := strings.Split(strings.TrimSpace(resourcesNDJSON("Patient", "a", 30)+resourcesNDJSON("Patient", "b", 20)), "\n")
	sort.Strings(want)
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("Patient.ndjson has %d lines, not the 50 served", len(lines))
	}
	obs, _ := os.ReadFile(filepath.Join(out, "Observation.ndjson"))
	if string(obs) != resourcesNDJSON("Observation", "o", 40) {
		t.Errorf("Observation.ndjson differs")
	}
	del, _ := os.ReadFile(filepath.Join(out, "deleted.ndjson"))
	if string(del) != `{"type":"Patient","id":"gone"}`+"\n" {
		t.Errorf("deleted.ndjson %q", del)
	}
	oo, _ := os.ReadFile(filepath.Join(out, "OperationOutcome.ndjson"))
	if !strings.Contains(string(oo), `"diagnostics":"Encounter 9 failed"`) {
		t.Errorf("OperationOutcome.ndjson %q", oo)
	}
	so := stdout.String()
	for _, w := range []string{"exported 90 resources (Observation 40, Patient 50) from 5 files", "deleted: 1", "issues: 1", "error/processing 1", "transaction time: 2026-03-01T10:00:00.000Z"} {
		if !strings.Contains(so, w) {
			t.Errorf("stdout lacks %q:\n%s", w, so)
		}
	}
	se := stderr.String()
	for _, w := range []string{"kick-off: " + s.srv.URL + "/fhir/$export\n", "status: in progress (poll 1, X-Progress: half way)", "downloading: files 5/5, 90 resources"} {
		if !strings.Contains(se, w) {
			t.Errorf("stderr lacks %q:\n%s", w, se)
		}
	}
}

func TestBulkExportBusyExitsNonZero(t *testing.T) {
	s := newCLIBulkServer(t)
	s.kickoff = func(w http.ResponseWriter) bool {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"throttled","diagnostics":"an export is already running"}]}`)
		return true
	}
	cfg := writeBulkConfig(t, s.srv.URL+"/fhir")
	out := filepath.Join(t.TempDir(), "export")
	env, _, stderr := testEnv()
	code := run(context.Background(), env, []string{"bulk", "export", "--config", cfg, "--practice", "valley", "--out", out})
	if code != 1 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"busy", "try again in 30s", "server said: an export is already running"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if got := dirNames(t, out); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
}

func TestBulkExportFailureLeavesNoPartialFiles(t *testing.T) {
	s := newCLIBulkServer(t)
	s.add("output", "Patient", "Patient.1.ndjson", resourcesNDJSON("Patient", "a", 30))
	s.add("output", "Observation", "Observation.1.ndjson", resourcesNDJSON("Observation", "o", 10))
	s.add("output", "Observation", "Observation.2.ndjson", "")
	s.fileCodes["Observation.2.ndjson"] = http.StatusGone
	cfg := writeBulkConfig(t, s.srv.URL+"/fhir")
	out := filepath.Join(t.TempDir(), "export")
	env, _, stderr := testEnv()
	code := run(context.Background(), env, []string{"bulk", "export", "--config", cfg, "--practice", "valley", "--connection", "ehr",
		"--out", out, "--workers", "1", "--poll-min", "5ms"})
	if code != 1 || !strings.Contains(stderr.String(), "expired") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Patient was complete before the failure; Observation was not
	if got := dirNames(t, out); strings.Join(got, " ") != "Patient.ndjson" {
		t.Errorf("files %v", got)
	}
}

func TestBulkExportUsage(t *testing.T) {
	cfg := writeBulkConfig(t, "http://127.0.0.1:1/fhir")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--practice", "valley"}, "--config"},
		{[]string{"--config", cfg}, "--practice"},
		{[]string{"--config", cfg, "--practice", "valley", "--level", "world"}, "--level"},
		{[]string{"--config", cfg, "--practice", "valley", "--level", "group"}, "--group"},
		{[]string{"--config", cfg, "--practice", "valley", "--since", "yesterday"}, "--since"},
		{[]string{"--config", cfg, "--practice", "nowhere"}, `no practice "nowhere"`},
		{[]string{"--config", cfg, "--practice", "valley", "--connection", "x"}, `no connection "x"`},
	} {
		env, _, stderr := testEnv()
		if code := run(context.Background(), env, append([]string{"bulk", "export"}, tc.args...)); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, stderr)
		}
	}
	env, stdout, _ := testEnv()
	if code := run(context.Background(), env, []string{"bulk", "export", "--help"}); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, w := range []string{"Usage: mediflow bulk export [flags]", "-workers n", "-level level", "-since time", "Exit status"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("--help lacks %q", w)
		}
	}
	env, stdout, _ = testEnv()
	if code := run(context.Background(), env, []string{"--help"}); code != 0 || !strings.Contains(stdout.String(), "bulk") {
		t.Errorf("top help lacks bulk")
	}
}

func TestBulkProgressBarOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := newBulkProgress(&b, true)
	p.report(bulk.Progress{Phase: bulk.PhaseDownloading, FilesDone: 1, FilesTotal: 4, Resources: 10})
	p.report(bulk.Progress{Phase: bulk.PhaseDownloading, FilesDone: 2, FilesTotal: 4, Resources: 20})
	p.finish()
	got := b.String()
	if !strings.HasPrefix(got, "\r\x1b[K[######..................] downloading: files 1/4") ||
		!strings.Contains(got, "\r\x1b[K[############............] downloading: files 2/4, 20 resources") || !strings.HasSuffix(got, "\n") ||
		strings.Count(got, "\n") != 1 {
		t.Errorf("bar output %q", got)
	}
}

// The whole path with SMART Backend Services: a key made by `keys new`,
// registered with the simulator, a config that names it, and a group
// export whose files match what the simulator says it exported.
func TestBulkExportFromTheSimulator(t *testing.T) {
	ctx := context.Background()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "north", Flavor: "generic", Seed: 5,
		Data: &gen.Options{Patients: 6}, Bulk: sim.BulkOptions{PerFile: 4, Redirect: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	s.SetRoot(srv.URL)
	dir := t.TempDir()
	env, _, stderr := testEnv()
	if code := run(ctx, env, []string{"keys", "new", "--out", dir, "--name", "north", "--alg", "ES384"}); code != 0 {
		t.Fatalf("keys new: exit %d: %s", code, stderr)
	}
	key, err := smart.LoadPrivateKey(filepath.Join(dir, "north.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterClient("north", authserver.Client{ID: "mf-north", JWKS: jwks, Scopes: []string{"system/*.rs"}}); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`store:
  path: mediflow.db
practices:
  - id: north
    name: North Clinic
    connections:
      - name: ehr
        vendor: generic
        base_url: %s
        auth:
          type: smart-backend
          client_id: mf-north
          private_key: {file: north.key.pem}
          algorithm: ES384
        sync:
          - class: demographics
            interval: 1m
`, s.BaseURL("north"))
	cfgPath := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	types := []string{"Patient", "Encounter"}
	want, _, err := s.BulkExpected("north", sim.BulkQuery{Level: "group", Group: sim.BulkAllPatients, Types: types})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "export")
	env, stdout, stderr := testEnv()
	code := run(ctx, env, []string{"bulk", "export", "--config", cfgPath, "--practice", "north", "--level", "group", "--group", sim.BulkAllPatients,
		"--type", strings.Join(types, ","), "--out", out, "--poll-min", "1ms", "--poll-max", "5ms"})
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, typ := range types {
		data, err := os.ReadFile(filepath.Join(out, typ+".ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(want[typ]) == 0 || len(lines) != len(want[typ]) {
			t.Errorf("%s: %d lines, the simulator exported %d", typ, len(lines), len(want[typ]))
		}
		for _, l := range lines {
			var h struct{ ID string }
			if err := json.Unmarshal([]byte(l), &h); err != nil || !bytes.Equal(bytes.TrimSpace(want[typ][h.ID]), []byte(l)) {
				t.Errorf("%s/%s differs from the simulator's", typ, h.ID)
			}
		}
	}
}
