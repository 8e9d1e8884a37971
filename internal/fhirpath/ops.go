package fhirpath

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"unicode"
)

// eqResult is the outcome of comparing two items: equal, different, or
// unknown (which makes = return empty).
type eqResult uint8

const (
	eqFalse eqResult = iota
	eqTrue
	eqUnknown
)

// implicitDate converts a String compared with a date/time to that kind.
func implicitDate(s string, k vkind) (Value, bool) {
	switch k {
	case kDate:
		if d, err := parseDate(s); err == nil {
			return dateValue(d), true
		}
		if d, err := parseDateTime(s); err == nil {
			return dateTimeValue(d), true
		}
	case kDateTime:
		if d, err := parseDateTime(s); err == nil {
			return dateTimeValue(d), true
		}
	case kTime:
		if d, err := parseTime(s); err == nil {
			return timeValue(d), true
		}
	}
	return Value{}, false
}

func isDateKind(k vkind) bool { return k == kDate || k == kDateTime }

// valueEqual compares two items with '=' semantics.
func (ec *evalCtx) valueEqual(a, b Value) eqResult {
	if a.k == kNode && b.k == kNode {
		ao, aok := a.data.(map[string]any)
		bo, bok := b.data.(map[string]any)
		if aok && bok {
			if sameMap(ao, bo) {
				return eqTrue
			}
			qa, qaok := ec.mi.quantityOf(a, ao)
			qb, qbok := ec.mi.quantityOf(b, bo)
			if qaok && qbok {
				return quantityEq(qa, qb)
			}
			if jsonEqual(ao, bo, false) {
				return eqTrue
			}
			return eqFalse
		}
	}
	av, aok := ec.mi.sys(a)
	bv, bok := ec.mi.sys(b)
	if !aok || !bok {
		return eqUnknown
	}
	if av.k == kNode || bv.k == kNode {
		return eqFalse // an object and a System value
	}
	switch {
	case av.k == kStr && bv.k == kStr:
		return eqOf(av.str() == bv.str())
	case av.k == kInt && bv.k == kInt:
		return eqOf(av.int() == bv.int())
	case av.k == kBool && bv.k == kBool:
		return eqOf(av.bool() == bv.bool())
	case isNumber(av.k) && isNumber(bv.k):
		return eqOf(toDecimal(av).Cmp(toDecimal(bv)) == 0)
	case isDateKind(av.k) && isDateKind(bv.k), av.k == kTime && bv.k == kTime:
		c, ok := compareDT(av.dt(), bv.dt(), av.k == kTime)
		if !ok {
			return eqUnknown
		}
		return eqOf(c == 0)
	case av.k == kStr && (isDateKind(bv.k) || bv.k == kTime):
		if cv, ok := implicitDate(av.str(), bv.k); ok {
			return ec.valueEqual(cv, bv)
		}
	case bv.k == kStr && (isDateKind(av.k) || av.k == kTime):
		if cv, ok := implicitDate(bv.str(), av.k); ok {
			return ec.valueEqual(av, cv)
		}
	case av.k == kQty && bv.k == kQty:
		return quantityEq(av.qty(), bv.qty())
	}
	return eqFalse
}

func quantityEq(a, b Quantity) eqResult {
	c, ok := compareQuantities(a, b, false)
	if !ok {
		return eqUnknown
	}
	return eqOf(c == 0)
}

func eqOf(b bool) eqResult {
	if b {
		return eqTrue
	}
	return eqFalse
}

func isNumber(k vkind) bool { return k == kInt || k == kDec }

func toDecimal(v Value) Decimal {
	if v.k == kInt {
		return DecimalFromInt(v.int())
	}
	return v.dec()
}

func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// jsonEqual compares decoded JSON; numbers compare by value. With
// equivalence, strings compare as ~ does and "id" properties are ignored.
func jsonEqual(a, b any, equivalence bool) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return false
		}
		n := 0
		for k, xv := range x {
			if equivalence && k == "id" {
				continue
			}
			n++
			yv, ok := y[k]
			if !ok || !jsonEqual(xv, yv, equivalence) {
				return false
			}
		}
		m := 0
		for k := range y {
			if !(equivalence && k == "id") {
				m++
			}
		}
		return n == m
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i], equivalence) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		if !ok {
			return false
		}
		if equivalence {
			return normalizeSpace(x) == normalizeSpace(y)
		}
		return x == y
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		dx, e1 := ParseDecimal(string(x))
		dy, e2 := ParseDecimal(string(y))
		return e1 == nil && e2 == nil && dx.Cmp(dy) == 0
	default:
		return a == b
	}
}

