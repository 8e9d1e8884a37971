package mapping

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// Most expressions in mapping rules are paths with simple filters:
// telecom.where(system = 'phone' or system = 'fax'),
// identifier.where(type.coding.where(code = 'MB').exists()).value.first(),
// subscriberId.empty(). Such an expression is compiled here too and
// evaluated straight on the JSON tree, without the FHIRPath engine's
// typed collections; anything outside this subset runs on the engine.
// Results are the same (fastpath_test.go compares both on every golden
// input):
//
//	path      := ['%res' '.'] step ('.' step)*
//	step      := name | extension('url') | where(pred) | first()
//	pred      := and ('or' and)*
//	and       := atom ('and' atom)*
//	atom      := '(' pred ')' | path '=' 'text' | path '.exists()' | path '.empty()'
//
// A where() keeps the items whose predicate is true; an empty comparison
// counts as false there, as in FHIRPath. path = 'text' is true when the
// path gives exactly one value, equal to the text, and only paths to
// string-like elements (string, code, uri, id...) may be compared.

type fastKind uint8

const (
	fastName fastKind = iota
	fastWhere
	fastFirst
	fastDescendants // descendants().ofType(T)
)

type fastStep struct {
	kind fastKind
	segs []pathSeg // fastName: one step
	pred *fastPred
	// fastDescendants: the model, the type of the items the step starts
	// from, and the type it keeps.
	m          *model.Model
	from, want *model.Type
}

type fastExpr struct {
	fromRes   bool // starts at %res, the resource
	slowCount bool // count() cannot walk it step by step (first(), descendants())
	steps     []fastStep
	typ       *model.Type // type of the values
}

type predOp uint8

const (
	predAnd predOp = iota
	predOr
	predEq
	predExists
	predEmpty
	predStartsWith // path.startsWith('lit'), negated by a following .not()
)

type fastPred struct {
	op   predOp
	l, r *fastPred
	path *fastExpr
	lit  string
	neg  bool
}

// eval appends the values of the expression below ctx.
func (f *fastExpr) eval(dst []any, ctx any, res map[string]any) []any {
	start := ctx
	if f.fromRes {
		start = res
	}
	if start == nil {
		return dst
	}
	base := len(dst)
	dst = append(dst, start)
	for _, st := range f.steps {
		cur := dst[base:]
		switch st.kind {
		case fastFirst:
			if len(cur) > 1 {
				clear(cur[1:])
				dst = dst[:base+1]
			}
		case fastWhere:
			n := base
			for _, v := range cur {
				if st.pred.holds(v, res) {
					dst[n] = v
					n++
				}
			}
			clear(dst[n:])
			dst = dst[:n]
		case fastName, fastDescendants:
			// Replace the items by their children (or descendants):
			// collect after the current items, then move down.
			end := len(dst)
			for i := base; i < end; i++ {
				if st.kind == fastName {
					dst = getSegs(dst, dst[i], st.segs)
				} else {
					dst = st.descend(dst, dst[i], st.from)
				}
			}
			n := copy(dst[base:], dst[end:])
			clear(dst[base+n:])
			dst = dst[:base+n]
		}
		if len(dst) == base {
			return dst
		}
	}
	return dst
}

// typedObj is an element with its type, for descend.
type typedObj struct {
	obj map[string]any
	typ *model.Type
}

