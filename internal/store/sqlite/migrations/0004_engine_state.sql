-- Small state documents of the engine's long-running parts (bulk export
-- jobs in flight, subscription positions, scheduler due times), per practice.
CREATE TABLE engine_state (
    practice   TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (practice, key)
) WITHOUT ROWID;
