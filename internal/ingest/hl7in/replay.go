package hl7in

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mediflow/mediflow/internal/store"
)

// Selection names the messages to replay: IDs, or (when IDs is empty)
// every inbound message matching Filter. Filter.Status must be set: a
// replay says which states it takes messages from, so processed messages
// are never reprocessed by accident.
type Selection struct {
	IDs    []int64
	Filter store.HL7Filter
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	Replayed int   // messages set back to received
	Skipped  int   // selected by id but outbound or already received
	FirstID  int64 // smallest replayed id (0: none)
}

// ErrNoStatus is returned by Replay for a filter without Status.
var ErrNoStatus = errors.New("hl7in: a replay filter must name the statuses to take messages from (e.g. quarantined)")

// replayable are the states a message may be replayed from.
var replayable = []string{store.MsgProcessed, store.MsgFailed, store.MsgQuarantined, store.MsgIgnored}

// Replay sets the selected inbound messages of a practice back to received,
// so that a processor takes them again (the running pipeline's after
// Pipeline.Replay, or the next one started on the store). It does not
// process them itself. Messages are replayed in id order; reprocessing is
// safe (see the package documentation): content already stored is
// unchanged, and a resource a later message of the channel wrote is not
// put back to older data.
func Replay(ctx context.Context, st store.MessageStore, practice string, sel Selection) (ReplayResult, error) {
	var out ReplayResult
	set := func(m store.HL7Message) error {
		if m.Direction != store.DirectionInbound || !slices.Contains(replayable, m.Status) {
			out.Skipped++
			return nil
		}
		if err := st.UpdateHL7Message(ctx, practice, m.ID, store.HL7Update{Status: store.MsgReceived}); err != nil {
			return fmt.Errorf("hl7in: replay message %d: %w", m.ID, err)
		}
		out.Replayed++
		if out.FirstID == 0 || m.ID < out.FirstID {
			out.FirstID = m.ID
		}
		return nil
	}
	if len(sel.IDs) > 0 {
		ids := slices.Clone(sel.IDs)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			m, err := st.GetHL7Message(ctx, practice, id)
			if err != nil {
				return out, fmt.Errorf("hl7in: replay message %d: %w", id, err)
			}
			if err := set(m); err != nil {
				return out, err
			}
		}
		return out, nil
	}
	f := sel.Filter
	if len(f.Status) == 0 {
		return out, ErrNoStatus
	}
	for _, s := range f.Status {
		if !slices.Contains(replayable, s) {
			return out, fmt.Errorf("hl7in: messages in status %q cannot be replayed (replayable: %v)", s, replayable)
		}
	}
	limit := f.Limit // 0: all
	f.Direction, f.Ascending, f.WithBody = store.DirectionInbound, true, false
	for {
		f.Limit = 1000
		if limit > 0 {
			f.Limit = min(f.Limit, limit-out.Replayed)
			if f.Limit <= 0 {
				return out, nil
			}
		}
		page, err := st.ListHL7Messages(ctx, practice, f)
		if err != nil {
			return out, fmt.Errorf("hl7in: replay: list messages: %w", err)
		}
		for _, m := range page {
			if err := set(m); err != nil {
				return out, err
			}
			f.AfterID = m.ID
		}
		if len(page) < f.Limit {
			return out, nil
		}
	}
}
