package mapping

import (
	"fmt"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// An element path names an element relative to a context (the resource or
// the element an "each" selected): "$this", "gender", "name.text",
// "extension('http://…/us-core-race').extension('ombCategory').valueCoding".
// Targets are element paths; sources that are element paths are read
// directly from the JSON tree instead of through the FHIRPath engine.

type pathSeg struct {
	name  string // JSON member name ("extension" for an extension('url') step)
	url   string // extension('url') steps: the extension's url
	array bool   // the element repeats (a JSON array)
	typ   *model.Type
}

type elemPath struct {
	text string
	segs []pathSeg // empty for $this
	typ  *model.Type
}

// isThis reports whether the path is the context itself.
func (p *elemPath) isThis() bool { return len(p.segs) == 0 }

// lastArray reports whether the path's element repeats.
func (p *elemPath) lastArray() bool { return len(p.segs) > 0 && p.segs[len(p.segs)-1].array }

// parseElemPath parses and checks an element path against the model,
// starting at type ctx. target paths may not cross a repeating element
// (other than through extension('url')) and must name one type.
func parseElemPath(m *model.Model, ctx *model.Type, text string, target bool) (*elemPath, error) {
	p := &elemPath{text: text, typ: ctx}
	s := strings.TrimSpace(text)
	if s == "$this" || s == "" {
		if s == "" {
			return nil, fmt.Errorf("empty path")
		}
		return p, nil
	}
	// A leading type name ("Patient.gender") is the context itself.
	if ctx != nil {
		if rest, ok := strings.CutPrefix(s, ctx.Name()+"."); ok {
			s = rest
		}
	}
	cur := ctx
	for i := 0; s != ""; i++ {
		name, arg, rest, err := nextPathStep(s)
		if err != nil {
			return nil, err
		}
		s = rest
		if cur == nil {
			return nil, fmt.Errorf("%s: cannot follow %s", text, name)
		}
		seg := pathSeg{name: name}
		lookup := name
		if arg != nil {
			if name != "extension" {
				return nil, fmt.Errorf("%s: only extension('url') may take an argument in an element path", text)
			}
			seg.url = *arg
		}
		c, ok := m.Child(cur.Name(), lookup)
		if !ok {
			return nil, &pathError{Path: text, Type: cur.Name(), Name: lookup}
		}
		seg.array = c.Array
		choice := -1
		if ci, ch, ok := cur.Lookup(lookup); ok {
			choice = ch
			if len(c.Types) == 1 || choice >= 0 {
				seg.typ = cur.ChildType(ci, max(choice, 0))
			}
		}
		if seg.typ == nil {
			return nil, fmt.Errorf("%s: %s.%s has several types; name one (%s%s)", text, cur.Name(), lookup, lookup, upperFirst(c.Types[0]))
		}
		if target && seg.array && s != "" && seg.url == "" {
			return nil, fmt.Errorf("%s: %s repeats; select the elements with each: %s and target a path inside them", text, lookup, lookup)
		}
		p.segs = append(p.segs, seg)
		cur = seg.typ
	}
	p.typ = cur
	return p, nil
}

// pathError is an element a path names that its type does not have.
type pathError struct {
	Path, Type, Name string
}

func (e *pathError) Error() string {
	return fmt.Sprintf("%s: %s has no element %s", e.Path, e.Type, e.Name)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// nextPathStep reads "name" or "name('arg')" and the '.' after it.
func nextPathStep(s string) (name string, arg *string, rest string, err error) {
	i := 0
	for i < len(s) && (isIdentChar(s[i])) {
		i++
	}
	if i == 0 {
		return "", nil, "", fmt.Errorf("expected an element name at %q", s)
	}
	name, s = s[:i], s[i:]
	if strings.HasPrefix(s, "(") {
		s = strings.TrimSpace(s[1:])
		if !strings.HasPrefix(s, "'") {
			return "", nil, "", fmt.Errorf("%s(...) takes a quoted string", name)
		}
		end := strings.Index(s[1:], "'")
		if end < 0 {
			return "", nil, "", fmt.Errorf("unterminated string in %s(...)", name)
		}
		a := s[1 : 1+end]
		arg = &a
		s = strings.TrimSpace(s[2+end:])
		if !strings.HasPrefix(s, ")") {
			return "", nil, "", fmt.Errorf("expected ')' after %s('%s'", name, a)
		}
		s = s[1:]
	}
	if s == "" {
		return name, arg, "", nil
	}
	if s[0] != '.' || len(s) == 1 {
		return "", nil, "", fmt.Errorf("unexpected %q in an element path", s)
	}
	return name, arg, s[1:], nil
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// get appends the values at p below ctx (arrays flattened, extension
// steps filtered by url, JSON nulls dropped).
func (p *elemPath) get(dst []any, ctx any) []any {
	if len(p.segs) == 0 {
		if ctx != nil {
			dst = append(dst, ctx)
		}
		return dst
	}
	return getSegs(dst, ctx, p.segs)
}

// appendItems appends a member's value as getSegs does for a last step
// without an extension url: the items of an array, else the value, JSON
// nulls dropped.
func appendItems(dst []any, v any) []any {
	switch x := v.(type) {
	case nil:
	case []any:
		for _, e := range x {
			if e != nil {
				dst = append(dst, e)
			}
		}
	default:
		dst = append(dst, v)
	}
	return dst
}

func getSegs(dst []any, v any, segs []pathSeg) []any {
	obj, ok := v.(map[string]any)
	if !ok {
		return dst
	}
	seg := segs[0]
	child, ok := obj[seg.name]
	if !ok || child == nil {
		return dst
	}
	last := len(segs) == 1
	visit := func(x any) {
		if x == nil {
			return
		}
		if seg.url != "" {
			e, ok := x.(map[string]any)
			if !ok || e["url"] != seg.url {
				return
			}
		}
		if last {
			dst = append(dst, x)
		} else {
			dst = getSegs(dst, x, segs[1:])
		}
	}
	if arr, ok := child.([]any); ok {
		for _, x := range arr {
			visit(x)
		}
	} else {
		visit(child)
	}
	return dst
}

// present reports whether the element at p below ctx has a value, or (for
// a primitive) an extension in its "_name" sibling.
func (p *elemPath) present(ctx map[string]any) bool {
	if len(p.segs) == 0 {
		return len(ctx) > 0
	}
	parent := p.parent(ctx, false)
	if parent == nil {
		return false
	}
	seg := p.lastSeg()
	v, ok := parent[seg.name]
	if seg.url != "" {
		arr, _ := v.([]any)
		for _, x := range arr {
			if e, ok := x.(map[string]any); ok && e["url"] == seg.url {
				return true
			}
		}
		return false
	}
	if ok && v != nil {
		if arr, isArr := v.([]any); !isArr || len(arr) > 0 {
			return true
		}
	}
	_, ext := parent["_"+seg.name]
	return ext
}

// parent walks to the object holding the last step of p below ctx,
// creating objects (and extensions with their url) when create is set.
// It returns nil when the path is absent and create is false, or when the
// tree holds something other than objects on the way.
func (p *elemPath) parent(ctx map[string]any, create bool) map[string]any {
	cur := ctx
	for _, seg := range p.segs[:len(p.segs)-1] {
		next := childObject(cur, seg, create)
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

func childObject(obj map[string]any, seg pathSeg, create bool) map[string]any {
	v, ok := obj[seg.name]
	if seg.url != "" {
		arr, _ := v.([]any)
		if ok && arr == nil {
			return nil // not an array: leave it alone
		}
		for _, x := range arr {
			if e, ok := x.(map[string]any); ok && e["url"] == seg.url {
				return e
			}
		}
		if !create {
			return nil
		}
		e := map[string]any{"url": seg.url}
		obj[seg.name] = append(arr, e)
		return e
	}
	if !ok || v == nil {
		if !create {
			return nil
		}
		e := map[string]any{}
		obj[seg.name] = e
		return e
	}
	e, _ := v.(map[string]any)
	return e
}

// lastKey is the JSON member the path's last step writes; for an
// extension('url') last step the extension object itself is replaced.
func (p *elemPath) lastSeg() pathSeg { return p.segs[len(p.segs)-1] }

// eachType computes the element type an "each" expression selects:
// a path of element names, extension(...) and functions that keep their
// input's type (where, first, ...) or name one (ofType(T), as(T)).
func eachType(m *model.Model, root *model.Type, expr string) (*model.Type, error) {
	terms, err := splitTerms(expr)
	if err != nil {
		return nil, err
	}
	cur := root
	for i, t := range terms {
		name, args, isCall := t.name, t.args, t.call
		if !isCall {
			if cur == nil {
				return nil, fmt.Errorf("%s: descendants() must be followed by ofType(T)", expr)
			}
			if name == "$this" {
				continue
			}
			if i == 0 && name == root.Name() {
				continue
			}
			ci, ch, ok := cur.Lookup(name)
			if !ok {
				return nil, &pathError{Path: expr, Type: cur.Name(), Name: name}
			}
			if ch < 0 && len(cur.Children()[ci].Types) > 1 {
				return nil, fmt.Errorf("%s: %s.%s has several types; add .ofType(T)", expr, cur.Name(), name)
			}
			cur = cur.ChildType(ci, max(ch, 0))
			continue
		}
		if cur == nil && name != "ofType" {
			return nil, fmt.Errorf("%s: descendants() must be followed by ofType(T)", expr)
		}
		switch name {
		case "where", "first", "last", "tail", "skip", "take", "single", "distinct", "exclude", "intersect":
		case "descendants":
			cur = nil // unknown until ofType(T)
			continue
		case "extension":
			cur = m.Type("Extension")
		case "ofType", "as":
			tn := strings.TrimPrefix(strings.TrimSpace(args), "FHIR.")
			nt := m.Type(tn)
			if nt == nil {
				return nil, fmt.Errorf("%s: unknown type %s", expr, tn)
			}
			cur = nt
		default:
			return nil, fmt.Errorf("%s: each selects elements by a path with where(), first(), extension(), ofType(); %s() hides the element type", expr, name)
		}
		if cur == nil {
			return nil, fmt.Errorf("%s: unknown element type", expr)
		}
	}
	if cur == nil {
		return nil, fmt.Errorf("%s: descendants() must be followed by ofType(T)", expr)
	}
	return cur, nil
}

type term struct {
	name string
	args string
	call bool
}

// splitTerms splits a FHIRPath invocation chain at its top-level dots.
func splitTerms(expr string) ([]term, error) {
	var out []term
	s := strings.TrimSpace(expr)
	for s != "" {
		i := 0
		if s[0] == '$' {
			i = 1
		}
		for i < len(s) && isIdentChar(s[i]) {
			i++
		}
		if i == 0 {
			return nil, fmt.Errorf("%s: expected a name at %q", expr, s)
		}
		t := term{name: s[:i]}
		s = s[i:]
		if strings.HasPrefix(s, "(") {
			depth, j, inStr := 0, 0, false
			for ; j < len(s); j++ {
				c := s[j]
				if inStr {
					if c == '\\' {
						j++
					} else if c == '\'' {
						inStr = false
					}
					continue
				}
				if c == '\'' {
					inStr = true
				} else if c == '(' {
					depth++
				} else if c == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("%s: unbalanced parentheses", expr)
			}
			t.call, t.args = true, s[1:j]
			s = s[j+1:]
		}
		out = append(out, t)
		s = strings.TrimSpace(s)
		if s == "" {
			break
		}
		if s[0] != '.' {
			return nil, fmt.Errorf("%s: each must be a path (names and functions joined by '.'), not %q", expr, s)
		}
		s = strings.TrimSpace(s[1:])
	}
	return out, nil
}
