package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
)

// node is a compiled expression. eval returns the result for the focus
// given by the scope; nodes are immutable and shared by concurrent
// evaluations.
type node interface {
	eval(ec *evalCtx, sc *scope) (Collection, error)
	span() (start, end int)
}

type base struct{ start, end int }

func (b base) span() (int, int) { return b.start, b.end }

// literal is a constant collection.
type literal struct {
	base
	val Collection
}

// identNode is an identifier in term position: a child of $this, or the
// type of $this when it names that type (Patient.name).
type identNode struct {
	base
	name, uname string // uname is "_" + name
}

// memberNode is target.name.
type memberNode struct {
	base
	target      node
	name, uname string // uname is "_" + name
	npos        int    // offset of the name
}

// callNode is a function call, on a target (x.f()) or on $this (f()).
type callNode struct {
	base
	target node // nil: applied to $this
	fn     *funcDef
	name   string
	args   []node
	typ    *typeSpec // the argument of is(), as(), ofType()
	npos   int       // offset of the function name
}

type indexNode struct {
	base
	target, index node
}

type unaryNode struct {
	base
	op string
	x  node
}

type binaryNode struct {
	base
	op   string
	l, r node
	opos int
}

type typeOpNode struct {
	base
	op  string // "is" or "as"
	x   node
	typ *typeSpec
}

// varNode is $this, $index or $total.
type varNode struct {
	base
	name string
}

// envNode is %name.
type envNode struct {
	base
	name string
}

// typeSpec is a type named in an expression: [namespace.]name.
type typeSpec struct {
	namespace string // "", "System" or "FHIR"
	name      string
}

func (t *typeSpec) String() string {
	if t.namespace == "" {
		return t.name
	}
	return t.namespace + "." + t.name
}

type parser struct {
	src  string
	toks []token
	p    int
	cfg  *config
}

func (p *parser) peek() token { return p.toks[p.p] }
func (p *parser) next() token {
	t := p.toks[p.p]
	if p.p < len(p.toks)-1 {
		p.p++
	}
	return t
}

func (p *parser) errorf(off int, format string, args ...any) error {
	return errAt(p.src, off, format, args...)
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tOp:
		return "'" + t.text + "'"
	case tIdent:
		return "'" + t.text + "'"
	case tDelimIdent:
		return "identifier `" + t.text + "`"
	case tString:
		return "string '" + t.text + "'"
	case tSpecial:
		return "'$" + t.text + "'"
	case tExtConst:
		return "'%" + t.text + "'"
	}
	return t.kind.String() + " '" + t.text + "'"
}

func (p *parser) unexpected(t token) error {
	return p.errorf(t.pos, "unexpected %s", describe(t))
}

func (p *parser) expectOp(op string) (token, error) {
	t := p.peek()
	if t.kind != tOp || t.text != op {
		return t, p.errorf(t.pos, "expected '%s', found %s", op, describe(t))
	}
	return p.next(), nil
}

// reservedWords may not be used as names unless delimited (`div`); the
// keywords as, contains, in and is may.
var reservedWords = map[string]bool{
	"and": true, "or": true, "xor": true, "implies": true, "div": true, "mod": true,
	"true": true, "false": true,
}

// binary operator precedences (higher binds tighter).
func binaryPrec(t token) (int, bool) {
	switch t.kind {
	case tOp:
		switch t.text {
		case "*", "/":
			return 10, true
		case "+", "-", "&":
			return 9, true
		case "|":
			return 7, true
		case "<", "<=", ">", ">=":
			return 6, true
		case "=", "~", "!=", "!~":
			return 5, true
		}
	case tIdent:
		switch t.text {
		case "div", "mod":
			return 10, true
		case "is", "as":
			return 8, true
		case "in", "contains":
			return 4, true
		case "and":
			return 3, true
		case "or", "xor":
			return 2, true
		case "implies":
			return 1, true
		}
	}
	return 0, false
}

func (p *parser) parseExpr(minPrec int) (node, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec, ok := binaryPrec(t)
		if !ok || prec < minPrec {
			return left, nil
		}
		p.next()
		start, _ := left.span()
		if t.text == "is" || t.text == "as" {
			tpos := p.peek().pos
			ts, end, err := p.parseTypeSpecifier()
			if err != nil {
				return nil, err
			}
			if !p.cfg.mi.checkType(ts) {
				return nil, p.errorf(tpos, "unknown type %s", ts)
			}
			left = &typeOpNode{base: base{start, end}, op: t.text, x: left, typ: ts}
			continue
		}
		next := prec + 1
		if t.text == "implies" {
			next = prec // right associative
		}
		right, err := p.parseExpr(next)
		if err != nil {
			return nil, err
		}
		_, end := right.span()
		left = &binaryNode{base: base{start, end}, op: t.text, l: left, r: right, opos: t.pos}
	}
}

