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
	switch p.prec {
	case precYear:
		return fmt.Sprintf("%04d", p.year)
	case precMonth:
		return fmt.Sprintf("%04d-%02d", p.year, p.month)
	}
	return fmt.Sprintf("%04d-%02d-%02d", p.year, p.month, p.day)
}

// formatDateTime writes a FHIR dateTime at the value's precision: dates as
// they are; times (always with seconds, as FHIR requires) in loc.
func (p parsedTime) formatDateTime(loc *time.Location) string {
	if p.prec <= precDay {
		return p.formatDate()
	}
	t := p.t
	if loc != nil {
		t = t.In(loc)
	}
	b := make([]byte, 0, 32)
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if p.frac != "" {
		ns := fmt.Sprintf("%09d", t.Nanosecond())
		n := len(p.frac)
		if n > 9 {
			n = 9
		}
		b = append(b, '.')
		b = append(b, ns[:n]...)
	}
	_, off := t.Zone()
	if off == 0 {
		b = append(b, 'Z')
	} else {
		b = t.AppendFormat(b, "-07:00")
	}
	return string(b)
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
				return p.formatDateTime(loc), nil
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
				return p.formatDate(), nil
			}), nil
		},
	})
}
