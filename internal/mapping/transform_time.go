package mapping

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parsedTime is a date or date-time as an EHR wrote it: its precision, and
// for date-times whether it carried a zone.
type parsedTime struct {
	prec  int // 1 year, 2 month, 3 day, 4 minute, 5 second
	frac  string
	hasTZ bool
	t     time.Time // in the zone written, or in loc when none was
	year  int
	month int
	day   int
}

const (
	precYear = 1 + iota
	precMonth
	precDay
	precMinute
	precSecond
)

// parseLooseTime reads FHIR date/dateTime/instant text and the forms EHRs
// send instead: a space for 'T', no seconds, no zone, "+hhmm" zones,
// HL7 v2 "YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]", US "MM/DD/YYYY" and
// "YYYY/MM/DD". A value without a zone is read in loc.
func parseLooseTime(s string, loc *time.Location) (parsedTime, error) {
	if p, ok := parseFHIRTime(s, loc); ok {
		return p, nil
	}
	return parseLooseTimeSlow(s, loc)
}

// parseFHIRTime reads the shapes FHIR servers send nearly always,
// YYYY-MM-DD and YYYY-MM-DDThh:mm:ss[.s+][Z|±hh:mm], with the result
// parseLooseTimeSlow gives for them; ok is false for anything else.
func parseFHIRTime(s string, loc *time.Location) (p parsedTime, ok bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return p, false
	}
	y, ok1 := digits4(s[0:4])
	m, ok2 := digits2(s[5:7])
	d, ok3 := digits2(s[8:10])
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return p, false
	}
	p.year, p.month, p.day = y, m, d
	if len(s) == 10 {
		p.prec = precDay
		p.t = time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
		return p, true
	}
	// T hh:mm:ss
	if len(s) < 19 || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return p, false
	}
	hh, ok1 := digits2(s[11:13])
	mm, ok2 := digits2(s[14:16])
	ss, ok3 := digits2(s[17:19])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return p, false
	}
	rest := s[19:]
	nanos := 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 {
			return p, false
		}
		p.frac = rest[1:n]
		for i := 0; i < 9; i++ {
			nanos *= 10
			if i < len(p.frac) {
				nanos += int(p.frac[i] - '0')
			}
		}
		rest = rest[n:]
	}
	zone := loc
	switch {
	case rest == "":
	case rest == "Z":
		zone, p.hasTZ = time.UTC, true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		zh, ok1 := digits2(rest[1:3])
		zm, ok2 := digits2(rest[4:6])
		if !ok1 || !ok2 || zh > 14 || zm > 59 {
			return p, false
		}
		off := zh*3600 + zm*60
		if rest[0] == '-' {
			off = -off
		}
		zone, p.hasTZ = time.FixedZone("", off), true
	default:
		return p, false
	}
	if ss == 60 {
		ss = 59
	}
	p.prec = precSecond
	p.t = time.Date(y, time.Month(m), d, hh, mm, ss, nanos, zone)
	return p, true
}

// isUTCDateTime reports whether s is a FHIR date-time in UTC that the
// datetime transform writes back as the same text when the output zone is
// UTC (or the zone sent): YYYY-MM-DDThh:mm:ss[.s]Z with a valid date, no
// leap second (written as :59) and at most nine fraction digits (more are
// cut).
func isUTCDateTime(s string) bool {
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return false
	}
	y, ok1 := digits4(s[0:4])
	m, ok2 := digits2(s[5:7])
	d, ok3 := digits2(s[8:10])
	hh, ok4 := digits2(s[11:13])
	mm, ok5 := digits2(s[14:16])
	ss, ok6 := digits2(s[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || m < 1 || m > 12 || d < 1 || hh > 23 || mm > 59 || ss > 59 {
		return false
	}
	if d > 28 && d > daysIn(y, m) {
		return false
	}
	if frac := s[19 : len(s)-1]; frac != "" {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return false
		}
		for i := 1; i < len(frac); i++ {
			if !isDigit(frac[i]) {
				return false
			}
		}
	}
	return true
}

