package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/hl7feed"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// hl7Practice is the practice of the HL7 feed story: it has no FHIR
// connection, only an HL7 v2 listener.
const hl7Practice = "lakeside"

// A practice's systems talk HL7 v2: the EHR's interface engine (here the
// simulator's HL7 feed, built from its FHIR data) sends ADT, SIU and ORU
// messages, and a lab system (node-hl7-client, a library nobody on this
// project wrote) sends its own. mediflow ACKs every message with AA only
// once it is stored, ACKs a resend again without storing it twice, and the
// app then reads the patients, appointments and results through the same
// FHIR API the EHR connections feed.
func TestHL7FeedsBecomeFHIRResourcesAnAppCanRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The EHR: a simulator tenant whose data the HL7 feed carries.
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "ehr", Flavor: "generic", Seed: 77, Data: testData(12)}}})
	if err != nil {
		t.Fatal(err)
	}
	feed, err := hl7feed.Messages(hl7feed.FromSim(s, "ehr"), 60, 7, hl7feed.FeedConfig{SendingApplication: "EHR", SendingFacility: "LAKESIDE"})
	if err != nil {
		t.Fatal(err)
	}

	// mediflow, configured the way a user would: one HL7 listener.
	dir := t.TempDir()
	const apiKey = "lakeside-app-key-0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, "app.key"), []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "mediflow.yaml")
	yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
store:
  driver: sqlite
  path: mediflow.db
practices:
  - id: %s
    name: Lakeside Family Practice
    hl7_listeners:
      - name: main
        listen: 127.0.0.1:0
        dedup_window: 24h
apps:
  - name: lakeside-app
    key: {file: app.key}
    practices: [%s]
`, hl7Practice, hl7Practice)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	eng, err := engine.New(ctx, cfg, engine.Options{Logger: obs.NewLogger(logs, slog.LevelInfo, "json"), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(runCtx, apiLn) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if a := eng.HL7Addr(hl7Practice, "main"); a != nil {
			addr = a.String()
		} else if time.Now().After(deadline) {
			t.Fatal("the HL7 listener did not start")
		}
	}
	apiURL := "http://" + apiLn.Addr().String()

	// The EHR's feed: every message gets AA echoing its MSH-10.
	c := mllp.NewClient(mllp.ClientConfig{Addr: addr, AckTimeout: 10 * time.Second})
	defer c.Close()
	mrns := map[string]bool{}
	var appointments, results int
	for _, raw := range feed {
		m, err := hl7.Parse(raw, hl7.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header()
		a, err := c.Send(ctx, raw)
		if err != nil {
			t.Fatalf("%s^%s %s: %v", h.MessageCode, h.TriggerEvent, h.ControlID, err)
		}
		r, err := ack.Parse(a)
		if err != nil || r.Code != ack.AA || r.ControlID != h.ControlID {
			t.Fatalf("%s^%s %s: ACK %+v (%v)", h.MessageCode, h.TriggerEvent, h.ControlID, r, err)
		}
		mrn, _ := m.Get("PID-3-1")
		mrns[mrn] = true
		switch h.MessageCode {
		case "SIU":
			appointments++
		case "ORU":
			results++
		}
	}
	if appointments == 0 || results == 0 || len(mrns) < 2 {
		t.Fatalf("the feed should carry appointments, results and several patients: %d SIU, %d ORU, %d patients", appointments, results, len(mrns))
	}

	// A resend after a lost ACK: the same bytes get AA again, nothing new is stored.
	a, err := c.Send(ctx, feed[0])
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ack.Parse(a); err != nil || r.Code != ack.AA {
		t.Fatalf("resend: ACK %+v (%v)", r, err)
	}

	// The lab system, an independent MLLP client, sends one patient's admission, visit and results.
	lab := [][]byte{
		[]byte("MSH|^~\\&|LABSYS|LAKELAB|MEDIFLOW|LAKESIDE|20261201093000||ADT^A01^ADT_A01|LAB0001|P|2.5.1\r" +
			"EVN|A01|20261201093000\r" +
			"PID|1||LAB-7781^^^LAKELAB^MR||Okafor^Ngozi^A||19840312|F|||12 Elm St^^Springfield^IL^62701^USA\r" +
			"PV1|1|O|LAB^^^LAKELAB||||||||||||||||V-7781-1|||||||||||||||||||||||||20261201093000\r"),
		[]byte("MSH|^~\\&|LABSYS|LAKELAB|MEDIFLOW|LAKESIDE|20261201093100||SIU^S12^SIU_S12|LAB0002|P|2.5.1\r" +
			"SCH|APT-7781-1|APT-7781-1|||||Follow-up^Follow-up visit|||30|min|^^30^20261208100000^20261208103000|||||||||||||Booked\r" +
			"PID|1||LAB-7781^^^LAKELAB^MR||Okafor^Ngozi^A||19840312|F\r" +
			"RGS|1\r" +
			"AIS|1||99213^Office visit^CPT|20261208100000|||30|min\r"),
		[]byte("MSH|^~\\&|LABSYS|LAKELAB|MEDIFLOW|LAKESIDE|20261201110000||ORU^R01^ORU_R01|LAB0003|P|2.5.1\r" +
			"PID|1||LAB-7781^^^LAKELAB^MR||Okafor^Ngozi^A||19840312|F\r" +
			"OBR|1|ORD7781|FIL7781|24323-8^Comprehensive metabolic panel^LN|||20261201100000|||||||||||||||20261201105500|||F\r" +
			"OBX|1|NM|2345-7^Glucose^LN||98|mg/dL^mg/dL^UCUM|70-99|N|||F|||20261201100000\r" +
			"OBX|2|NM|2160-0^Creatinine^LN||0.9|mg/dL^mg/dL^UCUM|0.6-1.2|N|||F|||20261201100000\r"),
	}
	acks := peers.SendHL7NodeClient(t, addr, lab)
	if len(acks) != len(lab) {
		t.Fatalf("node-hl7-client got %d replies for %d messages: %+v", len(acks), len(lab), acks)
	}
	for i, a := range acks {
		if want := fmt.Sprintf("LAB000%d", i+1); a.Error != "" || a.MSA1 != "AA" || a.MSA2 != want {
			t.Errorf("lab message %s: reply %+v, want AA for %s", want, a, want)
		}
	}

	// Everything is stored once and processed.
	st := eng.Store()
	total := len(feed) + len(lab)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		counts, err := st.CountHL7Messages(ctx, hl7Practice, store.DirectionInbound)
		if err != nil {
			t.Fatal(err)
		}
		if counts[store.MsgProcessed] == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message statuses %v, want all %d processed\n%s", counts, total, logs.String())
		}
	}
	first, err := st.ListHL7Messages(ctx, hl7Practice, store.HL7Filter{ControlID: mustHeader(t, feed[0]).ControlID})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || first[0].Duplicates != 1 {
		t.Errorf("the resent message is stored %d times (duplicates %v), want once with one duplicate", len(first), first)
	}

	// The app reads it all through the FHIR API.
	hc := &http.Client{Timeout: 10 * time.Second}
	base := apiURL + "/fhir/" + hl7Practice
	for mrn := range mrns {
		var b fhir.Bundle
		if code := getJSON(t, hc, base+"/Patient?identifier="+mrn, apiKey, &b); code != http.StatusOK {
			t.Fatalf("Patient?identifier: status %d", code)
		}
		if b.Total == nil || *b.Total != 1 {
			t.Errorf("the feed's patient with MRN %s: %v found, want 1", mrn, b.Total)
		}
	}
	var lp fhir.Bundle
	getJSON(t, hc, base+"/Patient?identifier=LAB-7781", apiKey, &lp)
	if lp.Total == nil || *lp.Total != 1 || len(lp.Entry) != 1 {
		t.Fatalf("the lab's patient: %v found", lp.Total)
	}
	h, err := fhir.ParseHeader(lp.Entry[0].Resource)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lp.Entry[0].Resource), "Okafor") {
		t.Errorf("the lab's patient has no family name Okafor: %s", lp.Entry[0].Resource)
	}
	var obs fhir.Bundle
	getJSON(t, hc, base+"/Observation?subject=Patient/"+h.ID, apiKey, &obs)
	if obs.Total == nil || *obs.Total != 2 {
		t.Errorf("the lab patient's results: %v, want 2 (glucose, creatinine)", obs.Total)
	}
	for _, rt := range []string{"Appointment", "DiagnosticReport", "Observation", "Encounter"} {
		var b fhir.Bundle
		getJSON(t, hc, base+"/"+rt+"?_count=1", apiKey, &b)
		if b.Total == nil || *b.Total == 0 {
			t.Errorf("no %s resources through the API", rt)
		}
	}
	var appts fhir.Bundle
	getJSON(t, hc, base+"/Appointment?patient=Patient/"+h.ID, apiKey, &appts)
	if appts.Total == nil || *appts.Total != 1 {
		t.Errorf("the lab patient's appointment: %v found, want 1", appts.Total)
	}
}

func mustHeader(t *testing.T, raw []byte) hl7.Header {
	t.Helper()
	m, err := hl7.Parse(raw, hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Header()
}
