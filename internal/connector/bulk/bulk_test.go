package bulk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBulkFullFlow(t *testing.T) {
	ts := newTestServer(t)
	ts.pollsBeforeDone = 3
	ts.progress = []string{"10% done", "55% done", "90% done"}
	ts.retryAfter = []string{"2"}
	ts.requiresToken = true
	ts.expires = "Wed, 04 Mar 2026 10:00:00 GMT"
	ts.addOutput("Patient", "Patient.1.ndjson", ndjson("Patient", "a", 120))
	ts.addOutput("Patient", "Patient.2.ndjson", ndjson("Patient", "b", 80))
	ts.addOutput("Observation", "Observation.1.ndjson", ndjson("Observation", "o", 300)+"\n\n")
	ts.files["errors.ndjson"] = outcome("error", "processing", "could not export Encounter 77") + "\n" + outcome("warning", "informational", "skipped") + "\n"
	ts.errorFiles = []FileItem{{Type: "OperationOutcome", URL: ts.fileURL("errors.ndjson")}}
	ts.files["deleted.ndjson"] = `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/gone1"}},{"request":{"method":"DELETE","url":"Observation/gone2"}}]}` + "\n"
	ts.deletedFiles = []FileItem{{Type: "Bundle", URL: ts.fileURL("deleted.ndjson")}}

	c, sl, _ := newTestClient(t, ts, func(cfg *Config) { cfg.BatchSize = 50 })
	col := &collector{}
	opts := col.options()
	var checkpoints []Job
	opts.Checkpoint = func(_ context.Context, j Job) error { checkpoints = append(checkpoints, j); return nil }
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := c.Export(context.Background(), Request{Types: []string{"Patient", "Observation"}, Since: since}, opts)
	if err != nil {
		t.Fatal(err)
	}

	// kick-off parameters
	var nk int
	ts.with(func() { nk = len(ts.kickoffs) })
	if nk != 1 {
		t.Fatalf("%d kick-offs", nk)
	}
	k := ts.lastKickoff()
	if k.URL.Path != "/fhir/$export" || k.URL.Query().Get("_type") != "Patient,Observation" ||
		k.URL.Query().Get("_since") != "2026-01-02T03:04:05.000Z" || k.URL.Query().Get("_outputFormat") != NDJSON {
		t.Errorf("kick-off URL %s", k.URL)
	}

	// every resource exactly once, with its type, id, file and line
	ids := col.ids()
	if len(ids) != 500 {
		t.Errorf("%d distinct resources, want 500", len(ids))
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	for _, r := range col.resources {
		var doc struct{ ResourceType, ID string }
		if err := json.Unmarshal(r.Body, &doc); err != nil || doc.ResourceType != r.Type || doc.ID != r.ID {
			t.Fatalf("resource %s/%s body %q does not match", r.Type, r.ID, r.Body)
		}
		if r.Type == "Observation" && (r.File != ts.fileURL("Observation.1.ndjson") || r.ID != fmt.Sprintf("o%d", r.Line-1)) {
			t.Fatalf("Observation %s at %s line %d", r.ID, r.File, r.Line)
		}
	}
	if res.Resources != 500 || res.Deleted != 2 || res.Files != 5 || res.Skipped != 0 {
		t.Errorf("result: %+v", res)
	}

	// tombstones and issues
	slices.SortFunc(col.tombs, func(a, b Tombstone) int { return strings.Compare(a.ID, b.ID) })
	if len(col.tombs) != 2 || col.tombs[0] != (Tombstone{Type: "Patient", ID: "gone1", File: ts.fileURL("deleted.ndjson"), Line: 1}) || col.tombs[1].Type != "Observation" {
		t.Errorf("tombstones %+v", col.tombs)
	}
	if res.IssueCounts["error/processing"] != 1 || res.IssueCounts["warning/informational"] != 1 || len(res.Issues) != 2 {
		t.Errorf("issues %+v counts %v", res.Issues, res.IssueCounts)
	}
	if res.Issues[0].Diagnostics != "could not export Encounter 77" || res.Issues[0].Line != 1 {
		t.Errorf("first issue %+v", res.Issues[0])
	}

	// status polling: Retry-After honoured, X-Progress reported
	if got := sl.all(); !slices.Equal(got, []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}) {
		t.Errorf("waits %v", got)
	}
	var xp []string
	for _, p := range col.progress {
		if p.Phase == PhasePolling && p.XProgress != "" && !slices.Contains(xp, p.XProgress) {
			xp = append(xp, p.XProgress)
		}
	}
	if !slices.Equal(xp, ts.progress) {
		t.Errorf("X-Progress reported %q", xp)
	}
	last := col.progress[len(col.progress)-1]
	if last.Phase != PhaseDone || last.FilesDone != 5 || last.FilesTotal != 5 || last.Resources != 500 || last.Deleted != 2 || last.Issues != 2 {
		t.Errorf("last progress %+v", last)
	}

	// job state
	j := res.Job
	if !j.Complete() || j.Manifest == nil || !j.Manifest.RequiresAccessToken || !j.Manifest.TransactionTime.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("job %+v", j)
	}
	if !j.ExpiresAt.Equal(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("expires %v", j.ExpiresAt)
	}
	// checkpoints: after kick-off, after the manifest, after each of 5 files
	if len(checkpoints) != 7 || checkpoints[0].StatusURL == "" || checkpoints[0].Manifest != nil || checkpoints[1].Manifest == nil || !checkpoints[6].Complete() {
		t.Errorf("%d checkpoints", len(checkpoints))
	}
	// the token went with every file request
	ts.with(func() {
		if len(ts.fileAuth) != 5 {
			t.Errorf("%d files fetched", len(ts.fileAuth))
		}
		for name, auth := range ts.fileAuth {
			if auth != "Bearer "+testToken {
				t.Errorf("file %s fetched with Authorization %q", name, auth)
			}
		}
	})
}

