package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/delivery"
	"github.com/mediflow/mediflow/internal/smart"
)

// checkRealtime checks what every real-time run must show: each event of
// the measured period delivered to the webhook, the counts adding up, and
// latencies ordered and positive.
func checkRealtime(t *testing.T, res *RealtimeResult, wantEvents int) {
	t.Helper()
	if res.Events != wantEvents || res.Delivered != wantEvents || res.Lost != 0 || res.WarmupLost != 0 {
		t.Errorf("events %d (want %d), delivered %d, lost %d, warm-up lost %d", res.Events, wantEvents, res.Delivered, res.Lost, res.WarmupLost)
	}
	sum := 0
	for rt, n := range res.Types {
		if rt != "Appointment" && rt != "Patient" && rt != "Encounter" {
			t.Errorf("a delivered event of unsubscribed type %s", rt)
		}
		sum += n
	}
	if sum != res.Delivered {
		t.Errorf("per-type counts add up to %d, delivered says %d", sum, res.Delivered)
	}
	// With full-resource payloads every change is its own version and
	// webhook; with id-only, one read may cover two quick changes.
	if res.Payload == PayloadFullResource && res.Requests < res.Delivered || res.Requests < res.Delivered/2 {
		t.Errorf("%d webhook requests for %d delivered events (payload %s)", res.Requests, res.Delivered, res.Payload)
	}
	if res.P50 <= 0 || res.P50 > res.P95 || res.P95 > res.P99 || res.P99 > res.Max {
		t.Errorf("latencies out of order: p50 %s p95 %s p99 %s max %s", res.P50, res.P95, res.P99, res.Max)
	}
	if res.IngestP50 <= 0 || res.DispatchP50 <= 0 || res.IngestP50 > res.P99 {
		t.Errorf("latency parts: ingest p50 %s, dispatch p50 %s (total p99 %s)", res.IngestP50, res.DispatchP50, res.P99)
	}
	if res.Achieved < 0.3*res.Rate || res.Achieved > 1.5*res.Rate {
		t.Errorf("asked %.0f events/s, the changes' timestamps say %.1f/s", res.Rate, res.Achieved)
	}
	if res.OtherChanges <= 0 {
		t.Errorf("the generator made no change of other types alongside (%d)", res.OtherChanges)
	}
	if res.EngineCPU <= 0 {
		t.Errorf("engine CPU %.1f%%", res.EngineCPU)
	}
	var b strings.Builder
	res.Print(&b)
	for _, want := range []string{"p99", "lost 0", "events/s", "load average", "stored → webhook"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// A small run with the simulator in this process: every change of a
// subscribed type reaches the app's webhook, signed, and is timed.
func TestRealtimeSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunRealtime(ctx, RealtimeOptions{Setup: Setup{Resources: 2000, PageSize: 200, Dir: t.TempDir()},
		Rate: 40, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Drain: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkRealtime(t, res, 80)
	if res.WarmupEvents != 20 || res.SimProcess || res.Payload != PayloadFullResource {
		t.Errorf("warm-up events %d (want 20), sim process %v, payload %q", res.WarmupEvents, res.SimProcess, res.Payload)
	}
}

// The same with the simulator in a child process driven over its standard
// input, and id-only notifications (the engine reads each resource).
func TestRealtimeSimProcessIDOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunRealtime(ctx, RealtimeOptions{Setup: Setup{Resources: 2000, PageSize: 200, Dir: t.TempDir(), SimCommand: simCommand(t)},
		Rate: 40, Duration: 2 * time.Second, Payload: PayloadIDOnly, Drain: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkRealtime(t, res, 80)
	if !res.SimProcess || res.Payload != PayloadIDOnly || res.WarmupEvents != 0 {
		t.Errorf("sim process %v, payload %q, warm-up events %d", res.SimProcess, res.Payload, res.WarmupEvents)
	}
}

func TestRealtimeOptionsChecked(t *testing.T) {
	for name, o := range map[string]RealtimeOptions{
		"empty payload": {Payload: "empty"},
		"negative rate": {Rate: -1},
		"no event":      {Rate: 0.1, Duration: time.Second},
		"page size":     {Setup: Setup{PageSize: 5000}},
	} {
		if _, err := RunRealtime(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The simulator process answers one reply line per command line: the
// subscriptions, an error for an unknown command, and a change log that
// holds exactly the planned events of the planned types; it stops when
// its standard input ends.
func TestServeRealtimeCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	src, err := startSource(ctx, 1000, 3, jwks, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	defer src.stop()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- serveRealtimeCommands(ctx, src.sim, inR, json.NewEncoder(outW))
		outW.Close()
	}()
	replies := bufio.NewReader(outR)
	ask := func(cmd string) rtReply {
		t.Helper()
		if _, err := io.WriteString(inW, cmd+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := replies.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var rep rtReply
		if err := json.Unmarshal(line, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := ask(`{"op":"subscriptions"}`); rep.Error != "" || len(rep.Subscriptions) != 0 || rep.Log != nil {
		t.Errorf("subscriptions: %+v", rep)
	}
	if rep := ask(`{"op":"nope"}`); !strings.Contains(rep.Error, "unknown command") {
		t.Errorf("unknown command answered %+v", rep)
	}
	if rep := ask(`not json`); !strings.Contains(rep.Error, "bad command") {
		t.Errorf("bad line answered %+v", rep)
	}
	plan := changePlan{Rate: 100, Warmup: 100 * time.Millisecond, Duration: 200 * time.Millisecond, Types: []string{"Patient"}}
	b, _ := json.Marshal(rtCommand{Op: "changes", Plan: &plan})
	rep := ask(string(b))
	if rep.Error != "" || rep.Log == nil {
		t.Fatalf("changes: %+v", rep)
	}
	if len(rep.Log.Changes) != 30 {
		t.Errorf("%d events, want 30", len(rep.Log.Changes))
	}
	warm := 0
	seen := map[string]int{}
	for _, c := range rep.Log.Changes {
		if c.Type != "Patient" || c.Version < 1 || c.LastUpdatedNanos <= 0 {
			t.Errorf("event %+v", c)
		}
		if c.Warmup {
			warm++
		}
		if v, ok := seen[c.ID]; ok && c.Version <= v {
			t.Errorf("Patient %s: version %d after %d", c.ID, c.Version, v)
		}
		seen[c.ID] = c.Version
	}
	if warm != 10 {
		t.Errorf("%d warm-up events, want 10", warm)
	}
	if rep.Log.EndNanos-rep.Log.MeasureStartNanos != int64(plan.Duration) || rep.Log.Other <= 0 {
		t.Errorf("measured period %d ns, other changes %d", rep.Log.EndNanos-rep.Log.MeasureStartNanos, rep.Log.Other)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Errorf("after stdin ended: %v", err)
	}
}

// The receiver keeps only requests signed with the webhook's secret.
func TestReceiverVerifiesSignatures(t *testing.T) {
	rc, err := newReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	rc.setSecret([]byte("the-secret"))
	post := func(secret string, ev delivery.Event) int {
		t.Helper()
		body, _ := json.Marshal(ev)
		req, _ := http.NewRequest(http.MethodPost, rc.url, bytes.NewReader(body))
		req.Header.Set(delivery.SignatureHeader, delivery.Sign([]byte(secret), time.Now(), body))
		req.Header.Set(delivery.EventIDHeader, ev.ID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ev := delivery.Event{ID: "evt_1", Type: "Patient", ResourceID: "p1", Version: 2}
	if code := post("another-secret", ev); code != http.StatusUnauthorized {
		t.Errorf("wrong secret answered %d", code)
	}
	if code := post("the-secret", ev); code != http.StatusNoContent {
		t.Errorf("right secret answered %d", code)
	}
	if code := post("the-secret", ev); code != http.StatusNoContent {
		t.Errorf("repeat answered %d", code)
	}
	evs, requests, dups, bad := rc.snapshot(0)
	if len(evs) != 1 || requests != 2 || dups != 1 || bad != 1 {
		t.Fatalf("events %d, requests %d, duplicates %d, bad %d", len(evs), requests, dups, bad)
	}
	if e := evs[0]; e.typ != "Patient" || e.id != "p1" || e.version != 2 || e.at.IsZero() {
		t.Errorf("recorded %+v", e)
	}
}
