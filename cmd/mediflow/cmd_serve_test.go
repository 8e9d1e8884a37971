package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/smart"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// A user's path: make a key, register it with the EHR, write a config, and
// sync once with `mediflow serve --once`.
func TestServeOnceSyncsFromAConfigFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "north", Flavor: "generic", Seed: 3, Data: &gen.Options{Patients: 8}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	env, stdout, stderr := testEnv()
	if code := run(ctx, env, []string{"keys", "new", "--out", dir, "--name", "north", "--alg", "ES384"}); code != 0 {
		t.Fatalf("keys new: exit %d: %s", code, stderr)
	}
	key, err := smart.LoadPrivateKey(filepath.Join(dir, "north.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterClient("north", authserver.Client{ID: "mf-north", JWKS: jwks, Scopes: []string{"system/*.rs"}}); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`store:
  path: mediflow.db
practices:
  - id: north
    name: North Clinic
    connections:
      - name: ehr
        vendor: generic
        base_url: %s
        auth:
          type: smart-backend
          client_id: mf-north
          private_key: {file: north.key.pem}
          algorithm: ES384
        sync:
          - class: demographics
            interval: 1m
          - class: scheduling
            interval: 1m
apps:
  - name: app
    key: {env: NORTH_APP_KEY}
    practices: [north]
`, s.BaseURL("north"))
	cfgPath := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env.getenv = func(k string) string {
		if k == "NORTH_APP_KEY" {
			return strings.Repeat("a1", 20)
		}
		return ""
	}
	stdout.Reset()
	if code := run(ctx, env, []string{"serve", "--config", cfgPath, "--once"}); code != 0 {
		t.Fatalf("serve --once: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := s.Counts("north")["Patient"] + s.Counts("north")["Schedule"] + s.Counts("north")["Slot"] + s.Counts("north")["Appointment"]
	m := regexp.MustCompile(`north\s+(\d+)\s`).FindStringSubmatch(stdout.String())
	if m == nil || m[1] != fmt.Sprint(want) {
		t.Fatalf("summary should show %d resources for north:\n%s", want, stdout)
	}
	if !strings.Contains(stdout.String(), "succeeded") {
		t.Fatalf("summary shows no succeeded run:\n%s", stdout)
	}
}

func TestServeRejectsABadConfigWithItsLine(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(cfgPath, []byte("store:\n  pathh: x.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _, stderr := testEnv()
	if code := run(context.Background(), env, []string{"serve", "--config", cfgPath, "--once"}); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "bad.yaml:2:") || !strings.Contains(stderr.String(), "pathh") {
		t.Fatalf("error should name bad.yaml:2 and the unknown key:\n%s", stderr)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	var check func(path []string, cmds []*command)
	check = func(path []string, cmds []*command) {
		for _, c := range cmds {
			p := append(append([]string(nil), path...), c.name)
			name := strings.Join(p, " ")
			env, stdout, stderr := testEnv()
			if code := run(context.Background(), env, append(p, "--help")); code != 0 {
				t.Errorf("%s --help: exit %d: %s", name, code, stderr)
			}
			if !strings.Contains(stdout.String(), "Usage: mediflow "+name) || strings.Contains(c.summary, "not built") {
				t.Errorf("%s --help prints no usage or the command is a placeholder:\n%s", name, stdout)
			}
			if c.subs != nil {
				if len(c.subs) == 0 {
					t.Errorf("%s is a command group without subcommands", name)
				}
				check(p, c.subs)
			}
		}
	}
	check(nil, commands())
	env, stdout, _ := testEnv()
	if code := run(context.Background(), env, []string{"--help"}); code != 0 || !strings.Contains(stdout.String(), "serve") {
		t.Errorf("mediflow --help: exit %d\n%s", code, stdout)
	}
	env, _, stderr := testEnv()
	if code := run(context.Background(), env, []string{"frobnicate"}); code != 2 || !strings.Contains(stderr.String(), "unknown command") {
		t.Errorf("unknown command: exit %d\n%s", code, stderr)
	}
}

func testEnv() (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	return &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}, &stdout, &stderr
}
