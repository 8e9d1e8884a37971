package mapping

import "testing"

func TestVersionRanges(t *testing.T) {
	for _, c := range []struct {
		rng, version string
		want         bool
	}{
		{"", "May 2026", true},
		{"*", "", true},
		{">= May 2024", "May 2026", true},
		{">= May 2024", "February 2024", false},
		{">= May 2024, < May 2026", "November 2025", true},
		{">= May 2024, < May 2026", "May 2026", false},
		{"= Aug 2025", "August 2025", true},
		{">= 5.0, < 5.1", "5.0.1.698", true},
		{">= 5.0, < 5.1", "5.7.0", false},
		{">= 5.7", "5.7.0", true},
		{"> 1.6", "1.6", false},
		{"<= 1.6", "1.6.0", true},
		{"1.6", "1.6", true},
		{"== 1.6", "1.7", false},
		// An unknown version is the newest release.
		{">= 1.6", "", true},
		{"< 2", "", false},
		{"= 1.6", "", false},
	} {
		r, err := parseRange(c.rng)
		if err != nil {
			t.Fatalf("%q: %v", c.rng, err)
		}
		var v []int
		if c.version != "" {
			if v, err = parseVersion(c.version); err != nil {
				t.Fatalf("%q: %v", c.version, err)
			}
		}
		if got := r.matches(v); got != c.want {
			t.Errorf("%q matches %q: %v, want %v", c.rng, c.version, got, c.want)
		}
	}
	for _, bad := range []string{">= soon", "May", "1..2", "v", ">= Foo 2024"} {
		if _, err := parseRange(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
