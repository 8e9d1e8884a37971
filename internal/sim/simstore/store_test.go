package simstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPutVersionsAndPreconditions(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)}
	s := New(clk.now)
	v, created, err := s.Put("Patient", "p1", []byte(`{"resourceType":"Patient","id":"ignored","meta":{"profile":["x"],"versionId":"9"},"active":true}`), Precondition{})
	if err != nil || !created || v.VersionID != 1 {
		t.Fatalf("create: %+v %v %v", v, created, err)
	}
	want := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-01-02T03:04:05.678Z","profile":["x"]},"active":true}`
	if string(v.Body) != want {
		t.Fatalf("body\n got %s\nwant %s", v.Body, want)
	}
	if v.ETag() != `W/"1"` {
		t.Errorf("etag %s", v.ETag())
	}
	clk.add(time.Second)
	v2, created, err := s.Put("Patient", "p1", []byte(`{"resourceType":"Patient","active":false}`), Precondition{IfMatch: 1})
	if err != nil || created || v2.VersionID != 2 || !v2.LastUpdated.After(v.LastUpdated) {
		t.Fatalf("update: %+v %v %v", v2, created, err)
	}
	_, _, err = s.Put("Patient", "p1", []byte(`{"resourceType":"Patient"}`), Precondition{IfMatch: 1})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Current != 2 || ce.Want != 1 {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, _, err := s.Put("Patient", "p2", []byte(`{"resourceType":"Patient"}`), Precondition{MustExist: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("MustExist on missing: %v", err)
	}
	if _, _, err := s.Put("Patient", "p1", []byte(`{"resourceType":"Patient"}`), Precondition{MustNotExist: true}); !errors.Is(err, ErrExists) {
		t.Errorf("MustNotExist on existing: %v", err)
	}
	if _, _, err := s.Put("Patient", "p3", []byte(`{"resourceType":"Observation"}`), Precondition{}); err == nil {
		t.Error("type mismatch accepted")
	}
	if _, _, err := s.Put("Patient", "p3", []byte(`nope`), Precondition{}); err == nil {
		t.Error("invalid JSON accepted")
	}
	if h := s.History("Patient", "p1"); len(h) != 2 || h[0].VersionID != 2 || h[1].VersionID != 1 {
		t.Errorf("history %v", h)
	}
	if v, ok := s.GetVersion("Patient", "p1", 1); !ok || !strings.Contains(string(v.Body), `"active":true`) {
		t.Error("vread 1")
	}
	if _, ok := s.GetVersion("Patient", "p1", 3); ok {
		t.Error("vread 3 exists")
	}
	if cur := s.Current("Patient"); len(cur) != 1 || !strings.Contains(string(cur["p1"]), `"versionId":"2"`) {
		t.Errorf("current %v", cur)
	}
}

func TestMonotonicClockAndSnapshot(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(clk.now)
	// Bulk-loaded data newer than the clock (e.g. generated with a later anchor).
	future := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		body := fmt.Sprintf(`{"resourceType":"Slot","id":"s%d"}`, i)
		if err := s.Load("Slot", fmt.Sprintf("s%d", i), future.Add(-time.Duration(i)*time.Hour), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Load("Slot", "s0", future, nil); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate load: %v", err)
	}
	v, _, err := s.Put("Slot", "s3", []byte(`{"resourceType":"Slot"}`), Precondition{})
	if err != nil {
		t.Fatal(err)
	}
	if v.LastUpdated.Before(future) {
		t.Fatalf("new version stamped %v, older than existing data %v", v.LastUpdated, future)
	}
	all := s.Snapshot("Slot", Query{})
	if len(all) != 5 || all[len(all)-1].ID != "s3" || all[0].ID != "s4" {
		ids := []string{}
		for _, v := range all {
			ids = append(ids, v.ID)
		}
		t.Fatalf("ascending snapshot order %v", ids)
	}
	desc := s.Snapshot("Slot", Query{Desc: true})
	if desc[0].ID != "s3" || desc[4].ID != "s4" {
		t.Error("descending order wrong")
	}
	recent := s.Snapshot("Slot", Query{Range: Range{From: future.Add(-90 * time.Minute).UnixMilli()}})
	if len(recent) != 3 { // s0, s1 and the new s3 version
		t.Errorf("range from: %d", len(recent))
	}
	old := s.Snapshot("Slot", Query{Range: Range{To: future.Add(-90 * time.Minute).UnixMilli()}})
	if len(old) != 2 { // s2 (-2h) and s4 (-4h); s3 superseded
		t.Errorf("range to: %d", len(old))
	}
	odd := s.Snapshot("Slot", Query{Match: func(v *Version) bool { return v.ID == "s1" }})
	if len(odd) != 1 {
		t.Errorf("match: %d", len(odd))
	}
	if s.Snapshot("Nothing", Query{}) != nil || s.Len("Nothing") != 0 {
		t.Error("unknown type not empty")
	}
	calls := 0
	for range 3 {
		all[0].Index(func([]byte) any { calls++; return 1 })
	}
	if calls != 1 {
		t.Errorf("index computed %d times", calls)
	}
}

func TestConcurrentWritesAndSnapshots(t *testing.T) {
	s := New(nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := fmt.Sprintf("w%d-%d", w, i%20)
				if _, _, err := s.Put("Observation", id, []byte(`{"resourceType":"Observation"}`), Precondition{}); err != nil {
					t.Error(err)
					return
				}
				s.Snapshot("Observation", Query{})
			}
		}()
	}
	wg.Wait()
	if s.Len("Observation") != 80 {
		t.Fatalf("len %d, want 80", s.Len("Observation"))
	}
	snap := s.Snapshot("Observation", Query{})
	if len(snap) != 80 {
		t.Fatalf("snapshot %d, want 80 current versions", len(snap))
	}
	for i := 1; i < len(snap); i++ {
		if snap[i].LastUpdated.Before(snap[i-1].LastUpdated) {
			t.Fatal("snapshot not in lastUpdated order")
		}
	}
}
