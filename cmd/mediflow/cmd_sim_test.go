package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/testutil/syncbuf"
)

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
	out := &syncbuf.Buffer{}
	errb := &syncbuf.Buffer{}
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
		{"sim", "--hl7-fault", "nak"},
		{"sim", "--hl7-listen", "127.0.0.1:0", "--hl7-fault", "teapot"},
		{"sim", "--hl7-listen", "127.0.0.1:0", "--hl7-fault-rate", "2"},
		{"sim", "--hl7-listen", "127.0.0.1:0", "--hl7-fault-rate", "0"},
		{"sim", "--hl7-listen", "127.0.0.1:0", "--hl7-slow-ack", "0s"},
		{"sim", "--hl7-feed", "nohost"},
		{"sim", "--hl7-feed", "127.0.0.1:1", "--hl7-rate", "-1"},
		{"sim", "--hl7-feed", "127.0.0.1:1", "--hl7-count", "-1"},
		{"sim", "--hl7-feed", "127.0.0.1:1", "--hl7-tenant", "nobody"},
		{"sim", "--hl7-tenant", "sunrise"},
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
	for _, want := range []string{"listen", "seed", "tenants", "patients", "synthea", "change-rate", "client-jwks", "client-id", "fault",
		"hl7-feed", "hl7-tenant", "hl7-rate", "hl7-count", "hl7-listen", "hl7-fault", "hl7-fault-rate", "hl7-slow-ack"} {
		if !flags[want] {
			t.Errorf("--help does not list --%s:\n%s", want, out.String())
		}
	}
}

// waitFor polls out until re matches and returns the first submatch.
func waitFor(t *testing.T, out, errb *syncbuf.Buffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in stdout:\n%s\nstderr:\n%s", re, out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSimCommandHL7(t *testing.T) {
	// A plain MLLP receiver that ACKs what the sim's feed sends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []*hl7.Message
	srv := mllp.NewServer(mllp.ServerConfig{}, mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) ([]byte, error) {
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{Strict: true})
		if err != nil {
			t.Errorf("feed message: %v", err)
			return ack.BuildRaw(req.Message, ack.Options{Code: ack.AE}), nil
		}
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return ack.Build(m, ack.Options{}), nil
	}))
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srvDone := make(chan struct{})
	go func() { defer close(srvDone); _ = srv.Serve(srvCtx, ln) }()
	defer func() { stopSrv(); <-srvDone }()

	out, errb := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	env := &cliEnv{stdout: out, stderr: errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env, []string{"sim", "--listen", "127.0.0.1:0", "--patients", "5", "--change-rate", "0",
			"--tenants", "one:generic,two:epic", "--hl7-tenant", "one",
			"--hl7-feed", ln.Addr().String(), "--hl7-rate", "200", "--hl7-count", "20",
			"--hl7-listen", "127.0.0.1:0", "--hl7-fault", "nak"})
	}()
	rcvAddr := waitFor(t, out, errb, regexp.MustCompile(`HL7 receiver  (\S+)`))
	if !strings.HasPrefix(rcvAddr, "127.0.0.1:") {
		t.Errorf("receiver address %q", rcvAddr)
	}
	// The receiver answers AE (fault nak on every message).
	c := mllp.NewClient(mllp.ClientConfig{Addr: rcvAddr, AckTimeout: 5 * time.Second})
	a, err := c.Send(ctx, []byte("MSH|^~\\&|A|B|C|D|20260601120000||ADT^A08^ADT_A01|T1|P|2.5.1\rPID|1||1^^^B^MR\r"))
	c.Close()
	if err != nil {
		t.Fatalf("send to receiver: %v", err)
	}
	if res, err := ack.Parse(a); err != nil || res.Code != ack.AE || res.ControlID != "T1" {
		t.Errorf("receiver answered %+v, %v", res, err)
	}
	// The feed sends its 20 messages, all accepted.
	if sent := waitFor(t, out, errb, regexp.MustCompile(`HL7 feed finished: (\d+ sent, \d+ accepted)`)); sent != "20 sent, 20 accepted" {
		t.Errorf("feed: %s", sent)
	}
	mu.Lock()
	if len(got) != 20 {
		t.Errorf("receiver got %d messages", len(got))
	}
	for _, m := range got {
		if fac, _ := m.Get("MSH-4"); fac != "ONE" {
			t.Errorf("MSH-4 %q", fac)
		}
		if sys, _ := m.Get("PID-3-4-2"); sys != "urn:mediflow:sim:one:mrn" {
			t.Errorf("PID-3 authority %q", sys)
		}
	}
	mu.Unlock()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after cancel")
	}
	if !strings.Contains(out.String(), "HL7 receiver: 1 received, 0 AA, 1 AE") {
		t.Errorf("receiver summary missing:\n%s", out.String())
	}
}
