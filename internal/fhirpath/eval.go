package fhirpath

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// EvalError is an evaluation error with the position of the expression
// part that failed.
type EvalError struct {
	Line, Col int
	Msg       string
}

func (e *EvalError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// evalCtx is the state of one evaluation. It is never shared between
// evaluations.
type evalCtx struct {
	ctx      context.Context
	x        *Expr
	mi       *modelInfo
	resource Collection // %resource, %rootResource and %context
	env      map[string]any
	lazy     *evalLazy // what few evaluations need, allocated on first use
	ticks    uint32
}

// evalLazy holds per-evaluation state that is built on demand.
type evalLazy struct {
	envCache map[string]Collection
	now      time.Time
	nowSet   bool
	bundle   *bundleIndex // built on the first resolve() into a Bundle input
}

func (ec *evalCtx) more() *evalLazy {
	if ec.lazy == nil {
		ec.lazy = &evalLazy{}
	}
	return ec.lazy
}

// scope is what $this, $index and $total refer to.
type scope struct {
	this  Collection
	index int         // -1 outside an iteration
	total *Collection // nil outside aggregate()
}

// fail builds an EvalError located at n.
func (ec *evalCtx) fail(n node, format string, args ...any) error {
	s, _ := n.span()
	if c, ok := n.(*callNode); ok {
		s = c.npos
	}
	return ec.failAt(s, format, args...)
}

func (ec *evalCtx) failAt(off int, format string, args ...any) error {
	l, c := position(ec.x.src, off)
	return &EvalError{Line: l, Col: c, Msg: fmt.Sprintf(format, args...)}
}

// tick checks for cancellation now and then.
func (ec *evalCtx) tick() error {
	ec.ticks++
	if ec.ticks&1023 == 0 && ec.ctx != nil {
		if err := ec.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (ec *evalCtx) clock() time.Time {
	l := ec.more()
	if !l.nowSet {
		now := ec.x.cfg.now
		if now == nil {
			now = time.Now
		}
		l.now = now().In(ec.x.cfg.location())
		l.nowSet = true
	}
	return l.now
}

func (n *literal) eval(*evalCtx, *scope) (Collection, error) { return n.val, nil }

func (n *varNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	switch n.name {
	case "this":
		return sc.this, nil
	case "index":
		if sc.index < 0 {
			return nil, ec.fail(n, "$index is only defined inside an iteration")
		}
		return Collection{Integer(int64(sc.index))}, nil
	default:
		if sc.total == nil {
			return nil, ec.fail(n, "$total is only defined inside aggregate()")
		}
		return *sc.total, nil
	}
}

// Environment variables every evaluation knows.
var builtinEnv = map[string]string{
	"ucum":  "http://unitsofmeasure.org",
	"sct":   "http://snomed.info/sct",
	"loinc": "http://loinc.org",
}

func (n *envNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	if c, ok := ec.lazyEnv(n.name); ok {
		return c, nil
	}
	if raw, ok := ec.env[n.name]; ok {
		c, err := fromGo(raw, ec.mi)
		if err != nil {
			return nil, ec.fail(n, "variable %%%s: %v", n.name, err)
		}
		l := ec.more()
		if l.envCache == nil {
			l.envCache = map[string]Collection{}
		}
		l.envCache[n.name] = c
		return c, nil
	}
	switch n.name {
	case "resource", "rootResource", "context":
		return ec.resource, nil
	}
	if s, ok := builtinEnv[n.name]; ok {
		return Collection{String(s)}, nil
	}
	if rest, ok := strings.CutPrefix(n.name, "vs-"); ok {
		return Collection{String("http://hl7.org/fhir/ValueSet/" + rest)}, nil
	}
	if rest, ok := strings.CutPrefix(n.name, "ext-"); ok {
		return Collection{String("http://hl7.org/fhir/StructureDefinition/" + rest)}, nil
	}
	return nil, ec.fail(n, "undefined variable %%%s", n.name)
}

func (ec *evalCtx) lazyEnv(name string) (Collection, bool) {
	if ec.lazy == nil {
		return nil, false
	}
	c, ok := ec.lazy.envCache[name]
	return c, ok
}

func (n *identNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	if err := ec.tick(); err != nil {
		return nil, err
	}
	focus := sc.this
	if len(focus) == 1 {
		return ec.mi.navigate(nil, focus[0], n.name, n.uname, true), nil
	}
	var out Collection
	for _, v := range focus {
		out = ec.mi.navigate(out, v, n.name, n.uname, true)
	}
	return out, nil
}

func (n *memberNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	in, err := n.target.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	if err := ec.tick(); err != nil {
		return nil, err
	}
	if len(in) == 1 {
		return ec.mi.navigate(nil, in[0], n.name, n.uname, false), nil
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make(Collection, 0, len(in))
	for _, v := range in {
		out = ec.mi.navigate(out, v, n.name, n.uname, false)
	}
	return out, nil
}

func (n *callNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	in := sc.this
	if n.target != nil {
		var err error
		if in, err = n.target.eval(ec, sc); err != nil {
			return nil, err
		}
	}
	if err := ec.tick(); err != nil {
		return nil, err
	}
	return n.fn.impl(ec, sc, n, in)
}

// arg evaluates argument i in the caller's scope.
func (n *callNode) arg(ec *evalCtx, sc *scope, i int) (Collection, error) {
	return n.args[i].eval(ec, sc)
}

func (n *indexNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	in, err := n.target.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	idx, err := n.index.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return nil, nil
	}
	i, ok, err := ec.singleInt(n.index, idx)
	if err != nil {
		return nil, err
	}
	if !ok || i < 0 || i >= int64(len(in)) {
		return nil, nil
	}
	return in[i : i+1 : i+1], nil
}

// singleInt reads a collection that must hold at most one Integer.
func (ec *evalCtx) singleInt(at node, c Collection) (int64, bool, error) {
	if len(c) == 0 {
		return 0, false, nil
	}
	if len(c) > 1 {
		return 0, false, ec.fail(at, "expected one integer, got %d items", len(c))
	}
	v, ok := ec.mi.sys(c[0])
	if !ok {
		return 0, false, nil
	}
	if v.k != kInt {
		return 0, false, ec.fail(at, "expected an integer, got %s", ec.typeName(c[0]))
	}
	return v.int(), true, nil
}

// singleString reads a collection that must hold at most one String.
func (ec *evalCtx) singleString(at node, c Collection) (string, bool, error) {
	if len(c) == 0 {
		return "", false, nil
	}
	if len(c) > 1 {
		return "", false, ec.fail(at, "expected one string, got %d items", len(c))
	}
	v, ok := ec.mi.sys(c[0])
	if !ok {
		return "", false, nil
	}
	if v.k != kStr {
		return "", false, ec.fail(at, "expected a string, got %s", ec.typeName(c[0]))
	}
	return v.str(), true, nil
}

// typeName names the type of v for messages.
func (ec *evalCtx) typeName(v Value) string {
	if v.k == kNode {
		if v.typ != nil {
			return "FHIR." + v.typ.Name()
		}
		switch v.data.(type) {
		case map[string]any:
			return "object"
		case string:
			return "String"
		case bool:
			return "Boolean"
		}
		return "value"
	}
	return "System." + v.systemTypeName()
}

func (n *unaryNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	x, err := n.x.eval(ec, sc)
	if err != nil || len(x) == 0 {
		return nil, err
	}
	if len(x) > 1 {
		return nil, ec.fail(n, "unary %s on %d items", n.op, len(x))
	}
	v, ok := ec.mi.sys(x[0])
	if !ok {
		return nil, nil
	}
	if n.op == "+" {
		switch v.k {
		case kInt, kDec, kQty:
			return Collection{v}, nil
		}
	} else {
		switch v.k {
		case kInt:
			return Collection{Integer(-v.int())}, nil
		case kDec:
			return Collection{DecimalValue(v.dec().Neg())}, nil
		case kQty:
			q := v.qty()
			q.Value = q.Value.Neg()
			return Collection{QuantityValue(q)}, nil
		}
	}
	return nil, ec.fail(n, "unary %s needs a number or a quantity, got %s", n.op, ec.typeName(x[0]))
}

// toBool applies FHIRPath's singleton evaluation in a Boolean context:
// empty is unknown (ok=false), one Boolean is itself, any other single item
// is true, more than one item is an error.
func (ec *evalCtx) toBool(at node, c Collection) (val, ok bool, err error) {
	if len(c) == 0 {
		return false, false, nil
	}
	if len(c) > 1 {
		return false, false, ec.fail(at, "expected a single Boolean, got %d items", len(c))
	}
	v, has := ec.mi.sys(c[0])
	if !has {
		return false, false, nil
	}
	if v.k == kBool {
		return v.bool(), true, nil
	}
	return true, true, nil
}

func (n *binaryNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	switch n.op {
	case "and", "or", "xor", "implies":
		return n.evalLogic(ec, sc)
	}
	l, err := n.l.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	r, err := n.r.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "=":
		return ec.equals(n, l, r, false)
	case "!=":
		res, err := ec.equals(n, l, r, false)
		return notColl(res), err
	case "~":
		return ec.equivalent(l, r), nil
	case "!~":
		return notColl(ec.equivalent(l, r)), nil
	case "<", "<=", ">", ">=":
		return ec.compare(n, l, r)
	case "|":
		return ec.union(l, r), nil
	case "in":
		return ec.membership(n, l, r)
	case "contains":
		return ec.membership(n, r, l)
	case "&":
		return ec.concat(n, l, r)
	default:
		return ec.arith(n, l, r)
	}
}

func notColl(c Collection) Collection {
	if len(c) == 1 && c[0].k == kBool {
		return boolColl(!c[0].bool())
	}
	return c
}

func (n *binaryNode) evalLogic(ec *evalCtx, sc *scope) (Collection, error) {
	lc, err := n.l.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	l, lok, err := ec.toBool(n.l, lc)
	if err != nil {
		return nil, err
	}
	// short cuts that do not need the right operand
	switch {
	case n.op == "and" && lok && !l:
		return falseValue, nil
	case n.op == "or" && lok && l:
		return trueValue, nil
	case n.op == "implies" && lok && !l:
		return trueValue, nil
	}
	rc, err := n.r.eval(ec, sc)
	if err != nil {
		return nil, err
	}
	r, rok, err := ec.toBool(n.r, rc)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "and":
		switch {
		case rok && !r:
			return falseValue, nil
		case lok && rok:
			return trueValue, nil
		}
	case "or":
		switch {
		case rok && r:
			return trueValue, nil
		case lok && rok:
			return falseValue, nil
		}
	case "xor":
		if lok && rok {
			return boolColl(l != r), nil
		}
	case "implies":
		switch {
		case lok && rok:
			return boolColl(!l || r), nil
		case rok && r:
			return trueValue, nil
		}
	}
	return nil, nil
}

func (n *typeOpNode) eval(ec *evalCtx, sc *scope) (Collection, error) {
	x, err := n.x.eval(ec, sc)
	if err != nil || len(x) == 0 {
		return nil, err
	}
	if len(x) > 1 {
		return nil, ec.fail(n, "'%s' on %d items", n.op, len(x))
	}
	if n.op == "is" {
		return boolColl(ec.mi.isType(x[0], n.typ)), nil
	}
	if v, ok := ec.mi.castTo(x[0], n.typ); ok {
		return Collection{v}, nil
	}
	return nil, nil
}