// descend appends the elements below v (of type t) whose type is the
// step's want, in the order of FHIRPath's descendants(): level by level,
// each element's children in definition order. Like descendants() it goes
// into primitives' extensions ("_name") and contained resources, and skips
// members the model does not know.
func (st *fastStep) descend(dst []any, v any, t *model.Type) []any {
	obj, ok := v.(map[string]any)
	if !ok || t == nil {
		return dst
	}
	element := st.m.Type("Element")
	level := []typedObj{{obj, t}}
	var next []typedObj
	for len(level) > 0 {
		next = next[:0]
		for _, it := range level {
			t := it.typ
			if t.Kind() == model.KindResource {
				if rt := resourceTypeOf(st.m, it.obj); rt != nil {
					t = rt
				}
			}
			var keyBuf [16]objKey
			var nameBuf [16]string
			keys, names := keyBuf[:0], nameBuf[:0]
			for k := range it.obj {
				name, under := k, int32(0)
				if len(k) > 1 && k[0] == '_' {
					name, under = k[1:], 1
				}
				if c, _, found := t.Lookup(name); found {
					keys = append(keys, objKey{rank: int32(2*c) + under, idx: int32(len(names))})
					names = append(names, k)
				}
			}
			slices.SortFunc(keys, func(a, b objKey) int { return int(a.rank - b.rank) })
			for _, k := range keys {
				name := names[k.idx]
				var ct *model.Type
				if name[0] == '_' {
					ct = element
				} else {
					c, choice, _ := t.Lookup(name)
					if choice < 0 && len(t.Children()[c].Types) > 1 {
						continue // a choice without its type in the name
					}
					ct = t.ChildType(c, max(choice, 0))
				}
				if ct == nil || ct.Kind() == model.KindPrimitive {
					continue
				}
				visit := func(x any) {
					m, ok := x.(map[string]any)
					if !ok {
						return
					}
					xt := ct
					if xt.Kind() == model.KindResource {
						if rt := resourceTypeOf(st.m, m); rt != nil {
							xt = rt
						}
					}
					if xt.IsA(st.want.Name()) {
						dst = append(dst, x)
					}
					next = append(next, typedObj{m, xt})
				}
				if arr, ok := it.obj[name].([]any); ok {
					for _, x := range arr {
						visit(x)
					}
				} else {
					visit(it.obj[name])
				}
			}
		}
		level, next = next, level
	}
	return dst
}

func (p *fastPred) holds(v any, res map[string]any) bool {
	switch p.op {
	case predAnd:
		return p.l.holds(v, res) && p.r.holds(v, res)
	case predOr:
		return p.l.holds(v, res) || p.r.holds(v, res)
	}
	// Count the path's values (up to two) without collecting them.
	var first any
	n := p.path.count(v, res, 2, &first)
	switch p.op {
	case predExists:
		return n > 0
	case predEmpty:
		return n == 0
	}
	if n != 1 {
		return false // empty (or, for startsWith, never more than one: see the parser)
	}
	s, ok := first.(string)
	if p.op == predStartsWith {
		return ok && strings.HasPrefix(s, p.lit) != p.neg
	}
	return ok && s == p.lit
}

// count counts the values of the expression below v, stopping at limit,
// and stores the first in *first. It allocates nothing.
func (f *fastExpr) count(v any, res map[string]any, limit int, first *any) int {
	if f.slowCount {
		var buf []any
		vals := f.eval(buf, v, res)
		if len(vals) > 0 {
			*first = vals[0]
		}
		return min(len(vals), limit)
	}
	if f.fromRes {
		v = res
	}
	return f.countFrom(0, v, res, limit, first, 0)
}

func (f *fastExpr) countFrom(i int, v any, res map[string]any, limit int, first *any, n int) int {
	if v == nil {
		return n
	}
	if i == len(f.steps) {
		if n == 0 {
			*first = v
		}
		return n + 1
	}
	st := &f.steps[i]
	if st.kind == fastWhere {
		if st.pred.holds(v, res) {
			return f.countFrom(i+1, v, res, limit, first, n)
		}
		return n
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return n
	}
	seg := &st.segs[0]
	child, ok := obj[seg.name]
	if !ok || child == nil {
		return n
	}
	visit := func(x any) {
		if seg.url != "" {
			if e, ok := x.(map[string]any); !ok || e["url"] != seg.url {
				return
			}
		}
		n = f.countFrom(i+1, x, res, limit, first, n)
	}
	if arr, ok := child.([]any); ok {
		for _, x := range arr {
			if n >= limit {
				break
			}
			visit(x)
		}
	} else {
		visit(child)
	}
	return n
}

// compileFast compiles expr for direct evaluation with ctx as the type of
// the context; ok is false when expr is outside the subset.
func compileFast(m *model.Model, ctx *model.Type, root *model.Type, expr string) (*fastExpr, bool) {
	toks, err := lexFast(expr)
	if err != nil {
		return nil, false
	}
	p := &fastParser{m: m, root: root, toks: toks}
	f, err := p.path(ctx, true)
	if err != nil || p.i != len(p.toks) {
		return nil, false
	}
	return f, true
}