func TestBulkKickoffLevels(t *testing.T) {
	ts := newTestServer(t)
	c, _, _ := newTestClient(t, ts, nil)
	for _, tc := range []struct {
		req  Request
		path string
	}{
		{Request{}, "/fhir/$export"},
		{Request{Level: LevelPatient}, "/fhir/Patient/$export"},
		{Request{Level: LevelGroup, GroupID: "diabetics 2"}, "/fhir/Group/diabetics%202/$export"},
	} {
		job, err := c.Kickoff(context.Background(), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		k := ts.lastKickoff()
		if k.URL.EscapedPath() != tc.path || job.StatusURL != ts.srv.URL+"/fhir/status/1" || job.KickoffURL == "" {
			t.Errorf("%+v: kick-off path %s, status %s", tc.req, k.URL.EscapedPath(), job.StatusURL)
		}
	}
	for _, bad := range []Request{{Level: LevelGroup}, {Level: "world"}, {Types: []string{"patient; drop"}}} {
		if _, err := c.Kickoff(context.Background(), bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestBulkKickoff429IsBusyWithRetryAfter(t *testing.T) {
	ts := newTestServer(t)
	ts.kickoffAnswers = []answer{{status: 429, retryAfter: "7", body: outcome("error", "throttled", "another export is running")}}
	c, _, _ := newTestClient(t, ts, nil)
	_, err := c.Kickoff(context.Background(), Request{})
	var e *Error
	if !errors.Is(err, ErrBusy) || !errors.As(err, &e) {
		t.Fatalf("err %v", err)
	}
	if e.RetryAfter != 7*time.Second || e.Status != 429 || e.Op != "kick-off" {
		t.Errorf("error %+v", e)
	}
	// the caller waits and tries again
	job, err := c.Kickoff(context.Background(), Request{})
	if err != nil || job.StatusURL == "" {
		t.Fatalf("second kick-off: %v", err)
	}
}

func TestBulkKickoffErrorKeepsDiagnosticsOutOfTheMessage(t *testing.T) {
	ts := newTestServer(t)
	ts.kickoffAnswers = []answer{{status: 400, body: outcome("error", "not-supported", "Jane Doe's group is too big")}}
	c, _, _ := newTestClient(t, ts, nil)
	_, err := c.Kickoff(context.Background(), Request{Level: LevelGroup, GroupID: "g1"})
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || errors.Is(err, ErrBusy) {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "Jane") || !strings.Contains(err.Error(), "error/not-supported") {
		t.Errorf("message %q", err)
	}
	if d := e.Diagnostics(); len(d) != 1 || d[0] != "Jane Doe's group is too big" {
		t.Errorf("diagnostics %q", d)
	}
}

func TestBulkRetryAfterBoundsAndDates(t *testing.T) {
	ts := newTestServer(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts.pollsBeforeDone = 5
	// seconds, above MaxPoll, below MinPoll, an HTTP date 90s ahead, none
	ts.retryAfter = []string{"3", "600", "0", now.Add(90 * time.Second).Format(http.TimeFormat), ""}
	ts.files = map[string]string{}
	c, sl, _ := newTestClient(t, ts, func(cfg *Config) {
		cfg.MinPoll, cfg.MaxPoll = 2*time.Second, 2*time.Minute
		cfg.Now = func() time.Time { return now }
	})
	col := &collector{}
	if _, err := c.Export(context.Background(), Request{}, col.options()); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{3 * time.Second, 2 * time.Minute, 2 * time.Second, 90 * time.Second, 2 * time.Second}
	if got := sl.all(); !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
}

func TestBulkPollingRetries5xxAnd429(t *testing.T) {
	ts := newTestServer(t)
	ts.pollsBeforeDone = 1
	ts.statusAnswers = []answer{
		{status: 503},
		{status: 500, body: outcome("error", "transient", "busy")},
		{status: 429, retryAfter: "9"},
		{status: 502},
	}
	ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 3))
	c, sl, _ := newTestClient(t, ts, func(cfg *Config) { cfg.MaxRetries = 3 })
	col := &collector{}
	res, err := c.Export(context.Background(), Request{}, col.options())
	if err != nil {
		t.Fatal(err)
	}
	if res.Resources != 3 {
		t.Errorf("resources %d", res.Resources)
	}
	// backoff (jitter 0.5) of 1ms and 2ms; the 429's Retry-After, which does
	// not count as a failure; backoff of 4ms; then MinPoll for a plain 202
	got := sl.all()
	want := []time.Duration{500 * time.Microsecond, time.Millisecond, 9 * time.Second, 2 * time.Millisecond, time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("waits %v", got)
	}
}

func TestBulkPollingGivesUpAfterMaxRetries(t *testing.T) {
	ts := newTestServer(t)
	for i := 0; i < 10; i++ {
		ts.statusAnswers = append(ts.statusAnswers, answer{status: 503})
	}
	c, _, _ := newTestClient(t, ts, func(cfg *Config) { cfg.MaxRetries = 2 })
	col := &collector{}
	res, err := c.Export(context.Background(), Request{}, col.options())
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Attempts != 3 || errors.Is(err, ErrJobFailed) {
		t.Fatalf("err %v", err)
	}
	if res == nil || res.Job.StatusURL == "" {
		t.Errorf("no job state to resume from: %+v", res)
	}
}

func TestBulkJobFailed(t *testing.T) {
	ts := newTestServer(t)
	ts.statusAnswers = []answer{{status: 500, body: outcome("fatal", "processing", "out of disk")}}
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	_, err := c.Export(context.Background(), Request{}, col.options())
	var e *Error
	if !errors.Is(err, ErrJobFailed) || !errors.As(err, &e) || e.Outcome == nil || e.Diagnostics()[0] != "out of disk" {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "out of disk") {
		t.Errorf("diagnostics in the message: %q", err)
	}
}

func TestBulkAccessTokenOnlyWhenRequired(t *testing.T) {
	for _, required := range []bool{false, true} {
		t.Run(fmt.Sprint(required), func(t *testing.T) {
			ts := newTestServer(t)
			ts.requiresToken = required
			ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 10))
			c, _, _ := newTestClient(t, ts, nil)
			col := &collector{}
			if _, err := c.Export(context.Background(), Request{}, col.options()); err != nil {
				t.Fatal(err)
			}
			want := ""
			if required {
				want = "Bearer " + testToken
			}
			if got := ts.auth("p.ndjson"); got != want || len(col.ids()) != 10 {
				t.Errorf("Authorization %q (want %q), %d resources", got, want, len(col.ids()))
			}
		})
	}
}

func TestBulkRedirectNeverForwardsAuthorization(t *testing.T) {
	ts := newTestServer(t)
	ts.requiresToken = true
	ts.files["a.ndjson"] = ndjson("Patient", "a", 5)
	ts.files["b.ndjson"] = ndjson("Patient", "b", 5)
	ts.files["same/c.ndjson"] = ndjson("Patient", "c", 5)
	ts.output = []FileItem{
		{Type: "Patient", URL: ts.fileURL("redirect-host/a.ndjson")}, // another origin
		{Type: "Patient", URL: ts.fileURL("redirect-path/b.ndjson")}, // same host, out of the path prefix
		{Type: "Patient", URL: ts.fileURL("same/moved-c.ndjson")},    // same directory: keeps the token
	}
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	if _, err := c.Export(context.Background(), Request{}, col.options()); err != nil {
		t.Fatal(err)
	}
	if n := len(col.ids()); n != 15 {
		t.Errorf("%d resources", n)
	}
	// the first hop (on the FHIR server, in the file's directory) had the token
	for _, k := range []string{"redirect-host/a.ndjson", "redirect-path/b.ndjson", "same/c.ndjson"} {
		if a := ts.auth(k); a != "Bearer "+testToken {
			t.Errorf("%s: Authorization %q", k, a)
		}
	}
	if ts.gets("a.ndjson") != 1 || ts.gets("b.ndjson") != 1 || ts.gets("same/c.ndjson") != 1 {
		t.Errorf("gets a %d b %d c %d", ts.gets("a.ndjson"), ts.gets("b.ndjson"), ts.gets("same/c.ndjson"))
	}
}

func TestBulkRefusesTokenForForeignFileOrigin(t *testing.T) {
	ts := newTestServer(t)
	ts.requiresToken = true
	ts.files["a.ndjson"] = ndjson("Patient", "a", 1)
	ts.output = []FileItem{{Type: "Patient", URL: ts.storage.URL + "/blob/a.ndjson"}}
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	_, err := c.Export(context.Background(), Request{}, col.options())
	if err == nil || !strings.Contains(err.Error(), "outside the server's origin") {
		t.Fatalf("err %v", err)
	}
	if ts.gets("a.ndjson") != 0 {
		t.Error("the foreign file was requested")
	}
}

func TestBulkGzip(t *testing.T) {
	ts := newTestServer(t)
	ts.gzipFiles = true
	ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 1000))
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	res, err := c.Export(context.Background(), Request{}, col.options())
	if err != nil {
		t.Fatal(err)
	}
	if len(col.ids()) != 1000 || res.Bytes != int64(len(ts.files["p.ndjson"])) {
		t.Errorf("%d resources, %d bytes (want %d)", len(col.ids()), res.Bytes, len(ts.files["p.ndjson"]))
	}
}

