package mapping

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// scanPlain returns the index of the first byte of b at or after i that a
// JSON string cannot hold as it is (plainByte: '"', '\\', a control
// character, or a byte of a multi-byte UTF-8 sequence), or len(b). It looks
// at eight bytes at a time.
func scanPlain(b []byte, i int) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	// (b[i:i+8] rather than b[i:] lets the compiler drop the bounds
	// checks; the masks are or-ed before the one and: together about
	// twice as fast in a micro-benchmark.)
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i : i+8])
		// A byte below 0x20 (x-0x20 borrows into its high bit), or one
		// with its high bit set; a '"' or a '\\': a zero byte in x xor
		// the byte repeated.
		q := x ^ ('"' * ones)
		e := x ^ ('\\' * ones)
		m := ((x - 0x20*ones) | x | (q-ones)&^q | (e-ones)&^e) & high
		if m != 0 {
			// The lowest flagged byte is exact: no borrow reaches it
			// from the plain bytes below.
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(b) && plainByte[b[i]] {
		i++
	}
	return i
}

// scanPlainString is scanPlain for a string.
func scanPlainString(s string, i int) int {
	if len(s) == 0 {
		return 0
	}
	return scanPlain(unsafe.Slice(unsafe.StringData(s), len(s)), i)
}

// plainEnd returns the index of the closing quote of a string whose text
// starts at start and is plain (see scanPlain), or -1 for any other
// string (escapes, non-ASCII text, control characters, no end), which the
// callers then read the long way.
func plainEnd(b []byte, start int) int {
	if i := scanPlain(b, start); i < len(b) && b[i] == '"' {
		return i
	}
	return -1
}
