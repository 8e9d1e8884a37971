package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/smart"
)

// lockedBuffer is an io.Writer safe for a command goroutine and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSimCommandServesAndStops(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	key, err := smart.GenerateKey(smart.AlgES384)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwks, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	errb := &lockedBuffer{}
	env := &cliEnv{stdout: out, stderr: errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env, []string{"sim", "--listen", "127.0.0.1:0", "--patients", "5", "--change-rate", "0",
			"--tenants", "one:generic,two:epic", "--fault", "tenant=two,endpoint=metadata,kind=503",
			"--client-id", "tester", "--client-jwks", jwks})
	}()
	baseRE := regexp.MustCompile(`FHIR base  (\S+)`)
	var bases []string
	deadline := time.Now().Add(15 * time.Second)
	for len(bases) < 2 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no URLs printed; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
		bases = nil
		for _, m := range baseRE.FindAllStringSubmatch(out.String(), -1) {
			bases = append(bases, m[1])
		}
	}
	if !strings.HasSuffix(bases[0], "/one/fhir/r4") || !strings.HasSuffix(bases[1], "/two/api/FHIR/R4") {
		t.Errorf("bases %v", bases)
	}
	if !strings.Contains(out.String(), "token URL") || !strings.Contains(out.String(), `Registered client "tester"`) {
		t.Errorf("banner:\n%s", out.String())
	}
	// The registered client gets a token and reads data.
	c, err := smart.NewClient(smart.ClientConfig{ClientID: "tester", FHIRBaseURL: bases[0], Key: key, Scopes: []string{"system/Patient.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	req, _ := http.NewRequest("GET", bases[0]+"/Patient", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("Patient search: %v %v", err, res)
	} else {
		res.Body.Close()
	}
	res, err := http.Get(bases[0] + "/metadata")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("metadata one: %v %v", err, res)
	}
	res.Body.Close()
	res, err = http.Get(bases[1] + "/metadata")
	if err != nil || res.StatusCode != 503 {
		t.Fatalf("metadata two with a 503 fault: %v %v", err, res)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after cancel")
	}
}

func TestSimCommandValidation(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "--tenants", "Bad Name:generic"},
		{"sim", "--tenants", "a:cerner-ish"},
		{"sim", "--fault", "kind=teapot"},
		{"sim", "--fault", "tenant=nobody,kind=500"},
		{"sim", "--client-id", "x"},
		{"sim", "--anchor", "tomorrow"},
		{"sim", "--patients", "-1"},
		{"sim", "extra"},
	} {
		var out, errb bytes.Buffer
		env := &cliEnv{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		if code := run(context.Background(), env, args); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
	var out bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: io.Discard, getenv: func(string) string { return "" }}
	if code := run(context.Background(), env, []string{"sim", "--help"}); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	flags := map[string]bool{}
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && strings.HasPrefix(f[0], "-") {
			flags[strings.TrimLeft(f[0], "-")] = true
		}
	}
	for _, want := range []string{"listen", "seed", "tenants", "patients", "synthea", "change-rate", "client-jwks", "client-id", "fault"} {
		if !flags[want] {
			t.Errorf("--help does not list --%s:\n%s", want, out.String())
		}
	}
}