func TestBulkLineTooLong(t *testing.T) {
	ts := newTestServer(t)
	long := `{"resourceType":"Patient","id":"big","text":"` + strings.Repeat("x", 3000) + `"}`
	ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 2)+long+"\n"+ndjson("Patient", "q", 2))
	c, _, _ := newTestClient(t, ts, func(cfg *Config) { cfg.MaxLineBytes = 1024 })
	col := &collector{}
	_, err := c.Export(context.Background(), Request{}, col.options())
	var le *LineError
	if !errors.As(err, &le) || !errors.Is(err, ErrLineTooLong) || le.Line != 3 || le.File != ts.fileURL("p.ndjson") {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(err.Error(), "p.ndjson line 3") {
		t.Errorf("message %q", err)
	}
}

func TestBulkBadLine(t *testing.T) {
	ts := newTestServer(t)
	ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 1)+`{"resourceType":"Patient","id":"x",`+"\n")
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	_, err := c.Export(context.Background(), Request{}, col.options())
	var le *LineError
	if !errors.As(err, &le) || !errors.Is(err, ErrBadLine) || le.Line != 2 {
		t.Fatalf("err %v", err)
	}
}

func TestBulkExpired(t *testing.T) {
	ts := newTestServer(t)
	ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 3))
	ts.fileHook = func(name string, w http.ResponseWriter, r *http.Request) bool {
		writeAnswer(w, answer{status: http.StatusGone, body: outcome("error", "not-found", "expired")})
		return true
	}
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	res, err := c.Export(context.Background(), Request{}, col.options())
	if !errors.Is(err, ErrExpired) || res == nil || res.Job.Manifest == nil {
		t.Fatalf("file 410: err %v", err)
	}
	// resuming a job whose status URL is gone
	ts.with(func() { ts.statusGone = true })
	_, err = c.Resume(context.Background(), Job{StatusURL: res.Job.StatusURL}, col.options())
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("status 404: err %v", err)
	}
}