// compileFastPred compiles a condition (a predicate on the context).
func compileFastPred(m *model.Model, ctx *model.Type, root *model.Type, expr string) (*fastPred, bool) {
	toks, err := lexFast(expr)
	if err != nil {
		return nil, false
	}
	p := &fastParser{m: m, root: root, toks: toks}
	pr, err := p.pred(ctx)
	if err != nil || p.i != len(p.toks) {
		return nil, false
	}
	return pr, true
}

type fastTok struct {
	kind byte // 'i' identifier, 's' string, 'v' %variable, or the symbol itself
	text string
}

func lexFast(s string) ([]fastTok, error) {
	var out []fastTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '.' || c == '(' || c == ')' || c == '=':
			out = append(out, fastTok{kind: c})
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '\''; j++ {
				if s[j] == '\\' {
					return nil, fmt.Errorf("escapes are not in the fast subset")
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			out = append(out, fastTok{kind: 's', text: b.String()})
			i = j + 1
		case c == '%' || c == '$' || isIdentChar(c):
			j := i + 1
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			kind := byte('i')
			if c == '%' {
				kind = 'v'
			}
			out = append(out, fastTok{kind: kind, text: s[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("%q is not in the fast subset", c)
		}
	}
	return out, nil
}

type fastParser struct {
	m    *model.Model
	root *model.Type
	toks []fastTok
	i    int
}

var errNotFast = fmt.Errorf("not in the fast subset")

func (p *fastParser) peek(kind byte, text string) bool {
	if p.i >= len(p.toks) {
		return false
	}
	t := p.toks[p.i]
	return t.kind == kind && (text == "" || t.text == text)
}

func (p *fastParser) expect(kind byte) (fastTok, error) {
	if p.i >= len(p.toks) || p.toks[p.i].kind != kind {
		return fastTok{}, errNotFast
	}
	p.i++
	return p.toks[p.i-1], nil
}

// path parses a path. In a predicate (top false) it stops before a
// trailing .exists() or .empty(), which the caller reads.
func (p *fastParser) path(ctx *model.Type, top bool) (*fastExpr, error) {
	f := &fastExpr{typ: ctx}
	if p.peek('v', "%res") {
		p.i++
		f.fromRes, f.typ = true, p.root
		if _, err := p.expect('.'); err != nil {
			return nil, err
		}
	} else if p.peek('v', "") {
		return nil, errNotFast
	}
	first := true
	for {
		t, err := p.expect('i')
		if err != nil {
			return nil, err
		}
		switch {
		case t.text == "$this" && first:
		case first && f.typ != nil && t.text == f.typ.Name() && top:
		case p.peek('(', ""):
			if err := p.call(f, t.text); err != nil {
				return nil, err
			}
		default:
			if err := p.name(f, t.text, ""); err != nil {
				return nil, err
			}
		}
		first = false
		if !p.peek('.', "") {
			return f, nil
		}
		// A trailing .exists(), .empty() or .startsWith() belongs to the
		// predicate.
		if !top && p.i+1 < len(p.toks) && p.toks[p.i+1].kind == 'i' &&
			(p.toks[p.i+1].text == "exists" || p.toks[p.i+1].text == "empty" || p.toks[p.i+1].text == "startsWith") {
			return f, nil
		}
		p.i++
	}
}

func (p *fastParser) name(f *fastExpr, name, url string) error {
	if f.typ == nil {
		return errNotFast
	}
	ci, ch, ok := f.typ.Lookup(name)
	if !ok {
		return errNotFast
	}
	c := f.typ.Children()[ci]
	if ch < 0 && len(c.Types) != 1 {
		return errNotFast // a choice element: the engine resolves its type
	}
	seg := pathSeg{name: name, url: url, array: c.Array, typ: f.typ.ChildType(ci, max(ch, 0))}
	f.steps = append(f.steps, fastStep{kind: fastName, segs: []pathSeg{seg}})
	f.typ = seg.typ
	return nil
}

func (p *fastParser) call(f *fastExpr, fn string) error {
	p.i++ // (
	switch fn {
	case "first":
		f.steps = append(f.steps, fastStep{kind: fastFirst})
		f.slowCount = true
	case "descendants":
		// Only as descendants().ofType(T), from an element of known type.
		if _, err := p.expect(')'); err != nil || f.typ == nil {
			return errNotFast
		}
		if _, err := p.expect('.'); err != nil {
			return err
		}
		if t, err := p.expect('i'); err != nil || t.text != "ofType" {
			return errNotFast
		}
		if _, err := p.expect('('); err != nil {
			return err
		}
		tn, err := p.expect('i')
		if err != nil {
			return err
		}
		want := p.m.Type(tn.text)
		if want == nil || want.Kind() == model.KindPrimitive {
			return errNotFast
		}
		f.steps = append(f.steps, fastStep{kind: fastDescendants, m: p.m, from: f.typ, want: want})
		f.typ = want
		f.slowCount = true
	case "extension":
		t, err := p.expect('s')
		if err != nil {
			return err
		}
		if err := p.name(f, "extension", t.text); err != nil {
			return err
		}
	case "where":
		pred, err := p.pred(f.typ)
		if err != nil {
			return err
		}
		f.steps = append(f.steps, fastStep{kind: fastWhere, pred: pred})
	default:
		return errNotFast
	}
	_, err := p.expect(')')
	return err
}

func (p *fastParser) pred(ctx *model.Type) (*fastPred, error) {
	l, err := p.and(ctx)
	if err != nil {
		return nil, err
	}
	for p.peek('i', "or") {
		p.i++
		r, err := p.and(ctx)
		if err != nil {
			return nil, err
		}
		l = &fastPred{op: predOr, l: l, r: r}
	}
	return l, nil
}

func (p *fastParser) and(ctx *model.Type) (*fastPred, error) {
	l, err := p.atom(ctx)
	if err != nil {
		return nil, err
	}
	for p.peek('i', "and") {
		p.i++
		r, err := p.atom(ctx)
		if err != nil {
			return nil, err
		}
		l = &fastPred{op: predAnd, l: l, r: r}
	}
	return l, nil
}

func (p *fastParser) atom(ctx *model.Type) (*fastPred, error) {
	if p.peek('(', "") {
		p.i++
		pr, err := p.pred(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(')'); err != nil {
			return nil, err
		}
		return pr, nil
	}
	path, err := p.path(ctx, false)
	if err != nil {
		return nil, err
	}
	if p.peek('.', "") {
		p.i++
		t, _ := p.expect('i')
		if _, err := p.expect('('); err != nil {
			return nil, err
		}
		if t.text == "startsWith" {
			lit, err := p.expect('s')
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(')'); err != nil {
				return nil, err
			}
			// FHIRPath fails on startsWith over several values; the fast
			// subset takes only paths that cannot give more than one.
			if path.slowCount || path.fromRes || path.typ == nil || p.m.Primitive(path.typ.Name()) != "String" {
				return nil, errNotFast
			}
			for _, st := range path.steps {
				if st.kind != fastName || st.segs[0].array {
					return nil, errNotFast
				}
			}
			pr := &fastPred{op: predStartsWith, path: path, lit: lit.text}
			if p.peek('.', "") && p.i+1 < len(p.toks) && p.toks[p.i+1].text == "not" {
				p.i += 2
				if _, err := p.expect('('); err != nil {
					return nil, err
				}
				if _, err := p.expect(')'); err != nil {
					return nil, err
				}
				pr.neg = true
			}
			return pr, nil
		}
		if _, err := p.expect(')'); err != nil {
			return nil, err
		}
		op := predExists
		if t.text == "empty" {
			op = predEmpty
		}
		return &fastPred{op: op, path: path}, nil
	}
	if _, err := p.expect('='); err != nil {
		return nil, err
	}
	lit, err := p.expect('s')
	if err != nil {
		return nil, err
	}
	if path.typ == nil || p.m.Primitive(path.typ.Name()) != "String" {
		return nil, errNotFast // only text compares to text
	}
	return &fastPred{op: predEq, path: path, lit: lit.text}, nil
}
