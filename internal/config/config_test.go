package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/dataclass"
)

// parse runs Parse on a YAML snippet and returns the config (nil on errors)
// and every diagnostic.
func parse(t *testing.T, src string, opts ...Option) (*Config, Diagnostics) {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(strings.TrimPrefix(src, "\n")), opts...)
	if err != nil {
		var ds Diagnostics
		if !errors.As(err, &ds) {
			t.Fatalf("Parse returned %T, want Diagnostics: %v", err, err)
		}
		if cfg != nil {
			t.Fatalf("Parse returned a config together with errors")
		}
		if !ds.HasErrors() {
			t.Fatalf("Parse returned an error without error diagnostics: %v", ds)
		}
		return nil, ds
	}
	return cfg, cfg.Warnings
}

// want is one expected diagnostic: its position, severity, and substrings of
// its message and hint.
type want struct {
	line, col int
	sev       string
	msg, hint string
}

func (w want) matches(d Diagnostic) bool {
	return d.Line == w.line && (w.col == 0 || d.Col == w.col) && d.Severity == w.sev &&
		strings.Contains(d.Message, w.msg) && strings.Contains(d.Hint, w.hint)
}

// checkDiags asserts that got holds exactly the wanted diagnostics.
func checkDiags(t *testing.T, got Diagnostics, wants []want) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range wants {
		found := false
		for i, d := range got {
			if !used[i] && w.matches(d) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing %s at %d:%d with message containing %q and hint containing %q", w.sev, w.line, w.col, w.msg, w.hint)
		}
	}
	for i, d := range got {
		if !used[i] {
			t.Errorf("unexpected diagnostic: %s", d)
		}
		if d.File != "test.yaml" {
			t.Errorf("diagnostic names file %q, want test.yaml", d.File)
		}
		if d.Severity == SeverityError && d.Hint == "" {
			t.Errorf("error without a hint: %s", d)
		}
	}
	if t.Failed() {
		t.Logf("all diagnostics:\n%s", got.Error())
	}
}

// valid is a small configuration with no findings at all; most cases below
// change one thing in a copy of it.
const valid = `
practices:
  - id: p1
    name: Practice One
    connections:
      - name: ehr
        vendor: generic
        base_url: https://ehr.example.org/fhir
        auth:
          type: smart-backend
          client_id: abc
          private_key: {file: k.pem}
        sync:
          - class: demographics
apps:
  - name: a1
    key: {env: A1_KEY}
    practices: [p1]
`

func TestValidHasNoFindings(t *testing.T) {
	cfg, diags := parse(t, valid)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("valid config: cfg=%v diags:\n%v", cfg != nil, diags)
	}
}

