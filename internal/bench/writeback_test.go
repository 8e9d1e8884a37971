package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback"
)

// TestRunWriteback runs the write-back benchmark small, in-process: every
// intent must be confirmed, written once, and the report must say so.
func TestRunWriteback(t *testing.T) {
	res, err := RunWriteback(context.Background(), WritebackOptions{Intents: 60, Concurrency: 4, Patients: 10, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Statuses[store.IntentConfirmed] != 60 || len(res.Statuses) != 1 {
		t.Errorf("statuses %v, want 60 confirmed only", res.Statuses)
	}
	if res.Notes != 60 || res.Identifiers != 60 || res.Duplicates != 0 {
		t.Errorf("EHR notes %d, identifiers %d, duplicates %d; want 60, 60, 0", res.Notes, res.Identifiers, res.Duplicates)
	}
	if res.Attempts < 60 {
		t.Errorf("%d attempts for 60 intents", res.Attempts)
	}
	if res.Accepted <= 0 || res.Delivered <= 0 || res.SubmitTime <= 0 || res.DeliverTime <= 0 {
		t.Errorf("rates not measured: %+v", res)
	}
	var b strings.Builder
	res.Print(&b)
	for _, want := range []string{"confirmed 60", "60 distinct, 0 duplicates", "intents/s", "writes/s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestWritebackTallyCountsDuplicates: two notes with the same mediflow
// identifier are one identifier, two notes; notes without it are ignored.
func TestWritebackTallyCountsDuplicates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, ids, err := newWritebackSim(ctx, 2, 1)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	before, err := tallyNotes(s)
	if err != nil {
		t.Fatal(err)
	}
	note := func(id, value string) []byte {
		return fmt.Appendf(nil, `{"resourceType":"DocumentReference","id":%q,"status":"current","subject":{"reference":"Patient/%s"},`+
			`"identifier":[{"system":%q,"value":%q}]}`, id, ids[0], writeback.IdentifierSystem, value)
	}
	for _, b := range [][]byte{note("dup-a", "intent-1"), note("dup-b", "intent-1"), note("one", "intent-2"),
		[]byte(`{"resourceType":"DocumentReference","id":"other","status":"current","identifier":[{"system":"urn:x","value":"intent-3"}]}`)} {
		if _, _, _, err := s.Put(Practice, b); err != nil {
			t.Fatal(err)
		}
	}
	after, err := tallyNotes(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := (noteTally{Notes: after.Notes - before.Notes, Identifiers: after.Identifiers - before.Identifiers}); got != (noteTally{Notes: 3, Identifiers: 2}) {
		t.Errorf("tally added %+v, want 3 notes with 2 identifiers", got)
	}
}
