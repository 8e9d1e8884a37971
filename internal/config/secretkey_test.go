package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSecretKey is 32 distinct bytes, so a decoder that drops or reorders
// bytes is caught.
var testSecretKey = func() []byte {
	k := make([]byte, SecretKeySize)
	for i := range k {
		k[i] = byte(0xa0 + i)
	}
	return k
}()

func TestDecodeSecretKeyForms(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"hex lower", hex.EncodeToString(testSecretKey)},
		{"hex upper", strings.ToUpper(hex.EncodeToString(testSecretKey))},
		{"base64 padded", base64.StdEncoding.EncodeToString(testSecretKey)},
		{"base64 unpadded", base64.RawStdEncoding.EncodeToString(testSecretKey)},
		{"base64url padded", base64.URLEncoding.EncodeToString(testSecretKey)},
		{"base64url unpadded", base64.RawURLEncoding.EncodeToString(testSecretKey)},
		{"surrounding space", "  " + hex.EncodeToString(testSecretKey) + "\n"},
	} {
		got, err := DecodeSecretKey([]byte(tc.text))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(got, testSecretKey) {
			t.Errorf("%s: decoded %x, want %x", tc.name, got, testSecretKey)
		}
	}
}

func TestDecodeSecretKeyRefusals(t *testing.T) {
	short := make([]byte, 16)
	for _, tc := range []struct{ name, text, msg string }{
		{"hex of 16 bytes", hex.EncodeToString(short), "decodes as base64 to 24 bytes"},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(short), "decodes as base64 to 16 bytes, not 32"},
		{"a passphrase", "correct horse battery staple!", "29 characters of neither form"},
		{"63 hex characters and a g", hex.EncodeToString(testSecretKey)[:63] + "g", "decodes as base64 to 48 bytes"},
		{"empty", "", "decodes as base64 to 0 bytes"},
	} {
		_, err := DecodeSecretKey([]byte(tc.text))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "64 hex characters") {
			t.Errorf("%s: error %q, want it to contain %q and name the accepted forms", tc.name, err, tc.msg)
		}
		if tc.text != "" && strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: the error quotes the value: %q", tc.name, err)
		}
	}
}

// secretKeyConfig has one app and a store.secret_key line (line 3) that the
// test fills in.
const secretKeyConfig = `store:
  path: m.db
  secret_key: %s
practices:
  - id: p1
    name: One
    connections:
      - name: ehr
        vendor: generic
        base_url: http://127.0.0.1:9/fhir
        auth: {type: none}
        sync: [{class: demographics}]
apps:
  - name: a1
    key: {env: A1_KEY}
    practices: [p1]
`

func TestSecretKeyDiagnostics(t *testing.T) {
	dir := t.TempDir()
	good := hex.EncodeToString(testSecretKey)
	if err := os.WriteFile(filepath.Join(dir, "good.key"), []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "short.key"), []byte(good[:40]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"A1_KEY": strings.Repeat("a", 40), "GOOD_KEY": good, "BAD_KEY": "not a key at all"})
	const e, w = SeverityError, SeverityWarning
	for _, tc := range []struct {
		name  string
		value string
		mode  SecretCheck
		wants []want
	}{
		{"file ok", "{file: good.key}", SecretsRequired, nil},
		{"env ok", "{env: GOOD_KEY}", SecretsRequired, nil},
		{"file too short", "{file: short.key}", SecretsRequired, []want{
			{3, 22, e, "`secret_key` (file short.key) is not a 32-byte key: it decodes as base64 to 30 bytes, not 32", "openssl rand -hex 32"}}},
		{"env not a key", "{env: BAD_KEY}", SecretsWarn, []want{
			{3, 21, e, "`secret_key` (env BAD_KEY) is not a 32-byte key: it is 16 characters of neither form; write 64 hex characters, or base64", "{file: PATH}"}}},
		{"file missing", "{file: none.key}", SecretsRequired, []want{
			{3, 22, e, "`secret_key`: read secret file", "exists and is readable"}}},
		{"file missing with --no-secrets", "{file: none.key}", SecretsWarn, []want{
			{3, 22, w, "`secret_key`: read secret file", "exists and is readable"}}},
		{"unchecked does not read the file", "{file: short.key}", SecretsUnchecked, nil},
		{"inline value is checked even unchecked", "{value: tooshort}", SecretsUnchecked, []want{
			{3, 23, w, "`secret_key` is written inline", "{file: PATH}"},
			{3, 23, e, "`secret_key` (inline value) is not a 32-byte key: it decodes as base64 to 6 bytes", "openssl rand -hex 32"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(secretKeyConfig, "%s", tc.value, 1)
			cfg, err := Parse(filepath.Join(dir, "mediflow.yaml"), []byte(src), WithEnv(getenv), WithSecretCheck(tc.mode))
			var diags Diagnostics
			if err != nil && !errors.As(err, &diags) {
				t.Fatal(err)
			}
			if cfg != nil {
				diags = cfg.Warnings
			}
			for i := range diags {
				diags[i].File = "test.yaml"
			}
			checkDiags(t, diags, tc.wants)
			for _, d := range diags {
				if strings.Contains(d.Message+d.Hint, good[:40]) || strings.Contains(d.Message+d.Hint, "not a key at all") {
					t.Errorf("diagnostic prints the key: %s", d)
				}
			}
		})
	}
}

func TestResolveSecretKey(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "store.key"), []byte(base64.StdEncoding.EncodeToString(testSecretKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Store{SecretKey: Secret{File: "store.key"}}.ResolveSecretKey(dir, nil)
	if err != nil || !bytes.Equal(k, testSecretKey) {
		t.Fatalf("file key = %x, %v", k, err)
	}
	k, err = Store{}.ResolveSecretKey(dir, nil)
	if err != nil || k != nil {
		t.Fatalf("unset key = %x, %v; want nil, nil", k, err)
	}
	_, err = Store{SecretKey: Secret{Env: "K"}}.ResolveSecretKey(dir, env(map[string]string{"K": "abc"}))
	if err == nil || !strings.Contains(err.Error(), "store.secret_key (env K) is not a 32-byte key") {
		t.Fatalf("bad key error = %v", err)
	}
	_, err = Store{SecretKey: Secret{Env: "K"}}.ResolveSecretKey(dir, env(nil))
	if err == nil || !strings.Contains(err.Error(), "store.secret_key: environment variable K is not set") {
		t.Fatalf("missing key error = %v", err)
	}
}

func TestSecretKeyAdvice(t *testing.T) {
	src := strings.Replace(secretKeyConfig, "  secret_key: %s\n", "", 1)
	cfg, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("without WithSecretKeyAdvice: %v", cfg.Warnings)
	}
	cfg, err = Parse("test.yaml", []byte(src), WithSecretKeyAdvice())
	if err != nil {
		t.Fatal(err)
	}
	checkDiags(t, cfg.Warnings, []want{{2, 3, SeverityWarning, "`store.secret_key` is not set: apps cannot register webhooks", "openssl rand -hex 32"}})

	// No apps: nothing to warn about (beyond the missing apps themselves).
	noApps := src[:strings.Index(src, "apps:")]
	cfg, err = Parse("test.yaml", []byte(noApps), WithSecretKeyAdvice())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cfg.Warnings {
		if strings.Contains(d.Message, "secret_key") {
			t.Errorf("warned without apps: %s", d)
		}
	}
	// With a key: no warning.
	withKey := strings.Replace(secretKeyConfig, "%s", "{env: K}", 1)
	cfg, err = Parse("test.yaml", []byte(withKey), WithSecretKeyAdvice())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("with a key: %v", cfg.Warnings)
	}
}
