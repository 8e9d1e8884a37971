-- Queue heads of the write-back outbox, kept in the row (head = 1) so a
-- claim reads the due heads of a practice from a small index, `limit` rows
-- at a time, instead of looking for the lowest open seq of every patient
-- queue (a cost that grew with the backlog).
--
-- Invariant, kept by the store's writes (internal/store/sqlite/intent.go):
-- every (practice, queue_key) with open intents has exactly one head, an
-- open intent; a queue without open intents has none. The head is the
-- lowest open seq, except after a replay put an earlier intent back while
-- a later one was already started: then the earlier one takes the head
-- (see ReplayIntent).
ALTER TABLE writeback_intents ADD COLUMN head INTEGER NOT NULL DEFAULT 0;

-- Existing queues: the lowest open seq of each is its head.
UPDATE writeback_intents SET head = 1 WHERE seq IN (
    SELECT min(seq) FROM writeback_intents
    WHERE status IN ('accepted', 'sending', 'sent')
    GROUP BY practice, queue_key);

-- At most one head per queue: two intents of one patient are never
-- claimable at once, whatever the code above does.
CREATE UNIQUE INDEX writeback_intents_head_queue ON writeback_intents (practice, queue_key)
    WHERE head = 1;
-- Due heads, earliest next attempt first: a claim reads the first rows.
CREATE INDEX writeback_intents_head_due ON writeback_intents (practice, next_attempt, seq)
    WHERE head = 1;
