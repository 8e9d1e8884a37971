package validate

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// JSON value kinds of a node.
const (
	jObject byte = iota + 1
	jArray
	jString
	jNumber
	jTrue
	jFalse
	jNull
)

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 200

// node is one JSON value of a parsed document. Strings, numbers and keys are
// spans of the source text, not copies. Containers link their children
// through first/next.
type node struct {
	kind   byte
	esc    bool  // a string holding escapes
	keyEsc bool  // a member key holding escapes
	n      int32 // children of a container
	first  int32 // first child, -1 when none
	next   int32 // next sibling, -1 when last
	k0, k1 int32 // member key span (without quotes)
	v0, v1 int32 // string (without quotes) or number span
}

// doc is a parsed JSON document: nodes[0] is the root.
type doc struct {
	src   string
	nodes []node
}

// errSyntax describes a JSON syntax error without quoting the input.
type errSyntax struct {
	off int
	msg string
}

func (e *errSyntax) Error() string {
	return "invalid JSON at byte " + strconv.Itoa(e.off) + ": " + e.msg
}

var errTooDeep = errors.New("JSON nested too deeply")

// parse parses src into d, reusing d's node slice.
func (d *doc) parse(src string) error {
	d.src = src
	d.nodes = d.nodes[:0]
	p := parser{src: src, d: d}
	p.ws()
	if _, err := p.value(0); err != nil {
		return err
	}
	p.ws()
	if p.i != len(src) {
		return p.fail("data after the top-level value")
	}
	return nil
}

type parser struct {
	src string
	i   int
	d   *doc
}

func (p *parser) fail(msg string) error { return &errSyntax{off: p.i, msg: msg} }

func (p *parser) ws() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) add(kind byte) int32 {
	p.d.nodes = append(p.d.nodes, node{kind: kind, first: -1, next: -1})
	return int32(len(p.d.nodes) - 1)
}

// value parses one value at p.i (whitespace skipped) and returns its node.
func (p *parser) value(depth int) (int32, error) {
	if p.i >= len(p.src) {
		return 0, p.fail("unexpected end")
	}
	switch c := p.src[p.i]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		id := p.add(jString)
		s, e, esc, err := p.str()
		if err != nil {
			return 0, err
		}
		n := &p.d.nodes[id]
		n.v0, n.v1, n.esc = int32(s), int32(e), esc
		return id, nil
	case c == '-' || (c >= '0' && c <= '9'):
		id := p.add(jNumber)
		s := p.i
		if err := p.number(); err != nil {
			return 0, err
		}
		n := &p.d.nodes[id]
		n.v0, n.v1 = int32(s), int32(p.i)
		return id, nil
	case c == 't':
		return p.literal("true", jTrue)
	case c == 'f':
		return p.literal("false", jFalse)
	case c == 'n':
		return p.literal("null", jNull)
	}
	return 0, p.fail("unexpected character")
}

func (p *parser) literal(word string, kind byte) (int32, error) {
	if len(p.src)-p.i < len(word) || p.src[p.i:p.i+len(word)] != word {
		return 0, p.fail("invalid literal")
	}
	p.i += len(word)
	return p.add(kind), nil
}

func (p *parser) object(depth int) (int32, error) {
	if depth > maxDepth {
		return 0, errTooDeep
	}
	id := p.add(jObject)
	p.i++ // {
	p.ws()
	if p.i < len(p.src) && p.src[p.i] == '}' {
		p.i++
		return id, nil
	}
	last := int32(-1)
	var count int32
	for {
		if p.i >= len(p.src) || p.src[p.i] != '"' {
			return 0, p.fail("expected a property name")
		}
		ks, ke, kesc, err := p.str()
		if err != nil {
			return 0, err
		}
		p.ws()
		if p.i >= len(p.src) || p.src[p.i] != ':' {
			return 0, p.fail("expected ':'")
		}
		p.i++
		p.ws()
		child, err := p.value(depth)
		if err != nil {
			return 0, err
		}
		c := &p.d.nodes[child]
		c.k0, c.k1, c.keyEsc = int32(ks), int32(ke), kesc
		if last < 0 {
			p.d.nodes[id].first = child
		} else {
			p.d.nodes[last].next = child
		}
		last = child
		count++
		p.ws()
		if p.i >= len(p.src) {
			return 0, p.fail("unexpected end in an object")
		}
		if p.src[p.i] == ',' {
			p.i++
			p.ws()
			continue
		}
		if p.src[p.i] == '}' {
			p.i++
			p.d.nodes[id].n = count
			return id, nil
		}
		return 0, p.fail("expected ',' or '}'")
	}
}

func (p *parser) array(depth int) (int32, error) {
	if depth > maxDepth {
		return 0, errTooDeep
	}
	id := p.add(jArray)
	p.i++ // [
	p.ws()
	if p.i < len(p.src) && p.src[p.i] == ']' {
		p.i++
		return id, nil
	}
	last := int32(-1)
	var count int32
	for {
		child, err := p.value(depth)
		if err != nil {
			return 0, err
		}
		if last < 0 {
			p.d.nodes[id].first = child
		} else {
			p.d.nodes[last].next = child
		}
		last = child
		count++
		p.ws()
		if p.i >= len(p.src) {
			return 0, p.fail("unexpected end in an array")
		}
		if p.src[p.i] == ',' {
			p.i++
			p.ws()
			continue
		}
		if p.src[p.i] == ']' {
			p.i++
			p.d.nodes[id].n = count
			return id, nil
		}
		return 0, p.fail("expected ',' or ']'")
	}
}

// str scans a string at p.i and returns the span of its contents.
func (p *parser) str() (start, end int, esc bool, err error) {
	p.i++ // "
	start = p.i
	ascii := true
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			end = p.i
			p.i++
			if !ascii && !utf8.ValidString(p.src[start:end]) {
				p.i = start
				return 0, 0, false, p.fail("string is not valid UTF-8")
			}
			return start, end, esc, nil
		case c == '\\':
			esc = true
			p.i++
			if p.i >= len(p.src) {
				return 0, 0, false, p.fail("unexpected end in a string")
			}
			switch p.src[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.src)-p.i < 5 || !isHex4(p.src[p.i+1:p.i+5]) {
					return 0, 0, false, p.fail("invalid \\u escape")
				}
				p.i += 5
			default:
				return 0, 0, false, p.fail("invalid escape")
			}
		case c < 0x20:
			return 0, 0, false, p.fail("control character in a string")
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			p.i++
		}
	}
	return 0, 0, false, p.fail("unterminated string")
}

func isHex4(s string) bool {
	for i := 0; i < 4; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans a JSON number at p.i.
func (p *parser) number() error {
	s := p.src
	if s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(s) && s[p.i] == '0':
		p.i++
	case p.i < len(s) && s[p.i] >= '1' && s[p.i] <= '9':
		for p.i < len(s) && s[p.i] >= '0' && s[p.i] <= '9' {
			p.i++
		}
	default:
		return p.fail("invalid number")
	}
	if p.i < len(s) && s[p.i] == '.' {
		p.i++
		if p.i >= len(s) || s[p.i] < '0' || s[p.i] > '9' {
			return p.fail("invalid number")
		}
		for p.i < len(s) && s[p.i] >= '0' && s[p.i] <= '9' {
			p.i++
		}
	}
	if p.i < len(s) && (s[p.i] == 'e' || s[p.i] == 'E') {
		p.i++
		if p.i < len(s) && (s[p.i] == '+' || s[p.i] == '-') {
			p.i++
		}
		if p.i >= len(s) || s[p.i] < '0' || s[p.i] > '9' {
			return p.fail("invalid number")
		}
		for p.i < len(s) && s[p.i] >= '0' && s[p.i] <= '9' {
			p.i++
		}
	}
	return nil
}

// key returns a member's key, decoded when it holds escapes.
func (d *doc) key(n *node) string {
	k := d.src[n.k0:n.k1]
	if n.keyEsc {
		return unescape(k)
	}
	return k
}

// str returns a string node's value, decoded when it holds escapes.
func (d *doc) str(n *node) string {
	s := d.src[n.v0:n.v1]
	if n.esc {
		return unescape(s)
	}
	return s
}

// unescape decodes the contents of a JSON string the parser accepted.
// Unpaired surrogates become U+FFFD.
func unescape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := rune(hex4(s[i+1 : i+5]))
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
				r2 := rune(hex4(s[i+3 : i+7]))
				if r2 >= 0xDC00 && r2 < 0xE000 {
					r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default: // " \ /
			b = append(b, s[i])
		}
	}
	return string(b)
}

func hex4(s string) int {
	v := 0
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int(c-'a'+10)
		default:
			v = v<<4 | int(c-'A'+10)
		}
	}
	return v
}
