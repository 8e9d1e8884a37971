package config

import (
	"strings"
	"testing"
)

func TestWritebackDefaultsOff(t *testing.T) {
	cfg, diags := parse(t, valid)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	if cfg.Practices[0].Writeback.Enabled {
		t.Error("write-back is on without a writeback block")
	}
}

func TestWritebackEnabled(t *testing.T) {
	src := strings.Replace(valid, "apps:\n", "    writeback:\n      enabled: true\napps:\n", 1)
	cfg, diags := parse(t, src)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	if !cfg.Practices[0].Writeback.Enabled {
		t.Error("writeback.enabled: true was not decoded")
	}
}

func TestWritebackFindings(t *testing.T) {
	const e = SeverityError
	cases := []struct {
		name  string
		src   string
		wants []want
	}{
		{"no connection to write through",
			strings.Replace(hl7Only, "    hl7_listeners:\n", "    writeback:\n      enabled: true\n    hl7_listeners:\n", 1),
			[]want{{5, 16, e, "practice `p1` has write-back enabled but no connection to write through", "add a FHIR connection"}}},
		{"enabled not a boolean",
			strings.Replace(valid, "apps:\n", "    writeback:\n      enabled: sure\napps:\n", 1),
			[]want{{15, 16, e, "`enabled` must be true or false", "`enabled: true` or `enabled: false`"}}},
		{"misspelt key",
			strings.Replace(valid, "apps:\n", "    writeback:\n      enable: true\napps:\n", 1),
			[]want{{15, 7, e, "unknown key `enable` in writeback; did you mean `enabled`?", "rename"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := parse(t, tc.src)
			checkDiags(t, diags, tc.wants)
		})
	}
}

func TestWritebackConcurrency(t *testing.T) {
	with := func(extra string) string {
		return strings.Replace(valid, "apps:\n", "    writeback:\n      enabled: true\n"+extra+"apps:\n", 1)
	}
	cfg, diags := parse(t, with(""))
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	if got := cfg.Practices[0].Writeback.Concurrency; got != 8 {
		t.Errorf("default concurrency %d, want 8", got)
	}
	cfg, diags = parse(t, with("      concurrency: 16\n"))
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	if got := cfg.Practices[0].Writeback.Concurrency; got != 16 {
		t.Errorf("concurrency %d, want 16", got)
	}
	for _, bad := range []string{"0", "65", "many"} {
		_, diags := parse(t, with("      concurrency: "+bad+"\n"))
		found := false
		for _, d := range diags {
			if d.Severity == SeverityError && strings.Contains(d.Message, "concurrency") {
				found = true
			}
		}
		if !found {
			t.Errorf("concurrency: %s: no error about it in %v", bad, diags)
		}
	}
}
