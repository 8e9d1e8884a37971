package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
	"github.com/mediflow/mediflow/internal/store"
)

// chaosPractice is the practice of the write-back chaos test.
const chaosPractice = "chaos-clinic"

// intentIDSystem is the identifier system every record written for an
// intent carries, its value the intent id (docs/writeback.md).
const intentIDSystem = "urn:mediflow:intent"

// serveProc is one run of `mediflow serve` as a child process.
type serveProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Write-back chaos, end to end: 1,000 note intents are submitted through
// the API (each with its own Idempotency-Key, resent with the same key
// until answered) to `mediflow serve` running as a child process, while
// 20% of the writes at the simulated EHR fail (500, 503, 429, a dropped
// connection, or a write committed whose answer never comes) and the
// engine is SIGKILLed at random moments and restarted on the same store.
// Afterwards, with the faults off, every intent reaches a final state and
// the EHR holds exactly one record per intent: 1,000 records, 0
// duplicates, 0 lost.
//
// The engine's write-back lease is set to 10 s in this configuration
// (practices[].writeback.lease), so intents a killed engine held are taken
// up again quickly; the run takes about 90 s, and is skipped with -short.
func TestWritebackChaosKillAndRestartExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: skipped with -short")
	}
	const total = 1000
	const submitters = 8
	w := newWorld(t, practiceSpec{id: chaosPractice, patients: 300, classes: []string{"demographics"}, interval: 10 * time.Minute})
	grantWrites(t, w, chaosPractice)
	writeChaosConfig(t, w)
	bin := buildMediflow(t, w.dir)
	port := freePort(t)
	apiURL := "http://127.0.0.1:" + strconv.Itoa(port)
	hc := &http.Client{Timeout: 5 * time.Second}

	var logs logTail
	starts := 0
	start := func() *serveProc {
		t.Helper()
		starts++
		cmd := exec.Command(bin, "serve", "--config", w.cfgPath, "--listen", "127.0.0.1:"+strconv.Itoa(port))
		cmd.Dir = w.dir
		cmd.Stdout = &logs
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &serveProc{cmd: cmd, exited: make(chan struct{})}
		go func() {
			cmd.Wait()
			close(p.exited)
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			select {
			case <-p.exited:
				t.Fatalf("mediflow serve exited at start %d:\n%s", starts, logs.String())
			default:
			}
			if resp, err := hc.Get(apiURL + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("mediflow serve did not answer /healthz at start %d:\n%s", starts, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	kill := func(p *serveProc) {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mediflow serve output (tail):\n%s", logs.String())
		}
	})

	pids := slices.Sorted(func(yield func(string) bool) {
		for id := range w.sim.Current(chaosPractice, "Patient") {
			if !yield(id) {
				return
			}
		}
	})
	if len(pids) < 30 {
		t.Fatalf("the simulator has %d patients, want at least 30", len(pids))
	}
	docsBefore := len(w.sim.Current(chaosPractice, "DocumentReference"))

	// About 20% of all writes fail; the timeouts-after-commit hold the
	// answer past the connection's 1s timeout.
	rules := []fault.Fault{
		{Endpoint: fault.EndpointWrite, Kind: fault.TimeoutAfterCommit, Rate: 0.06, Latency: fault.Duration(3 * time.Second)},
		{Endpoint: fault.EndpointWrite, Kind: fault.ServerError, Rate: 0.04},
		{Endpoint: fault.EndpointWrite, Kind: fault.Unavailable, Rate: 0.04, RetryAfter: fault.Duration(time.Second)},
		{Endpoint: fault.EndpointWrite, Kind: fault.TooManyRequests, Rate: 0.03, RetryAfter: fault.Duration(time.Second)},
		{Endpoint: fault.EndpointWrite, Kind: fault.Drop, Rate: 0.04},
	}
	if err := w.sim.SetFaults(chaosPractice, rules); err != nil {
		t.Fatal(err)
	}

	var mu gosync.Mutex // guards proc
	proc := start()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		kill(proc)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	// Submitters: intent k goes to patient k%len(pids), its key is
	// chaos-k; a request without an answer (the engine is down, or died
	// mid-request) is sent again with the same key.
	var submitted, posts atomic.Int64
	idByKey := make([]string, total)
	errc := make(chan error, submitters)
	for s := range submitters {
		go func() {
			for k := s; k < total; k += submitters {
				key := fmt.Sprintf("chaos-%04d", k)
				body := chaosIntent(pids[k%len(pids)], k)
				for {
					posts.Add(1)
					id, status, err := postIntent(ctx, hc, apiURL, w.apiKey, key, body)
					if err == nil && (status == http.StatusAccepted || status == http.StatusOK) {
						idByKey[k] = id
						break
					}
					if err == nil && status < 500 {
						errc <- fmt.Errorf("intent %s: status %d", key, status)
						return
					}
					if ctx.Err() != nil {
						errc <- fmt.Errorf("intent %s: %w (last: status %d, %v)", key, ctx.Err(), status, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				submitted.Add(1)
				time.Sleep(60 * time.Millisecond) // spreads the submissions over ~8 s
			}
			errc <- nil
		}()
	}

	// The killer: every 1-3 s, 5-10 times, sometimes leaving the engine
	// down for a while; the same store each time.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	kills := 5 + rng.IntN(6)
	for range kills {
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		mu.Lock()
		kill(proc)
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		}
		proc = start()
		mu.Unlock()
	}
	for range submitters {
		if err := <-errc; err != nil {
			t.Fatalf("submitting: %v", err)
		}
	}
	if n := submitted.Load(); n != total {
		t.Fatalf("%d intents accepted, want %d", n, total)
	}
	// Faults stay on until about as many writes as intents went through
	// them (the first rule sees every write), at most a minute more.
	for until := time.Now().Add(time.Minute); time.Now().Before(until); time.Sleep(200 * time.Millisecond) {
		if fs := w.sim.Faults(chaosPractice); len(fs) > 0 && fs[0].Seen >= total {
			break
		}
	}
	faultStats := w.sim.Faults(chaosPractice)
	if err := w.sim.SetFaults(chaosPractice, nil); err != nil {
		t.Fatal(err)
	}
	var injected []string
	fired := 0
	for _, f := range faultStats {
		injected = append(injected, fmt.Sprintf("%s=%d/%d", f.Kind, f.Fired, f.Seen))
		fired += f.Fired
	}
	t.Logf("%d intents submitted in %d requests; %d kills; write faults fired (fired/seen) %v", total, posts.Load(), kills, injected)
	if fired == 0 {
		t.Fatal("no fault fired: the run proves nothing")
	}

	// Every intent final: the list endpoint, all pages.
	var intents []chaosIntentView
	waitStart := time.Now()
	for {
		intents = listChaosIntents(t, ctx, hc, apiURL, w.apiKey)
		open := 0
		for _, in := range intents {
			if store.IntentOpen(in.Status) {
				open++
			}
		}
		if open == 0 && len(intents) >= total {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d intents still open after %s", open, len(intents), time.Since(waitStart).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	t.Logf("every intent final %s after the faults were turned off", time.Since(waitStart).Round(time.Second))

	// The same key answers the same intent, with nothing new written.
	for k := range total {
		key := fmt.Sprintf("chaos-%04d", k)
		id, status, err := postIntent(ctx, hc, apiURL, w.apiKey, key, chaosIntent(pids[k%len(pids)], k))
		if err != nil || status != http.StatusOK || id != idByKey[k] {
			t.Errorf("intent %s submitted again: status %d id %q (%v), want 200 and %q", key, status, id, err, idByKey[k])
		}
	}

	mu.Lock()
	proc.cmd.Process.Signal(os.Interrupt)
	select {
	case <-proc.exited:
	case <-time.After(20 * time.Second):
		t.Error("mediflow serve did not stop on interrupt")
	}
	mu.Unlock()

	// The ground truth: the EHR's records carrying each intent's id.
	statuses := map[string]int{}
	byID := map[string]chaosIntentView{}
	for _, in := range intents {
		statuses[in.Status]++
		if _, dup := byID[in.ID]; dup {
			t.Errorf("intent %s listed twice", in.ID)
		}
		byID[in.ID] = in
	}
	keys := map[string]string{}
	for k, id := range idByKey {
		if prev, ok := keys[id]; ok {
			t.Errorf("keys %s and chaos-%04d were answered with the same intent %s", prev, k, id)
		}
		keys[id] = fmt.Sprintf("chaos-%04d", k)
		if _, ok := byID[id]; !ok {
			t.Errorf("intent %s (key chaos-%04d) is not listed", id, k)
		}
	}
	records, dups, lost, final := 0, 0, 0, 0
	for _, in := range intents {
		if !store.IntentOpen(in.Status) {
			final++
		}
		ids := w.sim.FindByIdentifier(chaosPractice, "DocumentReference", intentIDSystem, in.ID)
		records += len(ids)
		switch {
		case len(ids) == 0:
			lost++
		case len(ids) > 1:
			dups++
			t.Errorf("intent %s (status %s): %d records %v", in.ID, in.Status, len(ids), ids)
		case in.Record != "DocumentReference/"+ids[0]:
			t.Errorf("intent %s (status %s) names record %q, the EHR holds DocumentReference/%s", in.ID, in.Status, in.Record, ids[0])
		}
	}
	docsAfter := len(w.sim.Current(chaosPractice, "DocumentReference"))
	var st []string
	for s, n := range statuses {
		st = append(st, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(st)
	t.Logf("intents %d, records %d, duplicates %d, lost %d, final %d (%s); DocumentReferences at the EHR %d → %d",
		len(intents), records, dups, lost, final, strings.Join(st, ", "), docsBefore, docsAfter)
	if len(intents) != total || records != total || dups != 0 || lost != 0 || final != total {
		t.Errorf("want %d intents, %d records, 0 duplicates, 0 lost, %d final", total, total, total)
	}
	if docsAfter-docsBefore != total {
		t.Errorf("the EHR gained %d DocumentReferences, want %d", docsAfter-docsBefore, total)
	}
	if statuses[store.IntentConfirmed] != total {
		t.Errorf("statuses %v, want all %d confirmed", statuses, total)
	}
}

// grantWrites registers the practice's client again, allowed to create,
// read, update and search every type the simulator serves, as an EHR
// admin would for a write-back app.
func grantWrites(t *testing.T, w *world, practice string) {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(w.dir, "keys", practice+".key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := smart.DecodePrivateKeyPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	types := w.sim.ResourceTypes(practice)
	scopes := readScopes(types)
	for _, rt := range types {
		scopes = append(scopes, "system/"+rt+".crus")
	}
	if err := w.sim.RegisterClient(practice, authserver.Client{ID: "mediflow-" + practice, JWKS: jwks, Scopes: scopes}); err != nil {
		t.Fatal(err)
	}
}

// writeChaosConfig rewrites the world's configuration for the chaos run:
// write-back on, a 1s request timeout (so a held answer times out fast),
// and info logs.
func writeChaosConfig(t *testing.T, w *world) {
	t.Helper()
	cfg := w.configYAML()
	for _, r := range [][2]string{
		{"        timeout: 5s\n", "        timeout: 1s\n"},
		{"  level: debug\n", "  level: info\n"},
		{"apps:\n", "    writeback:\n      enabled: true\n      lease: 10s\napps:\n"},
	} {
		if strings.Count(cfg, r[0]) != 1 {
			t.Fatalf("configuration: %q occurs %d times, want once:\n%s", r[0], strings.Count(cfg, r[0]), cfg)
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	if err := os.WriteFile(w.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// chaosIntent is the body of intent k: a progress note about the patient.
func chaosIntent(patientID string, k int) []byte {
	return fmt.Appendf(nil, `{"kind":"note.create","resource":{"resourceType":"DocumentReference","status":"current",`+
		`"type":{"coding":[{"system":"http://loinc.org","code":"11506-3"}]},"subject":{"reference":"Patient/%s"},`+
		`"content":[{"attachment":{"contentType":"text/plain","data":%q}}]}}`, patientID,
		base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "Chaos note %d", k)))
}

// postIntent submits an intent; err is a request that got no answer.
func postIntent(ctx context.Context, hc *http.Client, apiURL, key, idemKey string, body []byte) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/v1/practices/"+chaosPractice+"/intents", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", idemKey)
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", resp.StatusCode, err
	}
	var v struct {
		ID             string `json:"id"`
		IdempotencyKey string `json:"idempotencyKey"`
	}
	if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &v); err != nil {
			return "", resp.StatusCode, fmt.Errorf("intent answer: %w", err)
		}
		if v.ID == "" || v.IdempotencyKey != idemKey {
			return "", resp.StatusCode, fmt.Errorf("intent answer names id %q key %q", v.ID, v.IdempotencyKey)
		}
	}
	return v.ID, resp.StatusCode, nil
}

// chaosIntentView is what the test reads of a listed intent.
type chaosIntentView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Record string `json:"record"`
	Key    string `json:"idempotencyKey"`
}

// listChaosIntents reads every intent of the app through the list endpoint.
func listChaosIntents(t *testing.T, ctx context.Context, hc *http.Client, apiURL, key string) []chaosIntentView {
	t.Helper()
	var out []chaosIntentView
	next := apiURL + "/v1/practices/" + chaosPractice + "/intents?limit=500"
	for next != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("listing intents: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("listing intents: status %d (%v)", resp.StatusCode, err)
		}
		var page struct {
			Intents []chaosIntentView `json:"intents"`
			Next    string            `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatalf("listing intents: %v", err)
		}
		out = append(out, page.Intents...)
		next = page.Next
	}
	return out
}
