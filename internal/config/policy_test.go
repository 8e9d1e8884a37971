package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/dataclass"
)

// syncEntry returns valid with its one sync entry replaced by lines (the
// first at line 13, each next one a line further), indented as entry keys.
func syncEntry(lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		if i == 0 {
			b.WriteString("          - " + l + "\n")
			continue
		}
		b.WriteString("            " + l + "\n")
	}
	return edit("          - class: demographics\n", b.String())
}

// refused lists, per the issue and the seed's table, the (class, mode)
// pairs the lint refuses without a waiver at the class's default interval:
// hourly and nightly for operational data, and nightly for the classes whose
// maximum interval is below a day.
var refused = map[string]map[dataclass.Mode]bool{
	"clinical":     {dataclass.ModeHourly: true, dataclass.ModeNightly: true},
	"scheduling":   {dataclass.ModeHourly: true, dataclass.ModeNightly: true},
	"insurance":    {dataclass.ModeHourly: true, dataclass.ModeNightly: true},
	"billing":      {dataclass.ModeHourly: true, dataclass.ModeNightly: true},
	"demographics": {dataclass.ModeNightly: true},
	"documents":    {dataclass.ModeNightly: true},
	"reference":    {},
}

// TestPolicyLintEveryClassAndMode runs the lint rule over every data class ×
// mode × waiver (none, or one with a reason): what is refused, where, why and
// with which fix; what a waiver turns into; and the policy Parse fills in.
func TestPolicyLintEveryClassAndMode(t *testing.T) {
	const reason = "analytics copy only; the front desk reads the EHR"
	const e, w = SeverityError, SeverityWarning
	if len(refused) != len(dataclass.All()) {
		t.Fatalf("the table covers %d classes, there are %d", len(refused), len(dataclass.All()))
	}
	for _, cl := range dataclass.All() {
		for _, mode := range dataclass.Modes() {
			for _, waiver := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/waiver=%v", cl.Name, mode, waiver)
				t.Run(name, func(t *testing.T) {
					lines := []string{"class: " + cl.Name, "mode: " + string(mode)}
					if waiver {
						lines = append(lines, "waiver:", "  reason: "+reason)
					}
					cfg, diags := parse(t, syncEntry(lines...))
					isRefused := refused[cl.Name][mode]
					var wants []want
					switch {
					case isRefused && !waiver && cl.Operational:
						wants = []want{{14, 19, e,
							fmt.Sprintf("class `%s` may not sync %s without a waiver: it is operational data, and stale insurance, schedule, clinical or billing data leads to wrong decisions all day", cl.Name, mode),
							"add `waiver: {reason: \"...\"}`"}}
					case isRefused && !waiver:
						wants = []want{{14, 19, e,
							fmt.Sprintf("`mode: %s` refreshes class `%s` every 24h, longer than its maximum %s", mode, cl.Name, fmtDuration(cl.MaxInterval)),
							"add `waiver: {reason: \"...\"}`"}}
					case isRefused && waiver:
						wants = []want{{16, 23, w,
							fmt.Sprintf("class `%s` is synced %s under a waiver (data up to %s old is accepted): %q", cl.Name, mode, fmtDuration(mode.Period(0)), reason),
							"remove the waiver"}}
					case waiver:
						wants = []want{{16, 15, w, fmt.Sprintf("the waiver of class `%s` is not needed", cl.Name), "remove `waiver:`"}}
					}
					checkDiags(t, diags, wants)
					if isRefused && !waiver {
						if cfg != nil {
							t.Fatal("a refused policy parsed")
						}
						// The hint names a policy that is accepted.
						if !strings.Contains(diags[0].Hint, "`mode: realtime`") {
							t.Errorf("hint offers no fresh policy: %s", diags[0].Hint)
						}
						return
					}
					if cfg == nil {
						t.Fatal("no config")
					}
					got := cfg.Practices[0].Connections[0].Sync[0]
					wantInterval := mode.Period(cl.DefaultInterval)
					if got.Mode != mode || got.Interval != wantInterval || got.Waived() != waiver {
						t.Errorf("policy = %+v, want mode %s interval %v", got, mode, wantInterval)
					}
					wantSLO := max(cl.DefaultSLO, 2*wantInterval)
					if mode == dataclass.ModeRealtime {
						wantSLO = cl.DefaultSLO
					}
					if got.SLO != wantSLO {
						t.Errorf("slo = %v, want %v", got.SLO, wantSLO)
					}
				})
			}
		}
	}
}

