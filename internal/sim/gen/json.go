package gen

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/mediflow/mediflow/internal/fhir"
)

// Obj is a JSON object that keeps its members in insertion order, so
// generated resources read naturally (resourceType, id, meta first) and
// serialize byte-identically for the same input.
//
// Member values may be: string, bool, int, int64, float64, json.Number,
// json.RawMessage, *Obj, []any, []*Obj, []string, or nil (JSON null).
type Obj struct {
	keys []string
	vals []any
}

// NewObj returns an empty object.
func NewObj() *Obj { return &Obj{} }

// O builds an object from alternating keys and values: O("a", 1, "b", "x").
// It panics on an odd argument count or a non-string key (a programming error).
func O(kv ...any) *Obj {
	if len(kv)%2 != 0 {
		panic("gen.O: odd number of arguments")
	}
	o := &Obj{keys: make([]string, 0, len(kv)/2), vals: make([]any, 0, len(kv)/2)}
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			panic(fmt.Sprintf("gen.O: key %d is %T, not string", i/2, kv[i]))
		}
		o.keys = append(o.keys, k)
		o.vals = append(o.vals, kv[i+1])
	}
	return o
}

// A builds a JSON array.
func A(vs ...any) []any { return vs }

// Len is the number of members.
func (o *Obj) Len() int { return len(o.keys) }

// Keys returns the member names in order.
func (o *Obj) Keys() []string { return append([]string(nil), o.keys...) }

// Get returns the value of member k.
func (o *Obj) Get(k string) (any, bool) {
	for i, key := range o.keys {
		if key == k {
			return o.vals[i], true
		}
	}
	return nil, false
}

// Str returns member k as a string ("" when absent or not a string).
func (o *Obj) Str(k string) string {
	v, _ := o.Get(k)
	s, _ := v.(string)
	return s
}

// Child returns member k as an object (nil when absent or not an object).
func (o *Obj) Child(k string) *Obj {
	v, _ := o.Get(k)
	c, _ := v.(*Obj)
	return c
}

// List returns member k as an array (nil when absent or not an array).
// An []*Obj member is converted to []any.
func (o *Obj) List(k string) []any {
	v, _ := o.Get(k)
	switch l := v.(type) {
	case []any:
		return l
	case []*Obj:
		out := make([]any, len(l))
		for i, e := range l {
			out[i] = e
		}
		return out
	case []string:
		out := make([]any, len(l))
		for i, e := range l {
			out[i] = e
		}
		return out
	}
	return nil
}

// Set replaces member k in place, or appends it when absent. It returns o.
func (o *Obj) Set(k string, v any) *Obj {
	for i, key := range o.keys {
		if key == k {
			o.vals[i] = v
			return o
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
	return o
}

// SetAfter sets member k; when k is absent it is inserted right after member
// after (or appended when after is absent too).
func (o *Obj) SetAfter(after, k string, v any) *Obj {
	if _, ok := o.Get(k); ok {
		return o.Set(k, v)
	}
	for i, key := range o.keys {
		if key == after {
			o.keys = append(o.keys[:i+1], append([]string{k}, o.keys[i+1:]...)...)
			o.vals = append(o.vals[:i+1], append([]any{v}, o.vals[i+1:]...)...)
			return o
		}
	}
	return o.Set(k, v)
}

// Delete removes member k if present.
func (o *Obj) Delete(k string) {
	for i, key := range o.keys {
		if key == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			o.vals = append(o.vals[:i], o.vals[i+1:]...)
			return
		}
	}
}

// MarshalJSON implements json.Marshaler.
func (o *Obj) MarshalJSON() ([]byte, error) { return AppendJSON(nil, o) }

// Bytes serializes o. Values of unsupported types make it fail.
func (o *Obj) Bytes() ([]byte, error) { return AppendJSON(make([]byte, 0, 1024), o) }

// AppendJSON appends the JSON encoding of v to dst.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return fhir.AppendJSONString(dst, x), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return dst, fmt.Errorf("gen: cannot encode %v as JSON", x)
		}
		return strconv.AppendFloat(dst, x, 'f', -1, 64), nil
	case json.Number:
		return append(dst, x...), nil
	case json.RawMessage:
		return append(dst, x...), nil
	case *Obj:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '{')
		for i, k := range x.keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = fhir.AppendJSONString(dst, k)
			dst = append(dst, ':')
			if dst, err = AppendJSON(dst, x.vals[i]); err != nil {
				return dst, fmt.Errorf("%s: %w", k, err)
			}
		}
		return append(dst, '}'), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = AppendJSON(dst, e); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case []*Obj:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = AppendJSON(dst, e); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case []string:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = fhir.AppendJSONString(dst, e)
		}
		return append(dst, ']'), nil
	default:
		return dst, fmt.Errorf("gen: cannot encode %T as JSON", v)
	}
}

