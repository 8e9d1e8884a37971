-- Webhook subscriptions, the deliveries queued for them, and per practice the
-- change-feed position up to which deliveries have been made.

-- secret is the signing secret sealed by the caller (AES-GCM in package
-- delivery); the store never sees the key. types is a JSON array of FHIR
-- resource types ('[]': all).
CREATE TABLE webhooks (
    practice   TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    app        TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    secret     BLOB    NOT NULL,
    types      TEXT    NOT NULL,
    active     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (practice, id)
) WITHOUT ROWID;

-- One row per (webhook, event). id orders a webhook's queue. AUTOINCREMENT:
-- delivered rows are pruned, and an id handed out once (and perhaps shown to
-- an app as a dead letter's id) must never name another delivery.
CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    practice      TEXT    NOT NULL,
    app           TEXT    NOT NULL,
    webhook_id    TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    payload       BLOB    NOT NULL,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    next_attempt  INTEGER NOT NULL,
    first_attempt INTEGER,
    last_attempt  INTEGER,
    last_error    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    delivered_at  INTEGER,
    FOREIGN KEY (practice, webhook_id) REFERENCES webhooks (practice, id)
);
-- The idempotency key: one delivery per event and webhook.
CREATE UNIQUE INDEX deliveries_event ON deliveries (practice, webhook_id, event_id);
-- Queue heads: the lowest pending id of each webhook.
CREATE INDEX deliveries_pending ON deliveries (practice, webhook_id, id) WHERE status = 'pending';
-- Listing by status (dead letters) and pruning.
CREATE INDEX deliveries_by_status ON deliveries (practice, status, id);

CREATE TABLE delivery_cursors (
    practice   TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
