package sync

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// issueMapper stands in for the mapping engine as an IssueMapper: the
// issues of a resource are named by markers in its body, and a body with
// "unmappable" fails with its issues.
type issueMapper struct {
	mu        gosync.Mutex
	withIssue int // MapWithIssues calls
	plain     int // Map calls
}

var issueMarkers = []struct{ marker, issue string }{
	{"noGender", "patient.gender: required-empty"},
	{"badPhone", "patient.telecom.phone: failed"},
	{"oddCode", "patient.maritalStatus: unmapped-code"},
	{"unmappable", "patient.gender: unmapped-code"},
}

func issuesOf(body []byte) []string {
	var out []string
	for _, m := range issueMarkers {
		for range bytes.Count(body, []byte(m.marker)) {
			out = append(out, m.issue)
		}
	}
	return out
}

func (m *issueMapper) Map(_ context.Context, _, _, _ string, body []byte) ([]byte, error) {
	m.mu.Lock()
	m.plain++
	m.mu.Unlock()
	return mapped(body), nil
}

func (m *issueMapper) MapWithIssues(_ context.Context, _, _, _ string, body []byte) ([]byte, []string, error) {
	m.mu.Lock()
	m.withIssue++
	m.mu.Unlock()
	issues := issuesOf(body)
	if bytes.Contains(body, []byte("unmappable")) {
		return nil, issues, errors.New("mapping: Patient: patient.gender (gender): code not in the table")
	}
	return mapped(body), issues, nil
}

// A run whose mapper reports issues records them per type, keyed
// "<rule id>: <kind>", once per resource the run stores or fails (a
// resource repeated on the next page is not counted twice), and the record
// survives the SQLite store's JSON.
func TestRunRecordsMappingIssues(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "issues.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ehr := newFakeEHR(t)
	ehr.dupAcrossPages = true // every page repeats the previous page's last entry
	want := map[string]int{}
	for i := 0; i < 25; i++ {
		extra := ""
		switch {
		case i == 9 || i == 19: // the last entry of a page: repeated on the next one
			extra = `,"x":"noGender badPhone badPhone"`
		case i == 12:
			extra = `,"gender":"unmappable"`
		case i%4 == 0:
			extra = `,"x":"oddCode"`
		}
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), extra)
		for _, is := range issuesOf([]byte(extra)) {
			want[is]++
		}
	}
	if len(want) != 4 {
		t.Fatalf("the test data names %d kinds of issue, want all 4", len(want))
	}
	m := &issueMapper{}
	s := &Syncer{Store: st, Mapper: m}
	run, err := s.Run(ctx, newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	// 25 resources and 2 repeats; one cannot be mapped.
	wantStats(t, run.Stats["Patient"], 27, 24, 0, 2, 1)
	if m.plain != 0 || m.withIssue != 27 {
		t.Errorf("Map called %d times, MapWithIssues %d: an IssueMapper must be asked for issues for every entry", m.plain, m.withIssue)
	}
	if got := run.Stats["Patient"].MappingIssues; !maps.Equal(got, want) {
		t.Errorf("run record mapping issues %v, want %v", got, want)
	}
	stored, err := st.GetRun(ctx, practice, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.Stats["Patient"].MappingIssues; !maps.Equal(got, want) {
		t.Errorf("stored run mapping issues %v, want %v", got, want)
	}

	// The next run fetches the overlap window again: the resources it maps
	// (unchanged ones too) are counted in its own record, from zero.
	run2, err := s.Run(ctx, newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	ts := run2.Stats["Patient"]
	if ts.Fetched == 0 || ts.Fetched >= 25 {
		t.Fatalf("second run fetched %d, want the overlap window only", ts.Fetched)
	}
	want2 := map[string]int{}
	for i := 25 - ts.Fetched; i < 25; i++ {
		for _, is := range issuesOf([]byte(ehr.body("Patient", id(i)))) {
			want2[is]++
		}
	}
	if len(want2) == 0 {
		t.Fatal("the overlap window holds no resource with issues: the check proves nothing")
	}
	if !maps.Equal(ts.MappingIssues, want2) {
		t.Errorf("second run mapping issues %v, want %v", ts.MappingIssues, want2)
	}
}

// A Mapper that is not an IssueMapper is used as before and the record has
// no mapping issues (the field is left out of the stored JSON).
func TestPlainMapperRecordsNoMappingIssues(t *testing.T) {
	ehr := newFakeEHR(t)
	for i := 0; i < 12; i++ {
		ehr.put("Patient", id(i), t0.Add(time.Duration(i)*time.Minute), `,"x":"noGender"`)
	}
	st := newMemStore()
	m := &tagMapper{}
	s := &Syncer{Store: st, Mapper: m}
	run, err := s.Run(context.Background(), newSource(t, ehr, nil, "Patient"), "manual")
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, run.Stats["Patient"], 12, 12, 0, 0, 0)
	if len(m.calls) != 12 {
		t.Errorf("Map called %d times, want 12", len(m.calls))
	}
	if got := run.Stats["Patient"].MappingIssues; got != nil {
		t.Errorf("mapping issues %v from a mapper that reports none", got)
	}
}
