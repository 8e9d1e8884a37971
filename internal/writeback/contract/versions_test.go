package contract

import (
	"strings"
	"testing"
)

func TestMatchVersion(t *testing.T) {
	cases := []struct {
		rng, version string
		want         bool
	}{
		{"", "May 2026", true},
		{"*", "5.0.1", true},
		{"", "", true},
		{">= May 2024", "May 2026", true},
		{">= May 2024", "Feb 2024", false},
		{">= May 2024", "may 2024", true},
		{">= May 2024, < May 2026", "November 2025", true},
		{">= May 2024, < May 2026", "May 2026", false},
		{">= 5.0, < 5.1", "5.0.1.698", true},
		{">= 5.0, < 5.1", "5.1", false},
		{">= 5.0, < 5.1", "4.9.9", false},
		{">= 5.7", "5.7.0", true},
		{">= 5.7", "v5.10", true}, // numbers, not text: 10 > 7
		{"= 1.6", "1.6.0", true},
		{"== 1.6", "1.6.1", false},
		{"<= 1.6", "1.5", true},
		{"> 1.6", "1.6", false},
		{"1.6", "1.6", true},
		// an unknown version is the newest release
		{">= 5.7", "", true},
		{">= 5.0, < 5.1", "", false},
		{"= 1.6", "", false},
	}
	for _, tc := range cases {
		got, err := MatchVersion(tc.rng, tc.version)
		if err != nil {
			t.Errorf("MatchVersion(%q, %q): %v", tc.rng, tc.version, err)
			continue
		}
		if got != tc.want {
			t.Errorf("MatchVersion(%q, %q) = %v, want %v", tc.rng, tc.version, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{">= soon", "1.0"}, {">= 1.0", "latest"}, {">= 1.x", "1.0"}, {">=", "1.0"}, {"", "Maybe 2026"}} {
		if _, err := MatchVersion(bad[0], bad[1]); err == nil {
			t.Errorf("MatchVersion(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestRegistryVersions(t *testing.T) {
	reg := Default()
	for _, tc := range []struct{ version, title string }{
		{"5.0.1.698", "NextGen Enterprise"},
		{"5.7.0", "NextGen Office"},
		{"", "NextGen Office"},            // unknown: the newest product
		{"5.3", "NextGen's FHIR servers"}, // neither range: the contract without one
	} {
		c, err := reg.For(VendorNextGen, tc.version)
		if err != nil {
			t.Fatalf("nextgen %q: %v", tc.version, err)
		}
		if r := c.Support(NoteCreate).Reason; !strings.Contains(r, tc.title) {
			t.Errorf("nextgen %q: reason %q is not %s's", tc.version, r, tc.title)
		}
	}
	if _, err := reg.For(VendorNextGen, "five"); err == nil {
		t.Error("an unreadable version was accepted")
	}
	if _, err := reg.For(VendorEpic, "five"); err == nil {
		t.Error("an unreadable version was accepted by a contract without a range")
	}
	// every shipped range can be read
	for _, v := range reg.Vendors() {
		for _, c := range reg.Contracts(v) {
			if _, err := MatchVersion(c.Versions, ""); err != nil {
				t.Errorf("%s: %v", v, err)
			}
		}
	}

	// A vendor whose contract changed at a release: the older contract is
	// chosen for older versions, the newer for newer and unknown ones.
	old := New("acme", "< May 2025", "", refuse(NoteCreate, "acme before May 2025 has no note API"))
	cur := New("acme", ">= May 2025", "", Support{Intent: NoteCreate, Supported: true, Channel: ChannelFHIR, ResourceType: "DocumentReference", Operation: "create"})
	r := NewRegistry(old, cur)
	for _, tc := range []struct {
		version string
		want    *Contract
	}{{"Feb 2025", old}, {"May 2025", cur}, {"Aug 2026", cur}, {"", cur}} {
		c, err := r.For("acme", tc.version)
		if err != nil || c != tc.want {
			t.Errorf("acme %q: got contract %p, want %p (%v)", tc.version, c, tc.want, err)
		}
	}
	// no range matches and no contract without one
	if _, err := NewRegistry(old).For("acme", "May 2026"); err == nil {
		t.Error("a version outside every range got a contract")
	}
	bad := NewRegistry(New("acme", ">= someday", ""))
	if _, err := bad.For("acme", "1.0"); err == nil {
		t.Error("an unreadable range was accepted")
	}
}
