package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/smart"
)

func runKeys(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(context.Background(), env, append([]string{"keys"}, args...))
	return code, out.String(), errb.String()
}

type jwksDoc struct {
	Keys []map[string]any `json:"keys"`
}

func TestKeysNewAndJWKS(t *testing.T) {
	for _, alg := range []string{"RS384", "ES384"} {
		t.Run(alg, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys") // does not exist yet
			// Flags after the subcommand word.
			code, out, errOut := runKeys(t, "new", "--alg", alg, "--out", dir, "--name", "sunrise")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			keyPath := filepath.Join(dir, "sunrise.key.pem")
			jwksPath := filepath.Join(dir, "sunrise.jwks.json")
			st, err := os.Stat(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
			}
			key, err := smart.LoadPrivateKey(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := smart.AlgorithmFor(key); got != alg {
				t.Errorf("key algorithm %s", got)
			}
			kid, _ := smart.KeyID(key)
			raw, err := os.ReadFile(jwksPath)
			if err != nil {
				t.Fatal(err)
			}
			var doc jwksDoc
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Keys) != 1 || doc.Keys[0]["kid"] != kid || doc.Keys[0]["alg"] != alg || doc.Keys[0]["use"] != "sig" {
				t.Fatalf("JWKS %s", raw)
			}
			if _, private := doc.Keys[0]["d"]; private {
				t.Fatal("the public JWKS contains the private key")
			}
			for _, want := range []string{kid, keyPath, jwksPath, "client_id", "private_key: {file: " + keyPath + "}", "algorithm: " + alg} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}

			// keys jwks prints the same public JWKS.
			code, out, errOut = runKeys(t, "jwks", keyPath)
			if code != 0 {
				t.Fatalf("jwks exit %d: %s", code, errOut)
			}
			if out != string(raw) {
				t.Errorf("keys jwks output differs from the written JWKS:\n%s\nvs\n%s", out, raw)
			}

			// Existing files are not overwritten without --force.
			code, _, errOut = runKeys(t, "new", "--out", dir, "--name", "sunrise")
			if code != 1 || !strings.Contains(errOut, "already exists") {
				t.Errorf("overwrite: exit %d %s", code, errOut)
			}
			if again, _ := smart.LoadPrivateKey(keyPath); again == nil || !sameKid(again, kid) {
				t.Error("the private key was replaced")
			}
			// Flags before the subcommand word, and --force.
			code, _, errOut = runKeys(t, "--alg", "ES384", "--out", dir, "--name", "sunrise", "--force", "new")
			if code != 0 {
				t.Fatalf("--force: exit %d %s", code, errOut)
			}
			replaced, _ := smart.LoadPrivateKey(keyPath)
			if got, _ := smart.AlgorithmFor(replaced); got != "ES384" {
				t.Errorf("--force did not write a new ES384 key (got %s)", got)
			}
			if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
				t.Errorf("mode after --force %v", st.Mode().Perm())
			}
		})
	}
}

func sameKid(k any, kid string) bool {
	got, err := smart.KeyID(k)
	return err == nil && got == kid
}

func TestKeysJWKSSeveralKeys(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"old", "new"} {
		if code, _, errOut := runKeys(t, "new", "--alg", "ES384", "--out", dir, "--name", n); code != 0 {
			t.Fatal(errOut)
		}
	}
	code, out, errOut := runKeys(t, "jwks", filepath.Join(dir, "old.key.pem"), filepath.Join(dir, "new.key.pem"))
	if code != 0 {
		t.Fatal(errOut)
	}
	var doc jwksDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Keys) != 2 || doc.Keys[0]["kid"] == doc.Keys[1]["kid"] {
		t.Fatalf("JWKS of two keys: %v %s", err, out)
	}
}

func TestKeysErrorsAndHelp(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{}, 2, "keys new"},
		{[]string{"rotate"}, 2, "unknown keys subcommand"},
		{[]string{"new", "--alg", "RS256", "--out", dir}, 2, "RS384 or ES384"},
		{[]string{"new", "--name", "../x", "--out", dir}, 2, "plain file name"},
		{[]string{"new", "--out", dir, "extra"}, 2, "no arguments"},
		{[]string{"new", "--bogus"}, 2, "bogus"},
		{[]string{"jwks"}, 2, "at least one"},
		{[]string{"jwks", filepath.Join(dir, "missing.pem")}, 1, "missing.pem"},
		{[]string{"--help"}, 0, "Subcommands:"},
		{[]string{"new", "--help"}, 0, "--alg"},
		{[]string{"jwks", "--help"}, 0, "KEYFILE"},
	}
	for _, c := range cases {
		code, out, errOut := runKeys(t, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("keys %v: exit %d (want %d), output lacks %q:\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runKeys(t, "jwks", bad); code != 1 || !strings.Contains(errOut, "no private key") {
		t.Errorf("garbage key file: exit %d %s", code, errOut)
	}
	// The top-level help lists the command.
	var out bytes.Buffer
	run(context.Background(), &cliEnv{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}, []string{"--help"})
	if !strings.Contains(out.String(), "keys") || strings.Contains(out.String(), "not built yet") {
		t.Errorf("top-level help: %s", out.String())
	}
}
