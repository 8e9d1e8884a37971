-- HL7 v2 messages, inbound and outbound, raw bytes and metadata.
-- Rows are appended in id order; only the processing state (status, ack_code,
-- error, attempts, duplicates, sent_at, processed_at) changes afterwards.
--
-- id is a plain INTEGER PRIMARY KEY (max(id) + 1), not AUTOINCREMENT: that
-- would rewrite a sqlite_sequence page in every commit, about 10 us per
-- single-message put (measured). Nothing deletes messages today; a retention
-- job must keep the newest row, or ids could be handed out again.
--
-- Indexes are chosen for the single-message commit: each index costs one
-- more WAL frame per commit. (practice, id) grows at its end; the dedup index
-- is the only random-position insert. Filters other than practice and id
-- (status, time, control id, ...) scan the practice's rows newest or oldest
-- first.
CREATE TABLE hl7_messages (
    id                 INTEGER PRIMARY KEY,
    practice           TEXT    NOT NULL,
    direction          TEXT    NOT NULL,
    channel            TEXT    NOT NULL,
    peer               TEXT    NOT NULL,
    sending_app        TEXT    NOT NULL,
    sending_facility   TEXT    NOT NULL,
    receiving_app      TEXT    NOT NULL,
    receiving_facility TEXT    NOT NULL,
    message_code       TEXT    NOT NULL,
    trigger_event      TEXT    NOT NULL,
    control_id         TEXT    NOT NULL,
    received_at        INTEGER NOT NULL,
    sent_at            INTEGER,
    processed_at       INTEGER,
    ack_code           TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    attempts           INTEGER NOT NULL,
    duplicates         INTEGER NOT NULL,
    error              TEXT    NOT NULL,
    -- sender_hash is a 64-bit hash of (practice, channel, sending_app,
    -- sending_facility) for inbound messages with a control id, NULL
    -- otherwise: with control_id it is the de-duplication key. The lookup
    -- compares the real columns too, so a hash collision costs a row read,
    -- never a wrong answer.
    sender_hash        INTEGER,
    body               BLOB    NOT NULL
);
-- Listing and paging by id within a practice.
CREATE INDEX hl7_messages_by_practice ON hl7_messages (practice, id);
-- The de-duplication lookup. A sender's entries sit together, ordered by
-- control id: senders number their messages in sequence, so inserts land
-- near each other (a hash of the whole key would scatter them, one more WAL
-- page per message in a batch), and the key is short (no practice, channel,
-- application and facility text in every entry).
CREATE INDEX hl7_messages_dedup ON hl7_messages (sender_hash, control_id, received_at) WHERE sender_hash IS NOT NULL;
