package fhirpath

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// precision is how far a date/time value is specified.
type precision uint8

const (
	precNone precision = iota
	precYear
	precMonth
	precDay
	precHour
	precMinute
	precSecond
	precMillis // seconds with a fraction: one precision with precSecond for comparison
)

// tzForm records how a timezone offset was written.
type tzForm uint8

const (
	tzNone   tzForm = iota
	tzZulu          // "Z"
	tzOffset        // "+hh:mm" / "-hh:mm"
)

// temporal is a FHIRPath Date, DateTime or Time with partial precision; the
// Value holding it says which. For a Time only the clock fields are used.
type temporal struct {
	Year, Month, Day     int
	Hour, Minute, Second int
	Nanos                int  // fraction of the second
	Frac                 int8 // fraction digits as written (0 = none)
	Prec                 precision
	TZ                   tzForm
	TZMin                int // offset east of UTC, minutes
}

var errBadDateTime = errors.New("malformed date/time")

func num(s string, n int) (int, bool) {
	if len(s) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseDatePart reads YYYY[-MM[-DD]] and returns the rest of s.
func parseDatePart(s string, d *temporal) (string, error) {
	y, ok := num(s, 4)
	if !ok {
		return "", errBadDateTime
	}
	d.Year, d.Prec = y, precYear
	s = s[4:]
	if len(s) >= 3 && s[0] == '-' {
		m, ok := num(s[1:], 2)
		if !ok || m < 1 || m > 12 {
			return "", errBadDateTime
		}
		d.Month, d.Prec = m, precMonth
		s = s[3:]
		if len(s) >= 3 && s[0] == '-' {
			dd, ok := num(s[1:], 2)
			if !ok || dd < 1 || dd > daysIn(y, m) {
				return "", errBadDateTime
			}
			d.Day, d.Prec = dd, precDay
			s = s[3:]
		}
	}
	return s, nil
}

// parseTimePart reads hh[:mm[:ss[.fff]]] and returns the rest of s.
func parseTimePart(s string, d *temporal) (string, error) {
	h, ok := num(s, 2)
	if !ok || h > 23 {
		return "", errBadDateTime
	}
	d.Hour, d.Prec = h, precHour
	s = s[2:]
	if len(s) >= 3 && s[0] == ':' {
		m, ok := num(s[1:], 2)
		if !ok || m > 59 {
			return "", errBadDateTime
		}
		d.Minute, d.Prec = m, precMinute
		s = s[3:]
		if len(s) >= 3 && s[0] == ':' {
			sec, ok := num(s[1:], 2)
			if !ok || sec > 59 {
				return "", errBadDateTime
			}
			d.Second, d.Prec = sec, precSecond
			s = s[3:]
			if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
				i := 1
				for i < len(s) && isDigit(s[i]) {
					i++
				}
				frac := s[1:i]
				if len(frac) > 9 {
					frac = frac[:9]
				}
				n, _ := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
				d.Nanos, d.Frac, d.Prec = n, int8(len(frac)), precMillis
				s = s[i:]
			}
		}
	}
	return s, nil
}

func parseTZ(s string, d *temporal) (string, error) {
	if s == "" {
		return s, nil
	}
	if s[0] == 'Z' {
		d.TZ, d.TZMin = tzZulu, 0
		return s[1:], nil
	}
	if (s[0] == '+' || s[0] == '-') && len(s) >= 6 && s[3] == ':' {
		h, ok1 := num(s[1:], 2)
		m, ok2 := num(s[4:], 2)
		if !ok1 || !ok2 || h > 14 || m > 59 {
			return "", errBadDateTime
		}
		d.TZ, d.TZMin = tzOffset, h*60+m
		if s[0] == '-' {
			d.TZMin = -d.TZMin
		}
		return s[6:], nil
	}
	return s, nil
}

// parseDate parses a FHIRPath/FHIR date: YYYY, YYYY-MM or YYYY-MM-DD.
func parseDate(s string) (temporal, error) {
	var d temporal
	rest, err := parseDatePart(s, &d)
	if err != nil || rest != "" {
		return temporal{}, errBadDateTime
	}
	return d, nil
}

