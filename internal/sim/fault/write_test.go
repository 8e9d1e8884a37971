package fault

import (
	"testing"
	"time"
)

func TestWriteEndpoints(t *testing.T) {
	s := NewSet(1)
	if err := s.Replace([]Fault{
		{Endpoint: "write:DocumentReference", Kind: Unavailable, Every: 2},
		{Endpoint: "write", Kind: TimeoutAfterCommit, Latency: Duration(time.Second), Limit: 1},
		{Endpoint: "*", Kind: TimeoutAfterCommit, Limit: 1},
	}); err != nil {
		t.Fatal(err)
	}
	// A read of the type matches neither write rule, and timeout-after-commit
	// never applies to reads even under "*".
	if d := s.Decide(Request{Endpoint: "DocumentReference"}); d.Fail != nil || d.AfterCommit != nil {
		t.Fatalf("read: %+v", d)
	}
	// First write: 503 rule seen (not fired, every 2); the first
	// timeout-after-commit rule fires, the "*" one is skipped (one is enough).
	d := s.Decide(Request{Endpoint: "DocumentReference", Write: true})
	if d.Fail != nil || d.AfterCommit == nil || d.AfterCommit.Latency != Duration(time.Second) {
		t.Fatalf("first write: %+v", d)
	}
	// Second write: the 503 fires; the "*" timeout rule (limit 1) fires too,
	// but a terminal fault answers before any commit.
	d = s.Decide(Request{Endpoint: "DocumentReference", Write: true})
	if d.Fail == nil || d.Fail.Kind != Unavailable {
		t.Fatalf("second write: %+v", d)
	}
	// A write of another type is not hit by write:DocumentReference.
	if d := s.Decide(Request{Endpoint: "Appointment", Write: true}); d.Fail != nil || d.AfterCommit != nil {
		t.Fatalf("appointment write: %+v", d)
	}
	st := s.List()
	if st[0].Seen != 2 || st[0].Fired != 1 || st[1].Fired != 1 || st[2].Fired != 1 {
		t.Fatalf("counters %+v", st)
	}
	if _, f, err := ParseSpec("endpoint=write:Patient,kind=timeout-after-commit,latency=50ms"); err != nil || f.Kind != TimeoutAfterCommit || f.Endpoint != "write:Patient" {
		t.Fatalf("spec: %+v %v", f, err)
	}
}