func digits2(s string) (int, bool) {
	if !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

func digits4(s string) (int, bool) {
	a, ok1 := digits2(s[:2])
	b, ok2 := digits2(s[2:])
	return a*100 + b, ok1 && ok2
}

// parseLooseTimeSlow is parseLooseTime for every shape.
func parseLooseTimeSlow(s string, loc *time.Location) (parsedTime, error) {
	s = strings.TrimSpace(s)
	var p parsedTime
	bad := func() (parsedTime, error) { return p, fmt.Errorf("not a date or date-time") }
	if s == "" {
		return bad()
	}
	// US M/D/YYYY and YYYY/MM/DD.
	if strings.Count(s, "/") == 2 {
		parts := strings.SplitN(s, " ", 2)
		f := strings.Split(parts[0], "/")
		var y, m, d int
		var err1, err2, err3 error
		if len(f[0]) == 4 {
			y, err1 = strconv.Atoi(f[0])
			m, err2 = strconv.Atoi(f[1])
			d, err3 = strconv.Atoi(f[2])
		} else {
			m, err1 = strconv.Atoi(f[0])
			d, err2 = strconv.Atoi(f[1])
			y, err3 = strconv.Atoi(f[2])
		}
		if err1 != nil || err2 != nil || err3 != nil || y < 1000 {
			return bad()
		}
		rest := ""
		if len(parts) == 2 {
			rest = "T" + strings.TrimSpace(parts[1])
		}
		s = fmt.Sprintf("%04d-%02d-%02d%s", y, m, d, rest)
	}
	// HL7 v2 compact form (ISO text has a '-' after the year).
	if len(s) >= 6 && isDigits(s[:6]) {
		conv, ok := hl7ToISO(s)
		if !ok {
			return bad()
		}
		s = conv
	}
	s = strings.Replace(s, " ", "T", 1)
	date, clock, hasClock := strings.Cut(s, "T")
	df := strings.Split(date, "-")
	if len(df) == 0 || len(df[0]) != 4 || !isDigits(df[0]) {
		return bad()
	}
	p.year, _ = strconv.Atoi(df[0])
	p.month, p.day = 1, 1
	p.prec = precYear
	if len(df) > 1 {
		if len(df[1]) != 2 || !isDigits(df[1]) {
			return bad()
		}
		p.month, _ = strconv.Atoi(df[1])
		p.prec = precMonth
	}
	if len(df) > 2 {
		if len(df[2]) != 2 || !isDigits(df[2]) {
			return bad()
		}
		p.day, _ = strconv.Atoi(df[2])
		p.prec = precDay
	}
	if len(df) > 3 || p.month < 1 || p.month > 12 || p.day < 1 || p.day > daysIn(p.year, p.month) {
		return bad()
	}
	if !hasClock {
		p.t = time.Date(p.year, time.Month(p.month), p.day, 0, 0, 0, 0, time.UTC)
		return p, nil
	}
	if p.prec != precDay {
		return bad()
	}
	// Zone.
	zone := loc
	if strings.HasSuffix(clock, "Z") {
		clock, zone, p.hasTZ = clock[:len(clock)-1], time.UTC, true
	} else if i := strings.LastIndexAny(clock, "+-"); i > 0 {
		z := strings.ReplaceAll(clock[i+1:], ":", "")
		if len(z) != 4 || !isDigits(z) {
			return bad()
		}
		h, _ := strconv.Atoi(z[:2])
		m, _ := strconv.Atoi(z[2:])
		if h > 14 || m > 59 {
			return bad()
		}
		off := h*3600 + m*60
		if clock[i] == '-' {
			off = -off
		}
		zone, p.hasTZ = time.FixedZone("", off), true
		clock = clock[:i]
	}
	cf := strings.Split(clock, ":")
	if len(cf) < 2 || len(cf) > 3 || len(cf[0]) != 2 || len(cf[1]) != 2 || !isDigits(cf[0]) || !isDigits(cf[1]) {
		return bad()
	}
	hh, _ := strconv.Atoi(cf[0])
	mm, _ := strconv.Atoi(cf[1])
	ss, nanos := 0, 0
	p.prec = precMinute
	if len(cf) == 3 {
		sec, frac, hasFrac := strings.Cut(cf[2], ".")
		if len(sec) != 2 || !isDigits(sec) || (hasFrac && (frac == "" || !isDigits(frac))) {
			return bad()
		}
		ss, _ = strconv.Atoi(sec)
		p.prec = precSecond
		if hasFrac {
			p.frac = frac
			n, _ := strconv.Atoi((frac + "000000000")[:9])
			nanos = n
		}
	}
	if hh > 23 || mm > 59 || ss > 60 {
		return bad()
	}
	if ss == 60 {
		ss = 59
	}
	p.t = time.Date(p.year, time.Month(p.month), p.day, hh, mm, ss, nanos, zone)
	return p, nil
}

// hl7ToISO rewrites YYYYMMDD[HHMM[SS[.S+]]][+/-ZZZZ] as ISO text.
func hl7ToISO(s string) (string, bool) {
	main, zone := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		main, zone = s[:i], s[i:]
	}
	digits, frac, _ := strings.Cut(main, ".")
	if !isDigits(digits) {
		return "", false
	}
	var b strings.Builder
	switch len(digits) {
	case 4, 6, 8, 12, 14:
	default:
		return "", false
	}
	b.WriteString(digits[:4])
	if len(digits) >= 6 {
		b.WriteString("-" + digits[4:6])
	}
	if len(digits) >= 8 {
		b.WriteString("-" + digits[6:8])
	}
	if len(digits) >= 12 {
		b.WriteString("T" + digits[8:10] + ":" + digits[10:12])
	}
	if len(digits) == 14 {
		b.WriteString(":" + digits[12:14])
		if frac != "" {
			b.WriteString("." + frac)
		}
	}
	if zone != "" && len(digits) >= 12 {
		if len(zone) != 5 {
			return "", false
		}
		b.WriteString(zone[:3] + ":" + zone[3:])
	}
	return b.String(), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// formatDate writes the date part at the value's precision (at most day).
func (p parsedTime) formatDate() string {
	var buf [16]byte
	return string(p.appendDate(buf[:0]))
}

func (p parsedTime) appendDate(b []byte) []byte {
	b = appendPadded(b, p.year, 4)
	if p.prec >= precMonth {
		b = appendPadded(append(b, '-'), p.month, 2)
	}
	if p.prec >= precDay {
		b = appendPadded(append(b, '-'), p.day, 2)
	}
	return b
}

// appendPadded appends n in decimal with at least width digits (as
// fmt's %0*d; n is not negative here, but is written as fmt would).
func appendPadded(b []byte, n, width int) []byte {
	if n < 0 {
		return fmt.Appendf(b, "%0*d", width, n)
	}
	var d [20]byte
	i := len(d)
	for n >= 10 {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
	}
	i--
	d[i] = byte('0' + n)
	for len(d)-i < width {
		i--
		d[i] = '0'
	}
	return append(b, d[i:]...)
}

// formatDateTime writes a FHIR dateTime at the value's precision: dates as
// they are; times (always with seconds, as FHIR requires) in loc.
func (p parsedTime) formatDateTime(loc *time.Location) string {
	var buf [48]byte
	return string(p.appendDateTime(buf[:0], loc))
}

// formatDateTimeSame is formatDateTime that returns s itself when the
// result is the same text (so an unchanged value stays the same string).
func (p parsedTime) formatDateTimeSame(s string, loc *time.Location) string {
	var buf [48]byte
	if b := p.appendDateTime(buf[:0], loc); string(b) != s {
		return string(b)
	}
	return s
}

func (p parsedTime) appendDateTime(b []byte, loc *time.Location) []byte {
	if p.prec <= precDay {
		return p.appendDate(b)
	}
	t := p.t
	if loc != nil {
		t = t.In(loc)
	}
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		b = t.AppendFormat(b, "2006-01-02T15:04:05")
	} else {
		b = appendPadded(b, year, 4)
		b = appendPadded(append(b, '-'), int(month), 2)
		b = appendPadded(append(b, '-'), day, 2)
		b = appendPadded(append(b, 'T'), hour, 2)
		b = appendPadded(append(b, ':'), minute, 2)
		b = appendPadded(append(b, ':'), sec, 2)
	}
	if p.frac != "" {
		n := min(len(p.frac), 9)
		var ns [9]byte
		x := t.Nanosecond()
		for i := 8; i >= 0; i-- {
			ns[i] = byte('0' + x%10)
			x /= 10
		}
		b = append(b, '.')
		b = append(b, ns[:n]...)
	}
	_, off := t.Zone()
	if off == 0 {
		return append(b, 'Z')
	}
	// As time's "-07:00": hours and minutes of the offset.
	zone := off / 60
	if zone < 0 {
		b = append(b, '-')
		zone = -zone
	} else {
		b = append(b, '+')
	}
	b = appendPadded(b, zone/60, 2)
	return appendPadded(append(b, ':'), zone%60, 2)
}

