package engine

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/sync"
)

// A nightly class is read with a Bulk Data export (Epic: a Group export,
// one job at a time), stored raw first and mapped; the next night asks
// again; the reconciliation sweep of the polled classes finds nothing to
// delete when nothing was.
func TestNightlyClassIsReadByBulkExport(t *testing.T) {
	s := startSim(t)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
store:
  path: mediflow.db
practices:
  - id: clinic
    name: Clinic
    connections:
      - name: ehr
        vendor: epic
        base_url: %s
        bulk_group: all
        auth:
          type: none
        sync:
          - class: reference
            mode: nightly
          - class: demographics
            interval: 1m
    mapping:
      enabled: true
apps:
  - name: app
    key: {value: %s}
    practices: [clinic]
`, s.BaseURL("clinic"), strings.Repeat("k", 40))
	cfg, err := config.Parse(filepath.Join(dir, "mediflow.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json"), BulkMaxPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	st := eng.Store()
	counts, err := st.CountResources(ctx, "clinic")
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"Practitioner", "Organization", "Location", "Patient"} {
		want := len(s.Current("clinic", rt))
		if want == 0 || counts[rt] != want {
			t.Errorf("%s: store %d, simulator %d", rt, counts[rt], want)
		}
	}
	raws, _ := st.ListRaw(ctx, "clinic", store.RawFilter{Limit: 1000})
	bulkRaw := 0
	for _, r := range raws {
		if r.Source == sync.RawSourceBulk {
			bulkRaw++
		}
	}
	if bulkRaw == 0 {
		t.Fatal("no raw bulk batches: the nightly class was not read by export")
	}
	// Mapped like polled resources: the profile tag is there.
	for id := range s.Current("clinic", "Practitioner") {
		r, err := st.GetResource(ctx, "clinic", "Practitioner", id)
		if err != nil || !strings.Contains(string(r.Body), "urn:mediflow:mapping-profile") {
			t.Fatalf("Practitioner %s not mapped: %v", id, err)
		}
		break
	}
	runs, _ := st.ListRuns(ctx, "clinic", "ehr", 10)
	var exportRun *store.Run
	for i := range runs {
		if _, ok := runs[i].Stats["Practitioner"]; ok {
			exportRun = &runs[i]
		}
	}
	if exportRun == nil || exportRun.Status != store.RunSucceeded {
		t.Fatalf("export run %+v", exportRun)
	}
	// The second night: a new export; everything comes back unchanged.
	if err := eng.SyncAll(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	runs, _ = st.ListRuns(ctx, "clinic", "ehr", 1)
	if ts := runs[0].Stats; ts["Practitioner"] == nil && ts["Patient"] == nil {
		t.Fatalf("latest run %+v", runs[0])
	}
	if err := eng.Reconcile(ctx, "clinic", "ehr", "test"); err != nil {
		t.Fatal(err)
	}
	runs, _ = st.ListRuns(ctx, "clinic", "ehr", 1)
	sweep := runs[0]
	if sweep.Trigger != "test" || sweep.Stats["Patient"] == nil || sweep.Stats["Patient"].Deleted != 0 || sweep.Stats["Patient"].Unchanged == 0 {
		t.Errorf("sweep %+v", sweep.Stats["Patient"])
	}
	if _, ok := sweep.Stats["Practitioner"]; ok {
		t.Error("the sweep read a nightly class")
	}
}
