package fhirpath

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Decimal is an exact decimal number: coef × 10^-scale. The scale is the
// number of digits after the decimal point as written (1.50 has scale 2), which
// FHIRPath needs for equivalence, precision() and the boundary functions.
// A Decimal is immutable; the zero value is 0.
type Decimal struct {
	coef  *big.Int // nil means 0; never modified after construction
	scale int32
}

// divScale is the number of digits after the point kept by division.
const divScale = 20

var (
	bigOne = big.NewInt(1)
	bigTen = big.NewInt(10)
)

var pow10Cache = func() []*big.Int {
	p := make([]*big.Int, 64)
	v := big.NewInt(1)
	for i := range p {
		p[i] = new(big.Int).Set(v)
		v.Mul(v, bigTen)
	}
	return p
}()

func pow10(n int32) *big.Int {
	if n >= 0 && int(n) < len(pow10Cache) {
		return pow10Cache[n]
	}
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

func (d Decimal) c() *big.Int {
	if d.coef == nil {
		return new(big.Int)
	}
	return d.coef
}

// DecimalFromInt returns n as a Decimal with scale 0.
func DecimalFromInt(n int64) Decimal { return Decimal{coef: big.NewInt(n)} }

var errBadDecimal = errors.New("not a decimal number")

// ParseDecimal parses a decimal in plain or exponent notation ("-1.50",
// "1e-3", "2.5E+2"). The scale follows the digits written.
func ParseDecimal(s string) (Decimal, error) {
	if s == "" {
		return Decimal{}, errBadDecimal
	}
	mant, exp := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.ParseInt(s[i+1:], 10, 32)
		if err != nil {
			return Decimal{}, errBadDecimal
		}
		mant, exp = s[:i], e
	}
	neg := false
	switch {
	case strings.HasPrefix(mant, "-"):
		neg = true
		mant = mant[1:]
	case strings.HasPrefix(mant, "+"):
		mant = mant[1:]
	}
	intPart, frac, hasPoint := strings.Cut(mant, ".")
	if intPart == "" || (hasPoint && frac == "") {
		return Decimal{}, errBadDecimal
	}
	for _, p := range []string{intPart, frac} {
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return Decimal{}, errBadDecimal
			}
		}
	}
	digits := intPart + frac
	scale := int64(len(frac)) - exp
	var c *big.Int
	if len(digits) <= 18 {
		v, _ := strconv.ParseInt(digits, 10, 64)
		c = big.NewInt(v)
	} else {
		c, _ = new(big.Int).SetString(digits, 10)
	}
	if scale < 0 {
		c.Mul(c, pow10(int32(-scale)))
		scale = 0
	}
	if scale > 1000 {
		return Decimal{}, errBadDecimal
	}
	if neg {
		c.Neg(c)
	}
	return Decimal{coef: c, scale: int32(scale)}, nil
}

// decimalFromFloat converts a float result of a math function.
func decimalFromFloat(f float64) (Decimal, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Decimal{}, false
	}
	d, err := ParseDecimal(strconv.FormatFloat(f, 'f', -1, 64))
	if err != nil {
		return Decimal{}, false
	}
	return d, true
}

// Scale returns the number of digits after the decimal point.
func (d Decimal) Scale() int { return int(d.scale) }

// Sign returns -1, 0 or +1.
func (d Decimal) Sign() int {
	if d.coef == nil {
		return 0
	}
	return d.coef.Sign()
}

func (d Decimal) String() string {
	if d.coef == nil {
		if d.scale > 0 {
			return "0." + strings.Repeat("0", int(d.scale))
		}
		return "0"
	}
	s := d.coef.String()
	if d.scale == 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	if len(s) <= int(d.scale) {
		s = strings.Repeat("0", int(d.scale)-len(s)+1) + s
	}
	p := len(s) - int(d.scale)
	s = s[:p] + "." + s[p:]
	if neg {
		s = "-" + s
	}
	return s
}

// Float64 returns the nearest float.
func (d Decimal) Float64() float64 {
	f, _ := strconv.ParseFloat(d.String(), 64)
	return f
}

// rescale returns the coefficient of d at scale s >= d.scale.
func (d Decimal) rescale(s int32) *big.Int {
	if s == d.scale {
		return d.c()
	}
	return new(big.Int).Mul(d.c(), pow10(s-d.scale))
}

// Cmp compares d and e numerically.
func (d Decimal) Cmp(e Decimal) int {
	s := max(d.scale, e.scale)
	return d.rescale(s).Cmp(e.rescale(s))
}

// Add returns d + e.
func (d Decimal) Add(e Decimal) Decimal {
	s := max(d.scale, e.scale)
	return Decimal{coef: new(big.Int).Add(d.rescale(s), e.rescale(s)), scale: s}
}

// Sub returns d - e.
func (d Decimal) Sub(e Decimal) Decimal {
	s := max(d.scale, e.scale)
	return Decimal{coef: new(big.Int).Sub(d.rescale(s), e.rescale(s)), scale: s}
}

