package fhirpath

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Quantity is a FHIRPath quantity: a decimal value and a unit, which is
// either a UCUM code or (Calendar) a calendar duration keyword such as
// "week" or "months".
type Quantity struct {
	Value    Decimal
	Unit     string
	Calendar bool
}

// String renders the quantity as FHIRPath text: 4 'mg', 2 weeks.
func (q Quantity) String() string {
	if q.Calendar {
		return q.Value.String() + " " + q.Unit
	}
	return q.Value.String() + " '" + q.Unit + "'"
}

// calUnit returns the calendar unit of a calendar quantity.
func (q Quantity) calUnit() calUnit {
	if q.Calendar {
		return calendarUnits[q.Unit]
	}
	return cuNone
}

// ucumDims are exponents of the UCUM base units m, g, s, rad, K, C, cd.
type ucumDims [7]int8

// ucumUnit is a parsed UCUM unit: value in base units = value × factor.
// special is non-empty for units that only compare with themselves
// (arbitrary units such as [iU], and non-ratio scales such as Cel).
type ucumUnit struct {
	factor  *big.Rat
	dims    ucumDims
	special string
}

type ucumAtom struct {
	factor string // a decimal or a fraction "a/b"
	dims   ucumDims
	metric bool   // takes prefixes
	ref    string // defined through another unit expression instead of dims
}

var (
	dL  = ucumDims{1}
	dM  = ucumDims{0, 1}
	dT  = ucumDims{0, 0, 1}
	dA  = ucumDims{0, 0, 0, 1}
	dK  = ucumDims{0, 0, 0, 0, 1}
	dQ  = ucumDims{0, 0, 0, 0, 0, 1}
	dF  = ucumDims{0, 0, 0, 0, 0, 0, 1}
	d1  = ucumDims{}
	dL3 = ucumDims{3}
)

// ucumAtoms covers the base units and the units met in clinical data. A
// unit outside this table is still usable when both sides of a comparison
// spell it the same way.
var ucumAtoms = map[string]ucumAtom{
	"m": {"1", dL, true, ""}, "g": {"1", dM, true, ""}, "s": {"1", dT, true, ""},
	"rad": {"1", dA, true, ""}, "K": {"1", dK, true, ""}, "C": {"1", dQ, true, ""}, "cd": {"1", dF, true, ""},
	"1": {"1", d1, false, ""}, "%": {"1/100", d1, false, ""}, "[ppth]": {"1/1000", d1, false, ""},
	"[ppm]": {"1/1000000", d1, false, ""}, "[ppb]": {"1/1000000000", d1, false, ""},
	"mol": {"602214076000000000000000", d1, true, ""}, "eq": {"602214076000000000000000", d1, true, ""},
	"osm": {"602214076000000000000000", d1, true, ""}, "kat": {"", d1, true, "mol/s"}, "U": {"", d1, true, "umol/min"},
	"sr": {"1", ucumDims{0, 0, 0, 2}, true, ""}, "deg": {"3141592653589793/180000000000000000", dA, false, ""},
	"L": {"1/1000", dL3, true, ""}, "l": {"1/1000", dL3, true, ""},
	"min": {"60", dT, false, ""}, "h": {"3600", dT, false, ""}, "d": {"86400", dT, false, ""},
	"wk": {"604800", dT, false, ""}, "mo": {"2629800", dT, false, ""}, "a": {"31557600", dT, false, ""},
	"mo_j": {"2629800", dT, false, ""}, "a_j": {"31557600", dT, false, ""}, "a_t": {"31556925216/1000", dT, false, ""},
	"mo_g": {"2629746", dT, false, ""}, "a_g": {"31556952", dT, false, ""},
	"Hz": {"1", ucumDims{0, 0, -1}, true, ""}, "Bq": {"1", ucumDims{0, 0, -1}, true, ""},
	"N": {"", d1, true, "kg.m/s2"}, "Pa": {"", d1, true, "N/m2"}, "J": {"", d1, true, "N.m"},
	"W": {"", d1, true, "J/s"}, "A": {"", d1, true, "C/s"}, "V": {"", d1, true, "J/C"},
	"F": {"", d1, true, "C/V"}, "Ohm": {"", d1, true, "V/A"}, "S": {"", d1, true, "Ohm-1"},
	"Wb": {"", d1, true, "V.s"}, "T": {"", d1, true, "Wb/m2"}, "H": {"", d1, true, "Wb/A"},
	"lm": {"", d1, true, "cd.sr"}, "lx": {"", d1, true, "lm/m2"}, "Gy": {"", d1, true, "J/kg"},
	"Sv": {"", d1, true, "J/kg"}, "bar": {"", d1, true, "100000.Pa"}, "atm": {"", d1, false, "101325.Pa"},
	"t": {"1000000", dM, true, ""}, "u": {"1/602214076000000000000000", dM, true, ""},
	"cal": {"", d1, true, "4.184.J"}, "[Cal]": {"", d1, false, "kcal"},
	"m[Hg]": {"", d1, true, "133322.Pa"}, "m[H2O]": {"", d1, true, "9806.65.Pa"},
	"[in_i]": {"254/10000", dL, false, ""}, "[ft_i]": {"3048/10000", dL, false, ""},
	"[yd_i]": {"9144/10000", dL, false, ""}, "[mi_i]": {"1609344/1000", dL, false, ""},
	"[lb_av]": {"45359237/100000", dM, false, ""}, "[oz_av]": {"28349523125/1000000000", dM, false, ""},
	"[gr]": {"6479891/100000000", dM, false, ""}, "[stone_av]": {"", d1, false, "14.[lb_av]"},
	"[gal_us]": {"", d1, false, "3.785411784.L"}, "[qt_us]": {"", d1, false, "[gal_us]/4"},
	"[pt_us]": {"", d1, false, "[qt_us]/2"}, "[cup_us]": {"", d1, false, "[pt_us]/2"},
	"[foz_us]": {"", d1, false, "[pt_us]/16"}, "[tbs_us]": {"", d1, false, "[foz_us]/2"},
	"[tsp_us]": {"", d1, false, "[tbs_us]/3"}, "[drp]": {"", d1, false, "ml/20"},
	"[pi]": {"3141592653589793/1000000000000000", d1, false, ""},
	"10*":  {"10", d1, false, ""}, "10^": {"10", d1, false, ""},
	"g%": {"", d1, true, "g/dl"}, "[psi]": {"", d1, false, "[lbf_av]/[in_i]2"},
	"[lbf_av]": {"", d1, false, "[lb_av].[g]"}, "[g]": {"980665/100000", ucumDims{1, 0, -2}, false, ""},
}

