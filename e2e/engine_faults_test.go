package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/store"
)

// onTypes repeats a fault rule for each resource type (each rule keeps its
// own counters, so every-Nth rules fire within every type's paging).
func onTypes(f fault.Fault, types ...string) []fault.Fault {
	out := make([]fault.Fault, 0, len(types))
	for _, rt := range types {
		f.Endpoint = rt
		out = append(out, f)
	}
	return out
}

// faultPageSize keeps pages small in the fault tests so that most types
// span several pages and every-Nth rules fire in the middle of paging.
const faultPageSize = 10

// pagedTypes span at least two pages of a fault-test practice (checked by
// the test), and deepTypes at least three, so a rule on the 2nd next page fires.
var (
	pagedTypes = []string{"Patient", "Appointment", "Slot", "Encounter", "Condition", "Observation", "DocumentReference", "MedicationRequest", "Coverage"}
	deepTypes  = []string{"Observation", "Slot", "Encounter"}
)

// The EHR misbehaves in every way the simulator can inject, one way per
// subtest. Each time the engine retries, re-authenticates or restarts as
// needed and ends with exactly the source's data and honest run statistics.
func TestSyncSurvivesEveryInjectedFault(t *testing.T) {
	cases := []struct {
		name   string
		faults []fault.Fault
		// refetch: the fault makes the engine fetch some resources twice
		// (a restarted search); they must count as unchanged, never new.
		refetch bool
		check   func(t *testing.T, w *world, rl *requestLog)
	}{
		{
			name:   "latency",
			faults: onTypes(fault.Fault{Kind: fault.Latency, Latency: fault.Duration(20 * time.Millisecond), Every: 2}, pagedTypes...),
			check: func(t *testing.T, w *world, rl *requestLog) {
				slow := 0
				for _, c := range rl.all() {
					if c.done.Sub(c.sent) >= 20*time.Millisecond {
						slow++
					}
				}
				if slow < len(pagedTypes) {
					t.Errorf("only %d requests took 20 ms or more; %d were delayed", slow, len(pagedTypes))
				}
			},
		},
		{
			name:   "429 with Retry-After",
			faults: onTypes(fault.Fault{Kind: fault.TooManyRequests, Every: 2, Limit: 1, RetryAfter: fault.Duration(time.Second)}, "Observation", "Slot"),
			check:  wantRetryAfterHonoured(http.StatusTooManyRequests, time.Second),
		},
		{
			name:   "500",
			faults: onTypes(fault.Fault{Kind: fault.ServerError, Every: 2, Limit: 2}, pagedTypes...),
			check:  wantRetried(http.StatusInternalServerError),
		},
		{
			name:   "503 with Retry-After",
			faults: onTypes(fault.Fault{Kind: fault.Unavailable, Every: 2, Limit: 1, RetryAfter: fault.Duration(time.Second)}, "Encounter", "Appointment"),
			check:  wantRetryAfterHonoured(http.StatusServiceUnavailable, time.Second),
		},
		{
			name: "dropped connections",
			// Three drops in a row on two types get past the HTTP transport's
			// own single retry, so the engine's retries are exercised too.
			faults: append(onTypes(fault.Fault{Kind: fault.Drop, Limit: 3}, "Observation", "Slot"),
				onTypes(fault.Fault{Kind: fault.Drop, Every: 2, Limit: 2}, pagedTypes...)...),
			check: func(t *testing.T, w *world, rl *requestLog) {
				if n := rl.countStatus(0); n == 0 {
					t.Error("no request saw its connection dropped")
				}
			},
		},
		{
			name:   "token expiry mid-paging",
			faults: onTypes(fault.Fault{Kind: fault.TokenExpiry, Every: 2, Limit: 2}, deepTypes...),
			check: func(t *testing.T, w *world, rl *requestLog) {
				// One token at the start, then a new one after each expiry.
				if n := rl.count(w.sim.TokenURL(w.practices[0].id)); n < 2 {
					t.Errorf("token endpoint called %d times; tokens expired mid-paging, so the engine must have fetched new ones", n)
				}
				if n := rl.countStatus(http.StatusUnauthorized); n == 0 {
					t.Error("no request was refused with 401: the expiry did not reach the engine")
				}
			},
		},
		{
			name:   "malformed JSON in a page",
			faults: onTypes(fault.Fault{Kind: fault.Malformed, Every: 2, Limit: 2}, pagedTypes...),
		},
		{
			name:    "search session expiry mid-paging",
			faults:  onTypes(fault.Fault{Kind: fault.PageExpiry, Every: 2, Limit: 1}, "Observation", "Slot"),
			refetch: true,
		},
		{
			name:   "token endpoint unavailable once",
			faults: []fault.Fault{{Endpoint: fault.EndpointToken, Kind: fault.Unavailable, Limit: 1, RetryAfter: fault.Duration(time.Second)}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const practice = "faulty"
			w := newWorld(t, practiceSpec{id: practice, seed: 21, pageSize: faultPageSize})
			for _, rt := range pagedTypes {
				if n := len(w.sim.Current(practice, rt)); n <= faultPageSize || slices.Contains(deepTypes, rt) && n <= 2*faultPageSize {
					t.Fatalf("%s has only %d resources: too few pages for the fault rules", rt, n)
				}
			}
			if err := w.sim.SetFaults(practice, tc.faults); err != nil {
				t.Fatal(err)
			}
			rl := newRequestLog()
			eng := w.newEngine(engineOptions{transport: rl})
			ctx := withTimeout(t, 45*time.Second)

			out := w.syncAll(ctx, eng)
			w.requireSucceeded(out)
			if tc.refetch {
				wantRefetchedStats(t, w, out)
			} else {
				w.wantFirstSync(out)
			}
			w.requireIdentical(eng.Store())

			for _, st := range w.sim.Faults(practice) {
				if st.Fired == 0 {
					t.Errorf("fault %s on %s never fired (%d requests seen): the subtest proved nothing", st.Kind, st.Endpoint, st.Seen)
				}
			}
			if tc.check != nil {
				tc.check(t, w, rl)
			}
		})
	}
}

