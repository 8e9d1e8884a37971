package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
)

// TestEngineWritesChargesOverHL7: with writeback.hl7, a charge (which no
// vendor takes over FHIR) is accepted, sent to the MLLP destination as a
// DFT^P03 whose MSH-10 is the control id derived from the intent id
// (hl7out.ControlID), and confirmed by the AA.
func TestEngineWritesChargesOverHL7(t *testing.T) {
	s := startGenericSim(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string // "type control-id"
	h := mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) ([]byte, error) {
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{})
		if err != nil {
			return nil, err
		}
		hd := m.Header()
		mu.Lock()
		got = append(got, hd.MessageCode+"^"+hd.TriggerEvent+" "+hd.ControlID)
		mu.Unlock()
		return ack.Build(m, ack.Options{Code: ack.AA}), nil
	})
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	go func() {
		defer close(pdone)
		_ = mllp.NewServer(mllp.ServerConfig{ShutdownTimeout: 100 * time.Millisecond}, h).Serve(pctx, ln)
	}()
	t.Cleanup(func() { pcancel(); <-pdone })

	yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
store:
  path: mediflow.db
practices:
  - id: clinic
    name: Test Clinic
    connections:
      - name: ehr
        vendor: generic
        base_url: %s
        auth:
          type: none
        sync:
          - class: demographics
            interval: 1h
    writeback:
      enabled: true
      hl7:
        destination: %s
        ack_timeout: 2s
        max_rounds: 3
apps:
  - name: app
    key: {value: %s}
    practices: [clinic]
`, s.BaseURL("clinic"), ln.Addr().String(), appKey)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mediflow.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Practices[0].Writeback.HL7; h.Destination != ln.Addr().String() || h.AckTimeout != 2*time.Second || h.MaxRounds != 3 {
		t.Fatalf("writeback.hl7 read as %+v", h)
	}
	ctx := context.Background()
	eng, err := New(ctx, cfg, Options{Logger: obs.NewLogger(io.Discard, 0, "json")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	w := eng.Intents()
	if sup, err := w.Support("clinic", contract.ChargePost); err != nil || !sup.Supported || sup.Channel != contract.ChannelHL7 {
		t.Fatalf("charge.post: %+v %v, want supported over HL7", sup, err)
	}
	if sup, _ := w.Support("clinic", contract.NoteCreate); sup.Channel != contract.ChannelFHIR {
		t.Errorf("note.create goes through %s, want FHIR (HL7 only adds what FHIR refuses)", sup.Channel)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	var patient string
	for id := range s.Current("clinic", "Patient") {
		patient = id
		break
	}
	charge := fmt.Sprintf(`{"resourceType":"ChargeItem","status":"billable","subject":{"reference":"Patient/%s"},`+
		`"code":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99213"}]},"occurrenceDateTime":"2026-03-02T10:00:00Z"}`, patient)
	in, created, err := w.Submit(ctx, writeback.Request{Practice: "clinic", App: "app", IdempotencyKey: "charge-1", Kind: contract.ChargePost,
		PatientRef: "Patient/" + patient, Body: []byte(charge)})
	if err != nil || !created {
		t.Fatalf("Submit: %v (created %v)", err, created)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, err := w.Get(ctx, "clinic", in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !store.IntentOpen(cur.Status) {
			if cur.Status != store.IntentConfirmed {
				t.Fatalf("status %s (%s) rejection %q, want confirmed", cur.Status, cur.LastError, cur.Rejection)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s: %s", cur.Status, cur.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "DFT^P03 " + hl7out.ControlID(in.ID); len(got) != 1 || got[0] != want {
		t.Errorf("the destination received %q, want %q", strings.Join(got, ", "), want)
	}
}
