package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/fault"
)

// A practice keeps its schedule and demographics fresh in real time: the
// engine creates FHIR Subscriptions on the EHR, the EHR pushes each change,
// and the change is readable through mediflow long before the 10-minute
// safety poll would run — even when the EHR loses a third of its
// notifications and heartbeats on the way.
func TestRealtimeSubscriptionsKeepTheStoreFresh(t *testing.T) {
	const practice = "riverside"
	w := newWorld(t, practiceSpec{id: practice, seed: 23, classes: []string{"demographics", "scheduling"},
		realtime: []string{"demographics", "scheduling"},
		topics: map[string][]string{
			sim.TopicAppointmentChange: {"Appointment"},
			sim.TopicPatientChange:     {"Patient"},
		}})
	if err := w.sim.SetSubscriptionOptions(practice, sim.SubscriptionOptions{}); err != nil {
		t.Fatal(err)
	}
	eng := w.newEngine(engineOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(w.ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(runCtx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("engine: %v", err)
		}
	})

	// 1. Start-up: the safety polls load everything, and both
	// subscriptions become active on the EHR (handshake answered).
	waitFor(t, 30*time.Second, "the first load and two active subscriptions", func() bool {
		active := 0
		for _, s := range w.sim.Subscriptions(practice) {
			if s.Status == "active" {
				active++
			}
		}
		return active == 2 && w.storeMatches(eng, practice, "Appointment") && w.storeMatches(eng, practice, "Patient")
	})
	runsBefore := lastRunID(t, eng.Store(), practice)
	apiURL := "http://" + ln.Addr().String()
	hook := newReceiver(t)
	hook.register(apiURL, w.apiKey, practice, "Appointment", "Patient")

	// 2. The EHR loses a third of its notifications (and heartbeats).
	if err := w.sim.SetFaults(practice, []fault.Fault{{Endpoint: fault.EndpointSubscriptionNotify, Kind: fault.Drop, Rate: 0.33}}); err != nil {
		t.Fatal(err)
	}
	changed := map[[2]string]bool{}
	for round := 0; round < 5; round++ {
		chs, err := w.sim.Tick(practice, 15)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chs {
			if c.ResourceType == "Appointment" || c.ResourceType == "Patient" {
				changed[[2]string{c.ResourceType, c.ID}] = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(changed) == 0 {
		t.Fatal("no appointment or patient changed: the story would prove nothing")
	}

	// 3. Every change arrives: by notification, or recovered through
	// $events after a gap; the safety poll (10 minutes) never ran.
	waitFor(t, 30*time.Second, "every appointment and patient change", func() bool {
		return w.storeMatches(eng, practice, "Appointment") && w.storeMatches(eng, practice, "Patient")
	})
	// 4. The app's webhook got a signed notification for the newest
	// version of every changed record.
	waitFor(t, 30*time.Second, "a webhook per changed record", func() bool {
		for k := range changed {
			r, err := eng.Store().GetResource(w.ctx, practice, k[0], k[1])
			if err != nil || !hook.has(k[0], k[1], r.Version) {
				return false
			}
		}
		return true
	})
	if n := hook.badSignatures(); n != 0 {
		t.Errorf("%d webhook requests failed signature verification", n)
	}
	if id := lastRunID(t, eng.Store(), practice); id != runsBefore {
		t.Errorf("a poll ran (run %d after %d): the changes did not come by subscription alone", id, runsBefore)
	}
	for _, s := range w.sim.Subscriptions(practice) {
		if s.Status != "active" {
			t.Errorf("subscription %s is %s", s.Topic, s.Status)
		}
	}
	// The freshness of what came in real time is measured, and well
	// within the scheduling objective.
	var f struct {
		Classes []struct {
			Class      string
			Count      int
			P99Seconds float64
			Compliant  bool
		}
	}
	w.getJSON(t, apiURL+"/v1/practices/"+practice+"/freshness", &f)
	found := false
	for _, c := range f.Classes {
		if c.Class == "scheduling" {
			found = true
			if c.Count == 0 || !c.Compliant {
				t.Errorf("scheduling freshness %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("no scheduling freshness: %+v", f)
	}
}

// storeMatches reports whether the engine's store holds exactly the
// simulator's current resources of a type, as the mapping makes them.
func (w *world) storeMatches(eng *engine.Engine, practice, rt string) bool {
	want := w.canonical(practice, rt)
	counts, err := eng.Store().CountResources(context.Background(), practice)
	if err != nil || counts[rt] != len(want) || len(want) == 0 {
		return false
	}
	for id, body := range want {
		r, err := eng.Store().GetResource(context.Background(), practice, rt, id)
		if err != nil || !bytes.Equal(r.Body, body) {
			return false
		}
	}
	return true
}

// getJSON reads an API answer with the world's app key.
func (w *world) getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