// normalizeSpace lower-cases s and collapses white space, for ~ on strings.
func normalizeSpace(s string) string {
	return strings.ToLower(strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " "))
}

// valueEquivalent compares two items with '~' semantics.
func (ec *evalCtx) valueEquivalent(a, b Value) bool {
	if a.k == kNode && b.k == kNode {
		ao, aok := a.data.(map[string]any)
		bo, bok := b.data.(map[string]any)
		if aok && bok {
			qa, qaok := ec.mi.quantityOf(a, ao)
			qb, qbok := ec.mi.quantityOf(b, bo)
			if qaok && qbok {
				eq, ok := equivalentQuantities(qa, qb)
				return ok && eq
			}
			if a.typ != nil && b.typ != nil && a.typ == b.typ {
				switch a.typ.Name() {
				case "Coding":
					return codingEquivalent(ao, bo)
				case "CodeableConcept":
					return conceptEquivalent(ao, bo)
				}
			}
			return jsonEqual(ao, bo, true)
		}
	}
	av, aok := ec.mi.sys(a)
	bv, bok := ec.mi.sys(b)
	if !aok || !bok {
		return !aok && !bok
	}
	if av.k == kNode || bv.k == kNode {
		return false
	}
	switch {
	case av.k == kStr && bv.k == kStr:
		return normalizeSpace(av.str()) == normalizeSpace(bv.str())
	case av.k == kBool && bv.k == kBool:
		return av.bool() == bv.bool()
	case av.k == kInt && bv.k == kInt:
		return av.int() == bv.int()
	case isNumber(av.k) && isNumber(bv.k):
		return equivalentDecimals(toDecimal(av), toDecimal(bv))
	case isDateKind(av.k) && isDateKind(bv.k), av.k == kTime && bv.k == kTime:
		isTime := av.k == kTime
		if !samePrecision(av.dt(), bv.dt(), isTime) {
			return false
		}
		c, ok := compareDT(av.dt(), bv.dt(), isTime)
		return ok && c == 0
	case av.k == kStr && (isDateKind(bv.k) || bv.k == kTime):
		if cv, ok := implicitDate(av.str(), bv.k); ok {
			return ec.valueEquivalent(cv, bv)
		}
	case bv.k == kStr && (isDateKind(av.k) || av.k == kTime):
		if cv, ok := implicitDate(bv.str(), av.k); ok {
			return ec.valueEquivalent(av, cv)
		}
	case av.k == kQty && bv.k == kQty:
		eq, ok := equivalentQuantities(av.qty(), bv.qty())
		return ok && eq
	}
	return false
}

// codingEquivalent: FHIR compares Codings by system and code only.
func codingEquivalent(a, b map[string]any) bool {
	return jsonEqual(a["system"], b["system"], true) && jsonEqual(a["code"], b["code"], true)
}

// conceptEquivalent: two CodeableConcepts are equivalent when a Coding of
// one is equivalent to a Coding of the other.
func conceptEquivalent(a, b map[string]any) bool {
	ca, _ := a["coding"].([]any)
	cb, _ := b["coding"].([]any)
	for _, x := range ca {
		xm, _ := x.(map[string]any)
		for _, y := range cb {
			ym, _ := y.(map[string]any)
			if xm != nil && ym != nil && codingEquivalent(xm, ym) {
				return true
			}
		}
	}
	return false
}

// equals implements '=' on collections.
func (ec *evalCtx) equals(_ node, l, r Collection, _ bool) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) != len(r) {
		return falseValue, nil
	}
	unknown := false
	for i := range l {
		switch ec.valueEqual(l[i], r[i]) {
		case eqFalse:
			return falseValue, nil
		case eqUnknown:
			unknown = true
		}
	}
	if unknown {
		return nil, nil
	}
	return trueValue, nil
}

// equivalent implements '~' on collections: order does not matter.
func (ec *evalCtx) equivalent(l, r Collection) Collection {
	if len(l) == 0 && len(r) == 0 {
		return trueValue
	}
	if len(l) != len(r) {
		return falseValue
	}
	if len(l) == 1 {
		return boolColl(ec.valueEquivalent(l[0], r[0]))
	}
	used := make([]bool, len(r))
outer:
	for _, a := range l {
		for j, b := range r {
			if !used[j] && ec.valueEquivalent(a, b) {
				used[j] = true
				continue outer
			}
		}
		return falseValue
	}
	return trueValue
}