// ucumSpecial are units that are not ratio scales or are arbitrary: they
// compare only with the same unit.
var ucumSpecial = map[string]bool{
	"Cel": true, "[degF]": true, "[degR]": false, "[iU]": true, "[IU]": true, "[arb'U]": true,
	"[pH]": true, "[HPF]": true, "[LPF]": true, "[CFU]": true, "[APL'U]": true, "[GPL'U]": true,
	"[MPL'U]": true, "[todd'U]": true, "[ka'U]": true, "[knk'U]": true, "[mclg'U]": true,
	"[tb'U]": true, "[Amb'a'1'U]": true, "[AU]": true, "[BAU]": true, "[PFU]": true, "[FFU]": true,
	"[Lf]": true, "[D'ag'U]": true, "[BU]": true, "[EU]": true, "[TCID_50]": true, "[ELU]": true,
	"[hp_X]": true, "[hp_C]": true, "[kp_X]": true, "[kp_C]": true, "[Ch]": true, "[S]": true,
}

var ucumPrefixes = map[string]string{
	"Y": "1000000000000000000000000", "Z": "1000000000000000000000", "E": "1000000000000000000",
	"P": "1000000000000000", "T": "1000000000000", "G": "1000000000", "M": "1000000",
	"k": "1000", "h": "100", "da": "10", "d": "1/10", "c": "1/100", "m": "1/1000",
	"u": "1/1000000", "µ": "1/1000000", "n": "1/1000000000", "p": "1/1000000000000",
	"f": "1/1000000000000000", "a": "1/1000000000000000000", "z": "1/1000000000000000000000",
	"y": "1/1000000000000000000000000",
}

func ratOf(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("fhirpath: bad UCUM table factor " + s)
	}
	return r
}

var errUCUM = errors.New("not a UCUM unit this engine knows")

// parseUCUM parses a UCUM unit expression.
func parseUCUM(s string) (ucumUnit, error) { return parseUCUMUncached(s, 0) }

