package v2fhir

import (
	"fmt"
	"strings"
)

// This file holds the two small languages of the spec files: conditions
// ("when") and text templates ("format").
//
// A condition is "<ref> <test>", several joined by " or "; a rule's list of
// conditions must all hold. A ref is a message path (PID-29, OBX-5-3: in the
// current segment when it has that id, else the nearest such segment), a
// component of the value being mapped (.3, .4.1) or a resource of the
// message (@patient). Tests: valued, empty, "= X", "!= X", "in X,Y",
// "not-in X,Y" (codes compared without regard to case), numeric,
// not-numeric, has-time (a date/time with a time of day), base64,
// not-base64.

type refKind uint8

const (
	refMsg  refKind = iota // a message path
	refComp                // a component of the current value
	refRes                 // a resource of the message
)

type cref struct {
	kind refKind
	mp   mpath
	cp   cpath
	res  int // resource index (refRes)
	name string
}

func (r cref) String() string {
	switch r.kind {
	case refComp:
		return r.cp.String()
	case refRes:
		return "@" + r.name
	}
	return r.mp.String()
}

type testOp uint8

const (
	opValued testOp = iota
	opEmpty
	opEq
	opNe
	opIn
	opNotIn
	opNumeric
	opNotNumeric
	opHasTime
	opBase64
	opNotBase64
)

var testOps = map[string]testOp{
	"valued": opValued, "empty": opEmpty, "=": opEq, "!=": opNe, "in": opIn, "not-in": opNotIn,
	"numeric": opNumeric, "not-numeric": opNotNumeric, "has-time": opHasTime,
	"base64": opBase64, "not-base64": opNotBase64,
}

type atomCond struct {
	ref  cref
	op   testOp
	args []string
}

// ccond is one entry of a rule's conditions: any of its atoms.
type ccond []atomCond

// refResolver tells the condition compiler what refs mean where the rule
// is: which resource names exist, whether there is a current value, and
// checks message and component paths.
type refResolver struct {
	resIndex  func(name string) (int, bool) // nil: no message resources here
	hasValue  bool
	checkMsg  func(mpath) error
	checkComp func(cpath) error
}

func parseRef(s string, rr *refResolver) (cref, error) {
	switch {
	case strings.HasPrefix(s, "@"):
		if rr.resIndex == nil {
			return cref{}, fmt.Errorf("%q: resources of the message can be named only in message specs", s)
		}
		i, ok := rr.resIndex(s[1:])
		if !ok {
			return cref{}, fmt.Errorf("%q: no resource of that name in this message spec", s)
		}
		return cref{kind: refRes, res: i, name: s[1:]}, nil
	case strings.HasPrefix(s, "."):
		if !rr.hasValue {
			return cref{}, fmt.Errorf("%q: no value to take a component of here", s)
		}
		cp, err := parseCPath(s)
		if err != nil {
			return cref{}, err
		}
		if rr.checkComp != nil {
			if err := rr.checkComp(cp); err != nil {
				return cref{}, err
			}
		}
		return cref{kind: refComp, cp: cp}, nil
	}
	mp, err := parseMPath(s)
	if err != nil {
		return cref{}, err
	}
	if rr.checkMsg == nil {
		return cref{}, fmt.Errorf("%q: message paths cannot be used here", s)
	}
	if err := rr.checkMsg(mp); err != nil {
		return cref{}, err
	}
	return cref{kind: refMsg, mp: mp}, nil
}

func parseCond(s string, rr *refResolver) (ccond, error) {
	var out ccond
	for _, part := range strings.Split(s, " or ") {
		f := strings.Fields(part)
		if len(f) < 2 {
			return nil, fmt.Errorf("condition %q: want <ref> <test>", part)
		}
		ref, err := parseRef(f[0], rr)
		if err != nil {
			return nil, fmt.Errorf("condition %q: %w", part, err)
		}
		op, ok := testOps[f[1]]
		if !ok {
			return nil, fmt.Errorf("condition %q: unknown test %q", part, f[1])
		}
		a := atomCond{ref: ref, op: op}
		switch op {
		case opEq, opNe, opIn, opNotIn:
			if len(f) != 3 {
				return nil, fmt.Errorf("condition %q: test %q takes one argument", part, f[1])
			}
			if op == opIn || op == opNotIn {
				for _, x := range strings.Split(f[2], ",") {
					a.args = append(a.args, strings.TrimSpace(x))
				}
			} else {
				a.args = []string{f[2]}
			}
		default:
			if len(f) != 2 {
				return nil, fmt.Errorf("condition %q: test %q takes no argument", part, f[1])
			}
		}
		if ref.kind == refRes && op != opValued && op != opEmpty {
			return nil, fmt.Errorf("condition %q: a resource can only be valued or empty", part)
		}
		out = append(out, a)
	}
	return out, nil
}

