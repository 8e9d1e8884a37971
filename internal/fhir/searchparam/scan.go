package searchparam

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
)

// This file holds a small JSON scanner. Extraction runs for every synced
// resource, so instead of decoding whole documents it walks the bytes once,
// descending only into the elements some search parameter needs and skipping
// the rest without allocating.
//
// The scanner is deliberately lenient in the same places as before it was
// tuned for speed (skipped containers are only checked for balance, skipped
// scalars run to the next delimiter): which malformed bodies Extract
// rejects is part of its behaviour, and the differential tests against the
// previous implementation hold it fixed.

var errSyntax = errors.New("searchparam: malformed JSON")

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Constants of the word-at-a-time byte search: lo has 1 in every byte, hi
// the top bit of every byte.
const (
	lo = 0x0101010101010101
	hi = 0x8080808080808080
)

// quoteOrBackslash returns, for the 8 bytes of w (little endian), a mask
// whose lowest set bit is the top bit of the first byte that is '"' or '\'
// (0 when there is none). Bits above the lowest may be spurious: the
// zero-byte test borrows across bytes only upwards from a real match.
func quoteOrBackslash(w uint64) uint64 {
	q := w ^ (lo * '"')
	s := w ^ (lo * '\\')
	return ((q-lo)&^q | (s-lo)&^s) & hi
}

// shortWords is how many 8-byte words stringEnd scans itself before handing
// a long string to bytes.IndexByte: the vector search costs a call and a
// setup that short strings (keys, codes, ids, most URLs) do not repay. 8
// measured a little faster than 4 or 16 on the bulk mix.
const shortWords = 8

// stringEnd returns the index of the quote that ends the string whose
// contents start at b[i] (-1 when there is none) and whether the contents
// before it hold a backslash. A backslash escapes the byte after it, so an
// odd run of backslashes escapes a quote and an even run does not.
func stringEnd(b []byte, i int) (int, bool) {
	esc := false
	for n := 0; i+8 <= len(b); n++ {
		if n == shortWords {
			return longStringEnd(b, i, esc)
		}
		m := quoteOrBackslash(binary.LittleEndian.Uint64(b[i:]))
		if m == 0 {
			i += 8
			continue
		}
		j := i + bits.TrailingZeros64(m)>>3
		if b[j] == '"' {
			return j, esc
		}
		esc = true
		i = j + 2 // the escaped byte cannot end the string
	}
	for i < len(b) {
		switch b[i] {
		case '"':
			return i, esc
		case '\\':
			esc = true
			i += 2
		default:
			i++
		}
	}
	return -1, esc
}

// longStringEnd is stringEnd for the rest of a long string from b[i],
// where no backslash escapes b[i]: it finds quotes with bytes.IndexByte (a
// vector search) and skips those escaped by an odd run of backslashes.
func longStringEnd(b []byte, i int, esc bool) (int, bool) {
	from := i
	for i <= len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1, esc
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q, esc || bytes.IndexByte(b[from:q], '\\') >= 0
		}
		i = q + 1
	}
	return -1, esc
}

// closingQuote returns the index of the quote that ends the string whose
// contents start at b[i], or -1.
func closingQuote(b []byte, i int) int {
	q, _ := stringEnd(b, i)
	return q
}

// structural classifies the bytes skipValue looks at inside a container;
// every other byte is passed over.
var structural = [256]uint8{'"': 1, '{': 2, '[': 2, '}': 3, ']': 3}

// skipValue returns the index just after the value starting at b[i]. Skipped
// containers are checked for balance, not fully validated: brackets of
// either kind count, outside strings.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		q, _ := stringEnd(b, i+1)
		if q < 0 {
			return 0, errSyntax
		}
		return q + 1, nil
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch structural[b[i]] {
			case 0:
				i++
				continue
			case 1:
				q := closingQuote(b, i+1)
				if q < 0 {
					return 0, errSyntax
				}
				i = q + 1
				continue
			case 2:
				depth++
			case 3:
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errSyntax
	default:
		return skipScalar(b, i)
	}
}

// delimiter marks the bytes that end a number, true, false or null.
var delimiter = [256]bool{',': true, '}': true, ']': true, ' ': true, '\n': true, '\r': true, '\t': true}

// skipScalar returns the index of the first delimiter from b[i] (a
// number, true, false or null, not checked); it fails when b[i] is one.
func skipScalar(b []byte, i int) (int, error) {
	j := i
	for j < len(b) && !delimiter[b[j]] {
		j++
	}
	if j == i {
		return 0, errSyntax
	}
	return j, nil
}

// The object and array walkers below are written as open loops at their
// call sites, with these steps, rather than as functions taking a callback:
// extraction visits every member of every object it descends into, and a
// call through a closure per member was a large part of its cost.
//
// An object at b[i] == '{' is walked as
//
//	m, ok := openObject(b, i)        // ok: a member starts at m; else m is the index after "{}"
//	for ok {
//		key, v, err := member(b, m)  // v: the value's start
//		end := ...                   // the index after the value
//		m, ok, err = nextMember(b, end)
//	}                                // then m is the index after the object
//
// and an array at b[i] == '[' likewise with openArray and nextElem.

