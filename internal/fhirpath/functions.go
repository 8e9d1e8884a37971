package fhirpath

import (
	"math"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// funcImpl evaluates a call: in is the input collection, n the call (its
// arguments are evaluated by the function, in the caller's scope sc).
type funcImpl func(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error)

type funcDef struct {
	min, max int
	typeArg  bool // the only argument is a type name
	impl     funcImpl
}

var funcs map[string]*funcDef

func lookupFunc(name string) *funcDef { return funcs[name] }

func init() {
	funcs = map[string]*funcDef{
		// existence
		"empty":      {0, 0, false, fnEmpty},
		"exists":     {0, 1, false, fnExists},
		"all":        {1, 1, false, fnAll},
		"allTrue":    {0, 0, false, boolAgg(true, true)},
		"anyTrue":    {0, 0, false, boolAgg(false, true)},
		"allFalse":   {0, 0, false, boolAgg(true, false)},
		"anyFalse":   {0, 0, false, boolAgg(false, false)},
		"subsetOf":   {1, 1, false, fnSubsetOf},
		"supersetOf": {1, 1, false, fnSupersetOf},
		"count":      {0, 0, false, fnCount},
		"distinct":   {0, 0, false, fnDistinct},
		"isDistinct": {0, 0, false, fnIsDistinct},
		// filtering and projection
		"where":  {1, 1, false, fnWhere},
		"select": {1, 1, false, fnSelect},
		"repeat": {1, 1, false, fnRepeat},
		"ofType": {1, 1, true, fnOfType},
		// subsetting
		"single":    {0, 0, false, fnSingle},
		"first":     {0, 0, false, fnFirst},
		"last":      {0, 0, false, fnLast},
		"tail":      {0, 0, false, fnTail},
		"skip":      {1, 1, false, fnSkip},
		"take":      {1, 1, false, fnTake},
		"intersect": {1, 1, false, fnIntersect},
		"exclude":   {1, 1, false, fnExclude},
		// combining
		"union":   {1, 1, false, fnUnion},
		"combine": {1, 1, false, fnCombine},
		// conversion
		"iif":                {2, 3, false, fnIif},
		"toBoolean":          {0, 0, false, conv(toBoolean, false)},
		"convertsToBoolean":  {0, 0, false, conv(toBoolean, true)},
		"toInteger":          {0, 0, false, conv(toInteger, false)},
		"convertsToInteger":  {0, 0, false, conv(toInteger, true)},
		"toDecimal":          {0, 0, false, conv(toDecimalConv, false)},
		"convertsToDecimal":  {0, 0, false, conv(toDecimalConv, true)},
		"toString":           {0, 0, false, conv(toStringConv, false)},
		"convertsToString":   {0, 0, false, conv(toStringConv, true)},
		"toDate":             {0, 0, false, conv(toDate, false)},
		"convertsToDate":     {0, 0, false, conv(toDate, true)},
		"toDateTime":         {0, 0, false, conv(toDateTime, false)},
		"convertsToDateTime": {0, 0, false, conv(toDateTime, true)},
		"toTime":             {0, 0, false, conv(toTime, false)},
		"convertsToTime":     {0, 0, false, conv(toTime, true)},
		"toQuantity":         {0, 1, false, fnToQuantity(false)},
		"convertsToQuantity": {0, 1, false, fnToQuantity(true)},
		// strings
		"indexOf":        {1, 1, false, fnIndexOf},
		"lastIndexOf":    {1, 1, false, fnLastIndexOf},
		"substring":      {1, 2, false, fnSubstring},
		"startsWith":     {1, 1, false, strPred(strings.HasPrefix)},
		"endsWith":       {1, 1, false, strPred(strings.HasSuffix)},
		"contains":       {1, 1, false, strPred(strings.Contains)},
		"upper":          {0, 0, false, strMap(strings.ToUpper)},
		"lower":          {0, 0, false, strMap(strings.ToLower)},
		"trim":           {0, 0, false, strMap(strings.TrimSpace)},
		"replace":        {2, 2, false, fnReplace},
		"matches":        {1, 1, false, fnMatches(false)},
		"matchesFull":    {1, 1, false, fnMatches(true)},
		"replaceMatches": {2, 2, false, fnReplaceMatches},
		"length":         {0, 0, false, fnLength},
		"toChars":        {0, 0, false, fnToChars},
		"split":          {1, 1, false, fnSplit},
		"join":           {0, 1, false, fnJoin},
		"encode":         {1, 1, false, fnEncode},
		"decode":         {1, 1, false, fnDecode},
		"escape":         {1, 1, false, fnEscape},
		"unescape":       {1, 1, false, fnUnescape},
		// math
		"abs":      {0, 0, false, fnAbs},
		"ceiling":  {0, 0, false, mathInt(Decimal.Ceiling)},
		"floor":    {0, 0, false, mathInt(Decimal.Floor)},
		"truncate": {0, 0, false, mathInt(Decimal.Truncate)},
		"round":    {0, 1, false, fnRound},
		"exp":      {0, 0, false, mathFloat(math.Exp)},
		"ln":       {0, 0, false, mathFloat(math.Log)},
		"sqrt":     {0, 0, false, mathFloat(math.Sqrt)},
		"log":      {1, 1, false, fnLog},
		"power":    {1, 1, false, fnPower},
		// tree navigation
		"children":    {0, 0, false, fnChildren},
		"descendants": {0, 0, false, fnDescendants},
		// utility
		"trace":     {1, 2, false, fnTrace},
		"now":       {0, 0, false, fnNow},
		"today":     {0, 0, false, fnToday},
		"timeOfDay": {0, 0, false, fnTimeOfDay},
		"aggregate": {1, 2, false, fnAggregate},
		"sort":      {0, 16, false, fnSort},
		// types
		"is":   {1, 1, true, fnIs},
		"as":   {1, 1, true, fnAs},
		"type": {0, 0, false, fnType},
		"not":  {0, 0, false, fnNot},
		// precision and boundaries
		"lowBoundary":  {0, 1, false, fnBoundary(false)},
		"highBoundary": {0, 1, false, fnBoundary(true)},
		"precision":    {0, 0, false, fnPrecision},
		"comparable":   {1, 1, false, fnComparable},
		// FHIR additions
		"extension":         {1, 1, false, fnExtension},
		"hasValue":          {0, 0, false, fnHasValue},
		"getValue":          {0, 0, false, fnGetValue},
		"resolve":           {0, 0, false, fnResolve},
		"htmlChecks":        {0, 0, false, fnHTMLChecks},
		"conformsTo":        {1, 1, false, fnConformsTo},
		"memberOf":          {1, 1, false, unsupported("memberOf() needs a terminology service, which this engine does not have")},
		"subsumes":          {1, 1, false, unsupported("subsumes() needs a terminology service, which this engine does not have")},
		"subsumedBy":        {1, 1, false, unsupported("subsumedBy() needs a terminology service, which this engine does not have")},
		"checkModifiers":    {1, 1, false, unsupported("checkModifiers() is not supported")},
		"elementDefinition": {0, 0, false, unsupported("elementDefinition() is not supported")},
		"slice":             {2, 2, false, unsupported("slice() is not supported")},
	}
}

func unsupported(msg string) funcImpl {
	return func(ec *evalCtx, _ *scope, n *callNode, _ Collection) (Collection, error) {
		return nil, ec.fail(n, "%s", msg)
	}
}

// lambdaScope returns one scope for evaluating a lambda argument over the
// items of a collection; at moves it to item i. Reusing it is safe: nothing
// keeps a scope once the argument's evaluation returns.
func lambdaScope(sc *scope) *scope {
	return &scope{index: -1, total: sc.total}
}

func (s *scope) at(in Collection, i int) *scope {
	s.this, s.index = in[i:i+1:i+1], i
	return s
}

// single returns the only item of in, converted to its System value; ok is
// false for an empty input (or a primitive without a value).
func (ec *evalCtx) single(n *callNode, in Collection) (Value, bool, error) {
	if len(in) == 0 {
		return Value{}, false, nil
	}
	if len(in) > 1 {
		return Value{}, false, ec.fail(n, "%s() needs a single item, got %d", n.name, len(in))
	}
	v, ok := ec.mi.sys(in[0])
	return v, ok, nil
}

// ---- existence

func fnEmpty(_ *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	return boolColl(len(in) == 0), nil
}

func fnExists(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	if len(n.args) == 0 {
		return boolColl(len(in) > 0), nil
	}
	ls := lambdaScope(sc)
	for i := range in {
		r, err := n.args[0].eval(ec, ls.at(in, i))
		if err != nil {
			return nil, err
		}
		b, ok, err := ec.toBool(n.args[0], r)
		if err != nil {
			return nil, err
		}
		if ok && b {
			return trueValue, nil
		}
	}
	return falseValue, nil
}

func fnAll(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	ls := lambdaScope(sc)
	for i := range in {
		r, err := n.args[0].eval(ec, ls.at(in, i))
		if err != nil {
			return nil, err
		}
		b, ok, err := ec.toBool(n.args[0], r)
		if err != nil {
			return nil, err
		}
		if !ok || !b {
			return falseValue, nil
		}
	}
	return trueValue, nil
}

// boolAgg builds allTrue (all, true), anyTrue (any, true), allFalse and
// anyFalse.
func boolAgg(all, want bool) funcImpl {
	return func(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
		for _, v := range in {
			sv, ok := ec.mi.sys(v)
			if !ok {
				continue
			}
			if sv.k != kBool {
				return nil, ec.fail(n, "%s() needs Booleans, got %s", n.name, ec.typeName(v))
			}
			if all && sv.bool() != want {
				return falseValue, nil
			}
			if !all && sv.bool() == want {
				return trueValue, nil
			}
		}
		return boolColl(all), nil
	}
}

func fnSubsetOf(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	other, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	for _, v := range in {
		if !ec.contains(other, v) {
			return falseValue, nil
		}
	}
	return trueValue, nil
}

func fnSupersetOf(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	other, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	for _, v := range other {
		if !ec.contains(in, v) {
			return falseValue, nil
		}
	}
	return trueValue, nil
}

func fnCount(_ *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	return Collection{Integer(int64(len(in)))}, nil
}

func (ec *evalCtx) distinct(in Collection) Collection {
	if len(in) <= 1 {
		return in
	}
	out := make(Collection, 0, len(in))
	for _, v := range in {
		if !ec.contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func fnDistinct(ec *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	return ec.distinct(in), nil
}

func fnIsDistinct(ec *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	return boolColl(len(ec.distinct(in)) == len(in)), nil
}

// ---- filtering and projection

func fnWhere(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	var out Collection
	ls := lambdaScope(sc)
	for i := range in {
		r, err := n.args[0].eval(ec, ls.at(in, i))
		if err != nil {
			return nil, err
		}
		b, ok, err := ec.toBool(n.args[0], r)
		if err != nil {
			return nil, err
		}
		if ok && b {
			out = append(out, in[i])
		}
	}
	return out, nil
}

func fnSelect(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	ls := lambdaScope(sc)
	if len(in) == 1 {
		return n.args[0].eval(ec, ls.at(in, 0))
	}
	var out Collection
	for i := range in {
		r, err := n.args[0].eval(ec, ls.at(in, i))
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// maxRepeat bounds repeat() and descendants().
const maxRepeat = 1 << 17

func fnRepeat(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	return ec.repeat(n, in, func(c Collection) (Collection, error) {
		var out Collection
		ls := lambdaScope(sc)
		for i := range c {
			r, err := n.args[0].eval(ec, ls.at(c, i))
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
		}
		return out, nil
	})
}

// repeat applies step to in, then to what it returned, until nothing new
// comes back; System values already seen and objects already visited are
// not added again.
func (ec *evalCtx) repeat(n *callNode, in Collection, step func(Collection) (Collection, error)) (Collection, error) {
	var out Collection
	seen := map[any]bool{}
	frontier := in
	for len(frontier) > 0 {
		next, err := step(frontier)
		if err != nil {
			return nil, err
		}
		var fresh Collection
		for _, v := range next {
			if obj, ok := v.object(); ok {
				key := mapKey(obj)
				if seen[key] {
					continue
				}
				seen[key] = true
			} else if v.k != kNode && (ec.contains(out, v) || ec.contains(fresh, v)) {
				continue
			}
			fresh = append(fresh, v)
		}
		out = append(out, fresh...)
		if len(out) > maxRepeat {
			return nil, ec.fail(n, "%s() produced more than %d items", n.name, maxRepeat)
		}
		if err := ec.tick(); err != nil {
			return nil, err
		}
		frontier = fresh
	}
	return out, nil
}

func fnOfType(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	var out Collection
	for _, v := range in {
		if c, ok := ec.mi.castTo(v, n.typ); ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// ---- subsetting

func fnSingle(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	if len(in) > 1 {
		return nil, ec.fail(n, "single() on %d items", len(in))
	}
	return in, nil
}

func fnFirst(_ *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	return in[:1:1], nil
}

func fnLast(_ *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	return in[len(in)-1:], nil
}

func fnTail(_ *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	if len(in) <= 1 {
		return nil, nil
	}
	return in[1:], nil
}

func fnSkip(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	a, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	k, ok, err := ec.singleInt(n, a)
	if err != nil || !ok {
		return nil, err
	}
	if k <= 0 {
		return in, nil
	}
	if k >= int64(len(in)) {
		return nil, nil
	}
	return in[k:], nil
}

func fnTake(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	a, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	k, ok, err := ec.singleInt(n, a)
	if err != nil || !ok {
		return nil, err
	}
	if k <= 0 {
		return nil, nil
	}
	if k >= int64(len(in)) {
		return in, nil
	}
	return in[:k:k], nil
}

func fnIntersect(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	other, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	var out Collection
	for _, v := range in {
		if ec.contains(other, v) && !ec.contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnExclude(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	other, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	var out Collection
	for _, v := range in {
		if !ec.contains(other, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// ---- combining

func fnUnion(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	other, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	return ec.union(in, other), nil
}

func fnCombine(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	other, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	out := make(Collection, 0, len(in)+len(other))
	return append(append(out, in...), other...), nil
}

// ---- conversion

// fnIif evaluates its arguments with the input as $this. The criterion
// must be empty or one Boolean.
func fnIif(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	if len(in) > 1 {
		return nil, ec.fail(n, "iif() on %d items", len(in))
	}
	s := *sc
	if n.target != nil {
		s = scope{this: in, index: sc.index, total: sc.total}
	}
	c, err := n.args[0].eval(ec, &s)
	if err != nil {
		return nil, err
	}
	if len(c) > 1 {
		return nil, ec.fail(n.args[0], "iif() criterion has %d items", len(c))
	}
	cond := false
	if len(c) == 1 {
		v, ok := ec.mi.sys(c[0])
		if ok {
			if v.k != kBool {
				return nil, ec.fail(n.args[0], "iif() criterion is %s, not a Boolean", ec.typeName(c[0]))
			}
			cond = v.bool()
		}
	}
	if cond {
		return n.args[1].eval(ec, &s)
	}
	if len(n.args) == 3 {
		return n.args[2].eval(ec, &s)
	}
	return nil, nil
}

// converter converts one System value; ok false means not convertible.
type converter func(v Value) (Value, bool)

func conv(f converter, test bool) funcImpl {
	return func(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
		v, ok, err := ec.single(n, in)
		if err != nil || !ok {
			return nil, err
		}
		r, ok := f(v)
		if test {
			return boolColl(ok), nil
		}
		if !ok {
			return nil, nil
		}
		return Collection{r}, nil
	}
}

func toBoolean(v Value) (Value, bool) {
	switch v.k {
	case kBool:
		return v, true
	case kInt:
		switch v.int() {
		case 0:
			return Boolean(false), true
		case 1:
			return Boolean(true), true
		}
	case kDec:
		d := v.dec()
		if d.Cmp(DecimalFromInt(1)) == 0 {
			return Boolean(true), true
		}
		if d.Sign() == 0 {
			return Boolean(false), true
		}
	case kStr:
		switch strings.ToLower(v.str()) {
		case "true", "t", "yes", "y", "1", "1.0":
			return Boolean(true), true
		case "false", "f", "no", "n", "0", "0.0":
			return Boolean(false), true
		}
	}
	return Value{}, false
}

func isIntegerText(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	return isAllDigits(s)
}

func toInteger(v Value) (Value, bool) {
	switch v.k {
	case kInt:
		return v, true
	case kBool:
		if v.bool() {
			return Integer(1), true
		}
		return Integer(0), true
	case kStr:
		if isIntegerText(v.str()) {
			if n, err := strconv.ParseInt(v.str(), 10, 64); err == nil {
				return Integer(n), true
			}
		}
	}
	return Value{}, false
}

func isDecimalText(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	i, f, hasPoint := strings.Cut(s, ".")
	return isAllDigits(i) && (!hasPoint || isAllDigits(f))
}

func toDecimalConv(v Value) (Value, bool) {
	switch v.k {
	case kDec:
		return v, true
	case kInt:
		return DecimalValue(DecimalFromInt(v.int())), true
	case kBool:
		if v.bool() {
			return DecimalValue(Decimal{coef: big.NewInt(10), scale: 1}), true
		}
		return DecimalValue(Decimal{scale: 1}), true
	case kStr:
		if isDecimalText(v.str()) {
			if d, err := ParseDecimal(v.str()); err == nil {
				return DecimalValue(d), true
			}
		}
	}
	return Value{}, false
}

func toStringConv(v Value) (Value, bool) {
	if v.k == kStr {
		return v, true
	}
	if s, ok := v.Text(); ok && v.k != kNode {
		return String(s), true
	}
	return Value{}, false
}

func toDate(v Value) (Value, bool) {
	switch v.k {
	case kDate:
		return v, true
	case kDateTime:
		d := v.dt()
		if d.Prec > precDay {
			d.Prec = precDay
		}
		d.TZ = tzNone
		return dateValue(d), true
	case kStr:
		if d, err := parseDate(v.str()); err == nil {
			return dateValue(d), true
		}
		if d, err := parseDateTime(v.str()); err == nil {
			return toDate(dateTimeValue(d))
		}
	}
	return Value{}, false
}

func toDateTime(v Value) (Value, bool) {
	switch v.k {
	case kDateTime:
		return v, true
	case kDate:
		return dateTimeValue(v.dt()), true
	case kStr:
		if d, err := parseDateTime(v.str()); err == nil {
			return dateTimeValue(d), true
		}
	}
	return Value{}, false
}

func toTime(v Value) (Value, bool) {
	switch v.k {
	case kTime:
		return v, true
	case kStr:
		if d, err := parseTime(v.str()); err == nil {
			return timeValue(d), true
		}
	}
	return Value{}, false
}

func toQuantityValue(v Value) (Quantity, bool) {
	switch v.k {
	case kQty:
		return v.qty(), true
	case kInt:
		return Quantity{Value: DecimalFromInt(v.int()), Unit: "1"}, true
	case kDec:
		return Quantity{Value: v.dec(), Unit: "1"}, true
	case kBool:
		d := Decimal{scale: 1}
		if v.bool() {
			d = Decimal{coef: big.NewInt(10), scale: 1}
		}
		return Quantity{Value: d, Unit: "1"}, true
	case kStr:
		q, ok := parseQuantityString(v.str())
		if !ok {
			return Quantity{}, false
		}
		if !q.Calendar && q.Unit != "1" {
			if _, err := parseUCUM(q.Unit); err != nil {
				return Quantity{}, false
			}
		}
		return q, true
	}
	return Quantity{}, false
}

func fnToQuantity(test bool) funcImpl {
	return func(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
		v, ok, err := ec.single(n, in)
		if err != nil || !ok {
			return nil, err
		}
		q, ok := toQuantityValue(v)
		if ok && len(n.args) == 1 {
			a, err := n.arg(ec, sc, 0)
			if err != nil {
				return nil, err
			}
			unit, has, err := ec.singleString(n, a)
			if err != nil {
				return nil, err
			}
			if has {
				target := Quantity{Value: DecimalFromInt(1), Unit: unit}
				if _, cal := calendarUnits[unit]; cal {
					target.Calendar = true
				}
				if conv, cok := convertQuantity(q, target); cok {
					q = Quantity{Value: conv, Unit: target.Unit, Calendar: target.Calendar}
				} else {
					ok = false
				}
			}
		}
		if test {
			return boolColl(ok), nil
		}
		if !ok {
			return nil, nil
		}
		return Collection{QuantityValue(q)}, nil
	}
}

// ---- strings

// str reads the single String input of a string function.
func (ec *evalCtx) str(n *callNode, in Collection) (string, bool, error) {
	v, ok, err := ec.single(n, in)
	if err != nil || !ok {
		return "", false, err
	}
	if v.k != kStr {
		return "", false, ec.fail(n, "%s() needs a string, got %s", n.name, ec.typeName(in[0]))
	}
	return v.str(), true, nil
}

// strArg evaluates argument i as a single String.
func (ec *evalCtx) strArg(sc *scope, n *callNode, i int) (string, bool, error) {
	a, err := n.arg(ec, sc, i)
	if err != nil {
		return "", false, err
	}
	return ec.singleString(n.args[i], a)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// runeIndex converts a byte index in s to a character index.
func runeIndex(s string, b int) int {
	if b < 0 {
		return b
	}
	return utf8.RuneCountInString(s[:b])
}

func fnIndexOf(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	sub, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	return Collection{Integer(int64(runeIndex(s, strings.Index(s, sub))))}, nil
}

func fnLastIndexOf(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	sub, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	return Collection{Integer(int64(runeIndex(s, strings.LastIndex(s, sub))))}, nil
}

func fnSubstring(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	a, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	start, ok, err := ec.singleInt(n.args[0], a)
	if err != nil || !ok {
		return nil, err
	}
	var r []rune
	length := int64(len(s))
	if !isASCII(s) {
		r = []rune(s)
		length = int64(len(r))
	}
	if start < 0 || start >= length {
		return nil, nil
	}
	end := length
	if len(n.args) == 2 {
		b, err := n.arg(ec, sc, 1)
		if err != nil {
			return nil, err
		}
		l, ok, err := ec.singleInt(n.args[1], b)
		if err != nil {
			return nil, err
		}
		if ok {
			if l < 0 {
				l = 0
			}
			end = min(start+l, length)
		}
	}
	if r != nil {
		return Collection{String(string(r[start:end]))}, nil
	}
	return Collection{String(s[start:end])}, nil
}

func strPred(f func(s, arg string) bool) funcImpl {
	return func(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
		s, ok, err := ec.str(n, in)
		if err != nil || !ok {
			return nil, err
		}
		a, ok, err := ec.strArg(sc, n, 0)
		if err != nil || !ok {
			return nil, err
		}
		return boolColl(f(s, a)), nil
	}
}

func strMap(f func(string) string) funcImpl {
	return func(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
		s, ok, err := ec.str(n, in)
		if err != nil || !ok {
			return nil, err
		}
		return Collection{String(f(s))}, nil
	}
}

func fnReplace(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	pat, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	rep, ok, err := ec.strArg(sc, n, 1)
	if err != nil || !ok {
		return nil, err
	}
	return Collection{String(strings.ReplaceAll(s, pat, rep))}, nil
}

// regex compiles a FHIRPath regular expression: '.' matches line breaks.
func (ec *evalCtx) regex(n *callNode, pat string, full bool) (*regexp.Regexp, error) {
	src := "(?s)" + pat
	if full {
		src = "(?s)^(?:" + pat + ")$"
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, ec.fail(n, "%s(): bad regular expression: %v", n.name, err)
	}
	return re, nil
}

func fnMatches(full bool) funcImpl {
	return func(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
		s, ok, err := ec.str(n, in)
		if err != nil || !ok {
			return nil, err
		}
		pat, ok, err := ec.strArg(sc, n, 0)
		if err != nil || !ok {
			return nil, err
		}
		re, err := ec.regex(n, pat, full)
		if err != nil {
			return nil, err
		}
		return boolColl(re.MatchString(s)), nil
	}
}

// goReplacement turns FHIRPath's $1 group references into Go's ${1}.
func goReplacement(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) && isDigit(s[i+1]) {
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			b.WriteString("${" + s[i+1:j] + "}")
			i = j - 1
			continue
		}
		if s[i] == '$' {
			b.WriteString("$$")
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func fnReplaceMatches(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	pat, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	rep, ok, err := ec.strArg(sc, n, 1)
	if err != nil || !ok {
		return nil, err
	}
	if pat == "" {
		return Collection{String(s)}, nil
	}
	re, err := ec.regex(n, pat, false)
	if err != nil {
		return nil, err
	}
	return Collection{String(re.ReplaceAllString(s, goReplacement(rep)))}, nil
}

func fnLength(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	return Collection{Integer(int64(utf8.RuneCountInString(s)))}, nil
}

func fnToChars(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	out := make(Collection, 0, len(s))
	for _, r := range s {
		out = append(out, String(string(r)))
	}
	return out, nil
}

func fnSplit(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	sep, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	parts := strings.Split(s, sep)
	out := make(Collection, len(parts))
	for i, p := range parts {
		out[i] = String(p)
	}
	return out, nil
}

func fnJoin(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	sep := ""
	if len(n.args) == 1 {
		s, ok, err := ec.strArg(sc, n, 0)
		if err != nil {
			return nil, err
		}
		if ok {
			sep = s
		}
	}
	parts := make([]string, 0, len(in))
	for _, v := range in {
		sv, ok := ec.mi.sys(v)
		if !ok {
			continue
		}
		if sv.k != kStr {
			return nil, ec.fail(n, "join() needs strings, got %s", ec.typeName(v))
		}
		parts = append(parts, sv.str())
	}
	return Collection{String(strings.Join(parts, sep))}, nil
}

// ---- math

// number reads the single numeric input of a math function.
func (ec *evalCtx) number(n *callNode, in Collection) (Value, bool, error) {
	v, ok, err := ec.single(n, in)
	if err != nil || !ok {
		return Value{}, false, err
	}
	if v.k != kInt && v.k != kDec {
		return Value{}, false, ec.fail(n, "%s() needs a number, got %s", n.name, ec.typeName(in[0]))
	}
	return v, true, nil
}

func fnAbs(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	v, ok, err := ec.single(n, in)
	if err != nil || !ok {
		return nil, err
	}
	switch v.k {
	case kInt:
		if v.int() < 0 {
			return Collection{Integer(-v.int())}, nil
		}
		return Collection{v}, nil
	case kDec:
		return Collection{DecimalValue(v.dec().Abs())}, nil
	case kQty:
		q := v.qty()
		q.Value = q.Value.Abs()
		return Collection{QuantityValue(q)}, nil
	}
	return nil, ec.fail(n, "abs() needs a number or a quantity, got %s", ec.typeName(in[0]))
}

func mathInt(f func(Decimal) Decimal) funcImpl {
	return func(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
		v, ok, err := ec.number(n, in)
		if err != nil || !ok {
			return nil, err
		}
		if v.k == kInt {
			return Collection{v}, nil
		}
		r := f(v.dec())
		if i, ok := r.Int64(); ok {
			return Collection{Integer(i)}, nil
		}
		return Collection{DecimalValue(r)}, nil
	}
}

func decResult(f float64) Collection {
	d, ok := decimalFromFloat(f)
	if !ok {
		return nil
	}
	return Collection{DecimalValue(d)}
}

func mathFloat(f func(float64) float64) funcImpl {
	return func(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
		v, ok, err := ec.number(n, in)
		if err != nil || !ok {
			return nil, err
		}
		return decResult(f(toDecimal(v).Float64())), nil
	}
}

func fnRound(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	v, ok, err := ec.number(n, in)
	if err != nil || !ok {
		return nil, err
	}
	var p int64
	if len(n.args) == 1 {
		a, err := n.arg(ec, sc, 0)
		if err != nil {
			return nil, err
		}
		if p, ok, err = ec.singleInt(n.args[0], a); err != nil || !ok {
			return nil, err
		}
		if p < 0 {
			return nil, ec.fail(n, "round() precision must not be negative")
		}
	}
	return Collection{DecimalValue(toDecimal(v).Round(int32(p)))}, nil
}

func fnLog(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	v, ok, err := ec.number(n, in)
	if err != nil || !ok {
		return nil, err
	}
	a, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	b, ok, err := ec.number(n, a)
	if err != nil || !ok {
		return nil, err
	}
	x, base := toDecimal(v).Float64(), toDecimal(b).Float64()
	switch base {
	case 10:
		return decResult(math.Log10(x)), nil
	case 2:
		return decResult(math.Log2(x)), nil
	}
	return decResult(math.Log(x) / math.Log(base)), nil
}

func fnPower(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	v, ok, err := ec.number(n, in)
	if err != nil || !ok {
		return nil, err
	}
	a, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	e, ok, err := ec.number(n, a)
	if err != nil || !ok {
		return nil, err
	}
	if e.k == kInt && e.int() >= 0 && e.int() <= 1000 {
		if v.k == kInt {
			r := DecimalFromInt(1)
			for i := int64(0); i < e.int(); i++ {
				r = r.Mul(DecimalFromInt(v.int()))
			}
			if i, ok := r.Int64(); ok {
				return Collection{Integer(i)}, nil
			}
			return nil, nil
		}
		r := DecimalFromInt(1)
		for i := int64(0); i < e.int(); i++ {
			r = r.Mul(v.dec())
		}
		return Collection{DecimalValue(r)}, nil
	}
	return decResult(math.Pow(toDecimal(v).Float64(), toDecimal(e).Float64())), nil
}

// ---- tree navigation

func fnChildren(ec *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	var out Collection
	for _, v := range in {
		out = ec.mi.children(out, v)
	}
	return out, nil
}

func fnDescendants(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	return ec.repeat(n, in, func(c Collection) (Collection, error) {
		var out Collection
		for _, v := range c {
			out = ec.mi.children(out, v)
		}
		return out, nil
	})
}

// ---- utility

func fnTrace(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	name, _, err := ec.strArg(sc, n, 0)
	if err != nil {
		return nil, err
	}
	shown := in
	if len(n.args) == 2 {
		var out Collection
		ls := lambdaScope(sc)
		for i := range in {
			r, err := n.args[1].eval(ec, ls.at(in, i))
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
		}
		shown = out
	}
	if f := ec.x.cfg.trace; f != nil {
		f(name, shown)
	}
	return in, nil
}

func (ec *evalCtx) nowDT() temporal {
	t := ec.clock()
	_, off := t.Zone()
	tz := tzOffset
	if off == 0 {
		tz = tzZulu
	}
	return temporal{
		Year: t.Year(), Month: int(t.Month()), Day: t.Day(),
		Hour: t.Hour(), Minute: t.Minute(), Second: t.Second(),
		Nanos: t.Nanosecond() / int(time.Millisecond) * int(time.Millisecond), Frac: 3,
		Prec: precMillis, TZ: tz, TZMin: off / 60,
	}
}

func fnNow(ec *evalCtx, _ *scope, _ *callNode, _ Collection) (Collection, error) {
	return Collection{dateTimeValue(ec.nowDT())}, nil
}

func fnToday(ec *evalCtx, _ *scope, _ *callNode, _ Collection) (Collection, error) {
	d := ec.nowDT()
	d.Prec, d.TZ = precDay, tzNone
	return Collection{dateValue(d)}, nil
}

func fnTimeOfDay(ec *evalCtx, _ *scope, _ *callNode, _ Collection) (Collection, error) {
	d := ec.nowDT()
	d.Year, d.Month, d.Day, d.TZ = 0, 0, 0, tzNone
	return Collection{timeValue(d)}, nil
}

func fnAggregate(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	var total Collection
	if len(n.args) == 2 {
		var err error
		if total, err = n.arg(ec, sc, 1); err != nil {
			return nil, err
		}
	}
	for i := range in {
		t := total
		s := scope{this: in[i : i+1 : i+1], index: i, total: &t}
		r, err := n.args[0].eval(ec, &s)
		if err != nil {
			return nil, err
		}
		total = r
	}
	return total, nil
}

func fnSort(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	if len(in) <= 1 {
		return in, nil
	}
	type key struct {
		expr node
		desc bool
	}
	keys := make([]key, len(n.args))
	for i, a := range n.args {
		keys[i] = key{expr: a}
		if u, ok := a.(*unaryNode); ok && u.op == "-" {
			keys[i] = key{expr: u.x, desc: true}
		}
	}
	type row struct {
		v    Value
		keys []Collection
	}
	rows := make([]row, len(in))
	ls := lambdaScope(sc)
	for i := range in {
		rows[i].v = in[i]
		if len(keys) == 0 {
			rows[i].keys = []Collection{in[i : i+1]}
			continue
		}
		rows[i].keys = make([]Collection, len(keys))
		for j, k := range keys {
			r, err := k.expr.eval(ec, ls.at(in, i))
			if err != nil {
				return nil, err
			}
			if len(r) > 1 {
				return nil, ec.fail(k.expr, "sort() key has %d items", len(r))
			}
			rows[i].keys[j] = r
		}
	}
	var sortErr error
	sort.SliceStable(rows, func(a, b int) bool {
		for j := range rows[a].keys {
			ka, kb := rows[a].keys[j], rows[b].keys[j]
			desc := len(keys) > 0 && keys[j].desc
			var c int
			switch {
			case len(ka) == 0 && len(kb) == 0:
				continue
			case len(ka) == 0: // empty keys come first, in either direction
				return true
			case len(kb) == 0:
				return false
			default:
				cmp, _, err := ec.compareValues(n, ka[0], kb[0])
				if err != nil && sortErr == nil {
					sortErr = err
				}
				c = cmp
			}
			if c == 0 {
				continue
			}
			if desc {
				return c > 0
			}
			return c < 0
		}
		return false
	})
	if sortErr != nil {
		return nil, sortErr
	}
	out := make(Collection, len(rows))
	for i, r := range rows {
		out[i] = r.v
	}
	return out, nil
}

// ---- types

func fnIs(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, ec.fail(n, "is() on %d items", len(in))
	}
	return boolColl(ec.mi.isType(in[0], n.typ)), nil
}

func fnAs(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, ec.fail(n, "as() on %d items", len(in))
	}
	if v, ok := ec.mi.castTo(in[0], n.typ); ok {
		return Collection{v}, nil
	}
	return nil, nil
}

func fnType(ec *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	out := make(Collection, len(in))
	for i, v := range in {
		out[i] = Value{k: kType, data: ec.mi.typeOf(v)}
	}
	return out, nil
}

func fnNot(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	b, ok, err := ec.toBool(n, in)
	if err != nil || !ok {
		return nil, err
	}
	return boolColl(!b), nil
}