func TestDefaults(t *testing.T) {
	cfg, diags := parse(t, valid)
	if len(diags) != 0 {
		t.Fatalf("diags: %v", diags)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.Server.PublicURL != "" {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Store.Driver != "sqlite" || cfg.Store.Path != "./data/mediflow.db" || cfg.Store.DSN.IsSet() {
		t.Errorf("store = %+v", cfg.Store)
	}
	if cfg.Log.Level != "info" || cfg.Log.Format != "json" {
		t.Errorf("log = %+v", cfg.Log)
	}
	c := cfg.Practices[0].Connections[0]
	if c.Timeout != 30*time.Second || c.PageSize != 100 || c.Overlap != 2*time.Minute {
		t.Errorf("connection defaults: timeout=%v page_size=%d overlap=%v", c.Timeout, c.PageSize, c.Overlap)
	}
	if c.Auth.Algorithm != "RS384" || c.Auth.KeyID != "" || c.Auth.TokenURL != "" || c.Auth.Scopes != nil {
		t.Errorf("auth defaults: %+v", c.Auth)
	}
	demo, _ := dataclass.Lookup("demographics")
	if len(c.Sync) != 1 || c.Sync[0].Interval != demo.DefaultInterval {
		t.Errorf("sync = %+v, want demographics at %v", c.Sync, demo.DefaultInterval)
	}
	if cfg.BaseDir != "." || cfg.Abs("data/x.db") != "data/x.db" || cfg.Abs("/abs/x.db") != "/abs/x.db" {
		t.Errorf("BaseDir=%q Abs=%q", cfg.BaseDir, cfg.Abs("data/x.db"))
	}
}

func TestValuesDecoded(t *testing.T) {
	src := `
server:
  listen: 127.0.0.1:0
  public_url: https://mf.example.com/
store:
  driver: postgres
  dsn: {env: PG}
log: {level: debug, format: text}
practices:
  - id: p1
    name: Practice One
    connections:
      - name: ehr
        vendor: epic
        base_url: https://ehr.example.org/fhir/
        timeout: 1m30s
        page_size: 500
        overlap: 0s
        auth:
          type: smart-backend
          client_id: abc
          private_key: {file: k.pem}
          key_id: kid-1
          algorithm: ES384
          jku: https://mf.example.com/jwks.json
          token_url: https://ehr.example.org/oauth2/token
          scopes: [system/Patient.rs, system/*.read]
        sync:
          - class: demographics
            interval: 90s
      - name: sim
        vendor: generic
        base_url: http://127.0.0.1:9999/fhir
        auth: {type: none}
        sync: [{class: scheduling}]
apps:
  - name: a1
    key: {env: A1_KEY}
    practices: ["*"]
`
	cfg, diags := parse(t, src, WithBaseDir("/etc/mediflow"))
	if len(diags) != 0 {
		t.Fatalf("diags: %v", diags)
	}
	if cfg.Server.Listen != "127.0.0.1:0" || cfg.Server.PublicURL != "https://mf.example.com" {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Store.Driver != "postgres" || cfg.Store.Path != "" || cfg.Store.DSN.Env != "PG" {
		t.Errorf("store = %+v", cfg.Store)
	}
	if cfg.Log != (Log{Level: "debug", Format: "text"}) {
		t.Errorf("log = %+v", cfg.Log)
	}
	c := cfg.Practices[0].Connections[0]
	if c.BaseURL != "https://ehr.example.org/fhir" || c.Timeout != 90*time.Second || c.PageSize != 500 || c.Overlap != 0 {
		t.Errorf("connection = %+v", c)
	}
	a := c.Auth
	if a.KeyID != "kid-1" || a.Algorithm != "ES384" || a.JKU != "https://mf.example.com/jwks.json" ||
		a.TokenURL != "https://ehr.example.org/oauth2/token" || strings.Join(a.Scopes, " ") != "system/Patient.rs system/*.read" {
		t.Errorf("auth = %+v", a)
	}
	if c.Sync[0].Interval != 90*time.Second {
		t.Errorf("interval = %v", c.Sync[0].Interval)
	}
	sim := cfg.Practices[0].Connections[1]
	if sim.Auth.Type != AuthNone || sim.Auth.Algorithm != "" || sim.Sync[0].Interval != time.Minute {
		t.Errorf("sim connection = %+v", sim)
	}
	if !cfg.Apps[0].Allows("p1") || !cfg.Apps[0].Allows("other") {
		t.Errorf("app with * must allow every practice")
	}
	if p, ok := cfg.Practice("p1"); !ok || p.Name != "Practice One" {
		t.Errorf("Practice(p1) = %v, %v", p, ok)
	}
	if _, ok := cfg.Practice("nope"); ok {
		t.Errorf("Practice(nope) found")
	}
	if cfg.BaseDir != "/etc/mediflow" || cfg.Abs("k.pem") != "/etc/mediflow/k.pem" {
		t.Errorf("BaseDir = %q", cfg.BaseDir)
	}
}

func TestAppAllows(t *testing.T) {
	a := App{Practices: []string{"p1", "p2"}}
	if !a.Allows("p1") || !a.Allows("p2") || a.Allows("p3") || a.Allows("") {
		t.Errorf("Allows is wrong for %v", a.Practices)
	}
}

// edit returns valid with old replaced by new; old must occur exactly once.
func edit(old, new string) string {
	if n := strings.Count(valid, old); n != 1 {
		panic(fmt.Sprintf("%q occurs %d times in valid", old, n))
	}
	return strings.Replace(valid, old, new, 1)
}

func TestDiagnostics(t *testing.T) {
	const e, w = SeverityError, SeverityWarning
	cases := []struct {
		name string
		src  string
		want []want
	}{
		// unknown keys
		{"unknown key with suggestion",
			edit("        sync:\n", "        pagesize: 50\n        sync:\n"),
			[]want{{12, 9, e, "unknown key `pagesize` in connection; did you mean `page_size`?", "rename `pagesize` to `page_size`"}}},
		{"unknown key without suggestion",
			"colour: blue\n" + valid,
			[]want{{1, 1, e, "unknown key `colour` in the top level", "`server`, `store`, `log`, `practices` or `apps`"}}},
		{"unknown key in secret",
			edit("{file: k.pem}", "{path: k.pem}"),
			[]want{{11, 25, e, "unknown key `path` in secret", "`file`, `env` or `value`"}}},
		{"case typo suggests key",
			edit("base_url:", "baseURL:"),
			[]want{{7, 9, e, "unknown key `baseURL` in connection; did you mean `base_url`?", "rename `baseURL` to `base_url`"}}},
		{"duplicate YAML key",
			edit("        vendor: generic\n", "        vendor: generic\n        vendor: epic\n"),
			[]want{{7, 9, e, "key `vendor` appears twice in connection (first at line 6)", "remove one"}}},

		// wrong types
		{"int given as string",
			edit("        sync:\n", "        page_size: \"100\"\n        sync:\n"),
			[]want{{12, 20, e, "`page_size` must be a whole number, not \"100\"", "without quotes"}}},
		{"int out of range",
			edit("        sync:\n", "        page_size: 5000\n        sync:\n"),
			[]want{{12, 20, e, "`page_size` must be from 1 to 1000, not 5000", "from 1 to 1000"}}},
		{"mapping where a list is expected",
			edit("    practices: [p1]", "    practices: {p1: true}"),
			[]want{{17, 16, e, "`practices` must be a list of strings, not a mapping", "`practices: [a, b]`"}}},
		{"scalar where an object is expected",
			"server: 127.0.0.1:8080\n" + valid,
			[]want{{1, 9, e, "server must be a mapping of keys, not \"127.0.0.1:8080\"", "indented under"}}},
		{"list entry that is not a mapping",
			edit("          - class: demographics", "          - demographics"),
			[]want{{13, 13, e, "sync entry must be a mapping of keys, not \"demographics\"", "`key: value`"}}},
		{"string where a list of objects is expected",
			edit("        sync:\n          - class: demographics\n", "        sync: demographics\n"),
			[]want{{12, 15, e, "`sync` must be a list, not \"demographics\"", "start each entry with `- `"}}},
		{"empty list where one entry is required",
			edit("        sync:\n          - class: demographics\n", "        sync: []\n"),
			[]want{{12, 15, e, "`sync` must list at least 1 sync entry", "`- `"}}},

		// missing required keys
		{"missing required key",
			edit("        vendor: generic\n", ""),
			[]want{{5, 9, e, "missing required key `vendor` in connection", "add `vendor:` to this connection"}}},
		{"required key without value",
			edit("name: Practice One", "name:"),
			[]want{{3, 5, e, "`name` in practice has no value", "give `name` a value"}}},
		{"required key empty string",
			edit("client_id: abc", "client_id: \"\""),
			[]want{{10, 22, e, "`client_id` is empty", "give `client_id` a value"}}},
		{"conditional required key",
			edit("          private_key: {file: k.pem}\n", ""),
			[]want{{9, 11, e, "missing required key `private_key` in auth", "add `private_key:`"}}},
		{"postgres needs a dsn",
			"store:\n  driver: postgres\n" + valid,
			[]want{{2, 3, e, "missing required key `dsn` in store", "add `dsn:`"}}},
		{"key ignored under condition",
			"store:\n  dsn: {env: PG}\n" + valid,
			[]want{{2, 3, w, "`dsn` is ignored when `driver` is not `postgres`", "set `driver: postgres`"}}},
		{"auth none ignores client_id",
			edit("          type: smart-backend\n          client_id: abc\n          private_key: {file: k.pem}\n",
				"          type: none\n          client_id: abc\n"),
			[]want{{10, 11, w, "`client_id` is ignored when `type` is not `smart-backend`", "remove it"},
				{9, 17, w, "connection `ehr` sends unauthenticated requests to ehr.example.org", "smart-backend"}}},

		// durations
		{"duration without unit",
			edit("        sync:\n", "        timeout: 30\n        sync:\n"),
			[]want{{12, 18, e, "`timeout` needs a unit: 30 is not a duration", "`timeout: 30s`"}}},
		{"duration in words",
			edit("          - class: demographics\n", "          - class: demographics\n            interval: 5 minutes\n"),
			[]want{{14, 23, e, "`interval` is not a duration: \"5 minutes\"", "(ms, s, m or h)"}}},
		{"duration in days",
			edit("        sync:\n", "        overlap: 1d\n        sync:\n"),
			[]want{{12, 18, e, "`overlap` is not a duration: \"1d\"", "no day unit"}}},
		{"duration below minimum",
			edit("        sync:\n", "        timeout: 10ms\n        sync:\n"),
			[]want{{12, 18, e, "`timeout` must be at least 1s, not 10ms", "use 1s or more"}}},
		{"duration above maximum",
			edit("        sync:\n", "        timeout: 1h\n        sync:\n"),
			[]want{{12, 18, e, "`timeout` must be at most 10m, not 1h", "use 10m or less"}}},
		{"negative duration",
			edit("        sync:\n", "        overlap: -1m\n        sync:\n"),
			[]want{{12, 18, e, "`overlap` must be at least 0s, not -1m", "0s or more"}}},

		// URLs and addresses
		{"relative URL",
			edit("https://ehr.example.org/fhir", "ehr.example.org/fhir"),
			[]want{{7, 19, e, "`base_url` is not an absolute URL: \"ehr.example.org/fhir\"", "absolute http or https URL"}}},
		{"URL with other scheme",
			edit("https://ehr.example.org/fhir", "ftp://ehr.example.org/fhir"),
			[]want{{7, 19, e, "`base_url` has scheme \"ftp\"", "http or https"}}},
		{"URL with credentials",
			edit("https://ehr.example.org/fhir", "https://u:p@ehr.example.org/fhir"),
			[]want{{7, 19, e, "`base_url` contains credentials", "configured under `auth`"}}},
		{"plain http to a remote host",
			edit("https://ehr.example.org/fhir", "http://ehr.example.org/fhir"),
			[]want{{7, 19, w, "plain http to ehr.example.org", "https"}}},
		{"listen address malformed",
			"server:\n  listen: localhost\n" + valid,
			[]want{{2, 11, e, "`listen` is not a host:port address: \"localhost\"", "`host:port`"}}},
		{"listen on all interfaces",
			"server:\n  listen: :8080\n" + valid,
			[]want{{2, 11, w, "listen on every network interface", "127.0.0.1"}}},
		{"listen on a public address",
			"server:\n  listen: 10.1.2.3:8080\n" + valid,
			[]want{{2, 11, w, "`10.1.2.3`, which is not a loopback address", "TLS"}}},
		{"listen on localhost is fine",
			"server:\n  listen: localhost:8080\n" + valid,
			nil},

		// duplicates
		{"duplicate sync class",
			edit("          - class: demographics\n", "          - class: demographics\n          - class: demographics\n"),
			[]want{{14, 20, e, "duplicate class `demographics` (first at line 13)", "list class `demographics` once"}}},
		{"duplicate app name",
			valid + "  - name: a1\n    key: {env: A2_KEY}\n    practices: [p1]\n",
			[]want{{18, 11, e, "duplicate app name `a1` (first at line 15)", "app names must be unique"}}},

		// enums and patterns
		{"unknown vendor",
			edit("vendor: generic", "vendor: epc"),
			[]want{{6, 17, e, "unknown vendor `epc`; did you mean `epic`?", "use `athenahealth`, `epic`, `generic` or `oracle-health`"}}},
		{"unknown class",
			edit("class: demographics", "class: demographic"),
			[]want{{13, 20, e, "unknown class `demographic`; did you mean `demographics`?", "`scheduling`"}}},
		{"unknown algorithm",
			edit("          client_id: abc\n", "          client_id: abc\n          algorithm: RS256\n"),
			[]want{{11, 22, e, "unknown algorithm `RS256`", "use `RS384` or `ES384`"}}},
		{"invalid practice id",
			strings.Replace(edit("id: p1", "id: Practice_1"), "[p1]", "[Practice_1]", 1),
			[]want{{2, 9, e, "invalid practice id `Practice_1`", "lowercase letters"}}},
		{"patient scope",
			edit("          client_id: abc\n", "          client_id: abc\n          scopes: [patient/Patient.read]\n"),
			[]want{{11, 20, e, "invalid scope `patient/Patient.read`", "write `system/Patient.read`"}}},
		{"scopes miss a synced type",
			edit("          client_id: abc\n", "          client_id: abc\n          scopes: [system/Patient.write]\n"),
			[]want{{11, 19, w, "the scopes do not allow searching Patient", "add `system/Patient.rs`"}}},
		{"v2 scope without search",
			edit("          client_id: abc\n", "          client_id: abc\n          scopes: [system/Patient.r]\n"),
			[]want{{11, 19, w, "do not allow searching Patient", "system/Patient.rs"}}},
		{"invalid env name",
			edit("{env: A1_KEY}", "{env: 1-KEY}"),
			[]want{{16, 16, e, "invalid environment variable name `1-KEY`", "letters, digits and `_`"}}},

		// intervals
		{"interval above class maximum",
			edit("          - class: demographics\n", "          - class: demographics\n            interval: 24h\n"),
			[]want{{14, 23, e, "interval 24h for class `demographics` is longer than its maximum 1h", "set `interval: 1h` or less"}}},
		{"interval at class maximum is fine",
			edit("          - class: demographics\n", "          - class: demographics\n            interval: 1h\n"),
			nil},

		// apps
		{"app names unknown practice",
			edit("practices: [p1]", "practices: [p2]"),
			[]want{{17, 17, e, "app `a1` names unknown practice `p2`; did you mean `p1`?", "configured practices: `p1`"}}},
		{"star with others",
			edit("practices: [p1]", "practices: [p1, \"*\"]"),
			[]want{{17, 21, e, "app `a1` lists `*` together with other practices", "alone"}}},
		{"no practices and no apps",
			"log: {level: info}\n",
			[]want{{1, 1, w, "no practices are configured", "add a `practices:` list"},
				{1, 1, w, "no apps are configured", "add an `apps:` list"}}},

		// secrets
		{"secret as plain string",
			edit("{file: k.pem}", "k.pem"),
			[]want{{11, 24, e, "`private_key` must be a secret reference such as {env: VARIABLE}, not \"k.pem\"", "`private_key: {file: PATH}`"}}},
		{"secret with two sources",
			edit("{file: k.pem}", "{file: k.pem, env: K}"),
			[]want{{11, 24, e, "`private_key` sets `file` or `env`; a secret has exactly one source", "keep exactly one"}}},
		{"secret with no source",
			edit("{file: k.pem}", "{}"),
			[]want{{11, 24, e, "`private_key` names no source", "{env: VARIABLE}"}}},
		{"inline secret value",
			edit("{env: A1_KEY}", "{value: abcdefghijabcdefghijabcdefghij12}"),
			[]want{{16, 18, w, "`key` is written inline in the configuration file", "{env: VARIABLE}"}}},

		// file-level problems
		{"empty file",
			"# nothing here\n",
			[]want{{1, 1, e, "the file is empty", "examples/mediflow.yaml"}}},
		{"YAML syntax error",
			edit("    name: Practice One\n", "    name: Practice: One\n"),
			[]want{{3, 0, e, "invalid YAML: mapping values are not allowed", "YAML syntax"}}},
		{"tab indentation",
			edit("    name: Practice One\n", "\tname: Practice One\n"),
			[]want{{2, 0, e, "invalid YAML: found a tab character", "spaces, not tabs"}}},
		{"two documents",
			valid + "---\nlog: {level: info}\n",
			[]want{{18, 1, e, "more than one YAML document", "`---`"}}},
		{"merge key",
			"log: &l {level: info}\nserver:\n  <<: *l\n" + valid,
			[]want{{3, 3, e, "merge keys (`<<`) are not supported", "write the keys out"}}},
		{"alias values are followed",
			edit("          - class: demographics\n", "          - class: demographics\n            interval: &i 2m\n          - class: clinical\n            interval: *i\n"),
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := parse(t, tc.src)
			checkDiags(t, diags, tc.want)
		})
	}
}

func TestDuplicatePracticeAndConnection(t *testing.T) {
	src := `
practices:
  - id: p1
    name: One
    connections:
      - name: ehr
        vendor: generic
        base_url: https://a.example.org/fhir
        auth: {type: smart-backend, client_id: a, private_key: {file: a.pem}}
        sync: [{class: demographics}]
      - name: ehr
        vendor: generic
        base_url: https://b.example.org/fhir
        auth: {type: smart-backend, client_id: b, private_key: {file: b.pem}}
        sync: [{class: demographics}]
  - id: p1
    name: One again
    connections:
      - name: ehr
        vendor: generic
        base_url: https://c.example.org/fhir
        auth: {type: smart-backend, client_id: c, private_key: {file: c.pem}}
        sync: [{class: demographics}]
apps:
  - name: a1
    key: {env: A1_KEY}
    practices: [p1]
`
	_, diags := parse(t, src)
	checkDiags(t, diags, []want{
		{10, 15, SeverityError, "duplicate connection name `ehr` (first at line 5)", "unique within practice `p1`"},
		{15, 9, SeverityError, "duplicate practice id `p1` (first at line 2)", "practice ids must be unique"},
	})
}

// TestAllErrorsCollected checks that one file with many mistakes reports
// every one of them, in file order.
func TestAllErrorsCollected(t *testing.T) {
	src := `
server: {listen: "nope"}
log: {level: loud, format: xml}
practices:
  - id: p1
    name: One
    connections:
      - name: ehr
        vendor: nope
        base_url: nope
        auth: {type: nope}
        timeout: soon
        sync: [{class: nope, interval: later}]
apps:
  - name: a1
    key: nope
    practices: [nope]
`
	_, diags := parse(t, src)
	if n := diags.Count(SeverityError); n != 11 {
		t.Fatalf("got %d errors, want 11:\n%v", n, diags)
	}
	for i := 1; i < len(diags); i++ {
		a, b := diags[i-1], diags[i]
		if a.Line > b.Line || (a.Line == b.Line && a.Col > b.Col) {
			t.Errorf("diagnostics not sorted: %s before %s", a, b)
		}
	}
}

// TestAliasExpansionBounded feeds a file whose aliases would expand to
// billions of values: decoding must stop with one error.
func TestAliasExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-sync: &s [")
	for i := 0; i < 200; i++ {
		b.WriteString("{class: demographics},")
	}
	b.WriteString("]\n")
	b.WriteString("x-conns: &c [")
	for i := 0; i < 200; i++ {
		b.WriteString("{name: a, vendor: generic, base_url: 'https://e.example.org', auth: {type: none}, sync: *s},")
	}
	b.WriteString("]\npractices: [")
	for i := 0; i < 200; i++ {
		b.WriteString("{id: p, name: n, connections: *c},")
	}
	b.WriteString("]\n")
	start := time.Now()
	_, diags := parse(t, b.String())
	if time.Since(start) > 10*time.Second {
		t.Errorf("decoding took %v", time.Since(start))
	}
	found := false
	for _, d := range diags {
		found = found || strings.Contains(d.Message, "expands to more than")
	}
	if !found {
		t.Errorf("no expansion error among %d diagnostics", len(diags))
	}
}

func TestDiagnosticFormat(t *testing.T) {
	d := Diagnostic{File: "a.yaml", Line: 3, Col: 7, Severity: SeverityError, Message: "bad", Hint: "fix it"}
	if got := d.String(); got != "a.yaml:3:7: error: bad (hint: fix it)" {
		t.Errorf("String() = %q", got)
	}
	d = Diagnostic{File: "a.yaml", Line: 3, Severity: SeverityWarning, Message: "meh"}
	if got := d.String(); got != "a.yaml:3: warning: meh" {
		t.Errorf("String() = %q", got)
	}
	d = Diagnostic{File: "a.yaml", Severity: SeverityError, Message: "gone"}
	if got := d.String(); got != "a.yaml: error: gone" {
		t.Errorf("String() = %q", got)
	}
	ds := Diagnostics{{File: "a", Line: 2, Severity: SeverityWarning, Message: "w"}, {File: "a", Line: 1, Severity: SeverityError, Message: "e"}}
	ds.Sort()
	if ds.Error() != "a:1: error: e\na:2: warning: w" || !ds.HasErrors() || ds.Count(SeverityWarning) != 1 {
		t.Errorf("Diagnostics = %q", ds.Error())
	}
	var err error = ds
	var back Diagnostics
	if !errors.As(fmt.Errorf("wrapped: %w", err), &back) || len(back) != 2 {
		t.Errorf("errors.As did not recover Diagnostics")
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "vendor", "base_url", "page_size", "timeout"}
	for in, want := range map[string]string{
		"pagesize": "page_size", "PageSize": "page_size", "baseurl": "base_url", "vender": "vendor",
		"timout": "timeout", "colour": "", "x": "",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWithVendors(t *testing.T) {
	src := edit("vendor: generic", "vendor: athena")
	if _, diags := parse(t, src); !diags.HasErrors() {
		t.Fatalf("athena accepted with default vendors")
	}
	if _, diags := parse(t, src, WithVendors("generic", "athena")); len(diags) != 0 {
		t.Fatalf("athena refused with WithVendors: %v", diags)
	}
}

func TestConnectionResourceTypes(t *testing.T) {
	c := Connection{Sync: []SyncPolicy{{Class: "scheduling"}, {Class: "nope"}, {Class: "demographics"}, {Class: "scheduling"}}}
	got := strings.Join(c.ResourceTypes(), ",")
	if got != "Schedule,Slot,Appointment,Patient" {
		t.Errorf("ResourceTypes = %s", got)
	}
}

func TestAthenahealthPracticeID(t *testing.T) {
	src := edit("vendor: generic", "vendor: athenahealth")
	_, diags := parse(t, src)
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "practice_id") {
		t.Fatalf("athenahealth without practice_id: %v", diags)
	}
	c, diags := parse(t, edit("vendor: generic", "vendor: athenahealth\n        practice_id: \"195900\""))
	if diags.HasErrors() {
		t.Fatalf("athenahealth with practice_id: %v", diags)
	}
	if got := c.Practices[0].Connections[0].PracticeID; got != "195900" {
		t.Fatalf("practice id %q", got)
	}
	if _, diags := parse(t, edit("vendor: generic", "vendor: athenahealth\n        practice_id: a-1.Practice-9")); !diags.HasErrors() {
		t.Fatal("a non-numeric practice id was accepted")
	}
}
