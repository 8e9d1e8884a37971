package config

import (
	"slices"
	"testing"
	"time"
)

// subscriptions replaces valid's sync list with a realtime scheduling class
// and appends a subscriptions list after it (the first line of extra is
// line 15).
func subscriptions(extra string) string {
	return edit("        sync:\n          - class: demographics\n",
		"        sync:\n          - class: scheduling\n            mode: realtime\n"+extra)
}

func TestSubscriptionsParsedWithDefaults(t *testing.T) {
	cfg, diags := parse(t, subscriptions(`        subscriptions:
          - topic: http://mediflow.dev/topic/appointment-change
            types: [Appointment]
          - topic: http://mediflow.dev/topic/slot-change
            types: [Slot, Schedule]
            payload: full-resource
            heartbeat: 30s
            filters: ["Slot?schedule=Schedule/1"]
`))
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags: %v", diags)
	}
	subs := cfg.Practices[0].Connections[0].Subscriptions
	if len(subs) != 2 {
		t.Fatalf("%d subscriptions", len(subs))
	}
	if s := subs[0]; s.Payload != SubscriptionPayloadIDOnly || s.Heartbeat != time.Minute || !slices.Equal(s.Types, []string{"Appointment"}) {
		t.Errorf("defaults: %+v", s)
	}
	if s := subs[1]; s.Payload != SubscriptionPayloadFullResource || s.Heartbeat != 30*time.Second || len(s.Filters) != 1 {
		t.Errorf("second: %+v", s)
	}
}

func TestSubscriptionDiagnostics(t *testing.T) {
	const e, w = SeverityError, SeverityWarning
	cases := []struct {
		name  string
		extra string
		want  []want
	}{
		{"bad payload", "        subscriptions:\n          - topic: http://x.example/t\n            types: [Appointment]\n            payload: everything\n",
			[]want{{line: 18, sev: e, msg: "payload"}}},
		{"type not a resource type", "        subscriptions:\n          - topic: http://x.example/t\n            types: [appointment]\n",
			[]want{{line: 17, sev: e, msg: "resource type"}, {line: 13, sev: w, msg: "`scheduling` is realtime"}}},
		{"no types", "        subscriptions:\n          - topic: http://x.example/t\n",
			[]want{{line: 16, sev: e, msg: "missing required key `types`"}, {line: 13, sev: w, msg: "`scheduling` is realtime"}}},
		{"topic not a URL", "        subscriptions:\n          - topic: appointment-change\n            types: [Appointment]\n",
			[]want{{line: 16, sev: e, msg: "`topic` is not an absolute URL"}}},
		{"type nobody syncs", "        subscriptions:\n          - topic: http://x.example/t\n            types: [Appointment, Coverage]\n",
			[]want{{line: 17, sev: w, msg: "Coverage", hint: "data class"}}},
		{"realtime class uncovered", "        subscriptions:\n          - topic: http://x.example/t\n            types: [Patient]\n",
			[]want{{line: 17, sev: w, msg: "Patient"}, {line: 13, sev: w, msg: "`scheduling` is realtime", hint: "subscriptions"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := parse(t, subscriptions(tc.extra))
			checkDiags(t, diags, tc.want)
		})
	}
}
