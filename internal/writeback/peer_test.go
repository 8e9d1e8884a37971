package writeback

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// The idempotency and conflict scenarios against Medplum's FHIR engine, a
// server nobody on this project wrote: conditional create (If-None-Exist)
// and versioned update (If-Match, 412) are its own.

// medplumCreate creates a resource at the peer and returns its id and version.
func medplumCreate(t *testing.T, base, resource string) (string, string) {
	t.Helper()
	hdr, err := fhir.ParseHeader([]byte(resource))
	if err != nil {
		t.Fatal(err)
	}
	h := hdr.ResourceType
	b := peers.LoadBundle(t, base, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+resource+
		`,"request":{"method":"POST","url":"`+h+`"}}]}`))
	id, vid, ok := fhirrest.ParseLocation(b.Entry[0].Response.Location, h)
	if !ok {
		t.Fatalf("medplum: no location in %q", b.Entry[0].Response.Location)
	}
	if vid == "" {
		vid = versionOf(peers.Read(t, base, h, id))
	}
	return id, vid
}

// countAtPeer counts the peer's records carrying an intent's identifier.
func countAtPeer(t *testing.T, c *fhirrest.Client, rt, intentID string) int {
	t.Helper()
	p, err := c.Search(context.Background(), rt, url.Values{"identifier": {IdentifierSystem + "|" + intentID}})
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Bundle.Entry)
}

func TestMedplumPeer(t *testing.T) {
	base := peers.StartMedplum(t)
	pid, _ := medplumCreate(t, base, `{"resourceType":"Patient","name":[{"family":"Peer","given":["Test"]}]}`)
	px := startProxy(t, base)
	direct := fhirClient(t, base)
	st, _ := openStore(t)
	opts := testOptions(st, map[string]Target{practice: {FHIR: fhirClient(t, px.url("")), Support: supports(true)}})
	ob := newOutbox(t, opts)
	run(t, ob)
	ctx := context.Background()

	t.Run("conditional create, resubmitted, answer lost", func(t *testing.T) {
		var once sync.Once
		px.set(func(r *http.Request, _ []byte) action {
			act := pass
			if isCreate(r) && strings.HasPrefix(r.URL.Path, "/DocumentReference") {
				once.Do(func() { act = commitThenDrop })
			}
			return act
		}, nil)
		defer px.set(nil, nil)
		r := noteRequest("peer-1", pid, "UGVlcg==")
		in := submit(t, ob, r)
		if again := submit(t, ob, r); again.ID != in.ID {
			t.Fatalf("resubmission made another intent")
		}
		got := waitFinal(t, st, 20*time.Second, in.ID)[in.ID]
		if got.Status != store.IntentConfirmed {
			t.Fatalf("final %s (%s) %v", got.Status, got.LastError, got.Differences)
		}
		if n := countAtPeer(t, direct, "DocumentReference", in.ID); n != 1 {
			t.Errorf("%d records at Medplum, want 1", n)
		}
		as, _ := ob.Attempts(ctx, practice, in.ID)
		if len(as) == 0 || as[0].Headers["If-None-Exist"] != "identifier="+IdentifierSystem+"|"+in.ID {
			t.Errorf("the first create was not conditional: %+v", as)
		}
	})

	t.Run("conditional create finds the record already there", func(t *testing.T) {
		// A second outbox, not running yet, on its own store.
		st2, _ := openStore(t)
		ob2 := newOutbox(t, testOptions(st2, opts.Targets))
		in := submit(t, ob2, noteRequest("peer-2", pid, "UGVlcjI="))
		// The EHR already holds the write (a commit whose answer we never saw).
		held, err := prepareCreate(docBody(pid, "UGVlcjI="), "DocumentReference", in.ID)
		if err != nil {
			t.Fatal(err)
		}
		medplumCreate(t, base, string(held))
		run(t, ob2)
		got := waitFinal(t, st2, 20*time.Second, in.ID)[in.ID]
		if got.Status != store.IntentConfirmed {
			t.Fatalf("final %s (%s) differences %v", got.Status, got.LastError, got.Differences)
		}
		if n := countAtPeer(t, direct, "DocumentReference", in.ID); n != 1 {
			t.Errorf("%d records at Medplum, want 1 (If-None-Exist must find the first)", n)
		}
		as, _ := ob2.Attempts(ctx, practice, in.ID)
		if len(as) < 1 || as[0].Step != "create" || as[0].Status != http.StatusOK {
			t.Errorf("attempts %+v, want a conditional create answered 200", as)
		}
	})

	t.Run("if-match conflict", func(t *testing.T) {
		for _, policy := range []string{store.ConflictFail, store.ConflictReapply} {
			apptID, v1 := medplumCreate(t, base, fmt.Sprintf(`{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}`, pid))
			// Someone else changes it: Medplum moves to a new version.
			peers.Update(t, base, []byte(fmt.Sprintf(`{"resourceType":"Appointment","id":%q,"status":"booked","description":"front desk","participant":[{"actor":{"reference":"Patient/%s"},"status":"accepted"}]}`, apptID, pid)))
			in := submit(t, ob, Request{Practice: practice, App: "sched", IdempotencyKey: "peer-u-" + policy, Kind: contract.AppointmentResched,
				PatientRef: "Patient/" + pid, TargetID: apptID, BaseVersion: v1, ConflictPolicy: policy, Body: []byte(`{"comment":"from the app"}`)})
			got := waitFinal(t, st, 20*time.Second, in.ID)[in.ID]
			now := string(peers.Read(t, base, "Appointment", apptID))
			switch policy {
			case store.ConflictFail:
				if got.Status != store.IntentConflict || len(got.Differences) != 1 || got.Differences[0] != "comment" || strings.Contains(now, "from the app") {
					t.Errorf("fail: %s (%s) %v", got.Status, got.LastError, got.Differences)
				}
			case store.ConflictReapply:
				if got.Status != store.IntentConfirmed || !strings.Contains(now, "from the app") || !strings.Contains(now, "front desk") {
					t.Errorf("reapply: %s (%s) %v", got.Status, got.LastError, got.Differences)
				}
			}
		}
	})

	t.Run("json patch", func(t *testing.T) {
		docID, _ := medplumCreate(t, base, fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/%s"},"content":[{"attachment":{"contentType":"text/plain","data":"QQ=="}}]}`, pid))
		in := submit(t, ob, Request{Practice: practice, App: "notes", IdempotencyKey: "peer-patch", Kind: contract.ConditionUpsert,
			PatientRef: "Patient/" + pid, TargetID: docID, Body: []byte(`{"description":"patched"}`)})
		got := waitFinal(t, st, 20*time.Second, in.ID)[in.ID]
		if got.Status != store.IntentConfirmed || !strings.Contains(string(peers.Read(t, base, "DocumentReference", docID)), "patched") {
			t.Errorf("patch: %s (%s) %v", got.Status, got.LastError, got.Differences)
		}
	})
}
