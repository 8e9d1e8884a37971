-- Write-back intents (the outbox of writes to the EHR) and the append-only
-- log of every exchange made for them.

-- seq orders a patient's queue. AUTOINCREMENT: a seq handed out once never
-- names another intent. queue_key is the patient reference, or a key of
-- the intent's own when it names no patient (ordered alone). differences
-- is a JSON array of element paths. Times are Unix nanoseconds.
CREATE TABLE writeback_intents (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    practice         TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    app              TEXT    NOT NULL,
    idem_key         TEXT    NOT NULL,
    request_hash     TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    patient          TEXT    NOT NULL,
    queue_key        TEXT    NOT NULL,
    target_type      TEXT    NOT NULL,
    target_id        TEXT    NOT NULL,
    base_version     TEXT    NOT NULL,
    body             BLOB    NOT NULL,
    vendor_body      BLOB    NOT NULL,
    conflict_policy  TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt     INTEGER NOT NULL,
    first_attempt    INTEGER,
    last_attempt     INTEGER,
    external_id      TEXT    NOT NULL,
    external_version TEXT    NOT NULL,
    last_error       TEXT    NOT NULL,
    rejection        TEXT    NOT NULL,
    differences      TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE UNIQUE INDEX writeback_intents_id ON writeback_intents (practice, id);
-- The idempotency key: one intent per app and key.
CREATE UNIQUE INDEX writeback_intents_key ON writeback_intents (practice, app, idem_key);
-- Queue heads: the lowest open seq of each patient.
CREATE INDEX writeback_intents_open ON writeback_intents (practice, queue_key, seq)
    WHERE status IN ('accepted', 'sending', 'sent');
-- Listing by status (dead letters, rejections) and by patient.
CREATE INDEX writeback_intents_by_status ON writeback_intents (practice, status, seq);
CREATE INDEX writeback_intents_by_patient ON writeback_intents (practice, patient, seq);

CREATE TABLE writeback_attempts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    practice  TEXT    NOT NULL,
    intent_id TEXT    NOT NULL,
    attempt   INTEGER NOT NULL,
    step      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    method    TEXT    NOT NULL,
    path      TEXT    NOT NULL,
    headers   TEXT    NOT NULL,
    body_hash TEXT    NOT NULL,
    status    INTEGER NOT NULL,
    outcome   TEXT    NOT NULL,
    took_ns   INTEGER NOT NULL
);
CREATE INDEX writeback_attempts_intent ON writeback_attempts (practice, intent_id, id);
