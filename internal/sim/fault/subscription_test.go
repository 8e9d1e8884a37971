package fault

import "testing"

func TestSubscriptionNotifyNeedsExplicitRules(t *testing.T) {
	s := NewSet(1)
	if err := s.Replace([]Fault{{Kind: Drop}}); err != nil { // "*"
		t.Fatal(err)
	}
	if d := s.Decide(Request{Endpoint: EndpointSubscriptionNotify}); d.Fail != nil {
		t.Error("a rule for every endpoint dropped a subscription notification")
	}
	if d := s.Decide(Request{Endpoint: "Patient"}); d.Fail == nil {
		t.Error("the rule for every endpoint did not fire on Patient")
	}
	if err := s.Replace([]Fault{{Endpoint: EndpointSubscriptionNotify, Kind: Drop, Every: 2}}); err != nil {
		t.Fatal(err)
	}
	var fired []bool
	for range 4 {
		fired = append(fired, s.Decide(Request{Endpoint: EndpointSubscriptionNotify}).Fail != nil)
	}
	if fired[0] || !fired[1] || fired[2] || !fired[3] {
		t.Errorf("every=2 fired %v", fired)
	}
	if d := s.Decide(Request{Endpoint: "Patient"}); d.Fail != nil {
		t.Error("the subscription-notify rule fired on Patient")
	}
}
