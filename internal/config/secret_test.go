package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSecretResolve(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "k.txt"), []byte("s3cret-from-file\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"MY_KEY": "s3cret-from-env"})
	for _, tc := range []struct {
		name    string
		s       Secret
		want    string
		wantErr string
	}{
		{"relative file", Secret{File: "keys/k.txt"}, "s3cret-from-file", ""},
		{"absolute file", Secret{File: filepath.Join(dir, "keys", "k.txt")}, "s3cret-from-file", ""},
		{"missing file", Secret{File: "keys/nope.txt"}, "", "read secret file " + filepath.Join(dir, "keys", "nope.txt") + ": no such file or directory"},
		{"empty file", Secret{File: "empty"}, "", "is empty"},
		{"env", Secret{Env: "MY_KEY"}, "s3cret-from-env", ""},
		{"missing env", Secret{Env: "NOT_SET"}, "", "environment variable NOT_SET is not set or empty"},
		{"value", Secret{Value: "inline"}, "inline", ""},
		{"unset", Secret{}, "", "secret is not set"},
		{"two sources", Secret{File: "a", Env: "B"}, "", "more than one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Resolve(dir, getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	const val = "super-secret-value-123"
	s := Secret{Value: val}
	app := App{Name: "a", Key: s, Practices: []string{"p"}}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "key", s, "app", app.Key)
	js, err := json.Marshal(app)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"String":   s.String(),
		"%v":       fmt.Sprintf("%v", s),
		"%+v app":  fmt.Sprintf("%+v", app),
		"%#v app":  fmt.Sprintf("%#v", app),
		"%s":       fmt.Sprintf("%s", s),
		"json app": string(js),
		"slog":     logBuf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, val) {
			t.Errorf("%s prints the secret: %s", name, out)
		}
	}
	if !strings.Contains(outputs["%+v app"], "<secret: inline value>") {
		t.Errorf("%%+v should show the placeholder: %s", outputs["%+v app"])
	}
	if got := (Secret{Env: "X"}).String(); got != "<secret: env X>" {
		t.Errorf("String = %q", got)
	}
	if got, _ := json.Marshal(Secret{File: "k.pem"}); string(got) != `{"file":"k.pem"}` {
		t.Errorf("json = %s", got)
	}
}

func writeKey(t *testing.T, path string, key any) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// secretsConfig has one connection reading its key from k.pem and two apps.
const secretsConfig = `
practices:
  - id: p1
    name: One
    connections:
      - name: ehr
        vendor: generic
        base_url: https://ehr.example.org/fhir
        auth:
          type: smart-backend
          client_id: abc
          private_key: {file: k.pem}
          algorithm: %s
        sync: [{class: demographics}]
apps:
  - name: a1
    key: {env: A1_KEY}
    practices: [p1]
  - name: a2
    key: {file: a2.key}
    practices: [p1]
`