// parseDateTime parses a date-time: a date, optionally followed by 'T', a
// time and a timezone offset (FHIR dateTime/instant, FHIRPath literal text).
func parseDateTime(s string) (temporal, error) {
	var d temporal
	rest, err := parseDatePart(s, &d)
	if err != nil {
		return temporal{}, err
	}
	if rest == "" {
		return d, nil
	}
	if rest[0] != 'T' {
		return temporal{}, errBadDateTime
	}
	rest = rest[1:]
	if rest == "" {
		return d, nil // "2015T": a DateTime to year/month/day precision
	}
	if d.Prec != precDay {
		return temporal{}, errBadDateTime
	}
	if rest, err = parseTimePart(rest, &d); err != nil {
		return temporal{}, err
	}
	if rest, err = parseTZ(rest, &d); err != nil || rest != "" {
		return temporal{}, errBadDateTime
	}
	return d, nil
}

// parseTime parses a time of day hh[:mm[:ss[.fff]]] (an optional leading 'T'
// is accepted).
func parseTime(s string) (temporal, error) {
	s = strings.TrimPrefix(s, "T")
	var d temporal
	rest, err := parseTimePart(s, &d)
	if err != nil || rest != "" {
		return temporal{}, errBadDateTime
	}
	return d, nil
}

