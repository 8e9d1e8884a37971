package vendors

import (
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/vendors/athenahealth"
)

func TestLookup(t *testing.T) {
	for _, name := range []string{"generic", "epic", "athenahealth", "oracle-health"} {
		p, err := Lookup(name)
		if err != nil || p.Name() != name {
			t.Fatalf("Lookup(%q) = %v, %v", name, p, err)
		}
		if q, _ := Lookup(name); q == p {
			t.Fatalf("Lookup(%q) shares one instance", name)
		}
	}
	if _, err := Lookup("cerner-ish"); err == nil || !strings.Contains(err.Error(), "athenahealth, epic, generic, oracle-health") {
		t.Fatalf("unknown vendor: %v", err)
	}
	if got := strings.Join(Names(), ","); got != "athenahealth,epic,generic,oracle-health" {
		t.Fatalf("Names() = %s", got)
	}
}

func TestNewWithParams(t *testing.T) {
	if _, err := New("athenahealth", Params{}); err == nil || !strings.Contains(err.Error(), "practice id") {
		t.Fatalf("athenahealth without a practice id: %v", err)
	}
	p, err := New("athenahealth", Params{PracticeID: "195900"})
	if err != nil {
		t.Fatal(err)
	}
	if ap, ok := p.(*athenahealth.Profile); !ok || ap.PracticeID() != "195900" {
		t.Fatalf("athenahealth profile %T %v", p, p)
	}
	if v := p.SearchParams("Patient", time.Time{}, 10); v.Get("ah-practice") != "Organization/a-1.Practice-195900" {
		t.Fatalf("params %v", v)
	}
	for _, name := range []string{"generic", "epic", "oracle-health"} {
		if p, err := New(name, Params{}); err != nil || p.Name() != name {
			t.Fatalf("New(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := New("nope", Params{}); err == nil {
		t.Fatal("unknown vendor accepted")
	}
}
