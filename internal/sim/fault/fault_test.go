package fault

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEveryLimitAndMatching(t *testing.T) {
	s := NewSet(1)
	if err := s.Replace([]Fault{
		{Endpoint: "Patient", Kind: ServerError, Every: 3, Limit: 2},
		{Endpoint: "*", Kind: Latency, Latency: Duration(time.Millisecond)},
		{Endpoint: "Patient", Kind: TokenExpiry},
		{Endpoint: "Patient", Kind: Malformed},
	}); err != nil {
		t.Fatal(err)
	}
	var fails []int
	for i := 1; i <= 12; i++ {
		d := s.Decide(Request{Endpoint: "Patient"})
		if d.Fail != nil {
			fails = append(fails, i)
		}
		if d.Latency != time.Millisecond {
			t.Fatalf("request %d latency %v", i, d.Latency)
		}
		if d.ExpireTokens || d.Malformed {
			t.Fatal("first-page, non-search request matched page-only faults")
		}
	}
	if len(fails) != 2 || fails[0] != 3 || fails[1] != 6 {
		t.Fatalf("every 3, limit 2 fired on %v", fails)
	}
	d := s.Decide(Request{Endpoint: "Patient", NextPage: true, Search: true})
	if !d.ExpireTokens || !d.Malformed {
		t.Fatalf("next page: %+v", d)
	}
	if d := s.Decide(Request{Endpoint: "Observation", NextPage: true, Search: true}); d.ExpireTokens || d.Fail != nil || d.Latency == 0 {
		t.Fatalf("other endpoint: %+v", d)
	}
	st := s.List()
	if st[0].Fired != 2 || st[0].Seen != 6 {
		t.Errorf("counters %+v", st[0])
	}
}

func TestRateIsSeeded(t *testing.T) {
	run := func(seed uint64) (n int) {
		s := NewSet(seed)
		_ = s.Replace([]Fault{{Kind: Unavailable, Rate: 0.25}})
		for range 1000 {
			if s.Decide(Request{Endpoint: "Encounter"}).Fail != nil {
				n++
			}
		}
		return n
	}
	a, b := run(7), run(7)
	if a != b || a < 180 || a > 320 {
		t.Fatalf("rate 0.25 fired %d and %d times of 1000", a, b)
	}
}

func TestFirstTerminalWins(t *testing.T) {
	s := NewSet(1)
	_ = s.Replace([]Fault{{Kind: TooManyRequests}, {Kind: ServerError}})
	d := s.Decide(Request{Endpoint: "Patient"})
	if d.Fail == nil || d.Fail.Kind != TooManyRequests {
		t.Fatalf("%+v", d.Fail)
	}
	if st := s.List(); st[1].Seen != 0 {
		t.Errorf("second terminal fault evaluated: %+v", st[1])
	}
}

func TestValidateAndParseSpec(t *testing.T) {
	bad := []Fault{{Kind: "teapot"}, {Kind: Latency}, {Kind: ServerError, Rate: 1.5}, {Kind: ServerError, Rate: 0.5, Every: 2}, {Kind: ServerError, Every: -1}}
	for _, f := range bad {
		if f.Validate() == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	tenant, f, err := ParseSpec("tenant=acme, endpoint=Patient, kind=503, rate=0.05, retry-after=2500ms, limit=3")
	if err != nil || tenant != "acme" || f.Endpoint != "Patient" || f.Kind != Unavailable || f.Rate != 0.05 || f.Limit != 3 || f.RetryAfterSeconds() != 3 {
		t.Fatalf("%q %+v %v", tenant, f, err)
	}
	if _, f, err := ParseSpec("kind=latency,latency=200ms,every=4"); err != nil || time.Duration(f.Latency) != 200*time.Millisecond || f.Every != 4 {
		t.Fatalf("%+v %v", f, err)
	}
	for _, spec := range []string{"kind=500,color=red", "kind=500,rate=x", "kind", "kind=latency"} {
		if _, _, err := ParseSpec(spec); err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
	var fs []Fault
	if err := json.Unmarshal([]byte(`[{"kind":"latency","latency":"1.5s"},{"kind":"latency","latency":250}]`), &fs); err != nil {
		t.Fatal(err)
	}
	if time.Duration(fs[0].Latency) != 1500*time.Millisecond || time.Duration(fs[1].Latency) != 250*time.Millisecond {
		t.Fatalf("%+v", fs)
	}
	out, _ := json.Marshal(fs[0])
	if string(out) != `{"kind":"latency","latency":"1.5s"}` {
		t.Errorf("marshal %s", out)
	}
}
