-- mediflow embedded store, schema version 1.
-- Times are INTEGER unix nanoseconds (UTC); NULL means "not set".
-- Every table carries the practice (tenant) and every query filters on it.

-- Inbound payloads exactly as received.
CREATE TABLE raw_payloads (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    practice     TEXT    NOT NULL,
    connection   TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    request_url  TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    fetched_at   INTEGER,
    body         BLOB    NOT NULL
);
CREATE INDEX raw_payloads_by_practice ON raw_payloads (practice, id);

-- Every version of every canonical resource, append-only. seq is the
-- change-feed position; prev_seq chains a resource's versions (0 ends the
-- chain). The current version of a resource is the highest seq for its
-- (practice, resource_type, id); the store keeps that mapping in memory and
-- rebuilds it from this table when it opens.
CREATE TABLE resource_versions (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    practice            TEXT    NOT NULL,
    resource_type       TEXT    NOT NULL,
    id                  TEXT    NOT NULL,
    version             INTEGER NOT NULL,
    prev_seq            INTEGER NOT NULL,
    source_version_id   TEXT    NOT NULL,
    source_last_updated INTEGER,
    content_hash        BLOB    NOT NULL,
    connection          TEXT    NOT NULL,
    raw_id              INTEGER NOT NULL,
    stored_at           INTEGER NOT NULL,
    deleted             INTEGER NOT NULL,
    body                BLOB    NOT NULL
);
CREATE INDEX resource_versions_feed ON resource_versions (practice, seq);

CREATE TABLE cursors (
    practice      TEXT    NOT NULL,
    connection    TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    watermark     INTEGER,
    page_url      TEXT    NOT NULL,
    run_id        INTEGER NOT NULL,
    run_start     INTEGER,
    updated_at    INTEGER,
    PRIMARY KEY (practice, connection, resource_type)
) WITHOUT ROWID;

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    practice    TEXT    NOT NULL,
    connection  TEXT    NOT NULL,
    run_trigger TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    error       TEXT    NOT NULL,
    stats       TEXT    NOT NULL -- JSON object: resource type -> TypeStats
);
CREATE INDEX sync_runs_by_practice ON sync_runs (practice, id);
CREATE INDEX sync_runs_by_connection ON sync_runs (practice, connection, id);

-- Every CapabilityStatement fetched; the latest per connection is current.
CREATE TABLE capabilities (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    practice     TEXT    NOT NULL,
    connection   TEXT    NOT NULL,
    fetched_at   INTEGER,
    fhir_version TEXT    NOT NULL,
    software     TEXT    NOT NULL,
    body         BLOB    NOT NULL
);
CREATE INDEX capabilities_by_connection ON capabilities (practice, connection, fetched_at, id);

CREATE TABLE audit_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    practice TEXT    NOT NULL,
    time     INTEGER,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    entity   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX audit_events_by_practice ON audit_events (practice, id);
