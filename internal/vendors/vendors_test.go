package vendors

import (
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, name := range []string{"generic", "epic"} {
		p, err := Lookup(name)
		if err != nil || p.Name() != name {
			t.Fatalf("Lookup(%q) = %v, %v", name, p, err)
		}
		if q, _ := Lookup(name); q == p {
			t.Fatalf("Lookup(%q) shares one instance", name)
		}
	}
	if _, err := Lookup("cerner-ish"); err == nil || !strings.Contains(err.Error(), "epic, generic") {
		t.Fatalf("unknown vendor: %v", err)
	}
	if got := strings.Join(Names(), ","); got != "epic,generic" {
		t.Fatalf("Names() = %s", got)
	}
}
