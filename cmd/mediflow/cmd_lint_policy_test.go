package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/dataclass"
)

// lintPolicyFile writes a clean configuration whose one sync entry is
// `class`, `mode` and, when reason is not empty, a waiver; the mode is on
// line 12 and the reason on line 14.
func lintPolicyFile(t *testing.T, class string, mode dataclass.Mode, reason string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`practices:
  - id: p1
    name: Practice One
    connections:
      - name: ehr
        vendor: generic
        base_url: http://127.0.0.1:9/fhir
        auth:
          type: none
        sync:
`)
	fmt.Fprintf(&b, "          - class: %s\n            mode: %s\n", class, mode)
	if reason != "" {
		fmt.Fprintf(&b, "            waiver:\n              reason: %q\n", reason)
	}
	b.WriteString("apps:\n  - name: a1\n    key: {env: A1_KEY}\n    practices: [p1]\n")
	b.WriteString("store:\n  secret_key: {env: STORE_KEY}\n")
	file := filepath.Join(t.TempDir(), "mediflow.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestLintSyncPolicies runs `mediflow lint` on every data class × mode ×
// waiver: hourly and nightly for operational data (and nightly for classes
// whose maximum is below a day) fail, naming file:line:col, the class, why
// and the fix; with a waiver they pass with a warning quoting the reason.
func TestLintSyncPolicies(t *testing.T) {
	const reason = "read by the monthly report only"
	getenv := func(k string) string {
		switch k {
		case "A1_KEY":
			return strings.Repeat("k", 40)
		case "STORE_KEY":
			return strings.Repeat("5e", 32)
		}
		return ""
	}
	// The seed's table, as the issue states it: operational data may not be
	// batched hourly or nightly; nothing but reference data goes a day.
	refused := func(cl dataclass.Class, m dataclass.Mode) bool {
		switch {
		case cl.Operational:
			return m == dataclass.ModeHourly || m == dataclass.ModeNightly
		case cl.Name == "reference":
			return false
		}
		return m == dataclass.ModeNightly
	}
	for _, name := range []string{"clinical", "scheduling", "insurance", "billing"} {
		if cl, _ := dataclass.Lookup(name); !cl.Operational {
			t.Fatalf("%s is not operational", name)
		}
	}
	for _, cl := range dataclass.All() {
		for _, m := range dataclass.Modes() {
			for _, waiver := range []string{"", reason} {
				t.Run(fmt.Sprintf("%s/%s/waiver=%v", cl.Name, m, waiver != ""), func(t *testing.T) {
					file := lintPolicyFile(t, cl.Name, m, waiver)
					code, out, stderr := lintRun(t, getenv, "lint", file)
					switch {
					case refused(cl, m) && waiver == "":
						if code != 1 || !strings.Contains(stderr, "1 of 1 file failed") {
							t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
						}
						prefix := file + ":12:19: error: "
						why := "refreshes class `" + cl.Name + "` every 24h, longer than its maximum"
						if cl.Operational {
							why = "class `" + cl.Name + "` may not sync " + string(m) + " without a waiver: it is operational data, and " + dataclass.StaleReason
						}
						if !strings.HasPrefix(out, prefix) || !strings.Contains(out, why) ||
							!strings.Contains(out, "(hint: use `mode: realtime`") || !strings.Contains(out, "waiver: {reason:") ||
							strings.Count(out, "\n") != 1 {
							t.Errorf("output:\n%s\nwant one line starting %q with %q and a hint", out, prefix, why)
						}
					case refused(cl, m):
						want := fmt.Sprintf("%s:14:23: warning: class `%s` is synced %s under a waiver", file, cl.Name, m)
						if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("%q", reason)) ||
							!strings.HasSuffix(out, file+": ok (1 warning)\n") {
							t.Errorf("exit %d\n%s\nwant a warning %q quoting the reason", code, out, want)
						}
						if code, _, _ := lintRun(t, getenv, "lint", "--strict", file); code != 1 {
							t.Errorf("--strict accepted a waived policy: exit %d", code)
						}
					case waiver != "":
						if code != 0 || !strings.Contains(out, "warning: the waiver of class `"+cl.Name+"` is not needed") {
							t.Errorf("exit %d\n%s\nwant a warning that the waiver is not needed", code, out)
						}
					default:
						if code != 0 || out != file+": ok\n" {
							t.Errorf("exit %d\n%s\nwant a clean file", code, out)
						}
					}
				})
			}
		}
	}
}
