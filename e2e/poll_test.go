package e2e

import (
	"context"
	"net"
	"testing"
	"time"
)

// A practice polled every two seconds: a change made at the EHR is readable
// through the API, and announced to the app's webhook, within the interval
// plus processing — without anyone asking for a sync.
func TestPolledChangesReachTheAppWithinTheInterval(t *testing.T) {
	const practice = "hillside"
	w := newWorld(t, practiceSpec{id: practice, seed: 31, classes: []string{"demographics", "scheduling"}, interval: 2 * time.Second})
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
	waitFor(t, 30*time.Second, "the first load", func() bool {
		return w.storeMatches(eng, practice, "Appointment") && w.storeMatches(eng, practice, "Patient")
	})
	hook := newReceiver(t)
	hook.register("http://"+ln.Addr().String(), w.apiKey, practice, "Appointment", "Patient")

	changed := map[[2]string]bool{}
	chs, err := w.sim.Tick(practice, 25)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chs {
		if c.ResourceType == "Appointment" || c.ResourceType == "Patient" {
			changed[[2]string{c.ResourceType, c.ID}] = true
		}
	}
	if len(changed) == 0 {
		t.Fatal("nothing to watch: no appointment or patient changed")
	}
	start := time.Now()
	// Two intervals, jitter and processing: well under 15 s.
	waitFor(t, 15*time.Second, "the changes in the store and at the webhook", func() bool {
		if !w.storeMatches(eng, practice, "Appointment") || !w.storeMatches(eng, practice, "Patient") {
			return false
		}
		for k := range changed {
			r, err := eng.Store().GetResource(w.ctx, practice, k[0], k[1])
			if err != nil || !hook.has(k[0], k[1], r.Version) {
				return false
			}
		}
		return true
	})
	t.Logf("%d changed records readable and delivered %s after the change", len(changed), time.Since(start).Round(100*time.Millisecond))
	if n := hook.badSignatures(); n != 0 {
		t.Errorf("%d webhook requests failed signature verification", n)
	}
}
