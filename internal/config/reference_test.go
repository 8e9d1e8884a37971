package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the schema")

// repoRoot is the directory with go.mod.
func repoRoot(t *testing.T) string { return repo.RootT(t) }

// TestConfigDocUpToDate fails when docs/configuration.md differs from what the
// schema generates. Run with -update to rewrite it.
func TestConfigDocUpToDate(t *testing.T) {
	root := repoRoot(t)
	example, err := os.ReadFile(filepath.Join(root, "examples", "mediflow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeReference(&buf, example); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./internal/config -run TestConfigDocUpToDate -update)", err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Fatalf("docs/configuration.md is stale; regenerate it: go test ./internal/config -run TestConfigDocUpToDate -update")
	}
}

// TestReferenceCoversSchema checks that every key of every object, every
// data class and every vendor appears in the generated reference.
func TestReferenceCoversSchema(t *testing.T) {
	var buf bytes.Buffer
	if err := writeReference(&buf, []byte("example: here\n")); err != nil {
		t.Fatal(err)
	}
	doc := buf.String()
	for _, obj := range append(objects(), secretObject) {
		if obj.path != "" && !strings.Contains(doc, "### `"+obj.path+"`") && obj != secretObject {
			t.Errorf("no section for %s", obj.path)
		}
		for _, f := range obj.fields {
			if !strings.Contains(doc, "| `"+f.key+"` |") {
				t.Errorf("key %s.%s is not documented", obj.path, f.key)
			}
			if f.doc == "" {
				t.Errorf("key %s.%s has no doc", obj.path, f.key)
			}
			if f.kind == kindObject || f.kind == kindObjectList {
				link := "(#" + anchor("`"+f.obj.path+"`") + ")"
				if !strings.Contains(doc, link) {
					t.Errorf("no link %s for %s", link, f.key)
				}
			}
		}
		for _, n := range obj.notes {
			if !strings.Contains(doc, n) {
				t.Errorf("note of %s missing: %s", obj.path, n)
			}
		}
	}
	for _, s := range []string{"`clinical`", "`scheduling` | Schedule, Slot, Appointment | `poll` | 1m | 15m | 5m | yes", "`billing` | Encounter; optional: ChargeItem, Claim", "`directory` is a deprecated name of `reference`", "`athenahealth`, `epic`, `generic` or `oracle-health`", "example: here"} {
		if !strings.Contains(doc, s) {
			t.Errorf("reference lacks %q", s)
		}
	}
	if anchor("`practices[].connections[].auth`") != "practicesconnectionsauth" {
		t.Errorf("anchor = %q", anchor("`practices[].connections[].auth`"))
	}
}

// TestExampleIsClean lints examples/mediflow.yaml: no finding at all when
// secrets are not checked, and none either when its secrets exist.
func TestExampleIsClean(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "examples", "mediflow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("examples/mediflow.yaml", data)
	if err != nil {
		t.Fatalf("example has errors:\n%v", err)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("example has warnings:\n%v", cfg.Warnings)
	}
	if len(cfg.Practices) != 2 || len(cfg.Apps) != 2 || cfg.Practices[0].Connections[0].Vendor != "epic" ||
		cfg.Practices[1].Connections[0].Vendor != "generic" {
		t.Errorf("example decoded unexpectedly: %+v", cfg)
	}
	if got := cfg.Practices[0].Connections[0].Sync[2]; got.Class != "insurance" || got.Interval != 15*time.Minute {
		t.Errorf("insurance sync = %+v, want the class default 15m", got)
	}

	// With the secrets it names in place, Load (which resolves them) is clean too.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mediflow.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, "keys", "sunrise.key.pem"), rsaKey)
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, "lakeside.pem"), ecKey)
	lakeside, err := os.ReadFile(filepath.Join(dir, "lakeside.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "analytics.apikey"), []byte(strings.Repeat("9", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"LAKESIDE_PRIVATE_KEY": string(lakeside), "SCHEDULER_AI_KEY": strings.Repeat("s", 48),
		"MEDIFLOW_SECRET_KEY": strings.Repeat("5e", 32)})
	cfg, err = Load(filepath.Join(dir, "mediflow.yaml"), getenv)
	if err != nil {
		t.Fatalf("Load with secrets: %v", err)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("Load with secrets warns:\n%v", cfg.Warnings)
	}
	if cfg.Abs(cfg.Store.Path) != filepath.Join(dir, "data", "mediflow.db") {
		t.Errorf("store path = %q", cfg.Abs(cfg.Store.Path))
	}
}

// TestBadExample checks that examples/bad.yaml fails with errors and that the
// config and lint agree on it (the exact lines are asserted by the lint test
// in cmd/mediflow).
func TestBadExample(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "examples", "bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("examples/bad.yaml", data)
	var diags Diagnostics
	if !errors.As(err, &diags) || diags.Count(SeverityError) < 10 || diags.Count(SeverityWarning) < 3 {
		t.Fatalf("bad.yaml: %v", err)
	}
}