// openObject starts the walk of the object at b[i] == '{'. ok says a member
// starts at m; otherwise the object is empty and m is the index after it,
// or a syntax error waits at m for member to report.
func openObject(b []byte, i int) (m int, ok bool) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, false
	}
	return i, true
}

// member reads the key of the member at b[m] (no unescaping: FHIR element
// names never need it) and returns it with the index of its value, which is
// inside b: a body that ends after the colon is malformed here, where the
// callback walker before it handed the end index on and the extractor
// indexed past the end (a panic).
func member(b []byte, m int) (key []byte, v int, err error) {
	if m >= len(b) || b[m] != '"' {
		return nil, 0, errSyntax
	}
	q := closingQuote(b, m+1)
	if q < 0 {
		return nil, 0, errSyntax
	}
	j := skipWS(b, q+1)
	if j >= len(b) || b[j] != ':' {
		return nil, 0, errSyntax
	}
	j = skipWS(b, j+1)
	if j >= len(b) {
		return nil, 0, errSyntax
	}
	return b[m+1 : q], j, nil
}

// nextMember goes on after a member value that ends before b[end]: ok
// says another member starts at m; otherwise m is the index after the
// object.
func nextMember(b []byte, end int) (m int, ok bool, err error) {
	i := skipWS(b, end)
	if i >= len(b) {
		return 0, false, errSyntax
	}
	switch b[i] {
	case ',':
		return skipWS(b, i+1), true, nil
	case '}':
		return i + 1, false, nil
	}
	return 0, false, errSyntax
}

// openArray starts the walk of the array at b[i] == '['. ok says an
// element starts at e (inside b); otherwise e is the index after "[]", or
// ok is false with err set.
func openArray(b []byte, i int) (e int, ok bool, err error) {
	i = skipWS(b, i+1)
	if i >= len(b) {
		return 0, false, errSyntax
	}
	if b[i] == ']' {
		return i + 1, false, nil
	}
	return i, true, nil
}

// nextElem goes on after an array element that ends before b[end]: ok
// says another element starts at e (inside b); otherwise e is the index
// after the array.
func nextElem(b []byte, end int) (e int, ok bool, err error) {
	i := skipWS(b, end)
	if i >= len(b) {
		return 0, false, errSyntax
	}
	switch b[i] {
	case ',':
		i = skipWS(b, i+1)
		if i >= len(b) {
			return 0, false, errSyntax
		}
		return i, true, nil
	case ']':
		return i + 1, false, nil
	}
	return 0, false, errSyntax
}

// objectFields iterates the members of the object at b[i] == '{', calling fn
// with each key and the value's start index; fn returns the index just after
// the value. It returns the index after the object. Only the rarely used
// string-parameter path still takes a callback.
func objectFields(b []byte, i int, fn func(key []byte, v int) (int, error)) (int, error) {
	m, ok := openObject(b, i)
	for ok {
		key, v, err := member(b, m)
		if err != nil {
			return 0, err
		}
		end, err := fn(key, v)
		if err != nil {
			return 0, err
		}
		if m, ok, err = nextMember(b, end); err != nil {
			return 0, err
		}
	}
	return m, nil
}

// arrayElems iterates the elements of the array at b[i] == '['.
func arrayElems(b []byte, i int, fn func(v int) (int, error)) (int, error) {
	e, ok, err := openArray(b, i)
	for ok {
		end, err := fn(e)
		if err != nil {
			return 0, err
		}
		if e, ok, err = nextElem(b, end); err != nil {
			return 0, err
		}
	}
	return e, err
}

// rawStringAt returns the bytes between the quotes of the JSON string at
// b[i] == '"', whether they contain escapes, and the index after the string.
func rawStringAt(b []byte, i int) (raw []byte, esc bool, end int, err error) {
	q, esc := stringEnd(b, i+1)
	if q < 0 {
		return nil, false, 0, errSyntax
	}
	return b[i+1 : q], esc, q + 1, nil
}

// unescape decodes the raw (escaped) contents of a JSON string.
func unescape(raw []byte) (string, error) {
	q := make([]byte, 0, len(raw)+2)
	q = append(q, '"')
	q = append(q, raw...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", errSyntax
	}
	return s, nil
}

// fieldRaw finds the first string member key of the object b (a whole
// object value) and returns its raw contents; ok is false when absent or
// not a string. Syntax errors end the search without being reported (the
// walk that produced b has checked its balance).
func fieldRaw(b []byte, key string) (raw []byte, esc bool, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false, false
	}
	m, more := openObject(b, 0)
	for more {
		k, v, err := member(b, m)
		if err != nil {
			return nil, false, false
		}
		var end int
		if b[v] == '"' {
			r, e, after, err := rawStringAt(b, v)
			if err != nil {
				return nil, false, false
			}
			if string(k) == key {
				return r, e, true
			}
			end = after
		} else if end, err = skipValue(b, v); err != nil {
			return nil, false, false
		}
		if m, more, err = nextMember(b, end); err != nil {
			return nil, false, false
		}
	}
	return nil, false, false
}

// fieldString is fieldRaw decoded to a new string ("" when absent).
func fieldString(b []byte, key string) string {
	raw, esc, ok := fieldRaw(b, key)
	if !ok {
		return ""
	}
	if esc {
		s, err := unescape(raw)
		if err != nil {
			return ""
		}
		return s
	}
	return string(raw)
}