// compareValues orders two System values; known is false when precision
// or units leave the order undetermined.
func (ec *evalCtx) compareValues(at node, a, b Value) (cmp int, known bool, err error) {
	av, aok := ec.mi.sys(a)
	bv, bok := ec.mi.sys(b)
	if !aok || !bok {
		return 0, false, nil
	}
	switch {
	case av.k == kInt && bv.k == kInt:
		switch {
		case av.int() < bv.int():
			return -1, true, nil
		case av.int() > bv.int():
			return 1, true, nil
		}
		return 0, true, nil
	case isNumber(av.k) && isNumber(bv.k):
		return toDecimal(av).Cmp(toDecimal(bv)), true, nil
	case av.k == kStr && bv.k == kStr:
		return strings.Compare(av.str(), bv.str()), true, nil
	case isDateKind(av.k) && isDateKind(bv.k), av.k == kTime && bv.k == kTime:
		c, ok := compareDT(av.dt(), bv.dt(), av.k == kTime)
		return c, ok, nil
	case av.k == kStr && (isDateKind(bv.k) || bv.k == kTime):
		if cv, ok := implicitDate(av.str(), bv.k); ok {
			return ec.compareValues(at, cv, bv)
		}
	case bv.k == kStr && (isDateKind(av.k) || av.k == kTime):
		if cv, ok := implicitDate(bv.str(), av.k); ok {
			return ec.compareValues(at, av, cv)
		}
	case av.k == kQty && bv.k == kQty:
		c, ok := compareQuantities(av.qty(), bv.qty(), false)
		return c, ok, nil
	}
	return 0, false, ec.fail(at, "cannot compare %s with %s", ec.typeName(a), ec.typeName(b))
}

// compare implements < <= > >=.
func (ec *evalCtx) compare(n *binaryNode, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, ec.failAt(n.opos, "'%s' needs single items, got %d and %d", n.op, len(l), len(r))
	}
	c, known, err := ec.compareValues(n, l[0], r[0])
	if err != nil || !known {
		return nil, err
	}
	switch n.op {
	case "<":
		return boolColl(c < 0), nil
	case "<=":
		return boolColl(c <= 0), nil
	case ">":
		return boolColl(c > 0), nil
	default:
		return boolColl(c >= 0), nil
	}
}

// contains reports whether c holds an item equal to v.
func (ec *evalCtx) contains(c Collection, v Value) bool {
	for _, x := range c {
		if ec.valueEqual(x, v) == eqTrue {
			return true
		}
	}
	return false
}

