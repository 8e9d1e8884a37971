package hl7feed

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// allKinds weighs every kind equally, MDM included.
func allKinds() Mix {
	m := Mix{}
	for _, k := range MessageKinds() {
		m[k] = 1
	}
	return m
}

// checkMessage parses msg strictly and checks it against the tenant's data;
// it returns the message kind ("ADT^A01").
func checkMessage(t *testing.T, tr *truth, msg []byte) string {
	t.Helper()
	m, err := hl7.Parse(msg, hl7.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("strict parse: %v\n%s", err, bytes.ReplaceAll(msg, []byte("\r"), []byte("\n")))
	}
	h := m.Header()
	if h.Version != "2.5.1" || h.ControlID == "" || h.SendingFacility == "" || h.Timestamp == "" {
		t.Errorf("header %+v", h)
	}
	kind := h.MessageCode + "^" + h.TriggerEvent
	mrn := get(t, m, "PID-3-1")
	pid, ok := tr.mrnOwner[mrn]
	if !ok {
		t.Fatalf("%s: PID-3 %q is not a simulator MRN", kind, mrn)
	}
	if got, want := get(t, m, "PID-3-5"), "MR"; got != want {
		t.Errorf("PID-3-5 = %q", got)
	}
	sys := tr.mrnSystem[mrn]
	wantUID, wantType := sys, "URI"
	if oid, ok := strings.CutPrefix(sys, "urn:oid:"); ok {
		wantUID, wantType = oid, "ISO"
	}
	if get(t, m, "PID-3-4-2") != wantUID || get(t, m, "PID-3-4-3") != wantType || get(t, m, "PID-3-4-1") != h.SendingFacility {
		t.Errorf("PID-3 authority %q, want %s&%s", get(t, m, "PID-3-4"), wantUID, wantType)
	}
	if got := get(t, m, "PID-5-1"); got != tr.family[pid] {
		t.Errorf("PID-5-1 %q, patient's family %q", got, tr.family[pid])
	}
	if got := get(t, m, "PID-7"); got != strings.ReplaceAll(tr.birth[pid], "-", "") {
		t.Errorf("PID-7 %q, birthDate %q", got, tr.birth[pid])
	}
	subjectOf := func(res map[string]any, field string) string {
		return strings.TrimPrefix(str(res, field, "reference"), "Patient/")
	}
	switch h.MessageCode {
	case "ADT":
		if h.TriggerEvent == "A08" {
			break
		}
		enc, ok := tr.encounters[get(t, m, "PV1-19-1")]
		if !ok {
			t.Fatalf("%s: PV1-19 %q is not an Encounter", kind, get(t, m, "PV1-19-1"))
		}
		if subjectOf(enc, "subject") != pid {
			t.Errorf("%s: encounter of another patient", kind)
		}
		if h.TriggerEvent == "A03" && (str(enc, "status") != "finished" || get(t, m, "PV1-45") == "") {
			t.Errorf("A03 for encounter status %q, PV1-45 %q", str(enc, "status"), get(t, m, "PV1-45"))
		}
	case "SIU":
		id := get(t, m, "SCH-1-1")
		appt, ok := tr.appointments[id]
		if !ok || get(t, m, "SCH-2-1") != id {
			t.Fatalf("SIU: SCH-1 %q / SCH-2 %q not an Appointment", id, get(t, m, "SCH-2-1"))
		}
		patient := ""
		for _, p := range appt["participant"].([]any) {
			if r := str(p, "actor", "reference"); strings.HasPrefix(r, "Patient/") {
				patient = strings.TrimPrefix(r, "Patient/")
			}
		}
		if patient != pid {
			t.Errorf("SIU: PID is not the appointment's patient")
		}
		if cancelled := str(appt, "status") == "cancelled"; cancelled != (h.TriggerEvent == "S15") {
			t.Errorf("%s for an appointment with status %q", kind, str(appt, "status"))
		}
		if get(t, m, "SCH-11-4") == "" || get(t, m, "AIL-3-1") == "" || get(t, m, "AIP-3-1") == "" {
			t.Errorf("SIU lacks timing, location or provider:\n%s", m)
		}
	case "ORU":
		if len(m.SegmentsByID("OBR")) != 1 || len(m.SegmentsByID("OBX")) == 0 {
			t.Fatalf("ORU: %d OBR, %d OBX", len(m.SegmentsByID("OBR")), len(m.SegmentsByID("OBX")))
		}
		// Every OBX is a value of one of the patient's observations.
		type cv struct{ code, value string }
		have := map[cv]bool{}
		for _, o := range tr.observations {
			if subjectOf(o, "subject") != pid {
				continue
			}
			have[cv{str(o, "code", "coding", 0, "code"), str(o, "valueQuantity", "value")}] = true
			comps, _ := o["component"].([]any)
			for _, c := range comps {
				have[cv{str(c, "code", "coding", 0, "code"), str(c, "valueQuantity", "value")}] = true
			}
		}
		for i, obx := range m.SegmentsByID("OBX") {
			code, _ := obx.Get("3-1")
			value, _ := obx.Get("5")
			if sys, _ := obx.Get("3-3"); sys != "LN" {
				t.Errorf("OBX-3-3 %q", sys)
			}
			if set, _ := obx.Get("1"); set != strconv.Itoa(i+1) {
				t.Errorf("OBX-1 %q at %d", set, i+1)
			}
			if !have[cv{code, value}] {
				t.Errorf("ORU: OBX %s = %s is not an observation of the patient", code, value)
			}
		}
	case "MDM":
		if !tr.documents[get(t, m, "TXA-12-1")] {
			t.Errorf("MDM: TXA-12 %q is not a DocumentReference", get(t, m, "TXA-12-1"))
		}
		if !strings.Contains(get(t, m, "OBX-5"), "Patient") {
			t.Errorf("MDM: note text missing")
		}
	default:
		t.Errorf("unexpected message %s", kind)
	}
	return kind
}

