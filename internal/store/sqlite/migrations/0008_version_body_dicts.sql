-- Version bodies may be stored compressed with a dictionary
-- (internal/store/sqlite/bodydict.go). body_dicts holds the dictionaries:
-- one per practice and resource type at a time, made by the store from the
-- first bodies of that type it writes, written in the same transaction as
-- the first versions compressed with it and never changed (dict is an S2
-- dictionary as github.com/klauspost/compress/s2's Dict.Bytes writes it).
-- resource_versions.body_encoding says how body is stored: 0, byte for
-- byte (every row written before this migration); 2, an S2 block made with
-- the dictionary body_dict names (0: none). content_hash stays the hash of
-- the body as put. Adding columns with constant defaults does not rewrite
-- the table.
CREATE TABLE body_dicts (
    id            INTEGER PRIMARY KEY,
    practice      TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    dict          BLOB    NOT NULL
);
CREATE INDEX body_dicts_by_type ON body_dicts (practice, resource_type, id);
ALTER TABLE resource_versions ADD COLUMN body_encoding INTEGER NOT NULL DEFAULT 0;
ALTER TABLE resource_versions ADD COLUMN body_dict INTEGER NOT NULL DEFAULT 0;