func parseUCUMUncached(s string, depth int) (ucumUnit, error) {
	if depth > 8 {
		return ucumUnit{}, errUCUM
	}
	if ucumSpecial[s] {
		return ucumUnit{factor: big.NewRat(1, 1), special: s}, nil
	}
	p := &ucumParser{s: s, depth: depth}
	u, err := p.term()
	if err != nil {
		return ucumUnit{}, err
	}
	if p.i != len(p.s) {
		return ucumUnit{}, fmt.Errorf("%w: %q", errUCUM, s)
	}
	return u, nil
}

type ucumParser struct {
	s     string
	i     int
	depth int
}

func unitOne() ucumUnit { return ucumUnit{factor: big.NewRat(1, 1)} }

func combine(a, b ucumUnit, div bool) ucumUnit {
	r := ucumUnit{factor: new(big.Rat)}
	if div {
		r.factor.Quo(a.factor, b.factor)
	} else {
		r.factor.Mul(a.factor, b.factor)
	}
	for i := range r.dims {
		if div {
			r.dims[i] = a.dims[i] - b.dims[i]
		} else {
			r.dims[i] = a.dims[i] + b.dims[i]
		}
	}
	switch {
	case a.special != "" && b.special != "":
		op := "."
		if div {
			op = "/"
		}
		r.special = a.special + op + b.special
	case a.special != "":
		r.special = a.special
	case b.special != "":
		r.special = b.special
		if div {
			r.special = "/" + b.special
		}
	}
	return r
}

func (p *ucumParser) term() (ucumUnit, error) {
	var u ucumUnit
	if p.i < len(p.s) && p.s[p.i] == '/' {
		p.i++
		c, err := p.component()
		if err != nil {
			return ucumUnit{}, err
		}
		u = combine(unitOne(), c, true)
	} else {
		c, err := p.component()
		if err != nil {
			return ucumUnit{}, err
		}
		u = c
	}
	for p.i < len(p.s) && (p.s[p.i] == '.' || p.s[p.i] == '/') {
		div := p.s[p.i] == '/'
		p.i++
		c, err := p.component()
		if err != nil {
			return ucumUnit{}, err
		}
		u = combine(u, c, div)
	}
	return u, nil
}

func (p *ucumParser) component() (ucumUnit, error) {
	if p.i >= len(p.s) {
		return ucumUnit{}, errUCUM
	}
	switch p.s[p.i] {
	case '(':
		p.i++
		u, err := p.term()
		if err != nil {
			return ucumUnit{}, err
		}
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return ucumUnit{}, errUCUM
		}
		p.i++
		return p.exponent(u)
	case '{':
		end := strings.IndexByte(p.s[p.i:], '}')
		if end < 0 {
			return ucumUnit{}, errUCUM
		}
		p.i += end + 1
		return unitOne(), nil
	}
	// a symbol: up to an operator, bracketed parts taken whole
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '[' {
			end := strings.IndexByte(p.s[p.i:], ']')
			if end < 0 {
				return ucumUnit{}, errUCUM
			}
			p.i += end + 1
			continue
		}
		if c == '.' || c == '/' || c == '(' || c == ')' || c == '{' {
			break
		}
		p.i++
	}
	sym := p.s[start:p.i]
	// a trailing annotation belongs to the symbol
	if p.i < len(p.s) && p.s[p.i] == '{' {
		end := strings.IndexByte(p.s[p.i:], '}')
		if end < 0 {
			return ucumUnit{}, errUCUM
		}
		p.i += end + 1
	}
	return p.symbol(sym)
}

func (p *ucumParser) exponent(u ucumUnit) (ucumUnit, error) {
	start := p.i
	if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
		p.i++
	}
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return u, nil
	}
	n, err := strconv.Atoi(p.s[start:p.i])
	if err != nil {
		return ucumUnit{}, errUCUM
	}
	return powUnit(u, n), nil
}

func powUnit(u ucumUnit, n int) ucumUnit {
	r := unitOne()
	for i := range r.dims {
		r.dims[i] = u.dims[i] * int8(n)
	}
	k := n
	if k < 0 {
		k = -k
	}
	for i := 0; i < k; i++ {
		r.factor.Mul(r.factor, u.factor)
	}
	if n < 0 && r.factor.Sign() != 0 {
		r.factor.Inv(r.factor)
	}
	r.special = u.special
	if u.special != "" && n != 1 {
		r.special = u.special + strconv.Itoa(n)
	}
	return r
}