// union merges two collections without duplicates.
func (ec *evalCtx) union(l, r Collection) Collection {
	out := make(Collection, 0, len(l)+len(r))
	for _, c := range [2]Collection{l, r} {
		for _, v := range c {
			if !ec.contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// membership implements 'item in collection'.
func (ec *evalCtx) membership(n *binaryNode, item, coll Collection) (Collection, error) {
	if len(item) == 0 {
		return nil, nil
	}
	if len(item) > 1 {
		return nil, ec.failAt(n.opos, "'%s' needs a single item, got %d", n.op, len(item))
	}
	if len(coll) == 0 {
		return falseValue, nil
	}
	return boolColl(ec.contains(coll, item[0])), nil
}

// concat implements '&': empty operands count as ”.
func (ec *evalCtx) concat(n *binaryNode, l, r Collection) (Collection, error) {
	var b strings.Builder
	for _, c := range [2]Collection{l, r} {
		if len(c) == 0 {
			continue
		}
		if len(c) > 1 {
			return nil, ec.failAt(n.opos, "'&' needs single items, got %d", len(c))
		}
		v, ok := ec.mi.sys(c[0])
		if !ok {
			continue
		}
		if v.k != kStr {
			return nil, ec.failAt(n.opos, "'&' needs strings, got %s", ec.typeName(c[0]))
		}
		b.WriteString(v.str())
	}
	return Collection{String(b.String())}, nil
}

// arith implements + - * / div mod.
func (ec *evalCtx) arith(n *binaryNode, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, ec.failAt(n.opos, "'%s' needs single items, got %d and %d", n.op, len(l), len(r))
	}
	a, aok := ec.mi.sys(l[0])
	b, bok := ec.mi.sys(r[0])
	if !aok || !bok {
		return nil, nil
	}
	bad := func() (Collection, error) {
		return nil, ec.failAt(n.opos, "cannot apply '%s' to %s and %s", n.op, ec.typeName(l[0]), ec.typeName(r[0]))
	}
	// Integer op Integer
	if a.k == kInt && b.k == kInt {
		x, y := a.int(), b.int()
		switch n.op {
		case "+":
			s := x + y
			if (s > x) != (y > 0) {
				return nil, ec.failAt(n.opos, "integer overflow")
			}
			return Collection{Integer(s)}, nil
		case "-":
			s := x - y
			if (s < x) != (y > 0) {
				return nil, ec.failAt(n.opos, "integer overflow")
			}
			return Collection{Integer(s)}, nil
		case "*":
			if x != 0 && y != 0 {
				p := x * y
				if p/y != x || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64) {
					return nil, ec.failAt(n.opos, "integer overflow")
				}
				return Collection{Integer(p)}, nil
			}
			return Collection{Integer(0)}, nil
		case "div":
			if y == 0 {
				return nil, nil
			}
			return Collection{Integer(x / y)}, nil
		case "mod":
			if y == 0 {
				return nil, nil
			}
			return Collection{Integer(x % y)}, nil
		}
	}
	switch {
	case isNumber(a.k) && isNumber(b.k):
		x, y := toDecimal(a), toDecimal(b)
		switch n.op {
		case "+":
			return Collection{DecimalValue(x.Add(y))}, nil
		case "-":
			return Collection{DecimalValue(x.Sub(y))}, nil
		case "*":
			return Collection{DecimalValue(x.Mul(y))}, nil
		case "/":
			q, ok := x.Quo(y)
			if !ok {
				return nil, nil
			}
			return Collection{DecimalValue(q)}, nil
		case "div":
			q, ok := x.Div(y)
			if !ok {
				return nil, nil
			}
			if i, ok := q.Int64(); ok {
				return Collection{Integer(i)}, nil
			}
			return Collection{DecimalValue(q)}, nil
		case "mod":
			m, ok := x.Mod(y)
			if !ok {
				return nil, nil
			}
			return Collection{DecimalValue(m)}, nil
		}
	case a.k == kStr && b.k == kStr && n.op == "+":
		return Collection{String(a.str() + b.str())}, nil
	case (isDateKind(a.k) || a.k == kTime) && b.k == kQty && (n.op == "+" || n.op == "-"):
		return ec.dateArith(n, a, b.qty())
	case a.k == kQty && b.k == kQty:
		return ec.quantityArith(n, a.qty(), b.qty())
	case a.k == kQty && isNumber(b.k) && (n.op == "*" || n.op == "/"):
		q := a.qty()
		if n.op == "*" {
			q.Value = q.Value.Mul(toDecimal(b))
		} else {
			v, ok := q.Value.Quo(toDecimal(b))
			if !ok {
				return nil, nil
			}
			q.Value = v
		}
		return Collection{QuantityValue(q)}, nil
	case isNumber(a.k) && b.k == kQty && n.op == "*":
		q := b.qty()
		q.Value = q.Value.Mul(toDecimal(a))
		return Collection{QuantityValue(q)}, nil
	}
	return bad()
}

func (ec *evalCtx) dateArith(n *binaryNode, a Value, q Quantity) (Collection, error) {
	var u calUnit
	if q.Calendar {
		u = q.calUnit()
	} else if cu, ok := ucumTimeUnits[q.Unit]; ok {
		u = cu
	} else if cu, ok := calendarUnits[q.Unit]; ok {
		u = cu
	} else {
		return nil, ec.failAt(n.opos, "cannot add %s to a date/time: the unit must be a calendar duration (or 'wk', 'd', 'h', 'min', 's', 'ms')", q)
	}
	v := q.Value
	if n.op == "-" {
		v = v.Neg()
	}
	r, err := addDuration(a.dt(), a.k == kTime, a.k == kDate, v, u)
	if err != nil {
		return nil, ec.failAt(n.opos, "%v", err)
	}
	return Collection{Value{k: a.k, data: r}}, nil
}

func (ec *evalCtx) quantityArith(n *binaryNode, a, b Quantity) (Collection, error) {
	switch n.op {
	case "+", "-":
		bv := b.Value
		if a.Unit != b.Unit || a.Calendar != b.Calendar {
			conv, ok := convertQuantity(b, a)
			if !ok {
				return nil, ec.failAt(n.opos, "cannot %s %s and %s: incompatible units", map[string]string{"+": "add", "-": "subtract"}[n.op], a, b)
			}
			bv = conv
		}
		if n.op == "+" {
			a.Value = a.Value.Add(bv)
		} else {
			a.Value = a.Value.Sub(bv)
		}
		return Collection{QuantityValue(a)}, nil
	case "*":
		return Collection{QuantityValue(Quantity{Value: a.Value.Mul(b.Value), Unit: mulUnits(a.ucumUnit(), b.ucumUnit(), false)})}, nil
	case "/":
		v, ok := a.Value.Quo(b.Value)
		if !ok {
			return nil, nil
		}
		return Collection{QuantityValue(Quantity{Value: v, Unit: mulUnits(a.ucumUnit(), b.ucumUnit(), true)})}, nil
	}
	return nil, ec.failAt(n.opos, "cannot apply '%s' to quantities", n.op)
}