func init() {
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "datetime", Summary: "writes a date-time as FHIR text in the practice's time zone (or UTC), keeping its precision; reads EHR variants (no seconds, no zone, HL7 v2 form, MM/DD/YYYY)",
			Args: []ArgInfo{{Name: "zone", Summary: "practice (default): the practice's time zone; utc; keep: the offset as sent"}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			zone, err := argEnum(args, cc, "zone", "practice", "practice", "utc", "keep")
			if err != nil {
				return nil, err
			}
			return perItem(func(tc *tctx, v any) (any, error) {
				s, ok := v.(string)
				if !ok {
					return nil, failf("not text")
				}
				// A UTC date-time in FHIR form written in UTC (or as sent)
				// stays as it is: the common case, without the time
				// arithmetic.
				if (zone == "utc" || zone == "keep" || zone == "practice" && tc.loc == time.UTC) && isUTCDateTime(s) {
					return v, nil
				}
				p, err := parseLooseTime(s, tc.loc)
				if err != nil {
					return nil, failf("%v", err)
				}
				var loc *time.Location
				switch zone {
				case "practice":
					loc = tc.loc
				case "utc":
					loc = time.UTC
				}
				if out := p.formatDateTimeSame(s, loc); out != s {
					return out, nil
				}
				return v, nil // unchanged: no new value to box
			}), nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "date", Summary: "writes a date as FHIR text (YYYY, YYYY-MM or YYYY-MM-DD), keeping its precision; a date-time gives its calendar day as written",
			Args: []ArgInfo{{Name: "zone", Summary: "keep (default): the day as written; practice: the day in the practice's time zone"}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			zone, err := argEnum(args, cc, "zone", "keep", "keep", "practice")
			if err != nil {
				return nil, err
			}
			return perItem(func(tc *tctx, v any) (any, error) {
				s, ok := v.(string)
				if !ok {
					return nil, failf("not text")
				}
				p, err := parseLooseTime(s, tc.loc)
				if err != nil {
					return nil, failf("%v", err)
				}
				if p.prec > precDay {
					t := p.t
					if zone == "practice" {
						t = t.In(tc.loc)
					}
					return t.Format("2006-01-02"), nil
				}
				if p.prec == precDay && len(s) == 10 && s[4] == '-' && s[7] == '-' {
					return s, nil // YYYY-MM-DD as it came (what formatDate writes)
				}
				return p.formatDate(), nil
			}), nil
		},
	})
}