// symbol resolves a simple unit with an optional exponent: m2, 10*3, mg.
func (p *ucumParser) symbol(sym string) (ucumUnit, error) {
	if sym == "" {
		return ucumUnit{}, errUCUM
	}
	// 10*3, 10^-2
	for _, ten := range []string{"10*", "10^"} {
		if strings.HasPrefix(sym, ten) {
			n, err := strconv.Atoi(sym[3:])
			if err != nil {
				return ucumUnit{}, errUCUM
			}
			return powUnit(ucumUnit{factor: big.NewRat(10, 1)}, n), nil
		}
	}
	if isAllDigits(sym) {
		r, _ := new(big.Rat).SetString(sym)
		return ucumUnit{factor: r}, nil
	}
	if u, ok := p.atomWithPrefix(sym); ok {
		return u, nil
	}
	// split a trailing exponent
	j := len(sym)
	for j > 0 && isDigit(sym[j-1]) {
		j--
	}
	if j > 0 && j < len(sym) && (sym[j-1] == '-' || sym[j-1] == '+') {
		j--
	}
	if j > 0 && j < len(sym) {
		if u, ok := p.atomWithPrefix(sym[:j]); ok {
			n, err := strconv.Atoi(sym[j:])
			if err != nil {
				return ucumUnit{}, errUCUM
			}
			return powUnit(u, n), nil
		}
	}
	return ucumUnit{}, fmt.Errorf("%w: %q", errUCUM, sym)
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func (p *ucumParser) atom(name string) (ucumUnit, bool) {
	if ucumSpecial[name] {
		return ucumUnit{factor: big.NewRat(1, 1), special: name}, true
	}
	a, ok := ucumAtoms[name]
	if !ok {
		return ucumUnit{}, false
	}
	if a.ref != "" {
		u, err := parseUCUMUncached(a.ref, p.depth+1)
		if err != nil {
			return ucumUnit{}, false
		}
		return u, true
	}
	return ucumUnit{factor: ratOf(a.factor), dims: a.dims}, true
}

func (p *ucumParser) atomWithPrefix(sym string) (ucumUnit, bool) {
	if u, ok := p.atom(sym); ok {
		return u, true
	}
	for _, n := range []int{2, 1} {
		if len(sym) <= n {
			continue
		}
		pf, ok := ucumPrefixes[sym[:n]]
		if !ok {
			continue
		}
		name := sym[n:]
		if a, ok := ucumAtoms[name]; ok && a.metric {
			u, ok := p.atom(name)
			if !ok {
				return ucumUnit{}, false
			}
			u.factor = new(big.Rat).Mul(u.factor, ratOf(pf))
			return u, true
		}
		if ucumSpecial[name] {
			u, _ := p.atom(name)
			u.factor = ratOf(pf)
			return u, true
		}
	}
	// "µ" is two bytes
	if strings.HasPrefix(sym, "µ") {
		if a, ok := ucumAtoms[sym[len("µ"):]]; ok && a.metric {
			u, _ := p.atom(sym[len("µ"):])
			u.factor = new(big.Rat).Mul(u.factor, ratOf("1/1000000"))
			return u, true
		}
	}
	return ucumUnit{}, false
}

// canonical is a quantity reduced for comparison.
type canonical struct {
	value *big.Rat
	key   string // what must match for two quantities to be comparable
}

// calendarMonths: year/month keywords measure in months and compare only
// with each other (a calendar month has no fixed length).
func (q Quantity) canonical(equivalence bool) (canonical, bool) {
	unit := q.Unit
	if q.Calendar {
		switch u := q.calUnit(); u {
		case cuYear, cuMonth:
			if equivalence {
				// 1 year ~ 1 'a', 1 month ~ 1 'mo'
				if u == cuYear {
					unit = "a"
				} else {
					unit = "mo"
				}
				break
			}
			v := q.Value.Rat()
			if u == cuYear {
				v.Mul(v, big.NewRat(12, 1))
			}
			return canonical{value: v, key: "calendar-month"}, true
		default:
			unit = map[calUnit]string{cuWeek: "wk", cuDay: "d", cuHour: "h", cuMinute: "min", cuSecond: "s", cuMillisecond: "ms"}[u]
		}
	}
	u, err := parseUCUM(unit)
	if err != nil {
		return canonical{value: q.Value.Rat(), key: "unit:" + unit}, true
	}
	v := q.Value.Rat()
	v.Mul(v, u.factor)
	return canonical{value: v, key: dimsKey(u)}, true
}

func dimsKey(u ucumUnit) string {
	var b strings.Builder
	for _, d := range u.dims {
		b.WriteString(strconv.Itoa(int(d)))
		b.WriteByte(',')
	}
	b.WriteString(u.special)
	return b.String()
}

// compareQuantities compares two quantities after unit conversion. ok is
// false when their units cannot be compared.
func compareQuantities(a, b Quantity, equivalence bool) (cmp int, ok bool) {
	if a.Unit == b.Unit && a.Calendar == b.Calendar {
		return a.Value.Cmp(b.Value), true
	}
	ca, ok1 := a.canonical(equivalence)
	cb, ok2 := b.canonical(equivalence)
	if !ok1 || !ok2 || ca.key != cb.key {
		return 0, false
	}
	return ca.value.Cmp(cb.value), true
}

// equivalentQuantities compares at the precision of the less precise value.
func equivalentQuantities(a, b Quantity) (bool, bool) {
	if a.Unit == b.Unit && a.Calendar == b.Calendar {
		return equivalentDecimals(a.Value, b.Value), true
	}
	// convert b into a's unit where both are plain UCUM
	if conv, ok := convertQuantity(b, a); ok {
		return equivalentDecimals(a.Value, conv), true
	}
	c, ok := compareQuantities(a, b, true)
	return c == 0, ok
}

// convertQuantity returns q's value in the unit of like, when comparable.
func convertQuantity(q, like Quantity) (Decimal, bool) {
	cq, ok1 := q.canonical(true)
	cl, ok2 := like.canonical(true)
	if !ok1 || !ok2 || cq.key != cl.key {
		return Decimal{}, false
	}
	one := Quantity{Value: DecimalFromInt(1), Unit: like.Unit, Calendar: like.Calendar}
	c1, _ := one.canonical(true)
	if c1.value.Sign() == 0 {
		return Decimal{}, false
	}
	r := new(big.Rat).Quo(cq.value, c1.value)
	return decimalFromRat(r, q.Value.scale), true
}

// equivalentDecimals compares a and b rounded to the smaller scale.
func equivalentDecimals(a, b Decimal) bool {
	s := min(a.scale, b.scale)
	return a.Round(s).Cmp(b.Round(s)) == 0
}

// ucumFor returns the UCUM code standing for a calendar keyword, for
// arithmetic mixing calendar and UCUM units.
func (q Quantity) ucumUnit() string {
	if !q.Calendar {
		return q.Unit
	}
	switch q.calUnit() {
	case cuYear:
		return "a"
	case cuMonth:
		return "mo"
	case cuWeek:
		return "wk"
	case cuDay:
		return "d"
	case cuHour:
		return "h"
	case cuMinute:
		return "min"
	case cuSecond:
		return "s"
	default:
		return "ms"
	}
}

// mulUnits builds the unit of a product or quotient.
func mulUnits(a, b string, div bool) string {
	wrap := func(s string) string {
		if strings.ContainsAny(s, "./") {
			return "(" + s + ")"
		}
		return s
	}
	switch {
	case div && a == b:
		return "1"
	case div && b == "1":
		return a
	case div && a == "1":
		return "/" + wrap(b)
	case div:
		return a + "/" + wrap(b)
	case a == "1":
		return b
	case b == "1":
		return a
	default:
		return a + "." + b
	}
}

// parseQuantityString reads the text form of a quantity: a number, then
// optionally a quoted UCUM unit or a calendar keyword ("5 'mg'", "3 days").
func parseQuantityString(s string) (Quantity, bool) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && (isDigit(s[i]) || s[i] == '.') {
		i++
	}
	v, err := ParseDecimal(s[:i])
	if err != nil {
		return Quantity{}, false
	}
	rest := strings.TrimSpace(s[i:])
	switch {
	case rest == "":
		return Quantity{Value: v, Unit: "1"}, true
	case len(rest) >= 2 && rest[0] == '\'' && rest[len(rest)-1] == '\'':
		return Quantity{Value: v, Unit: rest[1 : len(rest)-1]}, true
	}
	if _, ok := calendarUnits[rest]; ok {
		return Quantity{Value: v, Unit: rest, Calendar: true}, true
	}
	return Quantity{}, false
}
