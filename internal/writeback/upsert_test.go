package writeback

import (
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// An upsert (contract.OpUpsert, e.g. condition.upsert) is executed as a
// create when the intent names no target record, and refused at submission
// as an update without a target would be otherwise.
func TestUpsertWithoutTargetCreates(t *testing.T) {
	w := newWorld(t, false, func(o *Options) {
		base := o.Targets[practice]
		inner := base.Support
		base.Support = func(i contract.Intent) contract.Support {
			s := inner(contract.NoteCreate)
			s.Intent, s.Operation = i, contract.OpUpsert
			return s
		}
		o.Targets[practice] = base
	})
	r := noteRequest("upsert-1", w.pids[0], "VXBzZXJ0")
	r.Kind = contract.ConditionUpsert
	in := submit(t, w.ob, r)
	run(t, w.ob)
	got := waitFinal(t, w.st, 10*time.Second, in.ID)[in.ID]
	if got.Status != store.IntentConfirmed || got.ExternalID == "" {
		t.Fatalf("final %+v", got)
	}
	if recs := w.docs(t); len(recs[in.ID]) != 1 {
		t.Fatalf("records by intent %v", recs)
	}
}
