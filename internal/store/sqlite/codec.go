package sqlite

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
)

// Stored bodies may be compressed. A column next to the body (for raw
// payloads: raw_payloads.body_encoding, migration 0007; for resource
// versions: resource_versions.body_encoding and body_dict, migration 0008,
// see bodydict.go) says how the body was stored, so rows written before compression existed (encoding 0, the
// column's default) read as they always did, and a payload that happens to
// look like compressed data is never mistaken for it.
//
// Raw payloads are written once and read rarely (inspection, replay,
// coverage reports), and a bulk batch of FHIR NDJSON compresses about 8:1
// with S2 at well under a microsecond of CPU per kilobyte, so compressing
// them saves most of their WAL and checkpoint writes (docs/benchmarks.md,
// "SQLite write volume").
const (
	encPlain int64 = 0 // the body is stored byte for byte
	encS2    int64 = 1 // the body is an S2 block (github.com/klauspost/compress/s2)
	// encS2Dict: the body is an S2 block made with the dictionary its row
	// names (resource versions only, bodydict.go).
	encS2Dict int64 = 2
)

// compressMin is the smallest body worth compressing: below it the saving
// is a few bytes in a row that shares its page with others.
const compressMin = 512

// maxDecoded bounds the length a compressed body may claim (SQLite's own
// limit on a value is 1 GB), so a damaged row cannot make the store
// allocate without bound.
const maxDecoded = 1 << 30

// encBufs holds encode buffers between writes; a buffer larger than
// encBufMax is left to the garbage collector rather than kept.
var encBufs = sync.Pool{New: func() any { return new([]byte) }}

const encBufMax = 8 << 20

// encodeBody returns how to store body: compressed with S2 when that saves
// at least an eighth of it, else body itself with encPlain. The returned
// slice may be *buf (reused by the caller after the statement ran).
func encodeBody(buf *[]byte, body []byte) ([]byte, int64) {
	if len(body) < compressMin {
		return body, encPlain
	}
	n := s2.MaxEncodedLen(len(body))
	if n < 0 {
		return body, encPlain // too large for a block; SQLite refuses it anyway
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	c := s2.Encode((*buf)[:n], body)
	if len(c) > len(body)-len(body)/8 {
		return body, encPlain
	}
	return c, encS2
}

// decodeBody returns the stored body b, written with encoding enc, as it
// was put. The result does not share memory with b unless enc is encPlain.
func decodeBody(b []byte, enc int64) ([]byte, error) {
	switch enc {
	case encPlain:
		if b == nil {
			return []byte{}, nil
		}
		return b, nil
	case encS2:
		n, err := s2.DecodedLen(b)
		if err != nil {
			return nil, fmt.Errorf("sqlite: stored body: %w", err)
		}
		if n > maxDecoded {
			return nil, errors.New("sqlite: stored body: decoded length out of range")
		}
		out, err := s2.Decode(make([]byte, n), b)
		if err != nil {
			return nil, fmt.Errorf("sqlite: stored body: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("sqlite: stored body: unknown encoding %d", enc)
	}
}