func TestBulkCancel(t *testing.T) {
	ts := newTestServer(t)
	c, _, _ := newTestClient(t, ts, nil)
	job, err := c.Kickoff(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(context.Background(), job.StatusURL); err != nil {
		t.Fatal(err)
	}
	if n := ts.nDeletes(); n != 1 {
		t.Errorf("%d DELETEs", n)
	}
	if err := c.Cancel(context.Background(), job.StatusURL); !errors.Is(err, ErrExpired) {
		t.Errorf("second cancel: %v", err)
	}
}

func TestBulkCancelOnAbort(t *testing.T) {
	ts := newTestServer(t)
	ts.pollsBeforeDone = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polls := 0
	c, _, _ := newTestClient(t, ts, func(cfg *Config) {
		cfg.Sleep = func(ctx context.Context, d time.Duration) error {
			if polls++; polls == 3 {
				cancel()
			}
			return ctx.Err()
		}
	})
	col := &collector{}
	opts := col.options()
	opts.CancelOnAbort = true
	res, err := c.Export(ctx, Request{}, opts)
	if !errors.Is(err, context.Canceled) || res == nil || !res.Canceled {
		t.Fatalf("err %v, res %+v", err, res)
	}
	if n := ts.nDeletes(); n != 1 {
		t.Errorf("%d DELETEs", n)
	}
	// without CancelOnAbort the job is left alone (it can be resumed)
	ctx2, cancel2 := context.WithCancel(context.Background())
	polls = 0
	cancel = cancel2
	res, err = c.Export(ctx2, Request{}, col.options())
	if !errors.Is(err, context.Canceled) || res.Canceled || ts.nDeletes() != 1 {
		t.Errorf("err %v, canceled %v, %d DELETEs", err, res.Canceled, ts.nDeletes())
	}
}

// A crash mid-download, then Resume from the last checkpoint. The unit is
// the file: the sink stages a file's resources and commits them in
// FileDone; a crash drops what was staged. Across both runs each resource
// is committed exactly once, and finished files are not downloaded again.
func TestBulkResumeAfterCrash(t *testing.T) {
	ts := newTestServer(t)
	ts.addOutput("Patient", "a.ndjson", ndjson("Patient", "a", 40))
	ts.addOutput("Patient", "b.ndjson", ndjson("Patient", "b", 40))
	ts.addOutput("Observation", "c.ndjson", ndjson("Observation", "c", 40))
	ts.addOutput("Observation", "d.ndjson", ndjson("Observation", "d", 40))
	c, _, _ := newTestClient(t, ts, func(cfg *Config) { cfg.Workers = 1; cfg.BatchSize = 10 })

	var mu sync.Mutex
	staged := map[string][]string{} // file → ids
	committed := map[string]int{}
	var saved []byte // the persisted job state
	crashAt := ts.fileURL("c.ndjson")
	ctx, crash := context.WithCancel(context.Background())
	defer crash()
	opts := Options{
		Resources: func(ctx context.Context, batch []Resource) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range batch {
				staged[r.File] = append(staged[r.File], r.Type+"/"+r.ID)
			}
			if batch[0].File == crashAt && len(staged[crashAt]) >= 20 {
				crash() // the process dies halfway through c.ndjson
			}
			return nil
		},
		FileDone: func(_ context.Context, f FileState) error {
			mu.Lock()
			defer mu.Unlock()
			for _, id := range staged[f.Name()] {
				committed[id]++
			}
			delete(staged, f.Name())
			return nil
		},
		Checkpoint: func(_ context.Context, j Job) error {
			b, err := json.Marshal(j)
			saved = b
			return err
		},
	}
	if _, err := c.Export(ctx, Request{}, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	if len(committed) != 80 {
		t.Fatalf("%d committed before the crash, want 80 (a and b)", len(committed))
	}

	// restart: a fresh process reads the state and resumes
	staged = map[string][]string{}
	var job Job
	if err := json.Unmarshal(saved, &job); err != nil {
		t.Fatal(err)
	}
	res, err := c.Resume(context.Background(), job, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != 160 {
		t.Errorf("%d committed, want 160", len(committed))
	}
	for id, n := range committed {
		if n != 1 {
			t.Errorf("%s committed %d times", id, n)
		}
	}
	if res.Skipped != 2 || res.Files != 2 || res.Resources != 80 || !res.Job.Complete() {
		t.Errorf("resume result %+v", res)
	}
	ts.with(func() {
		if g := ts.fileGets; g["a.ndjson"] != 1 || g["b.ndjson"] != 1 || g["c.ndjson"] != 2 || g["d.ndjson"] != 1 {
			t.Errorf("downloads %v", g)
		}
		if len(ts.kickoffs) != 1 {
			t.Errorf("%d kick-offs", len(ts.kickoffs))
		}
	})
}

// A connection that breaks mid-file is retried; the lines the sink already
// accepted are skipped, so each resource is delivered once.
func TestBulkBrokenDownloadResumesAfterDeliveredLines(t *testing.T) {
	ts := newTestServer(t)
	body := ndjson("Patient", "p", 100)
	ts.addOutput("Patient", "p.ndjson", body)
	var attempts atomic.Int32
	ts.fileHook = func(name string, w http.ResponseWriter, r *http.Request) bool {
		if attempts.Add(1) > 2 {
			return false
		}
		// announce the whole body, send 40% of it, then drop the connection
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = io.WriteString(w, body[:len(body)*2/5])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c, sl, _ := newTestClient(t, ts, func(cfg *Config) { cfg.BatchSize = 7 })
	col := &collector{}
	res, err := c.Export(context.Background(), Request{}, col.options())
	if err != nil {
		t.Fatal(err)
	}
	ids := col.ids()
	if len(ids) != 100 || res.Resources != 100 {
		t.Errorf("%d distinct, %d delivered", len(ids), res.Resources)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if attempts.Load() != 3 || len(sl.all()) != 2 {
		t.Errorf("%d attempts, waits %v", attempts.Load(), sl.all())
	}
}

func TestBulkSinkErrorStops(t *testing.T) {
	ts := newTestServer(t)
	ts.addOutput("Patient", "p.ndjson", ndjson("Patient", "p", 10))
	c, _, _ := newTestClient(t, ts, nil)
	boom := errors.New("disk full")
	res, err := c.Export(context.Background(), Request{}, Options{Resources: func(context.Context, []Resource) error { return boom }})
	if !errors.Is(err, boom) || res.Job.Complete() || ts.gets("p.ndjson") != 1 {
		t.Fatalf("err %v, gets %d", err, ts.gets("p.ndjson"))
	}
}

func TestBulkDeletedNeedsASink(t *testing.T) {
	ts := newTestServer(t)
	ts.files["del.ndjson"] = `{"resourceType":"Bundle","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`
	ts.deletedFiles = []FileItem{{Type: "Bundle", URL: ts.fileURL("del.ndjson")}}
	c, _, _ := newTestClient(t, ts, nil)
	col := &collector{}
	_, err := c.Export(context.Background(), Request{}, Options{Resources: col.sink})
	if err == nil || !strings.Contains(err.Error(), "Options.Deleted") {
		t.Fatalf("err %v", err)
	}
}

// A 200,000-line file generated on the fly streams through in bounded memory.
func TestBulkConstantMemory(t *testing.T) {
	const lines = 200_000
	pad := strings.Repeat("z", 400)
	ts := newTestServer(t)
	ts.output = []FileItem{{Type: "Observation", URL: ts.fileURL("big.ndjson")}}
	ts.fileHook = func(name string, w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		buf := make([]byte, 0, 64<<10)
		for i := 0; i < lines; i++ {
			buf = fmt.Appendf(buf, `{"resourceType":"Observation","id":"o%d","note":[{"text":"%s"}]}`+"\n", i, pad)
			if len(buf) > 60<<10 {
				if _, err := w.Write(buf); err != nil {
					return true
				}
				buf = buf[:0]
			}
		}
		_, _ = w.Write(buf)
		return true
	}
	c, _, _ := newTestClient(t, ts, nil)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	var n int64
	sink := func(_ context.Context, batch []Resource) error {
		n += int64(len(batch))
		if n%20_000 < int64(len(batch)) {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		return nil
	}
	res, err := c.Export(context.Background(), Request{}, Options{Resources: sink})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resources != lines || res.Bytes < lines*400 {
		t.Fatalf("%d resources, %d bytes", res.Resources, res.Bytes)
	}
	// ~90 MB went through; the batches are 4 MiB, the scanner 64 KiB.
	if grew := int64(peak) - int64(base); grew > 48<<20 {
		t.Errorf("heap in use grew by %d MiB while streaming %d MiB", grew>>20, res.Bytes>>20)
	}
	t.Logf("heap in use: base %d MiB, peak %d MiB, streamed %d MiB", base>>20, peak>>20, res.Bytes>>20)
}

// BenchmarkDownloadParse measures download + NDJSON parse + batching into a
// no-op sink over loopback HTTP, in resources/s. The files are served as
// the simulator serves them (chunked, written 64 KiB at a time), and with a
// Content-Length.
func BenchmarkDownloadParse(b *testing.B) {
	const perFile, files = 50_000, 4
	var sb strings.Builder
	for i := 0; i < perFile; i++ {
		fmt.Fprintf(&sb, `{"resourceType":"Observation","id":"obs-%d","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2025-12-01T10:00:00Z","valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}`+"\n", i, i%997, 60+i%40)
	}
	body := sb.String()
	for _, chunked := range []bool{true, false} {
		name := "content-length"
		if chunked {
			name = "chunked"
		}
		b.Run(name, func(b *testing.B) {
			ts := newTestServer(b)
			for f := 0; f < files; f++ {
				ts.addOutput("Observation", fmt.Sprintf("o%d.ndjson", f), body)
			}
			if chunked {
				lines := bytes.SplitAfter([]byte(body), []byte("\n"))
				ts.fileHook = func(_ string, w http.ResponseWriter, _ *http.Request) bool {
					w.Header().Set("Content-Type", "application/fhir+ndjson")
					bw := bufio.NewWriterSize(w, 64<<10)
					for _, l := range lines {
						_, _ = bw.Write(l)
					}
					_ = bw.Flush()
					return true
				}
			}
			c, err := New(Config{BaseURL: ts.base()})
			if err != nil {
				b.Fatal(err)
			}
			job := Job{StatusURL: ts.srv.URL + "/fhir/status/1", Manifest: &Manifest{Output: ts.output}}
			var total atomic.Int64
			opts := Options{Resources: func(_ context.Context, batch []Resource) error { total.Add(int64(len(batch))); return nil }}
			b.SetBytes(int64(len(body) * files))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := c.Resume(context.Background(), job, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(total.Load())/time.Since(start).Seconds(), "resources/s")
		})
	}
}

// TestCompactHeaderMatchesGeneral: the header fast path gives what the
// general walk gives, and leaves it every line it cannot read exactly so.
func TestCompactHeaderMatchesGeneral(t *testing.T) {
	c, err := New(Config{BaseURL: "http://127.0.0.1:1/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(c)
	lines := []string{
		`{"resourceType":"Observation","id":"o1","status":"final"}`,
		`{"resourceType":"Observation","id":"6ab423d8-3928-45ed-946f-58c53a60aae1"}`,
		`{"resourceType":"Observation","id":""}`,
		`{"resourceType":"","id":"x"}`,
		`{"resourceType":"observation","id":"x"}`,
		`{"resourceType":"Obs3rvation","id":"x"}`,
		`{"resourceType":"Obs\u0065rvation","id":"x"}`,
		`{"resourceType":"Observation","id":"a\u0062"}`,
		`{"resourceType":"Observation","id":"a\"b"}`,
		`{"resourceType":"Observation","id":7}`,
		`{"resourceType":"Observation", "id":"x"}`,
		`{"resourceType":"Observation","meta":{},"id":"x"}`,
		`{"id":"x","resourceType":"Observation"}`,
		`{"resourceType":"Observation","id":"x","id":"y"}`,
		`{"resourceType":"Observation","resourceType":"Patient","id":"x"}`,
		`{"resourceType":"Observation"}`,
		`{"resourceType":"` + strings.Repeat("A", 65) + `","id":"x"}`,
		`{"resourceType":"Observation","id":"x y"}`,
		` {"resourceType":"Observation","id":"x"}`,
	}
	fast := 0
	for _, l := range lines {
		b := []byte(l)
		if !json.Valid(b) {
			t.Fatalf("test line is not JSON: %s", l)
		}
		typ, id, why := w.header(b)
		gt, gid, gwhy := w.headerGeneral(b)
		if typ != gt || id != gid || why != gwhy {
			t.Errorf("%s: header %q %q %q, general %q %q %q", l, typ, id, why, gt, gid, gwhy)
		}
		if _, _, ok := w.compactHeader(b); ok {
			fast++
		}
	}
	if fast < 3 {
		t.Errorf("the fast path read %d lines", fast)
	}
}

// A BatchSink gets each batch's lines as one NDJSON block: every line as
// received without its surrounding white space, followed by '\n', the same
// bytes as the bodies, in order. Batches are cut where a ResourceSink's
// are (BatchBytes counts the bodies, not the newlines), across a retry
// that skips delivered lines, and Resources is not called.
func TestBulkBatchesNDJSON(t *testing.T) {
	var file strings.Builder
	var want []string // the lines a sink must see, trimmed
	for i := 0; i < 95; i++ {
		line := fmt.Sprintf(`{"resourceType":"Observation","id":"o%03d","valueString":"v"}`, i)
		want = append(want, line)
		switch i % 4 {
		case 0:
			file.WriteString(line + "\r\n")
		case 1:
			file.WriteString("  " + line + "\t\n\n") // blank line after it
		default:
			file.WriteString(line + "\n")
		}
	}
	body := file.String()
	ts := newTestServer(t)
	ts.addOutput("Observation", "o.ndjson", body)
	var attempts atomic.Int32
	ts.fileHook = func(name string, w http.ResponseWriter, r *http.Request) bool {
		if attempts.Add(1) > 1 {
			return false
		}
		// the first attempt breaks after about half the file
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = io.WriteString(w, body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	// Lines are 60 bytes: a batch is cut at its 8th line (480 bytes of
	// bodies); counting the newlines too would cut it at the 7th (420+7).
	const batchBytes = 7*60 + 3
	c, _, _ := newTestClient(t, ts, func(cfg *Config) { cfg.BatchSize = 40; cfg.BatchBytes = batchBytes })

	var mu sync.Mutex
	var got []string
	var sizes []int
	opts := Options{
		Resources: func(context.Context, []Resource) error {
			t.Error("Resources called although Batches is set")
			return nil
		},
		Batches: func(_ context.Context, b Batch) error {
			mu.Lock()
			defer mu.Unlock()
			var join []byte
			for _, r := range b.Resources {
				join = append(append(join, r.Body...), '\n')
				got = append(got, string(r.Body))
			}
			if string(b.NDJSON) != string(join) {
				t.Errorf("NDJSON %q, bodies with newlines %q", b.NDJSON, join)
			}
			if cap(b.NDJSON) != len(b.NDJSON) {
				t.Errorf("NDJSON has spare capacity %d: a sink's append would write into the arena", cap(b.NDJSON)-len(b.NDJSON))
			}
			sizes = append(sizes, len(b.Resources))
			return nil
		},
	}
	res, err := c.Export(context.Background(), Request{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 2 {
		t.Fatalf("%d attempts: the retry path was not taken", attempts.Load())
	}
	if !slices.Equal(got, want) || res.Resources != int64(len(want)) {
		t.Fatalf("delivered %d lines (result %d), want %d in order", len(got), res.Resources, len(want))
	}

	// The same file through a ResourceSink is cut into the same batches.
	attempts.Store(1) // no more broken attempts
	var plain []int
	_, err = c.Export(context.Background(), Request{}, Options{Resources: func(_ context.Context, batch []Resource) error {
		plain = append(plain, len(batch))
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Where the batches must be cut: at 40 resources, or at the line that
	// takes the bodies to BatchBytes. The broken first attempt delivered
	// whole batches; the retry goes on from the line after them, so its
	// cuts are the same.
	var expect []int
	n, sum := 0, 0
	for _, l := range want {
		n, sum = n+1, sum+len(l)
		if n >= 40 || sum >= batchBytes {
			expect, n, sum = append(expect, n), 0, 0
		}
	}
	if n > 0 {
		expect = append(expect, n)
	}
	if !slices.Equal(sizes, expect) || !slices.Equal(plain, expect) {
		t.Errorf("batch sizes with Batches %v, with Resources %v, want %v", sizes, plain, expect)
	}
}
