package conceptmap

import "testing"

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"http://a/b", "http://a/b", true},
		{"http://a/b", "http://a/bc", false},
		{"https://fhir.cerner.com/*/codeSet/4", "https://fhir.cerner.com/ec2458f2-1e24-41c8-b71b-0e701af7583d/codeSet/4", true},
		{"https://fhir.cerner.com/*/codeSet/4", "https://fhir.cerner.com/x/codeSet/40", false},
		{"https://fhir.cerner.com/*/codeSet/4", "https://fhir.cerner.com//codeSet/4", false},    // * takes at least one character
		{"https://fhir.cerner.com/*/codeSet/4", "https://fhir.cerner.com/a/b/codeSet/4", false}, // ... and no "/"
		{"urn:oid:1.2.840.114350.1.13.*.7.10.698084.130.*", "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.130.657370.19999000", true},
		{"urn:oid:1.2.840.114350.1.13.*.7.10.698084.130.*", "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.130.", false},
		{"urn:oid:1.2.840.114350.1.13.*.7.10.698084.130.*", "urn:oid:1.2.840.114350.1.13.0.1.7.10.698084.131.1", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", false},
		{"a*b*c", "aXbbYc", true},
		{"*", "", false},
	} {
		if got := matchPattern(tc.pattern, tc.s); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}