func (p *parser) parseTypeSpecifier() (*typeSpec, int, error) {
	var parts []string
	end := 0
	for {
		t := p.peek()
		if t.kind != tIdent && t.kind != tDelimIdent {
			return nil, 0, p.errorf(t.pos, "expected a type name, found %s", describe(t))
		}
		p.next()
		parts = append(parts, t.text)
		end = t.end
		if n := p.peek(); n.kind == tOp && n.text == "." && len(parts) < 2 {
			if a := p.toks[p.p+1]; a.kind == tIdent || a.kind == tDelimIdent {
				p.next()
				continue
			}
		}
		break
	}
	ts := &typeSpec{name: parts[len(parts)-1]}
	if len(parts) == 2 {
		ts.namespace = parts[0]
	}
	return ts, end, nil
}

func (p *parser) parseUnary() (node, error) {
	t := p.peek()
	if t.kind == tOp && (t.text == "+" || t.text == "-") {
		p.next()
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		_, end := x.span()
		// fold negative numeric literals
		if lit, ok := x.(*literal); ok && len(lit.val) == 1 && t.text == "-" {
			switch v := lit.val[0]; v.k {
			case kInt:
				return &literal{base: base{t.pos, end}, val: Collection{Integer(-v.int())}}, nil
			case kDec:
				return &literal{base: base{t.pos, end}, val: Collection{DecimalValue(v.dec().Neg())}}, nil
			case kQty:
				q := v.qty()
				q.Value = q.Value.Neg()
				return &literal{base: base{t.pos, end}, val: Collection{QuantityValue(q)}}, nil
			}
		}
		if lit, ok := x.(*literal); ok && len(lit.val) == 1 && t.text == "+" {
			if k := lit.val[0].k; k == kInt || k == kDec || k == kQty {
				return &literal{base: base{t.pos, end}, val: lit.val}, nil
			}
		}
		return &unaryNode{base: base{t.pos, end}, op: t.text, x: x}, nil
	}
	return p.parsePostfix()
}

func (p *parser) parsePostfix() (node, error) {
	x, err := p.parseTerm()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp {
			return x, nil
		}
		start, _ := x.span()
		switch t.text {
		case ".":
			p.next()
			id := p.next()
			if id.kind != tIdent && id.kind != tDelimIdent {
				return nil, p.errorf(id.pos, "expected a name after '.', found %s", describe(id))
			}
			if id.kind == tIdent && reservedWords[id.text] {
				return nil, p.errorf(id.pos, "'%s' is a keyword: write `%s` to use it as a name", id.text, id.text)
			}
			if n := p.peek(); n.kind == tOp && n.text == "(" && id.kind == tIdent {
				c, err := p.parseCall(id, x)
				if err != nil {
					return nil, err
				}
				c.start = start
				x = c
				continue
			}
			x = &memberNode{base: base{start, id.end}, target: x, name: id.text, uname: "_" + id.text, npos: id.pos}
		case "[":
			p.next()
			idx, err := p.parseExpr(0)
			if err != nil {
				return nil, err
			}
			end, err := p.expectOp("]")
			if err != nil {
				return nil, err
			}
			x = &indexNode{base: base{start, end.end}, target: x, index: idx}
		default:
			return x, nil
		}
	}
}

func (p *parser) parseTerm() (node, error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		return p.parseNumber(t)
	case tLongNumber:
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return nil, p.errorf(t.pos, "integer %s out of range", t.text)
		}
		return &literal{base: base{t.pos, t.end}, val: Collection{Integer(n)}}, nil
	case tString:
		return &literal{base: base{t.pos, t.end}, val: Collection{String(t.text)}}, nil
	case tDate:
		d, err := parseDate(t.text)
		if err != nil {
			return nil, p.errorf(t.pos, "invalid date @%s", t.text)
		}
		return &literal{base: base{t.pos, t.end}, val: Collection{dateValue(d)}}, nil
	case tDateTime:
		d, err := parseDateTime(t.text)
		if err != nil {
			return nil, p.errorf(t.pos, "invalid date/time @%s", t.text)
		}
		return &literal{base: base{t.pos, t.end}, val: Collection{dateTimeValue(d)}}, nil
	case tTime:
		d, err := parseTime(t.text)
		if err != nil {
			return nil, p.errorf(t.pos, "invalid time @T%s", t.text)
		}
		return &literal{base: base{t.pos, t.end}, val: Collection{timeValue(d)}}, nil
	case tSpecial:
		return &varNode{base: base{t.pos, t.end}, name: t.text}, nil
	case tExtConst:
		return &envNode{base: base{t.pos, t.end}, name: t.text}, nil
	case tIdent, tDelimIdent:
		if t.kind == tIdent {
			switch t.text {
			case "true":
				return &literal{base: base{t.pos, t.end}, val: trueValue}, nil
			case "false":
				return &literal{base: base{t.pos, t.end}, val: falseValue}, nil
			}
			if reservedWords[t.text] {
				return nil, p.unexpected(t)
			}
			if n := p.peek(); n.kind == tOp && n.text == "(" {
				return p.parseCall(t, nil)
			}
		}
		return &identNode{base: base{t.pos, t.end}, name: t.text, uname: "_" + t.text}, nil
	case tOp:
		switch t.text {
		case "(":
			x, err := p.parseExpr(0)
			if err != nil {
				return nil, err
			}
			if _, err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return x, nil
		case "{":
			end, err := p.expectOp("}")
			if err != nil {
				return nil, err
			}
			return &literal{base: base{t.pos, end.end}}, nil
		}
	}
	return nil, p.unexpected(t)
}