func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	longKey := strings.Repeat("k", 32)
	otherKey := strings.Repeat("o", 40)
	if err := os.WriteFile(filepath.Join(dir, "a2.key"), []byte(otherKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "mediflow.yaml")
	const e, w = SeverityError, SeverityWarning

	for _, tc := range []struct {
		name  string
		key   any // written to k.pem; nil: no file
		alg   string
		env   map[string]string
		mode  SecretCheck
		wants []want
	}{
		{"rsa ok", rsaKey, "RS384", map[string]string{"A1_KEY": longKey}, SecretsRequired, nil},
		{"ec ok", ecKey, "ES384", map[string]string{"A1_KEY": longKey}, SecretsRequired, nil},
		{"unchecked ignores everything", nil, "RS384", nil, SecretsUnchecked, nil},
		{"missing env and file are errors", nil, "RS384", nil, SecretsRequired, []want{
			{11, 31, e, "`private_key`: read secret file " + filepath.Join(dir, "k.pem"), "relative paths start from " + dir},
			{16, 16, e, "`key`: environment variable A1_KEY is not set or empty", "set the environment variable A1_KEY"},
		}},
		{"missing env and file are warnings with --no-secrets", nil, "RS384", nil, SecretsWarn, []want{
			{11, 31, w, "no such file or directory", "exists and is readable"},
			{16, 16, w, "A1_KEY is not set", "A1_KEY"},
		}},
		{"key type does not match algorithm", rsaKey, "ES384", map[string]string{"A1_KEY": longKey}, SecretsWarn, []want{
			{11, 24, e, "`private_key` (file k.pem) of connection `ehr`: the key is RSA but algorithm is ES384", "ECDSA P-384"},
		}},
		{"wrong curve", p256, "ES384", map[string]string{"A1_KEY": longKey}, SecretsRequired, []want{
			{11, 24, e, "the ECDSA key uses curve P-256; ES384 needs P-384", "P-384"},
		}},
		{"not PEM", "this is not a key", "RS384", map[string]string{"A1_KEY": longKey}, SecretsRequired, []want{
			{11, 24, e, "not a PEM-encoded key", "RSA key"},
		}},
		{"short app key", rsaKey, "RS384", map[string]string{"A1_KEY": "short"}, SecretsRequired, []want{
			{16, 10, e, "the key of app `a1` (env A1_KEY) is 5 characters; at least 32 are required", "openssl rand -hex 32"},
		}},
		{"shared app key", rsaKey, "RS384", map[string]string{"A1_KEY": otherKey}, SecretsRequired, []want{
			{19, 10, e, "app `a2` has the same key as app `a1`", "its own key"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(filepath.Join(dir, "k.pem"))
			switch k := tc.key.(type) {
			case nil:
			case string:
				if err := os.WriteFile(filepath.Join(dir, "k.pem"), []byte(k), 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				writeKey(t, filepath.Join(dir, "k.pem"), k)
			}
			src := strings.TrimPrefix(fmt.Sprintf(secretsConfig, tc.alg), "\n")
			cfg, err := Parse(file, []byte(src), WithEnv(env(tc.env)), WithSecretCheck(tc.mode))
			var diags Diagnostics
			if err != nil && !errors.As(err, &diags) {
				t.Fatal(err)
			}
			if cfg != nil {
				diags = cfg.Warnings
			}
			for i := range diags {
				diags[i].File = "test.yaml" // checkDiags expects this name
			}
			checkDiags(t, diags, tc.wants)
			for _, d := range diags {
				for _, s := range []string{longKey, otherKey, "short"} {
					if strings.Contains(d.Message+d.Hint, s) {
						t.Errorf("diagnostic prints a secret: %s", d)
					}
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, "k.pem"), ecKey)
	if err := os.WriteFile(filepath.Join(dir, "a2.key"), []byte(strings.Repeat("b", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mediflow.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(secretsConfig, "ES384")), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"A1_KEY": strings.Repeat("a", 32)})
	cfg, err := Load(path, getenv)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.BaseDir != dir || cfg.File != path || len(cfg.Warnings) != 0 {
		t.Errorf("cfg.BaseDir=%q File=%q Warnings=%v", cfg.BaseDir, cfg.File, cfg.Warnings)
	}
	key, err := cfg.Apps[0].Key.Resolve(cfg.BaseDir, getenv)
	if err != nil || string(key) != strings.Repeat("a", 32) {
		t.Errorf("app key = %q, %v", key, err)
	}

	// Load requires secrets: without the variable it fails.
	_, err = Load(path, env(nil))
	var diags Diagnostics
	if !errors.As(err, &diags) || diags.Count(SeverityError) != 1 || !strings.Contains(diags[0].Message, "A1_KEY") {
		t.Errorf("Load without A1_KEY: %v", err)
	}

	// A missing file is one diagnostic naming the file.
	_, err = Load(filepath.Join(dir, "nope.yaml"), getenv)
	if !errors.As(err, &diags) || len(diags) != 1 || diags[0].File != filepath.Join(dir, "nope.yaml") ||
		!strings.Contains(diags[0].Message, "no such file") {
		t.Errorf("Load of a missing file: %v", err)
	}
}
