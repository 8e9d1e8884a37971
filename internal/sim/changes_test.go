package sim

import (
	"bytes"
	"sort"
	"testing"
	"time"
)

func TestChangeGeneratorDeterministic(t *testing.T) {
	run := func() (*Sim, []Change) {
		clk := newClock(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
		s, err := New(Config{Now: clk.Now, Tenants: []TenantConfig{{ID: "a", Flavor: "epic", Seed: 5, Data: smallData(30)}}})
		if err != nil {
			t.Fatal(err)
		}
		var all []Change
		for range 10 {
			clk.Advance(time.Second)
			cs, err := s.Tick("a", 20)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, cs...)
		}
		return s, all
	}
	s1, c1 := run()
	s2, c2 := run()
	if len(c1) != 200 || len(c1) != len(c2) {
		t.Fatalf("changes %d and %d, want 200", len(c1), len(c2))
	}
	kinds := map[string]int{}
	for i := range c1 {
		if c1[i] != c2[i] {
			t.Fatalf("change %d differs: %+v vs %+v", i, c1[i], c2[i])
		}
		k := c1[i].ResourceType
		if c1[i].Created {
			k = "new " + k
		}
		kinds[k]++
	}
	for _, want := range []string{"Appointment", "new Appointment", "new Observation", "Patient"} {
		if kinds[want] == 0 {
			t.Errorf("no %q changes among 200: %v", want, kinds)
		}
	}
	for _, rt := range s1.ResourceTypes("a") {
		a, b := s1.Current("a", rt), s2.Current("a", rt)
		if len(a) != len(b) {
			t.Fatalf("%s: %d vs %d", rt, len(a), len(b))
		}
		ids := make([]string, 0, len(a))
		for id := range a {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if !bytes.Equal(a[id], b[id]) {
				t.Fatalf("%s/%s differs between identical runs", rt, id)
			}
		}
	}
	// Updated resources got new versions with the clock's time.
	for _, c := range c1 {
		if !c.Created {
			body, _ := s1.Get("a", c.ResourceType, c.ID)
			if !bytes.Contains(body, []byte(`"lastUpdated":"2026-07-01T12:00:`)) {
				t.Errorf("%s/%s lastUpdated not from the clock: %.200s", c.ResourceType, c.ID, body)
			}
			break
		}
	}
}

func TestTickOnEmptyTenant(t *testing.T) {
	s, err := New(Config{Tenants: []TenantConfig{{ID: "empty"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing to update and no patients yet: the generator creates a patient first.
	cs, err := s.Tick("empty", 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 30 || s.Counts("empty")["Patient"] == 0 {
		t.Fatalf("%d changes, counts %v", len(cs), s.Counts("empty"))
	}
}