// holds evaluates the conditions in the context of a rule.
func (cx *ectx) holds(conds []ccond) bool {
	for _, c := range conds {
		ok := false
		for _, a := range c {
			if cx.atomHolds(a) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (cx *ectx) atomHolds(a atomCond) bool {
	if a.ref.kind == refRes {
		in := cx.r.resolve(a.ref.res, cx)
		ok := in != nil && in.id != ""
		return ok == (a.op == opValued)
	}
	v := cx.refValue(a.ref)
	switch a.op {
	case opValued:
		return !v.empty()
	case opEmpty:
		return v.empty()
	case opNumeric:
		return isNumeric(v.atom())
	case opNotNumeric:
		return !v.empty() && !isNumeric(v.atom())
	case opHasTime:
		t, err := parseDTM(v.atom())
		return err == nil && t.prec > 8
	case opBase64:
		return isBase64(v.text())
	case opNotBase64:
		return !v.empty() && !isBase64(v.text())
	}
	s := strings.TrimSpace(v.atom())
	in := false
	for _, x := range a.args {
		if strings.EqualFold(s, x) {
			in = true
			break
		}
	}
	switch a.op {
	case opEq, opIn:
		return in
	}
	return !in // opNe, opNotIn
}

// refValue reads a message path or component ref.
func (cx *ectx) refValue(r cref) val {
	if r.kind == refComp {
		if !cx.hasV {
			return val{}
		}
		return cx.v.at(r.cp)
	}
	return r.mp.first(cx.r.segFor(r.mp.seg, cx.at))
}

// tmpl is a compiled "format": literal text with {ref} placeholders;
// "[...]" marks an optional part, dropped when a placeholder in it is
// empty. The result is trimmed.
type tmpl struct {
	parts []tpart
}

type tpart struct {
	lit  string
	ref  *cref
	opt  []tpart // an optional group
	isOp bool
}

func parseTmpl(s string, rr *refResolver) (*tmpl, error) {
	parts, rest, err := parseTParts(s, rr, false)
	if err != nil {
		return nil, fmt.Errorf("format %q: %w", s, err)
	}
	if rest != "" {
		return nil, fmt.Errorf("format %q: unbalanced ]", s)
	}
	return &tmpl{parts: parts}, nil
}

func parseTParts(s string, rr *refResolver, inGroup bool) ([]tpart, string, error) {
	var out []tpart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, tpart{lit: lit.String()})
			lit.Reset()
		}
	}
	for len(s) > 0 {
		c := s[0]
		switch c {
		case '{':
			j := strings.IndexByte(s, '}')
			if j < 0 {
				return nil, "", fmt.Errorf("unclosed {")
			}
			name := s[1:j]
			if !strings.HasPrefix(name, ".") && !strings.Contains(name, "-") && !strings.HasPrefix(name, "@") {
				name = "." + name
			}
			ref, err := parseRef(name, rr)
			if err != nil {
				return nil, "", err
			}
			if ref.kind == refRes {
				return nil, "", fmt.Errorf("{%s}: a resource has no text", name)
			}
			flush()
			out = append(out, tpart{ref: &ref})
			s = s[j+1:]
		case '[':
			flush()
			group, rest, err := parseTParts(s[1:], rr, true)
			if err != nil {
				return nil, "", err
			}
			if !strings.HasPrefix(rest, "]") {
				return nil, "", fmt.Errorf("unclosed [")
			}
			out = append(out, tpart{opt: group, isOp: true})
			s = rest[1:]
		case ']':
			if !inGroup {
				return nil, "", fmt.Errorf("unbalanced ]")
			}
			flush()
			return out, s, nil
		default:
			lit.WriteByte(c)
			s = s[1:]
		}
	}
	if inGroup {
		return nil, "", fmt.Errorf("unclosed [")
	}
	flush()
	return out, "", nil
}

func (t *tmpl) render(cx *ectx) string {
	var sb strings.Builder
	renderParts(&sb, t.parts, cx)
	return strings.TrimSpace(sb.String())
}

// renderParts writes parts and reports whether every placeholder among
// them was valued.
func renderParts(sb *strings.Builder, parts []tpart, cx *ectx) bool {
	all := true
	for _, p := range parts {
		switch {
		case p.isOp:
			var g strings.Builder
			if renderParts(&g, p.opt, cx) {
				sb.WriteString(g.String())
			}
		case p.ref != nil:
			s := strings.TrimSpace(cx.refValue(*p.ref).atom())
			if s == "" {
				all = false
			}
			sb.WriteString(s)
		default:
			sb.WriteString(p.lit)
		}
	}
	return all
}