// wantRefetchedStats checks a first sync in which some pages were fetched
// twice: every resource is new exactly once and the repeats are unchanged.
func wantRefetchedStats(t *testing.T, w *world, out syncOutcome) {
	t.Helper()
	refetched := 0
	for _, sp := range w.practices {
		for _, rt := range sp.syncedTypes(w.sim) {
			n := len(w.sim.Current(sp.id, rt))
			ts := out.stats[sp.id][rt]
			if ts == nil || ts.New != n || ts.Changed != 0 || ts.Failed != 0 || ts.Fetched != ts.New+ts.Unchanged {
				t.Errorf("%s %s: stats %+v, want %d new, none changed or failed, fetched = new + unchanged", sp.id, rt, ts, n)
				continue
			}
			refetched += ts.Unchanged
		}
	}
	if refetched == 0 {
		t.Error("no resource was fetched twice although searches were restarted")
	}
}

// wantRetried checks that every answer with the status was followed by a
// successful request for the same URL.
func wantRetried(status int) func(t *testing.T, w *world, rl *requestLog) {
	return func(t *testing.T, w *world, rl *requestLog) {
		t.Helper()
		calls := rl.all()
		failed := 0
		for i, c := range calls {
			if c.status != status {
				continue
			}
			failed++
			if !retriedOK(calls[i+1:], c.url) {
				t.Errorf("request answered %d was never retried successfully", status)
			}
		}
		if failed == 0 {
			t.Errorf("no request was answered %d", status)
		}
	}
}

// wantRetryAfterHonoured checks that after each answer with the status the
// same URL was asked again no sooner than the Retry-After the server sent.
func wantRetryAfterHonoured(status int, retryAfter time.Duration) func(t *testing.T, w *world, rl *requestLog) {
	return func(t *testing.T, w *world, rl *requestLog) {
		t.Helper()
		calls := rl.all()
		seen := 0
		for i, c := range calls {
			if c.status != status {
				continue
			}
			seen++
			if c.retryAfter != "1" {
				t.Errorf("answer %d carried Retry-After %q, want 1", status, c.retryAfter)
			}
			for _, later := range calls[i+1:] {
				if later.url != c.url {
					continue
				}
				if gap := later.sent.Sub(c.done); gap < retryAfter-50*time.Millisecond {
					t.Errorf("retried %v after a %d with Retry-After %v", gap, status, retryAfter)
				}
				break
			}
			if !retriedOK(calls[i+1:], c.url) {
				t.Errorf("request answered %d was never retried successfully", status)
			}
		}
		if seen == 0 {
			t.Errorf("no request was answered %d", status)
		}
	}
}

