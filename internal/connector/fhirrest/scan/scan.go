// Package scan walks JSON documents without decoding them: it yields the
// members of an object or the elements of an array as sub-slices of the
// input, so a FHIR Bundle's entries can be picked out without copying and a
// resource's header read without parsing the whole resource. It checks
// structure only as far as it walks; validate the whole document first
// (json.Valid) when that matters. It never panics on malformed input.
package scan

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ErrSyntax reports input the walker cannot follow.
var ErrSyntax = errors.New("scan: malformed JSON")

// ErrType reports a value of another JSON type than the one asked for.
var ErrType = errors.New("scan: unexpected JSON type")

func skipWS(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string whose opening quote is d[i].
func skipString(d []byte, i int) (int, error) {
	j := i + 1
	for {
		if j > len(d) {
			return 0, ErrSyntax
		}
		k := bytes.IndexByte(d[j:], '"')
		if k < 0 {
			return 0, ErrSyntax
		}
		j += k
		n := 0
		for p := j - 1; p > i && d[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j + 1, nil
		}
		j++
	}
}

// skipValue returns the index just past the value starting at d[i].
func skipValue(d []byte, i int) (int, error) {
	if i >= len(d) {
		return 0, ErrSyntax
	}
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		// One pass over the bytes: strings are skipped inline (most are
		// short, where a call per string costs more than the scan).
		depth := 0
		inString := false
		for j := i; j < len(d); j++ {
			c := d[j]
			if inString {
				switch c {
				case '\\':
					j++ // the escaped byte cannot end the string
				case '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, ErrSyntax
	case '}', ']', ',', ':':
		return 0, ErrSyntax
	default:
		j := i
		for j < len(d) {
			switch d[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j, nil
			}
			j++
		}
		return j, nil
	}
}

// Object calls fn with each member of the object in d, in document order,
// until fn returns false. key is the member name (unescaped), val the raw
// value (capacity-limited: appending to it never writes into d).
func Object(d []byte, fn func(key, val []byte) bool) error {
	i := skipWS(d, 0)
	if i >= len(d) {
		return ErrSyntax
	}
	_, err := objectAt(d, i, fn)
	return err
}

// objectAt walks the object starting at d[i] and returns the index just
// past it (or, when fn stops the walk, an index inside it and stopped=true
// via a negative end).
func objectAt(d []byte, i int, fn func(key, val []byte) bool) (int, error) {
	if d[i] != '{' {
		return 0, ErrType
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return 0, ErrSyntax
		}
		ke, err := skipString(d, i)
		if err != nil {
			return 0, err
		}
		key := d[i+1 : ke-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			if err := json.Unmarshal(d[i:ke], &s); err != nil {
				return 0, ErrSyntax
			}
			key = []byte(s)
		}
		i = skipWS(d, ke)
		if i >= len(d) || d[i] != ':' {
			return 0, ErrSyntax
		}
		i = skipWS(d, i+1)
		ve, err := skipValue(d, i)
		if err != nil {
			return 0, err
		}
		if !fn(key, d[i:ve:ve]) {
			return -1, nil
		}
		i = skipWS(d, ve)
		if i >= len(d) {
			return 0, ErrSyntax
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, ErrSyntax
		}
	}
}

// ObjectArray walks an array of objects in one pass: for element n it calls
// member(n, key, val) for each member, then done(n, elem) with the whole
// element. Either returning false stops the walk. A non-object element is
// ErrType. Each byte is looked at once, unlike Array followed by Object.
func ObjectArray(d []byte, member func(n int, key, val []byte) bool, done func(n int, elem []byte) bool) error {
	i := skipWS(d, 0)
	if i >= len(d) {
		return ErrSyntax
	}
	if d[i] != '[' {
		return ErrType
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		if i >= len(d) {
			return ErrSyntax
		}
		end, err := objectAt(d, i, func(k, v []byte) bool { return member(n, k, v) })
		if err != nil {
			return err
		}
		if end < 0 || !done(n, d[i:end:end]) {
			return nil
		}
		i = skipWS(d, end)
		if i >= len(d) {
			return ErrSyntax
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case ']':
			return nil
		default:
			return ErrSyntax
		}
	}
}

// Array calls fn with each element of the array in d until fn returns false.
func Array(d []byte, fn func(elem []byte) bool) error {
	i := skipWS(d, 0)
	if i >= len(d) {
		return ErrSyntax
	}
	if d[i] != '[' {
		return ErrType
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == ']' {
		return nil
	}
	for {
		ve, err := skipValue(d, i)
		if err != nil {
			return err
		}
		if !fn(d[i:ve:ve]) {
			return nil
		}
		i = skipWS(d, ve)
		if i >= len(d) {
			return ErrSyntax
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case ']':
			return nil
		default:
			return ErrSyntax
		}
	}
}

// String decodes a JSON string value.
func String(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		if IsNull(v) {
			return "", nil
		}
		return "", ErrType
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", ErrSyntax
	}
	return s, nil
}

// IsNull reports whether v is the JSON literal null.
func IsNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }
