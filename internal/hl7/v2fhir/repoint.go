package v2fhir

import (
	"bytes"
	"encoding/json"
	"github.com/mediflow/mediflow/internal/fhir"
	"strings"
)

// maxDepth bounds the nesting Repoint follows; deeper bodies are left as
// they are.
const maxDepth = 256

// Repoint rewrites every Reference to refType/from in a FHIR JSON body, at
// any depth (contained resources and extensions included), to point to
// refType/into. It matches the reference "refType/from", a versioned one
// ("refType/from/_history/2", which becomes "refType/into") and an absolute
// one ("https://host/fhir/refType/from"; its base is kept). Only the
// strings of "reference" members change: every other byte of the body is
// kept. It reports whether anything changed; when nothing did, or the body
// is not JSON, body itself is returned.
func Repoint(body []byte, refType, from, into string) ([]byte, bool) {
	if refType == "" || from == "" || into == "" || from == into {
		return body, false
	}
	if !bytes.Contains(body, []byte(from)) {
		return body, false
	}
	p := &refScanner{b: body, target: refType + "/" + from, repl: refType + "/" + into}
	if !p.value(false, 0) {
		return body, false
	}
	p.ws()
	if p.i != len(p.b) || len(p.edits) == 0 {
		return body, false
	}
	out := make([]byte, 0, len(body)+len(p.edits)*(len(into)-len(from)+8))
	last := 0
	for _, e := range p.edits {
		out = append(out, body[last:e.start]...)
		out = fhir.AppendJSONString(out, e.s)
		last = e.end
	}
	out = append(out, body[last:]...)
	return out, true
}

type refEdit struct {
	start, end int // the string token, quotes included
	s          string
}

// refScanner walks a JSON document and records the reference strings to
// rewrite.
type refScanner struct {
	b      []byte
	i      int
	target string
	repl   string
	edits  []refEdit
}

func (p *refScanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

// str reads a string token at p.i; it returns the token's span.
func (p *refScanner) str() (int, int, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return 0, 0, false
	}
	start := p.i
	p.i++
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '\\':
			p.i += 2
		case '"':
			p.i++
			return start, p.i, true
		default:
			p.i++
		}
	}
	return 0, 0, false
}

func (p *refScanner) value(isRef bool, depth int) bool {
	if depth > maxDepth {
		return false
	}
	p.ws()
	if p.i >= len(p.b) {
		return false
	}
	switch p.b[p.i] {
	case '{':
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return true
		}
		for {
			p.ws()
			ks, ke, ok := p.str()
			if !ok {
				return false
			}
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return false
			}
			p.i++
			if !p.value(string(p.b[ks:ke]) == `"reference"`, depth+1) {
				return false
			}
			p.ws()
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case '}':
				p.i++
				return true
			default:
				return false
			}
		}
	case '[':
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return true
		}
		for {
			if !p.value(false, depth+1) {
				return false
			}
			p.ws()
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case ']':
				p.i++
				return true
			default:
				return false
			}
		}
	case '"':
		s, e, ok := p.str()
		if !ok {
			return false
		}
		if isRef {
			p.check(s, e)
		}
		return true
	}
	// number, true, false, null
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			break
		}
		p.i++
	}
	return p.i > start
}

// check records a rewrite of the reference string token b[s:e] if it
// points to the target.
func (p *refScanner) check(s, e int) {
	var ref string
	tok := p.b[s:e]
	if bytes.IndexByte(tok, '\\') < 0 {
		ref = string(tok[1 : len(tok)-1])
	} else if json.Unmarshal(tok, &ref) != nil {
		return
	}
	var out string
	switch {
	case ref == p.target, strings.HasPrefix(ref, p.target+"/_history/"):
		out = p.repl
	case strings.HasSuffix(ref, "/"+p.target) && strings.Contains(ref, "://"):
		out = strings.TrimSuffix(ref, p.target) + p.repl
	case strings.Contains(ref, "/"+p.target+"/_history/") && strings.Contains(ref, "://"):
		out = ref[:strings.Index(ref, "/"+p.target+"/_history/")+1] + p.repl
	default:
		return
	}
	p.edits = append(p.edits, refEdit{start: s, end: e, s: out})
}