func retriedOK(later []call, u string) bool {
	for _, c := range later {
		if c.url == u && c.status == http.StatusOK {
			return true
		}
	}
	return false
}

// A fault that does not go away (every Observation request fails) makes the
// run partial with the reason recorded, while every other type syncs; once
// the EHR recovers, the next sync completes and the copy is exact.
func TestPersistentFaultIsRecordedThenRecoveredFrom(t *testing.T) {
	const practice = "broken"
	w := newWorld(t, practiceSpec{id: practice, seed: 31})
	if err := w.sim.SetFaults(practice, []fault.Fault{{Endpoint: "Observation", Kind: fault.ServerError}}); err != nil {
		t.Fatal(err)
	}
	eng := w.newEngine(engineOptions{})
	ctx := withTimeout(t, 45*time.Second)

	out := w.syncAll(ctx, eng)
	if out.err != nil {
		t.Fatalf("a partial sync must not fail as a whole: %v", out.err)
	}
	sp := w.practices[0]
	for _, r := range out.runs[practice] {
		_, hasObs := r.Stats["Observation"]
		switch {
		case hasObs && r.Status != store.RunPartial:
			t.Errorf("run %d (with Observation): status %q, want partial", r.ID, r.Status)
		case hasObs && !strings.Contains(r.Error, "Observation") || hasObs && !strings.Contains(r.Error, "500"):
			t.Errorf("run %d: error %q does not say Observation failed with HTTP 500", r.ID, r.Error)
		case !hasObs && r.Status != store.RunSucceeded:
			t.Errorf("run %d (without Observation): status %q error %q, want succeeded", r.ID, r.Status, r.Error)
		}
	}
	obs := out.stats[practice]["Observation"]
	if obs == nil || len(obs.Failures) == 0 || obs.New != 0 {
		t.Fatalf("Observation stats %+v: want no resources and the failure reason recorded", obs)
	}
	counts, err := eng.Store().CountResources(ctx, practice)
	if err != nil {
		t.Fatal(err)
	}
	if counts["Observation"] != 0 {
		t.Errorf("store holds %d Observations although none could be fetched", counts["Observation"])
	}
	var others []string
	for _, rt := range sp.syncedTypes(w.sim) {
		if rt != "Observation" {
			others = append(others, rt)
		}
	}
	// Every other type is complete, the rest of the clinical class included.
	w.requireTypesIdentical(eng.Store(), practice, others)
	if st := eng.Status(ctx); len(st.Practices) != 1 || st.Practices[0].LastRun == nil {
		t.Errorf("status page shows no runs: %+v", st)
	}

	// The EHR recovers.
	if err := w.sim.SetFaults(practice, nil); err != nil {
		t.Fatal(err)
	}
	again := w.syncAll(ctx, eng)
	w.requireSucceeded(again)
	if got, want := again.stats[practice]["Observation"].New, len(w.sim.Current(practice, "Observation")); got != want {
		t.Errorf("after recovery: %d new Observations, want %d", got, want)
	}
	w.requireIdentical(eng.Store())
}

// call is one outbound request the requestLog saw.
type call struct {
	url        string
	sent, done time.Time
	status     int // 0: no response (transport error)
	retryAfter string
}

func (l *requestLog) all() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}

// count is how many requests went to a URL (query ignored).
func (l *requestLog) count(rawURL string) int {
	n := 0
	for _, c := range l.all() {
		if u, err := url.Parse(c.url); err == nil {
			u.RawQuery = ""
			if u.String() == rawURL {
				n++
			}
		}
	}
	return n
}

func (l *requestLog) countStatus(status int) int {
	n := 0
	for _, c := range l.all() {
		if c.status == status {
			n++
		}
	}
	return n
}