func (p *parser) parseNumber(t token) (node, error) {
	var v Value
	if strings.Contains(t.text, ".") {
		d, err := ParseDecimal(t.text)
		if err != nil {
			return nil, p.errorf(t.pos, "invalid number %s", t.text)
		}
		v = DecimalValue(d)
	} else {
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			d, err := ParseDecimal(t.text)
			if err != nil {
				return nil, p.errorf(t.pos, "invalid number %s", t.text)
			}
			v = DecimalValue(d)
		} else {
			v = Integer(n)
		}
	}
	// a quantity: number followed by a unit string or calendar keyword
	u := p.peek()
	if u.kind == tString || (u.kind == tIdent && calendarUnits[u.text] != cuNone) {
		p.next()
		var d Decimal
		if v.k == kInt {
			d = DecimalFromInt(v.int())
		} else {
			d = v.dec()
		}
		q := Quantity{Value: d, Unit: u.text, Calendar: u.kind == tIdent}
		return &literal{base: base{t.pos, u.end}, val: Collection{QuantityValue(q)}}, nil
	}
	return &literal{base: base{t.pos, t.end}, val: Collection{v}}, nil
}

func (p *parser) parseCall(name token, target node) (*callNode, error) {
	p.next() // '('
	c := &callNode{base: base{start: name.pos}, target: target, name: name.text, npos: name.pos}
	if t := p.peek(); !(t.kind == tOp && t.text == ")") {
		for {
			a, err := p.parseExpr(0)
			if err != nil {
				return nil, err
			}
			c.args = append(c.args, a)
			t := p.peek()
			if t.kind == tOp && t.text == "," {
				p.next()
				continue
			}
			break
		}
	}
	end, err := p.expectOp(")")
	if err != nil {
		return nil, err
	}
	c.end = end.end
	fn := lookupFunc(name.text)
	if fn == nil {
		return nil, p.errorf(name.pos, "unknown function '%s'", name.text)
	}
	if len(c.args) < fn.min || len(c.args) > fn.max {
		want := strconv.Itoa(fn.min)
		if fn.max != fn.min {
			want = fmt.Sprintf("%d to %d", fn.min, fn.max)
		}
		return nil, p.errorf(name.pos, "%s() takes %s arguments, got %d", name.text, want, len(c.args))
	}
	c.fn = fn
	if fn.typeArg {
		ts, ok := typeSpecOf(c.args[0])
		if !ok {
			s, _ := c.args[0].span()
			return nil, p.errorf(s, "%s() needs a type name", name.text)
		}
		if !p.cfg.mi.checkType(ts) {
			s, _ := c.args[0].span()
			return nil, p.errorf(s, "unknown type %s", ts)
		}
		c.typ = ts
	}
	return c, nil
}

// typeSpecOf reads a type name written as an expression: Patient,
// FHIR.Patient, System.`Integer`.
func typeSpecOf(n node) (*typeSpec, bool) {
	switch x := n.(type) {
	case *identNode:
		return &typeSpec{name: x.name}, true
	case *memberNode:
		if id, ok := x.target.(*identNode); ok {
			return &typeSpec{namespace: id.name, name: x.name}, true
		}
	}
	return nil, false
}

// parse compiles src into an expression tree.
func parse(src string, cfg *config) (node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks, cfg: cfg}
	if p.peek().kind == tEOF {
		return nil, p.errorf(0, "empty expression")
	}
	n, err := p.parseExpr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.unexpected(t)
	}
	return n, nil
}
