package smart

import (
	"slices"
	"testing"
)

func TestParseScope(t *testing.T) {
	cases := []struct {
		in       string
		ctx, res string
		perms    Perms
		query    string
		v1       bool
		v2       string
	}{
		{"system/Patient.read", "system", "Patient", PermRead | PermSearch, "", true, "system/Patient.rs"},
		{"system/Patient.write", "system", "Patient", PermCreate | PermUpdate | PermDelete, "", true, "system/Patient.cud"},
		{"system/*.*", "system", "*", PermsAll, "", true, "system/*.cruds"},
		{"system/Patient.rs", "system", "Patient", PermRead | PermSearch, "", false, "system/Patient.rs"},
		{"user/Observation.r", "user", "Observation", PermRead, "", false, "user/Observation.r"},
		{"patient/Condition.rs?category=http://x|y", "patient", "Condition", PermRead | PermSearch, "category=http://x|y", false, "patient/Condition.rs?category=http://x|y"},
		{"system/Appointment.sr", "system", "Appointment", PermRead | PermSearch, "", false, "system/Appointment.rs"},
	}
	for _, c := range cases {
		sc, err := ParseScope(c.in)
		if err != nil {
			t.Fatalf("ParseScope(%q): %v", c.in, err)
		}
		if sc.Context != c.ctx || sc.Resource != c.res || sc.Perms != c.perms || sc.Query != c.query || sc.V1 != c.v1 {
			t.Errorf("ParseScope(%q) = %+v", c.in, sc)
		}
		if got := sc.V2String(); got != c.v2 {
			t.Errorf("%q V2String = %q, want %q", c.in, got, c.v2)
		}
	}
	for _, bad := range []string{"openid", "system/patient.read", "system/Patient", "system/Patient.", "system/Patient.rx",
		"system/Patient.rr", "admin/Patient.read", "system/Patient.read?x=1", "system/Patient.rs?", "system/Pat-ient.rs"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
}

func TestScopeConversions(t *testing.T) {
	if got := ToV2([]string{"system/Patient.read", "system/Observation.write", "system/*.*", "openid"}); !slices.Equal(got,
		[]string{"system/Patient.rs", "system/Observation.cud", "system/*.cruds", "openid"}) {
		t.Errorf("ToV2 = %v", got)
	}
	if got := ToV1([]string{"system/Patient.rs", "system/Observation.cud", "system/*.cruds", "system/Encounter.r",
		"system/Appointment.rsu", "system/Coverage.r?x=1", "launch"}); !slices.Equal(got,
		[]string{"system/Patient.read", "system/Observation.write", "system/*.*", "system/Encounter.read",
			"system/Appointment.*", "system/Coverage.read", "launch"}) {
		t.Errorf("ToV1 = %v", got)
	}
	// Round trip of the exactly representable ones.
	for _, s := range []string{"system/Patient.read", "system/Patient.write", "system/*.*"} {
		sc, _ := ParseScope(s)
		v2, _ := ParseScope(sc.V2String())
		if back, ok := v2.V1String(); !ok || back != s {
			t.Errorf("round trip %q -> %q -> %q (%v)", s, sc.V2String(), back, ok)
		}
	}
	r, _ := ParseScope("system/Patient.r")
	if _, ok := r.V1String(); ok {
		t.Error(".r alone must not be exactly v1")
	}
	if _, ok := r.V1Floor(); ok {
		t.Error(".r alone has no v1 floor")
	}
	rsu, _ := ParseScope("system/Patient.rsu")
	if f, ok := rsu.V1Floor(); !ok || f.String() != "system/Patient.read" {
		t.Errorf("V1Floor(.rsu) = %v %v", f, ok)
	}
}

func TestScopeAllows(t *testing.T) {
	granted := []string{"system/Patient.read", "system/Observation.rs", "system/DocumentReference.cu", "system/Coverage.rs?status=active", "bogus"}
	cases := []struct {
		res  string
		op   byte
		want bool
	}{
		{"Patient", OpRead, true}, {"Patient", OpSearch, true}, {"Patient", OpCreate, false},
		{"Observation", OpSearch, true}, {"Observation", OpUpdate, false},
		{"DocumentReference", OpCreate, true}, {"DocumentReference", OpUpdate, true}, {"DocumentReference", OpRead, false},
		{"Coverage", OpRead, false}, // filtered scopes are not assumed to allow unfiltered access
		{"Encounter", OpRead, false}, {"Patient", 'x', false},
	}
	for _, c := range cases {
		if got := ScopesAllow(granted, c.res, c.op); got != c.want {
			t.Errorf("ScopesAllow(%s, %c) = %v, want %v", c.res, c.op, got, c.want)
		}
	}
	if !ScopesAllow([]string{"system/*.rs"}, "Slot", OpSearch) || ScopesAllow([]string{"patient/*.rs"}, "Slot", OpDelete) {
		t.Error("wildcard resource handling is wrong")
	}
}

func TestScopeIntersect(t *testing.T) {
	cases := []struct{ a, b, want string }{
		{"system/*.rs", "system/Patient.read", "system/Patient.rs"},
		{"system/Patient.read", "system/*.*", "system/Patient.read"},
		{"system/Patient.read", "system/Patient.r", "system/Patient.r"},
		{"system/Patient.cruds", "system/Patient.write", "system/Patient.cud"},
		{"system/Patient.read", "system/Observation.read", ""},
		{"system/Patient.read", "user/Patient.read", ""},
		{"system/Patient.c", "system/Patient.read", ""},
		{"system/Observation.rs?category=lab", "system/Observation.read", "system/Observation.rs?category=lab"},
		{"system/Observation.rs?category=lab", "system/Observation.rs?category=vital", ""},
	}
	for _, c := range cases {
		a, _ := ParseScope(c.a)
		b, _ := ParseScope(c.b)
		x, ok := a.Intersect(b)
		got := ""
		if ok {
			got = x.String()
		}
		if got != c.want {
			t.Errorf("%s ∩ %s = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestScopesFor(t *testing.T) {
	want := []string{"system/Patient.rs", "system/Observation.read"}
	both := &Discovery{Capabilities: []string{"permission-v1", "permission-v2"}}
	v1 := &Discovery{Capabilities: []string{"permission-v1"}}
	v2 := &Discovery{Capabilities: []string{"permission-v2"}}
	none := &Discovery{}
	if got := ScopesFor(both, want); !slices.Equal(got, want) {
		t.Errorf("both: %v", got)
	}
	if got := ScopesFor(v1, want); !slices.Equal(got, []string{"system/Patient.read", "system/Observation.read"}) {
		t.Errorf("v1: %v", got)
	}
	if got := ScopesFor(none, want); !slices.Equal(got, []string{"system/Patient.read", "system/Observation.read"}) {
		t.Errorf("none: %v", got)
	}
	if got := ScopesFor(v2, want); !slices.Equal(got, []string{"system/Patient.rs", "system/Observation.rs"}) {
		t.Errorf("v2: %v", got)
	}
	if got := ScopesFor(nil, want); !slices.Equal(got, want) {
		t.Errorf("nil: %v", got)
	}
}
