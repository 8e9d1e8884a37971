package scan

import (
	"encoding/binary"
	"math/bits"
)

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

// strSpecial marks bytes that end the fast path inside a string: control
// characters, the quote and the backslash.
var strSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// Valid reports whether d is one well-formed JSON value (with optional
// surrounding white space). It accepts exactly what encoding/json's Valid
// accepts, in a single pass several times faster.
func Valid(d []byte) bool {
	var buf [32]byte
	stack := buf[:0] // '{' or '[' per open container
	i := 0
	for {
		// A value starts at i.
		i = ws(d, i)
		if i >= len(d) {
			return false
		}
		switch d[i] {
		case '{':
			i = ws(d, i+1)
			if i < len(d) && d[i] == '}' {
				i++
				break
			}
			if len(stack) >= maxDepth {
				return false
			}
			stack = append(stack, '{')
			var ok bool
			if i, ok = validKey(d, i); !ok {
				return false
			}
			continue
		case '[':
			i = ws(d, i+1)
			if i < len(d) && d[i] == ']' {
				i++
				break
			}
			if len(stack) >= maxDepth {
				return false
			}
			stack = append(stack, '[')
			continue
		case '"':
			var ok bool
			if i, ok = validString(d, i); !ok {
				return false
			}
		case 't':
			if !hasLiteral(d, i, "true") {
				return false
			}
			i += 4
		case 'f':
			if !hasLiteral(d, i, "false") {
				return false
			}
			i += 5
		case 'n':
			if !hasLiteral(d, i, "null") {
				return false
			}
			i += 4
		default:
			var ok bool
			if i, ok = validNumber(d, i); !ok {
				return false
			}
		}
		// After a value: close containers or move to the next member/element.
		for {
			i = ws(d, i)
			if len(stack) == 0 {
				return i == len(d)
			}
			if i >= len(d) {
				return false
			}
			top := stack[len(stack)-1]
			c := d[i]
			if c == ',' {
				i++
				if top == '{' {
					// validKey written out: every member but an object's
					// first comes this way, and the call costs.
					i = ws(d, i)
					if i >= len(d) || d[i] != '"' {
						return false
					}
					var ok bool
					if i, ok = validString(d, i); !ok {
						return false
					}
					i = ws(d, i)
					if i >= len(d) || d[i] != ':' {
						return false
					}
					i++
				}
				break // parse the next value
			}
			if (c == '}' && top == '{') || (c == ']' && top == '[') {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return false
		}
	}
}

// validKey checks `"name" :` at d[i] and returns the index after the colon.
func validKey(d []byte, i int) (int, bool) {
	if i >= len(d) || d[i] != '"' {
		return 0, false
	}
	i, ok := validString(d, i)
	if !ok {
		return 0, false
	}
	i = ws(d, i)
	if i >= len(d) || d[i] != ':' {
		return 0, false
	}
	return i + 1, true
}

// Word-at-a-time constants: lsb has the lowest bit of every byte of a
// uint64 set, msb the highest.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// strStop flags, in the top bit of each byte, the bytes of the little-endian
// word x that end the fast path inside a string (those strSpecial marks).
// Flipping bit 1 turns '"' (0x22) into 0x20 and keeps control characters
// below 0x20, so one "below 0x21" test finds both; a second term finds
// zero bytes of x^'\\'. Each term is "subtract, and not the byte itself":
// bytes of 0x80 and above (plain string content) are never flagged, a
// borrow can flag a byte above a true match but never below one, so the
// lowest flagged byte is always a true match and no match goes unflagged.
func strStop(x uint64) uint64 {
	q := x ^ (lsb * 0x02)
	bs := x ^ (lsb * '\\')
	return ((q-lsb*0x21)&^q | (bs-lsb)&^bs) & msb
}

// validString checks the string whose opening quote is d[i].
func validString(d []byte, i int) (int, bool) {
	i++
	for {
		var c byte
		if i+8 <= len(d) {
			// Most string bytes are plain: skip them eight at a time, and
			// take the first byte that needs a look from the word already
			// loaded.
			x := binary.LittleEndian.Uint64(d[i:])
			m := strStop(x)
			if m == 0 {
				i += 8
				continue
			}
			n := bits.TrailingZeros64(m) // the top bit of the byte
			i += n >> 3
			c = byte(x >> (n &^ 7))
		} else {
			if i >= len(d) {
				return 0, false
			}
			if c = d[i]; !strSpecial[c] {
				i++
				continue
			}
		}
		switch c {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= len(d) {
				return 0, false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) {
					return 0, false
				}
				for _, h := range d[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false
					}
				}
				i += 6
			default:
				return 0, false
			}
		default: // control character
			return 0, false
		}
	}
}

// ws is skipWS with the common case of compact JSON (no white space at
// all) decided at the call site, where it is inlined.
func ws(d []byte, i int) int {
	if i < len(d) && d[i] > ' ' {
		return i
	}
	return skipWS(d, i)
}

func hasLiteral(d []byte, i int, lit string) bool {
	return len(d)-i >= len(lit) && string(d[i:i+len(lit)]) == lit
}

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at d[i].
func validNumber(d []byte, i int) (int, bool) {
	if i < len(d) && d[i] == '-' {
		i++
	}
	if i >= len(d) {
		return 0, false
	}
	switch {
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return 0, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	return i, true
}
