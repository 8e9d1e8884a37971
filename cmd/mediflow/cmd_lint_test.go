package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// lintRun runs `mediflow ARGS...` in-process and returns the exit code and
// what it wrote to stdout and stderr.
func lintRun(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	code := run(context.Background(), &cliEnv{stdout: &out, stderr: &errOut, getenv: getenv}, args)
	return code, out.String(), errOut.String()
}

// lintRepoFile returns the path of a file relative to the repository root.
func lintRepoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(repo.RootT(t), rel)
}

func TestLintBadExample(t *testing.T) {
	bad := lintRepoFile(t, "examples/bad.yaml")
	code, out, stderr := lintRun(t, nil, "lint", "--no-secrets", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "1 of 1 file failed") {
		t.Errorf("stderr = %q", stderr)
	}
	// Every finding, in order: position, severity, message and hint.
	wants := []struct {
		pos, sev, msg, hint string
	}{
		{"3:1", "warning", "`store.secret_key` is not set: apps cannot register webhooks", "openssl rand -hex 32"},
		{"4:11", "warning", "listen on `0.0.0.0`, which is not a loopback address", "keep 127.0.0.1"},
		{"6:10", "error", "unknown level `verbose`", "use `debug`, `info`, `warn` or `error`"},
		{"8:9", "error", "invalid practice id `Sunrise Family`", "lowercase letters, digits and `-`"},
		{"12:17", "error", "unknown vendor `epc`; did you mean `epic`?", "use `athenahealth`, `epic`, `generic` or `oracle-health`"},
		{"13:19", "error", "`base_url` is not an absolute URL", "absolute http or https URL"},
		{"14:9", "error", "unknown key `pagesize` in connection; did you mean `page_size`?", "rename `pagesize` to `page_size`"},
		{"15:18", "error", "`timeout` needs a unit: 30 is not a duration", "`timeout: 30s`"},
		{"17:11", "error", "missing required key `client_id` in auth", "add `client_id:` to this auth"},
		{"18:24", "error", "`private_key` must be a secret reference", "`private_key: {file: PATH}`"},
		{"19:22", "error", "unknown algorithm `RS256`", "use `RS384` or `ES384`"},
		{"22:23", "error", "interval 24h for class `scheduling` is longer than its maximum 15m", "set `interval: 15m` or less"},
		{"24:19", "error", "class `clinical` may not sync nightly without a waiver: it is operational data, and stale insurance, schedule, clinical or billing data leads to wrong decisions all day", "add `waiver: {reason: \"...\"}`"},
		{"25:20", "error", "unknown class `biling`; did you mean `billing`?", "use `billing`, `clinical`, `demographics`"},
		{"32:22", "warning", "connection `fhir` sends unauthenticated requests to ehr.lakeside.example.net", "smart-backend"},
		{"35:15", "error", "duplicate connection name `fhir` (first at line 29)", "unique within practice `lakeside`"},
		{"38:22", "warning", "sends unauthenticated requests to ehr2.lakeside.example.net", "smart-backend"},
		{"43:18", "warning", "`key` is written inline in the configuration file", "{env: VARIABLE}"},
		{"44:27", "error", "app `scheduler-ai` names unknown practice `lakesid`; did you mean `lakeside`?", "configured practices: `lakeside`"},
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(wants) {
		t.Errorf("got %d lines, want %d:\n%s", len(lines), len(wants), out)
	}
	for i, w := range wants {
		if i >= len(lines) {
			break
		}
		prefix := fmt.Sprintf("%s:%s: %s: ", bad, w.pos, w.sev)
		l := lines[i]
		msg, hint, ok := strings.Cut(strings.TrimPrefix(l, prefix), " (hint: ")
		if !strings.HasPrefix(l, prefix) || !ok || !strings.Contains(msg, w.msg) || !strings.Contains(hint, w.hint) {
			t.Errorf("line %d = %q\nwant prefix %q, message with %q, hint with %q", i+1, l, prefix, w.msg, w.hint)
		}
	}
}

func lintWritePEM(t *testing.T, path string, key any) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLintExample(t *testing.T) {
	example := lintRepoFile(t, "examples/mediflow.yaml")

	// Without its secrets: ok with --no-secrets (warnings), failing without it.
	code, out, _ := lintRun(t, nil, "lint", "--no-secrets", example)
	if code != 0 || !strings.HasSuffix(out, example+": ok (5 warnings)\n") || strings.Count(out, ": warning: ") != 5 {
		t.Errorf("--no-secrets: exit %d\n%s", code, out)
	}
	code, out, _ = lintRun(t, nil, "lint", example)
	if code != 1 || strings.Count(out, ": error: ") != 5 || strings.Contains(out, ": ok") {
		t.Errorf("without secrets: exit %d\n%s", code, out)
	}
	code, _, _ = lintRun(t, nil, "lint", "--no-secrets", "--strict", example)
	if code != 1 {
		t.Errorf("--strict with warnings: exit %d, want 1", code)
	}

	// With every secret present it is clean.
	dir := t.TempDir()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	lintWritePEM(t, filepath.Join(dir, "keys", "sunrise.key.pem"), rsaKey)
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lintWritePEM(t, filepath.Join(dir, "ec.pem"), ecKey)
	ecPEM, err := os.ReadFile(filepath.Join(dir, "ec.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "analytics.apikey"), []byte(strings.Repeat("a", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"LAKESIDE_PRIVATE_KEY": string(ecPEM), "SCHEDULER_AI_KEY": strings.Repeat("s", 40),
		"MEDIFLOW_SECRET_KEY": strings.Repeat("5e", 32)}
	code, out, stderr := lintRun(t, func(k string) string { return vars[k] }, "lint", "--strict", file)
	if code != 0 || out != file+": ok\n" || stderr != "" {
		t.Errorf("with secrets: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
}

func TestLintJSON(t *testing.T) {
	example := lintRepoFile(t, "examples/mediflow.yaml")
	bad := lintRepoFile(t, "examples/bad.yaml")
	code, out, _ := lintRun(t, nil, "lint", "--no-secrets", "--format", "json", example, bad)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var results []struct {
		File        string `json:"file"`
		OK          bool   `json:"ok"`
		Diagnostics []struct {
			File     string `json:"file"`
			Line     int    `json:"line"`
			Col      int    `json:"col"`
			Severity string `json:"severity"`
			Message  string `json:"message"`
			Hint     string `json:"hint"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(results) != 2 || results[0].File != example || !results[0].OK || results[1].File != bad || results[1].OK {
		t.Fatalf("results = %+v", results)
	}
	// The example's five secrets are not checked: a warning each.
	if len(results[0].Diagnostics) != 5 {
		t.Errorf("example: %d diagnostics, want 5 warnings", len(results[0].Diagnostics))
	}
	first := results[1].Diagnostics[1] // [0] is the missing store.secret_key
	if first.File != bad || first.Line != 4 || first.Col != 11 || first.Severity != "warning" || first.Hint == "" {
		t.Errorf("first diagnostic of bad.yaml = %+v", first)
	}
	errs := 0
	for _, d := range results[1].Diagnostics {
		if d.Severity == "error" {
			errs++
		}
	}
	if errs != 14 {
		t.Errorf("bad.yaml: %d errors, want 14", errs)
	}
}

func TestLintUsage(t *testing.T) {
	if code, _, stderr := lintRun(t, nil, "lint"); code != 2 || !strings.Contains(stderr, "at least one FILE") {
		t.Errorf("no args: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := lintRun(t, nil, "lint", "--format", "xml", "x.yaml"); code != 2 || !strings.Contains(stderr, "--format") {
		t.Errorf("bad format: exit %d, stderr %q", code, stderr)
	}
	code, out, _ := lintRun(t, nil, "lint", "--help")
	if code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, s := range []string{"Usage: mediflow lint [flags] FILE...", "-no-secrets", "-format", "-strict", "Exit status"} {
		if !strings.Contains(out, s) {
			t.Errorf("--help lacks %q:\n%s", s, out)
		}
	}
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	code, out, _ = lintRun(t, nil, "lint", missing)
	if code != 1 || out != missing+": error: cannot read the file: no such file or directory (hint: check the path and the file's permissions)\n" {
		t.Errorf("missing file: exit %d, out %q", code, out)
	}
}