// ParseObj parses a JSON object keeping member order. Numbers become
// json.Number so they round-trip exactly.
func ParseObj(data []byte) (*Obj, error) {
	p := parser{b: data}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, fmt.Errorf("gen: parse JSON: top level is not an object")
	}
	v, err := p.value(0)
	if err != nil {
		return nil, fmt.Errorf("gen: parse JSON: %w", err)
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, fmt.Errorf("gen: parse JSON: trailing data after the object at offset %d", p.i)
	}
	return v.(*Obj), nil
}

// ParseValue parses any JSON value (object, array, string, number, bool,
// null) the way ParseObj parses objects: *Obj, []any, string, json.Number,
// bool or nil.
func ParseValue(data []byte) (any, error) {
	p := parser{b: data}
	p.ws()
	if p.i >= len(p.b) {
		return nil, fmt.Errorf("gen: parse JSON: empty input")
	}
	v, err := p.value(0)
	if err != nil {
		return nil, fmt.Errorf("gen: parse JSON: %w", err)
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, fmt.Errorf("gen: parse JSON: trailing data at offset %d", p.i)
	}
	return v, nil
}

// parser is a small recursive-descent JSON parser producing Obj trees.
type parser struct {
	b []byte
	i int
}

const maxDepth = 512

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) errf(format string, a ...any) error {
	return fmt.Errorf("offset %d: %s", p.i, fmt.Sprintf(format, a...))
}

func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errf("nesting too deep")
	}
	p.ws()
	if p.i >= len(p.b) {
		return nil, p.errf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		o := &Obj{}
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return o, nil
		}
		for {
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != '"' {
				return nil, p.errf("expected a member name")
			}
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return nil, p.errf("expected ':'")
			}
			p.i++
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k)
			o.vals = append(o.vals, v)
			p.ws()
			if p.i >= len(p.b) {
				return nil, p.errf("unterminated object")
			}
			if p.b[p.i] == ',' {
				p.i++
				continue
			}
			if p.b[p.i] == '}' {
				p.i++
				return o, nil
			}
			return nil, p.errf("expected ',' or '}'")
		}
	case c == '[':
		p.i++
		arr := []any{}
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return arr, nil
		}
		for {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
			p.ws()
			if p.i >= len(p.b) {
				return nil, p.errf("unterminated array")
			}
			if p.b[p.i] == ',' {
				p.i++
				continue
			}
			if p.b[p.i] == ']' {
				p.i++
				return arr, nil
			}
			return nil, p.errf("expected ',' or ']'")
		}
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.num()
	default:
		return nil, p.errf("unexpected character %q", c)
	}
}

func (p *parser) lit(w string) error {
	if len(p.b)-p.i < len(w) || string(p.b[p.i:p.i+len(w)]) != w {
		return p.errf("invalid literal")
	}
	p.i += len(w)
	return nil
}

func (p *parser) num() (any, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, p.errf("invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errf("invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errf("invalid number")
		}
	}
	return json.Number(p.b[start:p.i]), nil
}

// str reads a string literal starting at the opening quote.
func (p *parser) str() (string, error) {
	p.i++ // opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := string(p.b[start:p.i])
			p.i++
			if !utf8.ValidString(s) {
				return strings.ToValidUTF8(s, "\ufffd"), nil
			}
			return s, nil
		}
		if c == '\\' {
			return p.strSlow(start)
		}
		if c < 0x20 {
			return "", p.errf("control character in string")
		}
		p.i++
	}
	return "", p.errf("unterminated string")
}

func (p *parser) strSlow(start int) (string, error) {
	var sb strings.Builder
	sb.Write(p.b[start:p.i])
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return strings.ToValidUTF8(sb.String(), "\ufffd"), nil
		case c < 0x20:
			return "", p.errf("control character in string")
		case c != '\\':
			sb.WriteByte(c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.b) {
			break
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			sb.WriteByte(e)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate pairs with an immediately following low
				// one; anything else leaves it unpaired (U+FFFD).
				paired := false
				if r < 0xdc00 && p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if r2, ok := p.hex4(); ok && r2 >= 0xdc00 && r2 <= 0xdfff {
						r, paired = utf16.DecodeRune(r, r2), true
					} else {
						p.i = save
					}
				}
				if !paired {
					r = utf8.RuneError
				}
			}
			sb.WriteRune(r)
		default:
			return "", p.errf("invalid escape")
		}
	}
	return "", p.errf("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for k := 0; k < 4; k++ {
		c := p.b[p.i+k]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	p.i += 4
	return r, true
}