func TestMessagesMatchSimulatorData(t *testing.T) {
	s := sharedSim(t)
	for _, tenant := range []string{"north", "south"} {
		t.Run(tenant, func(t *testing.T) {
			src := FromSim(s, tenant)
			tr := readTruth(t, src)
			if len(tr.mrnOwner) != 25 {
				t.Fatalf("test reads %d MRNs, want 25", len(tr.mrnOwner))
			}
			msgs, err := Messages(src, 400, 3, FeedConfig{Mix: allKinds(), SendingFacility: strings.ToUpper(tenant)})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 400 {
				t.Fatalf("%d messages", len(msgs))
			}
			kinds := map[string]int{}
			ctrl := map[string]bool{}
			for _, msg := range msgs {
				kinds[checkMessage(t, tr, msg)]++
				m, _ := hl7.Parse(msg, hl7.ParseOptions{})
				id := m.Header().ControlID
				if ctrl[id] {
					t.Errorf("MSH-10 %q repeated", id)
				}
				ctrl[id] = true
			}
			for _, k := range MessageKinds() {
				if kinds[k] == 0 {
					t.Errorf("no %s in 400 messages with equal weights: %v", k, kinds)
				}
			}
		})
	}
}

func TestMessagesDeterministic(t *testing.T) {
	src := FromSim(sharedSim(t), "north")
	a, err := Messages(src, 50, 11, FeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Messages(src, 50, 11, FeedConfig{})
	c, _ := Messages(src, 50, 12, FeedConfig{})
	same := 0
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("message %d differs for the same seed", i)
		}
		if bytes.Equal(a[i], c[i]) {
			same++
		}
	}
	if same == len(a) {
		t.Error("another seed gives the same messages")
	}
}

func TestMixWeights(t *testing.T) {
	src := FromSim(sharedSim(t), "north")
	msgs, err := Messages(src, 200, 1, FeedConfig{Mix: Mix{"ORU^R01": 3, "ADT^A08": 1}})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, msg := range msgs {
		m, _ := hl7.Parse(msg, hl7.ParseOptions{})
		n[m.Header().MessageCode+"^"+m.Header().TriggerEvent]++
	}
	if len(n) != 2 || n["ORU^R01"] < 120 || n["ADT^A08"] < 25 {
		t.Errorf("mix 3:1 gave %v", n)
	}

	for _, bad := range []Mix{{"ADT^A99": 1}, {"ADT^A01": -1}, {"ADT^A01": 0}} {
		if _, err := Messages(src, 1, 1, FeedConfig{Mix: bad}); err == nil {
			t.Errorf("mix %v accepted", bad)
		}
	}
	if m, err := ParseMix("adt_a01=2, ORU^R01=1"); err != nil || m["ADT^A01"] != 2 || m["ORU^R01"] != 1 {
		t.Errorf("ParseMix = %v, %v", m, err)
	}
	if _, err := ParseMix("ORU^R01"); err == nil {
		t.Error("ParseMix without weight accepted")
	}
	// Only kinds the data supports are sent; none at all is an error.
	if _, err := Messages(MapSource{}, 1, 1, FeedConfig{}); !errors.Is(err, ErrNoData) {
		t.Errorf("empty source: %v", err)
	}
}

// A source with one patient, written by hand: names with delimiters and
// non-ASCII characters come through escaped and intact.
func TestMessagesEscapeAndCharset(t *testing.T) {
	src := MapSource{"Patient": {"p1": []byte(`{"resourceType":"Patient","id":"p1",
		"identifier":[{"type":{"coding":[{"code":"MR"}]},"system":"urn:oid:1.2.3.4","value":"A|1^2"}],
		"name":[{"use":"official","family":"O'Brien & Søn","given":["Zoë","Ann"]}],
		"gender":"female","birthDate":"1980-02-29",
		"address":[{"use":"home","line":["1 Main St","Apt 2"],"city":"Köln","postalCode":"50667","country":"DE"}],
		"telecom":[{"system":"phone","value":"(555) 555-0100","use":"home"},{"system":"email","value":"z@example.org"}]}`)}}
	msgs, err := Messages(src, 1, 1, FeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := hl7.Parse(msgs[0], hl7.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("strict: %v\n%s", err, msgs[0])
	}
	for path, want := range map[string]string{
		"MSH-9": "ADT^A08^ADT_A01", "PID-3-1": "A|1^2", "PID-3-4-2": "1.2.3.4", "PID-3-4-3": "ISO",
		"PID-5-1": "O'Brien & Søn", "PID-5-2": "Zoë", "PID-5-3": "Ann", "PID-5-7": "L", "PID-7": "19800229", "PID-8": "F",
		"PID-11-2": "Apt 2", "PID-11-3": "Köln", "PID-11-7": "H", "PID-13(1)-1": "(555) 555-0100", "PID-13(2)-4": "z@example.org",
		"PV1-2": "N",
	} {
		if got := get(t, m, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
}

func TestFromSimSeesNewData(t *testing.T) {
	// Its own simulator: the shared one must not change.
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "north", Seed: 7, Data: &gen.Options{Patients: 10}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = s.Put("north", []byte(`{"resourceType":"Patient","id":"hl7feed-new",
		"identifier":[{"type":{"coding":[{"code":"MR"}]},"system":"urn:mediflow:sim:north:mrn","value":"999999"}],
		"name":[{"family":"Newcomer","given":["Nia"]}],"gender":"female","birthDate":"2001-01-01"}`))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := Messages(FromSim(s, "north"), 300, 5, FeedConfig{Mix: Mix{"ADT^A08": 1}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, msg := range msgs {
		found = found || bytes.Contains(msg, []byte("|999999^^^"))
	}
	if !found {
		t.Error("a patient put into the simulator never appears in the feed")
	}
}

func TestFeedSendsAtRate(t *testing.T) {
	srv := startAckServer(t)
	src := FromSim(sharedSim(t), "north")
	tr := readTruth(t, src)
	f := NewFeed(src, FeedConfig{To: srv.addr, Rate: 200, Count: 50, Seed: 9, SendingFacility: "NORTH", Mix: allKinds()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := f.Run(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// 50 messages at 200/s: the last is due 245 ms after the first.
	if took < 200*time.Millisecond || took > 10*time.Second {
		t.Errorf("50 messages at 200/s took %v", took)
	}
	got := srv.received()
	if len(got) != 50 {
		t.Fatalf("server got %d messages", len(got))
	}
	kinds := map[string]int{}
	for _, msg := range got {
		kinds[checkMessage(t, tr, msg)]++
	}
	if len(kinds) < 4 {
		t.Errorf("kinds %v", kinds)
	}
	if st := f.Stats(); st != (FeedStats{Sent: 50, Accepted: 50}) {
		t.Errorf("stats %+v", st)
	}
}

func TestFeedRunStops(t *testing.T) {
	srv := startAckServer(t)
	src := FromSim(sharedSim(t), "north")
	// Count 0 runs until the context ends and then returns nil.
	f := NewFeed(src, FeedConfig{To: srv.addr, Rate: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("Count 0: %v", err)
	}
	if st := f.Stats(); st.Sent < 5 || st.Sent > 60 || st.Accepted != st.Sent {
		t.Errorf("300 ms at 100/s: %+v", st)
	}
	// A Count not reached returns the context's error.
	f = NewFeed(src, FeedConfig{To: srv.addr, Rate: 10, Count: 1000})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := f.Run(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Count not reached: %v", err)
	}
	// Bad configurations fail at once.
	for _, cfg := range []FeedConfig{{}, {To: "nohost"}, {To: srv.addr, Rate: -1}, {To: srv.addr, Count: -1}, {To: srv.addr, Mix: Mix{"X": 1}}} {
		if err := NewFeed(src, cfg).Run(context.Background()); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// The feed counts each fault of the receiver as the receiver counts it.
func TestFeedAgainstFaultyReceiver(t *testing.T) {
	src := FromSim(sharedSim(t), "north")
	for _, tc := range []struct {
		fault Fault
		check func(t *testing.T, f FeedStats, r ReceiverStats)
	}{
		{FaultNAK, func(t *testing.T, f FeedStats, r ReceiverStats) {
			if f.Errors != r.Naks || f.Accepted != r.Acked || r.Naks == 0 || r.Acked == 0 {
				t.Errorf("feed %+v, receiver %+v", f, r)
			}
		}},
		{FaultReject, func(t *testing.T, f FeedStats, r ReceiverStats) {
			if f.Errors != r.Rejects || f.Accepted != r.Acked || r.Rejects == 0 {
				t.Errorf("feed %+v, receiver %+v", f, r)
			}
		}},
		{FaultNoAck, func(t *testing.T, f FeedStats, r ReceiverStats) {
			if f.NoAck != r.NoAcks || f.Accepted != r.Acked || r.NoAcks == 0 {
				t.Errorf("feed %+v, receiver %+v", f, r)
			}
		}},
		{FaultDisconnect, func(t *testing.T, f FeedStats, r ReceiverStats) {
			// A cut on a kept-open connection looks to the client like a
			// connection the receiver closed while idle, which it retries
			// once without counting an attempt: so there may be more cuts
			// than messages without an ACK, never fewer.
			if r.Disconnects < f.NoAck || f.NoAck == 0 || f.Accepted != r.Acked || r.Acked != r.Received || f.Accepted+f.NoAck != f.Sent {
				t.Errorf("feed %+v, receiver %+v", f, r)
			}
		}},
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			r := NewReceiver(ReceiverConfig{Fault: tc.fault, FaultRate: 0.4, Seed: 4})
			addr := startReceiver(t, r)
			// One attempt per message, so each fault is one outcome.
			f := NewFeed(src, FeedConfig{To: addr, Count: 30, AckTimeout: 100 * time.Millisecond, MaxAttempts: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := f.Run(ctx); err != nil {
				t.Fatal(err)
			}
			fs, rs := f.Stats(), r.Stats()
			if fs.Sent != 30 || fs.BadAck != 0 {
				t.Errorf("feed %+v", fs)
			}
			tc.check(t, fs, rs)
		})
	}
}
