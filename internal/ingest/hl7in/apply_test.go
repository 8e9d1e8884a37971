package hl7in

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/store"
)

func TestMarkReplacedKeepsMembersAndIsIdempotent(t *testing.T) {
	mg := v2fhir.Merge{Type: "Patient", From: "old", Into: "new"}
	in := []byte(`{"resourceType":"Patient","id":"old","active":true,"name":[{"family":"Doe"}],` +
		`"link":[{"other":{"reference":"RelatedPerson/r1"},"type":"seealso"}]}`)
	out, err := markReplaced(in, mg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"old","active":false,"name":[{"family":"Doe"}],` +
		`"link":[{"other":{"reference":"RelatedPerson/r1"},"type":"seealso"},{"other":{"reference":"Patient/new"},"type":"replaced-by"}]}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	again, err := markReplaced(out, mg)
	if err != nil || string(again) != string(out) {
		t.Errorf("second application changed the body: %s (%v)", again, err)
	}
	// A record without active or link gets both, after its members.
	out, err = markReplaced([]byte(`{"resourceType":"Patient","id":"old"}`), mg)
	if err != nil || string(out) != `{"resourceType":"Patient","id":"old","active":false,"link":[{"other":{"reference":"Patient/new"},"type":"replaced-by"}]}` {
		t.Errorf("got %s (%v)", out, err)
	}
	for _, bad := range []string{`[1]`, `{"link":{}}`, `{"a":1} x`, `{"a":`} {
		if _, err := markReplaced([]byte(bad), mg); err == nil {
			t.Errorf("markReplaced(%s) did not fail", bad)
		}
	}
	stub, err := replacedStub(mg)
	if err != nil || string(stub) != `{"resourceType":"Patient","id":"old","active":false,"link":[{"other":{"reference":"Patient/new"},"type":"replaced-by"}]}` {
		t.Errorf("stub %s (%v)", stub, err)
	}
}

func TestStripesDoNotDeadlock(t *testing.T) {
	var s stripes
	var wg sync.WaitGroup
	keys := [][]string{{"Patient/a", "Patient/b"}, {"Patient/b", "Patient/a"}, {"Observation/x", "Patient/a", "Patient/a"}}
	done := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 500 {
				var unlock func()
				if (i+j)%50 == 0 {
					unlock = s.lockAll()
				} else {
					unlock = s.lock(keys[(i+j)%len(keys)])
				}
				unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("stripe locks deadlocked")
	}
}

// ADT^A40: everything that referenced the merged patient points at the
// surviving one, and the merged record is inactive with a replaced-by link;
// applying the merge again writes nothing.
func TestMergeRepointsReferences(t *testing.T) {
	st := openStore(t)
	ids := putMessages(t, st, "feed",
		adt("A01", "F", "M1", "OLD", "Doe"),
		adt("A01", "F", "M2", "NEW", "Doe"),
		oru("F", "M3", "OLD", "2345-7", "99"),
		oru("F", "M4", "OLD", "718-7", "13"),
		a40("F", "M5", "NEW", "OLD"))
	// A resource type the search index does not know, referencing OLD: found through the change feed.
	if _, err := st.WriteResources(t.Context(), testPractice, []store.ResourceWrite{{ResourceType: "Basic", ID: "b1", Connection: "x",
		Body: []byte(`{"resourceType":"Basic","id":"b1","subject":{"reference":"Patient/p-OLD"}}`)}}); err != nil {
		t.Fatal(err)
	}
	p := newTestPipeline(t, st, newFakeConverter(), nil)
	runPipeline(t, p)
	waitStatus(t, st, ids[4], store.MsgProcessed)

	for _, ref := range []struct{ rt, id string }{{"Observation", "o-OLD-2345-7"}, {"Observation", "o-OLD-718-7"}, {"Basic", "b1"}} {
		r, err := st.GetResource(t.Context(), testPractice, ref.rt, ref.id)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Subject struct{ Reference string } `json:"subject"`
		}
		json.Unmarshal(r.Body, &body)
		if body.Subject.Reference != "Patient/p-NEW" || r.RawID != ids[4] || r.Connection != "feed" {
			t.Errorf("%s/%s: subject %q raw %d connection %q", ref.rt, ref.id, body.Subject.Reference, r.RawID, r.Connection)
		}
	}
	old, err := st.GetResource(t.Context(), testPractice, "Patient", "p-OLD")
	if err != nil {
		t.Fatal(err)
	}
	var ob struct {
		Active *bool
		Link   []link
	}
	json.Unmarshal(old.Body, &ob)
	if ob.Active == nil || *ob.Active || len(ob.Link) != 1 || ob.Link[0].Type != "replaced-by" || ob.Link[0].Other.Reference != "Patient/p-NEW" {
		t.Errorf("merged patient %s", old.Body)
	}
	page, err := st.Search(t.Context(), testPractice, store.Query{ResourceType: "Observation",
		Params: []store.SearchParam{{Name: "patient", Values: []string{"Patient/p-NEW"}}}})
	if err != nil || page.Total != 2 {
		t.Errorf("Observation?patient=p-NEW: %d (%v), want 2", page.Total, err)
	}

	// Replaying the merge changes nothing.
	before := versions(t, st, "Observation", "o-OLD-2345-7")
	if _, err := p.Replay(t.Context(), testPractice, Selection{IDs: []int64{ids[4]}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, ids[4], store.MsgProcessed)
	waitNone(t, st)
	if after := versions(t, st, "Observation", "o-OLD-2345-7"); after != before {
		t.Errorf("replaying the merge made %d versions, had %d", after, before)
	}
	if n := versions(t, st, "Patient", "p-OLD"); n != 2 {
		t.Errorf("merged patient has %d versions, want 2", n)
	}
}
