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
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		// A byte below 0x20, or with its high bit set.
		m := (x-0x20*ones)&^x&high | x&high
		// A '"' or a '\\': a zero byte in x xor the byte repeated.
		q := x ^ ('"' * ones)
		m |= (q - ones) &^ q & high
		e := x ^ ('\\' * ones)
		m |= (e - ones) &^ e & high
		if m != 0 {
			// The lowest flagged byte is exact: no borrow reaches it
			// from the plain bytes below.
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
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
