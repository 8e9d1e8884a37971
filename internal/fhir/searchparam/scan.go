package searchparam

import (
	"bytes"
	"encoding/json"
	"errors"
)

// This file holds a small JSON scanner. Extraction runs for every synced
// resource, so instead of decoding whole documents it walks the bytes once,
// descending only into the elements some search parameter needs and skipping
// the rest without allocating.

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

// closingQuote returns the index of the quote that ends the string whose
// contents start at b[i], or -1. It finds quotes with bytes.IndexByte (a
// vector search: most of a resource's bytes are in strings) and skips those
// escaped by an odd run of backslashes.
func closingQuote(b []byte, i int) int {
	for i <= len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q
		}
		i = q + 1
	}
	return -1
}

// skipString returns the index just after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	q := closingQuote(b, i+1)
	if q < 0 {
		return 0, errSyntax
	}
	return q + 1, nil
}

// skipValue returns the index just after the value starting at b[i]. Skipped
// containers are checked for balance, not fully validated.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errSyntax
	default:
		// number, true, false, null
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				break
			}
			j++
		}
		if j == i {
			return 0, errSyntax
		}
		return j, nil
	}
}

// rawKey returns the bytes of an object key (no unescaping: FHIR element
// names never need it) and the index after the closing quote.
func rawKey(b []byte, i int) ([]byte, int, error) {
	q := closingQuote(b, i+1)
	if q < 0 {
		return nil, 0, errSyntax
	}
	return b[i+1 : q], q + 1, nil
}

// objectFields iterates the members of the object at b[i] == '{', calling fn
// with each key and the value's start index; fn returns the index just after
// the value. It returns the index after the object.
func objectFields(b []byte, i int, fn func(key []byte, v int) (int, error)) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return 0, errSyntax
		}
		key, j, err := rawKey(b, i)
		if err != nil {
			return 0, err
		}
		j = skipWS(b, j)
		if j >= len(b) || b[j] != ':' {
			return 0, errSyntax
		}
		j = skipWS(b, j+1)
		end, err := fn(key, j)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errSyntax
		}
	}
	return 0, errSyntax
}

// arrayElems iterates the elements of the array at b[i] == '['.
func arrayElems(b []byte, i int, fn func(v int) (int, error)) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for i < len(b) {
		end, err := fn(i)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return 0, errSyntax
		}
	}
	return 0, errSyntax
}

// rawStringAt returns the bytes between the quotes of the JSON string at
// b[i] == '"', whether they contain escapes, and the index after the string.
func rawStringAt(b []byte, i int) (raw []byte, esc bool, end int, err error) {
	q := closingQuote(b, i+1)
	if q < 0 {
		return nil, false, 0, errSyntax
	}
	raw = b[i+1 : q]
	return raw, bytes.IndexByte(raw, '\\') >= 0, q + 1, nil
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

// fieldRaw finds the string member key of the object b (a whole object
// value) and returns its raw contents; ok is false when absent or not a string.
func fieldRaw(b []byte, key string) (raw []byte, esc bool, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false, false
	}
	_, _ = objectFields(b, 0, func(k []byte, v int) (int, error) {
		if !ok && string(k) == key && b[v] == '"' {
			r, e, end, err := rawStringAt(b, v)
			if err != nil {
				return 0, err
			}
			raw, esc, ok = r, e, true
			return end, nil
		}
		return skipValue(b, v)
	})
	return raw, esc, ok
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