// TestPolicyDefaults: an entry with only its class gets the class's default
// policy; one with only an interval polls, as configs written before modes did.
func TestPolicyDefaults(t *testing.T) {
	for _, cl := range dataclass.All() {
		cfg, diags := parse(t, syncEntry("class: "+cl.Name))
		if cfg == nil || len(diags) != 0 {
			t.Fatalf("%s: %v", cl.Name, diags)
		}
		got := cfg.Practices[0].Connections[0].Sync[0]
		if got.Mode != cl.DefaultMode || got.Interval != cl.DefaultMode.Period(cl.DefaultInterval) || got.SLO != cl.DefaultSLO || got.Waived() {
			t.Errorf("%s: default policy %+v, want %s every %v, slo %v", cl.Name, got, cl.DefaultMode, cl.DefaultInterval, cl.DefaultSLO)
		}

		cfg, diags = parse(t, syncEntry("class: "+cl.Name, "interval: 2m"))
		if cfg == nil || len(diags) != 0 {
			t.Fatalf("%s with interval: %v", cl.Name, diags)
		}
		got = cfg.Practices[0].Connections[0].Sync[0]
		if got.Mode != dataclass.ModePoll || got.Interval != 2*time.Minute || got.Period() != 2*time.Minute {
			t.Errorf("%s with only an interval: %+v, want poll every 2m", cl.Name, got)
		}
	}
}