func pad(b []byte, v, n int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < n; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

func (d temporal) appendClock(b []byte) []byte {
	b = pad(b, d.Hour, 2)
	if d.Prec >= precMinute {
		b = append(b, ':')
		b = pad(b, d.Minute, 2)
	}
	if d.Prec >= precSecond {
		b = append(b, ':')
		b = pad(b, d.Second, 2)
	}
	if d.Prec >= precMillis {
		f := int(d.Frac)
		if f <= 0 {
			f = 3
		}
		frac := pad(nil, d.Nanos, 9)
		b = append(b, '.')
		b = append(b, frac[:f]...)
	}
	return b
}

func (d temporal) appendDate(b []byte) []byte {
	b = pad(b, d.Year, 4)
	if d.Prec >= precMonth {
		b = append(b, '-')
		b = pad(b, d.Month, 2)
	}
	if d.Prec >= precDay {
		b = append(b, '-')
		b = pad(b, d.Day, 2)
	}
	return b
}

// dateString renders a Date (no '@').
func (d temporal) dateString() string {
	if d.Prec > precDay {
		d.Prec = precDay
	}
	return string(d.appendDate(nil))
}

// dateTimeString renders a DateTime (no '@').
func (d temporal) dateTimeString() string {
	b := d.appendDate(make([]byte, 0, 29))
	if d.Prec >= precHour {
		b = append(b, 'T')
		b = d.appendClock(b)
		switch d.TZ {
		case tzZulu:
			b = append(b, 'Z')
		case tzOffset:
			m := d.TZMin
			if m < 0 {
				b = append(b, '-')
				m = -m
			} else {
				b = append(b, '+')
			}
			b = pad(b, m/60, 2)
			b = append(b, ':')
			b = pad(b, m%60, 2)
		}
	}
	return string(b)
}

// timeString renders a Time (no '@', no 'T').
func (d temporal) timeString() string { return string(d.appendClock(make([]byte, 0, 12))) }

// components returns the fields of d coarsest first; n is how many are
// specified (seconds and fraction count as one).
func (d temporal) components(isTime bool) (c [6]int, n int) {
	if isTime {
		c = [6]int{d.Hour, d.Minute, d.Second*1e9 + d.Nanos}
		switch {
		case d.Prec >= precSecond:
			n = 3
		case d.Prec == precMinute:
			n = 2
		default:
			n = 1
		}
		return c, n
	}
	c = [6]int{d.Year, d.Month, d.Day, d.Hour, d.Minute, d.Second*1e9 + d.Nanos}
	n = int(d.Prec)
	if n > 6 {
		n = 6
	}
	return c, n
}

// toUTC shifts a date-time with a clock and an offset to UTC.
func (d temporal) toUTC() temporal {
	if d.Prec < precHour || d.TZ == tzNone {
		return d
	}
	t := time.Date(d.Year, time.Month(d.Month), d.Day, d.Hour, d.Minute, d.Second, d.Nanos, time.UTC)
	t = t.Add(-time.Duration(d.TZMin) * time.Minute)
	r := d
	r.Year, r.Month, r.Day = t.Year(), int(t.Month()), t.Day()
	r.Hour, r.Minute, r.Second, r.Nanos = t.Hour(), t.Minute(), t.Second(), t.Nanosecond()
	r.TZ, r.TZMin = tzZulu, 0
	return r
}

// compareDT compares two dates/date-times (isTime: two times). ok is false
// when the answer is unknown: one value is less precise than the other at
// the first field they agree on, or only one of two values with a clock
// has a timezone offset (FHIRPath compares date-times when both or neither
// have one; both are then normalised to UTC).
func compareDT(a, b temporal, isTime bool) (cmp int, ok bool) {
	if !isTime && a.Prec >= precHour && b.Prec >= precHour {
		if (a.TZ == tzNone) != (b.TZ == tzNone) {
			return 0, false
		}
		a, b = a.toUTC(), b.toUTC()
	}
	ca, na := a.components(isTime)
	cb, nb := b.components(isTime)
	n := min(na, nb)
	for i := 0; i < n; i++ {
		switch {
		case ca[i] < cb[i]:
			return -1, true
		case ca[i] > cb[i]:
			return 1, true
		}
	}
	if na != nb {
		return 0, false
	}
	return 0, true
}

// samePrecision reports whether a and b are specified to the same field.
func samePrecision(a, b temporal, isTime bool) bool {
	_, na := a.components(isTime)
	_, nb := b.components(isTime)
	return na == nb
}

// calUnit is a calendar duration unit for date/time arithmetic.
type calUnit uint8

const (
	cuNone calUnit = iota
	cuYear
	cuMonth
	cuWeek
	cuDay
	cuHour
	cuMinute
	cuSecond
	cuMillisecond
)

// calendarUnits maps FHIRPath calendar duration keywords to units.
var calendarUnits = map[string]calUnit{
	"year": cuYear, "years": cuYear, "month": cuMonth, "months": cuMonth,
	"week": cuWeek, "weeks": cuWeek, "day": cuDay, "days": cuDay,
	"hour": cuHour, "hours": cuHour, "minute": cuMinute, "minutes": cuMinute,
	"second": cuSecond, "seconds": cuSecond, "millisecond": cuMillisecond, "milliseconds": cuMillisecond,
}

// ucumTimeUnits are the UCUM codes that may be added to a date/time: the
// definite durations. 'mo' and 'a' are averages and are refused.
var ucumTimeUnits = map[string]calUnit{
	"wk": cuWeek, "d": cuDay, "h": cuHour, "min": cuMinute, "s": cuSecond, "ms": cuMillisecond,
}

func (u calUnit) prec() precision {
	switch u {
	case cuYear:
		return precYear
	case cuMonth:
		return precMonth
	case cuWeek, cuDay:
		return precDay
	case cuHour:
		return precHour
	case cuMinute:
		return precMinute
	case cuSecond:
		return precSecond
	default:
		return precMillis
	}
}

var errTimeUnit = errors.New("a Time cannot be shifted by years, months, weeks or days")

// addDuration returns d shifted by v units (v may be negative). The result
// keeps d's precision; fractions of units above a second are dropped.
func addDuration(d temporal, isTime, isDate bool, v Decimal, u calUnit) (temporal, error) {
	if isTime && u <= cuDay {
		return temporal{}, errTimeUnit
	}
	// A Date moves by whole days at most.
	if isDate && u > cuDay {
		ms := map[calUnit]int64{cuHour: 3600000, cuMinute: 60000, cuSecond: 1000, cuMillisecond: 1}[u]
		v = v.Mul(DecimalFromInt(ms))
		v, _ = v.Div(DecimalFromInt(86400000))
		u = cuDay
	}
	var n int64
	var nanos int64
	switch u {
	case cuSecond:
		w := v.Truncate()
		n, _ = w.Int64()
		f := v.Sub(w).Mul(DecimalFromInt(1e9)).Truncate()
		nanos, _ = f.Int64()
	case cuMillisecond:
		w := v.Truncate()
		n, _ = w.Int64()
		nanos = n * 1e6
		n = 0
		u = cuSecond
	default:
		n, _ = v.Truncate().Int64()
	}
	t := time.Date(d.Year, time.Month(max(d.Month, 1)), max(d.Day, 1), d.Hour, d.Minute, d.Second, d.Nanos, time.UTC)
	if isTime {
		t = time.Date(2000, 1, 1, d.Hour, d.Minute, d.Second, d.Nanos, time.UTC)
	}
	switch u {
	case cuYear, cuMonth:
		months := int(n)
		if u == cuYear {
			months *= 12
		}
		y, m := t.Year(), int(t.Month())-1+months
		y += m / 12
		m %= 12
		if m < 0 {
			m += 12
			y--
		}
		day := min(t.Day(), daysIn(y, m+1))
		t = time.Date(y, time.Month(m+1), day, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	case cuWeek:
		t = t.AddDate(0, 0, int(n)*7)
	case cuDay:
		t = t.AddDate(0, 0, int(n))
	case cuHour:
		t = t.Add(time.Duration(n) * time.Hour)
	case cuMinute:
		t = t.Add(time.Duration(n) * time.Minute)
	case cuSecond:
		t = t.Add(time.Duration(n)*time.Second + time.Duration(nanos))
	}
	r := d
	if !isTime {
		r.Year = t.Year()
		if d.Prec >= precMonth {
			r.Month = int(t.Month())
		}
		if d.Prec >= precDay {
			r.Day = t.Day()
		}
	}
	if d.Prec >= precHour || isTime {
		r.Hour = t.Hour()
	}
	if d.Prec >= precMinute {
		r.Minute = t.Minute()
	}
	if d.Prec >= precSecond {
		r.Second = t.Second()
	}
	if d.Prec >= precMillis {
		r.Nanos = t.Nanosecond()
	}
	if !isTime && (r.Year < 1 || r.Year > 9999) {
		return temporal{}, errors.New("date/time arithmetic out of range")
	}
	return r, nil
}

// precisionDigits is what precision() returns for a date/time value.
func precisionDigits(d temporal, isTime bool) int {
	if isTime {
		switch d.Prec {
		case precHour:
			return 2
		case precMinute:
			return 4
		case precSecond:
			return 6
		default:
			return 9
		}
	}
	return [...]int{0, 4, 6, 8, 10, 12, 14, 17}[d.Prec]
}

// precFromDigits maps a boundary precision in digits to a precision.
func precFromDigits(n int, isTime bool) (precision, bool) {
	if isTime {
		switch n {
		case 2:
			return precHour, true
		case 4:
			return precMinute, true
		case 6:
			return precSecond, true
		case 9:
			return precMillis, true
		}
		return 0, false
	}
	switch n {
	case 4:
		return precYear, true
	case 6:
		return precMonth, true
	case 8:
		return precDay, true
	case 10:
		return precHour, true
	case 12:
		return precMinute, true
	case 14:
		return precSecond, true
	case 17:
		return precMillis, true
	}
	return 0, false
}

// boundary returns the earliest (high=false) or latest instant d may stand
// for, to precision p. A date-time without an offset takes the widest
// offsets (+14:00 low, -12:00 high) when p has a clock.
func boundary(d temporal, isTime, isDate bool, p precision, high bool) temporal {
	r := d
	if !isTime {
		if d.Prec < precMonth {
			r.Month = map[bool]int{false: 1, true: 12}[high]
		}
		if d.Prec < precDay {
			r.Day = 1
			if high {
				r.Day = daysIn(r.Year, r.Month)
			}
		}
	}
	if d.Prec < precHour && (isTime || !isDate) {
		r.Hour = map[bool]int{false: 0, true: 23}[high]
	}
	if d.Prec < precMinute {
		r.Minute = map[bool]int{false: 0, true: 59}[high]
	}
	if d.Prec < precSecond {
		r.Second = map[bool]int{false: 0, true: 59}[high]
	}
	if d.Prec < precMillis {
		r.Nanos = map[bool]int{false: 0, true: 999000000}[high]
		r.Frac = 3
	} else if r.Frac < 3 {
		r.Frac = 3
	}
	r.Prec = p
	if !isTime && !isDate && p >= precHour && d.TZ == tzNone {
		r.TZ = tzOffset
		r.TZMin = 14 * 60
		if high {
			r.TZMin = -12 * 60
		}
	}
	return r
}
