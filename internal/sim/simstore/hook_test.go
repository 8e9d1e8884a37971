package simstore

import (
	"testing"
	"time"
)

func TestOnWriteSeesEveryPutInOrder(t *testing.T) {
	s := New(func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	if err := s.Load("Patient", "loaded", time.Now(), []byte(`{"resourceType":"Patient","id":"loaded"}`)); err != nil {
		t.Fatal(err)
	}
	type call struct {
		id      string
		vid     int
		created bool
	}
	var calls []call
	s.SetOnWrite(func(v *Version, created bool) { calls = append(calls, call{v.ID, v.VersionID, created}) })
	for _, id := range []string{"a", "b", "a"} {
		if _, _, err := s.Put("Patient", id, []byte(`{"resourceType":"Patient"}`), Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Put("Patient", "a", []byte(`{"resourceType":"Patient"}`), Precondition{IfMatch: 1}); err == nil {
		t.Fatal("stale If-Match accepted")
	}
	want := []call{{"a", 1, true}, {"b", 1, true}, {"a", 2, false}}
	if len(calls) != len(want) {
		t.Fatalf("hook calls %v, want %v (Load and failed writes are not writes)", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %v, want %v", i, calls[i], want[i])
		}
	}
}