func TestPolicyDiagnostics(t *testing.T) {
	const e, w = SeverityError, SeverityWarning
	cases := []struct {
		name  string
		lines []string
		want  []want
		check func(t *testing.T, s SyncPolicy)
	}{
		{"unknown mode",
			[]string{"class: clinical", "mode: weekly"},
			[]want{{14, 19, e, "unknown mode `weekly`", "use `realtime`, `poll`, `hourly` or `nightly`"}}, nil},
		{"mode typo suggests",
			[]string{"class: clinical", "mode: realtme"},
			[]want{{14, 19, e, "unknown mode `realtme`; did you mean `realtime`?", "`realtime`"}}, nil},
		{"interval ignored for a batch",
			[]string{"class: reference", "mode: nightly", "interval: 5m"},
			[]want{{15, 23, w, "`interval` is ignored when `mode` is `nightly`", "set `mode: poll` to poll every 5m"}},
			func(t *testing.T, s SyncPolicy) {
				if s.Interval != 24*time.Hour {
					t.Errorf("interval = %v, want the nightly period", s.Interval)
				}
			}},
		{"poll beyond the maximum",
			[]string{"class: scheduling", "interval: 30m"},
			[]want{{14, 23, e, "interval 30m for class `scheduling` is longer than its maximum 15m", "set `interval: 15m` or less"}}, nil},
		{"safety poll beyond the maximum",
			[]string{"class: clinical", "mode: realtime", "interval: 2h"},
			[]want{{15, 23, e, "interval 2h for class `clinical` is longer than its maximum 30m", "`waiver: {reason"}}, nil},
		{"poll beyond the maximum under a waiver",
			[]string{"class: scheduling", "interval: 30m", "waiver: {reason: nightly report only}"},
			[]want{{15, 30, w, "class `scheduling` is synced by polling every 30m under a waiver (data up to 30m old is accepted): \"nightly report only\"", "remove the waiver"}},
			func(t *testing.T, s SyncPolicy) {
				if s.SLO != time.Hour {
					t.Errorf("slo = %v, want twice the interval", s.SLO)
				}
			}},
		{"waiver without a reason",
			[]string{"class: clinical", "mode: nightly", "waiver: {}"},
			[]want{{15, 21, e, "missing required key `reason` in waiver", "add `reason:`"}}, nil},
		{"waiver with an empty reason",
			[]string{"class: clinical", "mode: nightly", "waiver: {reason: \"\"}"},
			[]want{{15, 30, e, "`reason` is empty", "give `reason` a value"}}, nil},
		{"waiver with a blank reason",
			[]string{"class: clinical", "mode: nightly", "waiver: {reason: \"  \"}"},
			[]want{{15, 30, e, "the waiver's `reason` is blank", "write why"}}, nil},
		{"waiver with an unknown key",
			[]string{"class: clinical", "mode: nightly", "waiver: {reason: x, until: 2027}"},
			[]want{{15, 33, e, "unknown key `until` in waiver", "`reason`"},
				{15, 30, w, "class `clinical` is synced nightly under a waiver", "remove the waiver"}}, nil},
		{"slo shorter than the poll interval",
			[]string{"class: scheduling", "interval: 10m", "slo: 5m"},
			[]want{{15, 18, e, "`slo` 5m for class `scheduling` is shorter than its refresh period 10m: it can never be met", "set `slo: 10m` or more"}}, nil},
		{"slo shorter than a nightly batch",
			[]string{"class: reference", "mode: nightly", "slo: 2h"},
			[]want{{15, 18, e, "`slo` 2h for class `reference` is shorter than its refresh period 24h", "set `slo: 24h` or more"}}, nil},
		{"realtime slo may beat the safety poll",
			[]string{"class: clinical", "mode: realtime", "interval: 30m", "slo: 2m"},
			nil,
			func(t *testing.T, s SyncPolicy) {
				if s.SLO != 2*time.Minute || s.Interval != 30*time.Minute || s.Mode != dataclass.ModeRealtime {
					t.Errorf("policy = %+v", s)
				}
			}},
		{"slo without a unit",
			[]string{"class: clinical", "slo: 5"},
			[]want{{14, 18, e, "`slo` needs a unit", "`slo: 5s`"}}, nil},
		{"deprecated directory",
			[]string{"class: directory"},
			[]want{{13, 20, w, "class `directory` is deprecated; it is now called `reference`", "write `class: reference`"}},
			func(t *testing.T, s SyncPolicy) {
				if s.Class != "reference" || s.Mode != dataclass.ModeHourly {
					t.Errorf("policy = %+v, want the reference class's default", s)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := parse(t, syncEntry(tc.lines...))
			checkDiags(t, diags, tc.want)
			if tc.check != nil {
				if cfg == nil {
					t.Fatal("no config")
				}
				tc.check(t, cfg.Practices[0].Connections[0].Sync[0])
			}
		})
	}
}

func TestDirectoryAndReferenceAreOneClass(t *testing.T) {
	src := edit("          - class: demographics\n", "          - class: reference\n          - class: directory\n")
	_, diags := parse(t, src)
	checkDiags(t, diags, []want{
		{14, 20, SeverityWarning, "class `directory` is deprecated", "`class: reference`"},
		{14, 20, SeverityError, "duplicate class `reference` (first at line 13)", "list class `reference` once"},
	})
}

func TestOptionalTypesAndScopes(t *testing.T) {
	src := edit("          - class: demographics\n", "          - class: billing\n          - class: demographics\n")
	cfg, diags := parse(t, src)
	if cfg == nil || len(diags) != 0 {
		t.Fatal(diags)
	}
	c := cfg.Practices[0].Connections[0]
	if got := strings.Join(c.ResourceTypes(), ","); got != "Encounter,Patient" {
		t.Errorf("ResourceTypes = %s (optional types must not be in the default scopes)", got)
	}
	if got := strings.Join(c.OptionalResourceTypes(), ","); got != "ChargeItem,Claim" {
		t.Errorf("OptionalResourceTypes = %s", got)
	}
	// Default scopes cover the required types only.
	if !c.ScopesAllowSearch("Encounter") || c.ScopesAllowSearch("ChargeItem") {
		t.Error("default scopes: Encounter must be searchable, ChargeItem not")
	}
	c.Auth.Scopes = []string{"system/Encounter.rs", "system/ChargeItem.read"}
	if !c.ScopesAllowSearch("ChargeItem") || c.ScopesAllowSearch("Claim") {
		t.Error("configured scopes: ChargeItem must be searchable, Claim not")
	}
	c.Auth = Auth{Type: AuthNone}
	if !c.ScopesAllowSearch("Claim") {
		t.Error("without auth every type may be searched")
	}
}
