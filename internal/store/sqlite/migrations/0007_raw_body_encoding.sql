-- Raw payloads may be stored compressed. body_encoding says how body is
-- stored: 0, byte for byte (every row written before this migration);
-- 1, an S2 block (github.com/klauspost/compress/s2) of the payload as
-- received. The store decodes on read (internal/store/sqlite/codec.go), so
-- what it hands out is always the payload as it was put. Adding a column
-- with a constant default does not rewrite the table.
ALTER TABLE raw_payloads ADD COLUMN body_encoding INTEGER NOT NULL DEFAULT 0;