// Mul returns d × e.
func (d Decimal) Mul(e Decimal) Decimal {
	return Decimal{coef: new(big.Int).Mul(d.c(), e.c()), scale: d.scale + e.scale}
}

// Neg returns -d.
func (d Decimal) Neg() Decimal { return Decimal{coef: new(big.Int).Neg(d.c()), scale: d.scale} }

// Abs returns |d|.
func (d Decimal) Abs() Decimal { return Decimal{coef: new(big.Int).Abs(d.c()), scale: d.scale} }

// Quo returns d / e rounded half away from zero to divScale digits, with
// trailing zeros dropped; ok is false when e is 0.
func (d Decimal) Quo(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	// d/e = (cd/10^sd) / (ce/10^se) = cd*10^se / (ce*10^sd)
	num := new(big.Int).Mul(d.c(), pow10(e.scale+divScale+1))
	den := new(big.Int).Mul(e.c(), pow10(d.scale))
	q := new(big.Int).Quo(num, den) // scale divScale+1, truncated
	r := Decimal{coef: q, scale: divScale + 1}.Round(divScale)
	return r.trim(0), true
}

// trim drops trailing zeros after the point, keeping at least min digits.
func (d Decimal) trim(min int32) Decimal {
	if d.coef == nil || d.scale <= min {
		return d
	}
	c := new(big.Int).Set(d.coef)
	s := d.scale
	m := new(big.Int)
	q := new(big.Int)
	for s > min {
		q.QuoRem(c, bigTen, m)
		if m.Sign() != 0 {
			break
		}
		c.Set(q)
		s--
	}
	return Decimal{coef: c, scale: s}
}

// roundMode selects how Round drops digits.
type roundMode uint8

const (
	roundHalfUp  roundMode = iota // half away from zero
	roundDown                     // toward zero (truncate)
	roundFloor                    // toward -∞
	roundCeiling                  // toward +∞
)

func (d Decimal) roundTo(n int32, mode roundMode) Decimal {
	if n < 0 {
		n = 0
	}
	if n >= d.scale {
		return Decimal{coef: d.rescale(n), scale: n}
	}
	div := pow10(d.scale - n)
	q, r := new(big.Int).QuoRem(d.c(), div, new(big.Int))
	if r.Sign() != 0 {
		neg := d.c().Sign() < 0
		switch mode {
		case roundHalfUp:
			r2 := new(big.Int).Abs(r)
			r2.Lsh(r2, 1)
			if r2.Cmp(div) >= 0 {
				if neg {
					q.Sub(q, bigOne)
				} else {
					q.Add(q, bigOne)
				}
			}
		case roundFloor:
			if neg {
				q.Sub(q, bigOne)
			}
		case roundCeiling:
			if !neg {
				q.Add(q, bigOne)
			}
		}
	}
	return Decimal{coef: q, scale: n}
}

// Round rounds d to n digits after the point, half away from zero.
func (d Decimal) Round(n int32) Decimal { return d.roundTo(n, roundHalfUp) }

// Truncate drops the fraction.
func (d Decimal) Truncate() Decimal { return d.roundTo(0, roundDown) }

// Floor returns the greatest integer <= d.
func (d Decimal) Floor() Decimal { return d.roundTo(0, roundFloor) }

// Ceiling returns the least integer >= d.
func (d Decimal) Ceiling() Decimal { return d.roundTo(0, roundCeiling) }

// Int64 returns d as an integer when it has no fraction and fits.
func (d Decimal) Int64() (int64, bool) {
	t := d.Truncate()
	if t.Cmp(d) != 0 || !t.c().IsInt64() {
		return 0, false
	}
	return t.c().Int64(), true
}

// Mod returns d - e*trunc(d/e); ok is false when e is 0.
func (d Decimal) Mod(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	s := max(d.scale, e.scale)
	a, b := d.rescale(s), e.rescale(s)
	return Decimal{coef: new(big.Int).Rem(a, b), scale: s}, true
}

// Div returns trunc(d/e); ok is false when e is 0.
func (d Decimal) Div(e Decimal) (Decimal, bool) {
	if e.Sign() == 0 {
		return Decimal{}, false
	}
	s := max(d.scale, e.scale)
	return Decimal{coef: new(big.Int).Quo(d.rescale(s), e.rescale(s))}, true
}

// Rat returns d as an exact rational.
func (d Decimal) Rat() *big.Rat {
	return new(big.Rat).SetFrac(d.c(), pow10(d.scale))
}

// decimalFromRat converts r to a Decimal with at least scale digits, exact
// when r has a finite decimal expansion within divScale extra digits.
func decimalFromRat(r *big.Rat, scale int32) Decimal {
	if r.IsInt() {
		return Decimal{coef: new(big.Int).Set(r.Num())}.roundTo(scale, roundHalfUp)
	}
	s := scale + divScale
	num := new(big.Int).Mul(r.Num(), pow10(s+1))
	q := new(big.Int).Quo(num, r.Denom())
	return Decimal{coef: q, scale: s + 1}.Round(s).trim(scale)
}
