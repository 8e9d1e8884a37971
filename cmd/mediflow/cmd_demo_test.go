package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/testutil/syncbuf"
)

// The README's promise: the demo starts everything and the API returns synced
// patients and appointments within 30 seconds.
func TestDemoServesSyncedPatientsAndAppointmentsWithin30s(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncbuf.Buffer
	env := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	started := time.Now()
	go func() {
		done <- run(ctx, env, []string{"demo", "--listen", "127.0.0.1:0", "--duration", "2m", "--summary-every", "2s", "--patients", "20"})
	}()

	apiRE := regexp.MustCompile(`status page\s+(http://127\.0\.0\.1:\d+)/`)
	keyRE := regexp.MustCompile(`API key\s+([0-9a-f]{48})`)
	var apiURL, key string
	deadline := started.Add(30 * time.Second)
	for apiURL == "" || key == "" {
		if time.Now().After(deadline) {
			t.Fatalf("demo printed no API URL and key within 30 s\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("demo exited early with %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		out := stdout.String()
		if m := apiRE.FindStringSubmatch(out); m != nil {
			apiURL = m[1]
		}
		if m := keyRE.FindStringSubmatch(out); m != nil {
			key = m[1]
		}
	}

	total := func(path string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
		var b struct {
			Total int `json:"total"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			return 0, err
		}
		return b.Total, nil
	}
	want := []string{
		"/fhir/valley-family/Patient?_count=1",
		"/fhir/valley-family/Appointment?_count=1",
		"/fhir/lakeside-clinic/Patient?_count=1",
		"/fhir/lakeside-clinic/Appointment?_count=1",
	}
	for _, path := range want {
		for {
			n, err := total(path)
			if err == nil && n > 0 {
				t.Logf("%s: %d after %s", path, n, time.Since(started).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no data within 30 s of starting the demo (total %d, err %v)\nstdout:\n%s", path, n, err, stdout.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The wrong key sees nothing.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+want[0], nil)
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("0", 48))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: HTTP %d, want 401", resp.StatusCode)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exit code %d after Ctrl-C\nstderr:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop within 20 s of cancellation")
	}
	if !strings.Contains(stdout.String(), "succeeded") {
		t.Errorf("live summary never showed a succeeded sync:\n%s", stdout.String())
	}
}
