package sync

import (
	"bytes"
	"context"
	"errors"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// tagMapper stands in for the mapping engine: it adds a member to every
// resource, and fails the resources whose body contains a marker.
type tagMapper struct {
	mu    gosync.Mutex
	calls []string // practice/connection/type
	fail  string   // bodies containing it cannot be mapped
}

func (m *tagMapper) Map(_ context.Context, practice, conn, rt string, body []byte) ([]byte, error) {
	m.mu.Lock()
	m.calls = append(m.calls, practice+"/"+conn+"/"+rt)
	m.mu.Unlock()
	if m.fail != "" && bytes.Contains(body, []byte(m.fail)) {
		return nil, errors.New("mapping: Patient: patient.gender (gender): code not in the table")
	}
	return mapped(body), nil
}

func mapped(body []byte) []byte {
	return append(bytes.TrimSuffix(bytes.Clone(body), []byte("}")), []byte(`,"canonical":true}`)...)
}

func TestSyncMapsResourcesAndKeepsRawUntouched(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 25; i++ {
		extra := ""
		if i == 7 || i == 18 {
			extra = `,"gender":"unmappable"`
		}
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), extra)
	}
	st := newMemStore()
	m := &tagMapper{fail: "unmappable"}
	s := &Syncer{Store: st, Mapper: m}
	src := newSource(t, ehr, nil, "Patient")
	ctx := context.Background()

	run, err := s.Run(ctx, src, "manual")
	if err != nil {
		t.Fatal(err)
	}
	// Two resources cannot be mapped: they fail on their own, the pages
	// and the other resources go on, and the run says so.
	wantStats(t, run.Stats["Patient"], 25, 23, 0, 0, 2)
	if run.Status != store.RunPartial || run.Stats["Patient"].Pages != 3 {
		t.Fatalf("run status %s pages %d, want partial over 3 pages", run.Status, run.Stats["Patient"].Pages)
	}
	fails := run.Stats["Patient"].Failures
	if len(fails) != 2 {
		t.Fatalf("failures %q", fails)
	}
	for _, f := range fails {
		if !strings.Contains(f, "code not in the table") || !strings.HasPrefix(f, "raw ") {
			t.Errorf("failure reason %q does not say which raw entry and why", f)
		}
	}
	if len(m.calls) != 25 || m.calls[0] != practice+"/"+connection+"/Patient" {
		t.Fatalf("mapper calls %d (%v)", len(m.calls), m.calls[:1])
	}

	// The store holds the canonical resources; the raw pages what the EHR sent.
	for i := 0; i < 25; i++ {
		raw := []byte(ehr.body("Patient", id(i)))
		r, err := st.GetResource(ctx, practice, "Patient", id(i))
		if i == 7 || i == 18 {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s could not be mapped but was stored: %v", id(i), err)
			}
		} else if err != nil || !bytes.Equal(r.Body, mapped(raw)) {
			t.Errorf("%s: stored %s, want the mapped %s (%v)", id(i), r.Body, mapped(raw), err)
		}
		found := false
		for _, p := range st.raws {
			if bytes.Contains(p.Body, raw) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no raw page holds the resource exactly as served", id(i))
		}
	}
	for _, p := range st.raws {
		if bytes.Contains(p.Body, []byte(`"canonical"`)) {
			t.Fatalf("raw page %d was changed by mapping", p.ID)
		}
	}

	// Nothing changed at the source: the canonical resources are unchanged
	// too (the content hash is of the mapped form, and mapping is stable).
	run, _ = s.Run(ctx, src, "schedule")
	wantStats(t, run.Stats["Patient"], 3, 0, 0, 3, 0)
	h, _ := st.History(ctx, practice, "Patient", id(23))
	if len(h) != 1 {
		t.Fatalf("an unchanged source resource got %d canonical versions", len(h))
	}
}

// A mapper stopped by the context stops the run without counting the
// resource as failed.
func TestSyncMapperCancelled(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 5; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := newMemStore()
	s := &Syncer{Store: st, Mapper: cancelMapper{cancel}}
	run, err := s.Run(ctx, newSource(t, ehr, nil, "Patient"), "manual")
	if !errors.Is(err, context.Canceled) || run.Status != store.RunFailed {
		t.Fatalf("run %s err %v, want failed with context.Canceled", run.Status, err)
	}
	if ts := run.Stats["Patient"]; ts.Failed != 0 {
		t.Errorf("a cancelled mapping counted %d failed resources", ts.Failed)
	}
	if counts, _ := st.CountResources(context.Background(), practice); counts["Patient"] != 0 {
		t.Errorf("resources written after cancellation: %d", counts["Patient"])
	}
}

type cancelMapper struct{ cancel context.CancelFunc }

func (c cancelMapper) Map(ctx context.Context, _, _, _ string, _ []byte) ([]byte, error) {
	c.cancel()
	return nil, ctx.Err()
}
