package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMappingDefaults(t *testing.T) {
	cfg, diags := parse(t, hl7Only)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	m := cfg.Practices[0].Mapping
	if !m.Enabled || m.VendorVersion != "" || m.Overrides != "" || m.TimeZone != "" {
		t.Errorf("without a mapping block: %+v, want enabled and nothing else", m)
	}
	if loc, err := m.Location(); loc != nil || err != nil {
		t.Errorf("Location without time_zone = %v, %v", loc, err)
	}
}

func TestMappingValues(t *testing.T) {
	src := strings.Replace(hl7Only, "    hl7_listeners:\n", `    mapping:
      enabled: false
      vendor_version: May 2026
      overrides: mapping/sunrise
      time_zone: America/Chicago
    hl7_listeners:
`, 1)
	cfg, diags := parse(t, src)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	m := cfg.Practices[0].Mapping
	if m.Enabled || m.VendorVersion != "May 2026" || m.Overrides != "mapping/sunrise" || m.TimeZone != "America/Chicago" {
		t.Errorf("decoded %+v", m)
	}
	loc, err := m.Location()
	if err != nil || loc == nil || loc.String() != "America/Chicago" {
		t.Errorf("Location = %v, %v", loc, err)
	}
	// A block without enabled keeps the default.
	cfg, diags = parse(t, strings.Replace(hl7Only, "    hl7_listeners:\n", "    mapping:\n      time_zone: UTC\n    hl7_listeners:\n", 1))
	if cfg == nil || len(diags) != 0 || !cfg.Practices[0].Mapping.Enabled {
		t.Errorf("enabled default inside a block: %v %v", cfg, diags)
	}
}

func TestMappingFindings(t *testing.T) {
	const e = SeverityError
	edit := func(block string) string {
		return strings.Replace(hl7Only, "    hl7_listeners:\n", "    mapping:\n"+block+"    hl7_listeners:\n", 1)
	}
	cases := []struct {
		name  string
		src   string
		wants []want
	}{
		{"unknown time zone", edit("      time_zone: America/Chicgo\n"),
			[]want{{5, 18, e, "unknown time zone `America/Chicgo`", "IANA time zone name"}}},
		{"machine-local zone", edit("      time_zone: Local\n"),
			[]want{{5, 18, e, "unknown time zone `Local`", "IANA"}}},
		{"enabled not a boolean", edit("      enabled: \"yes\"\n"),
			[]want{{5, 16, e, "`enabled` must be true or false, not \"yes\"", "`enabled: true` or `enabled: false`"}}},
		{"enabled a list", edit("      enabled: [true]\n"),
			[]want{{5, 16, e, "`enabled` must be true or false, not a list", "without quotes"}}},
		{"misspelt key", edit("      overides: x.yaml\n"),
			[]want{{5, 7, e, "unknown key `overides` in mapping; did you mean `overrides`?", "rename"}}},
		{"not a mapping", strings.Replace(hl7Only, "    hl7_listeners:\n", "    mapping: epic\n    hl7_listeners:\n", 1),
			[]want{{4, 14, e, "mapping must be a mapping of keys", "key: value"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := parse(t, tc.src)
			checkDiags(t, diags, tc.wants)
		})
	}
}

// With files checked, overrides must name a YAML file or a folder holding
// overrides.yaml.
func TestMappingOverridesFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte("resource: Patient\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"good", "empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "good", "overrides.yaml"), []byte("resource: Patient\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"A1_KEY": strings.Repeat("k", 40)})
	parseIn := func(overrides string, check SecretCheck) error {
		src := strings.Replace(hl7Only[1:], "    hl7_listeners:\n", "    mapping:\n      overrides: "+overrides+"\n    hl7_listeners:\n", 1)
		_, err := Parse(filepath.Join(dir, "m.yaml"), []byte(src), WithEnv(getenv), WithSecretCheck(check))
		return err
	}
	for _, ok := range []string{"rules.yaml", "good", filepath.Join(dir, "good")} {
		if err := parseIn(ok, SecretsRequired); err != nil {
			t.Errorf("overrides %s: %v", ok, err)
		}
	}
	err := parseIn("missing.yaml", SecretsRequired)
	if err == nil || !strings.Contains(err.Error(), "m.yaml:5:18: error: `overrides` of practice `p1`") {
		t.Errorf("missing file: %v", err)
	}
	err = parseIn("empty", SecretsRequired)
	if err == nil || !strings.Contains(err.Error(), "is a folder without overrides.yaml") || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("folder without overrides.yaml: %v", err)
	}
	if err := parseIn("missing.yaml", SecretsWarn); err != nil {
		t.Errorf("a missing file with --no-secrets should warn only: %v", err)
	}
	if err := parseIn("missing.yaml", SecretsUnchecked); err != nil {
		t.Errorf("files are not checked without secret checks: %v", err)
	}
}
