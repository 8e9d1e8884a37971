package searchparam

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Fold normalizes text for string search: lower case, with accents removed
// from Latin letters ("Müller" -> "muller", "ß" -> "ss"). Both index values
// and search values go through it, so "jose", "José" and "JOSE" find "José".
func Fold(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if c >= 'A' && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return s
		}
		b := make([]byte, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for _, r := range s {
		r = unicode.ToLower(r)
		if r >= 0xC0 && r <= 0x17F {
			if f := latinFold(r); f != "" {
				sb.WriteString(f)
				continue
			}
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// latinFold maps lower-case Latin-1 and Latin Extended-A letters to ASCII.
func latinFold(r rune) string {
	switch r {
	case 'à', 'á', 'â', 'ã', 'ä', 'å', 'ā', 'ă', 'ą':
		return "a"
	case 'æ':
		return "ae"
	case 'ç', 'ć', 'ĉ', 'ċ', 'č':
		return "c"
	case 'ď', 'đ', 'ð':
		return "d"
	case 'è', 'é', 'ê', 'ë', 'ē', 'ĕ', 'ė', 'ę', 'ě':
		return "e"
	case 'ĝ', 'ğ', 'ġ', 'ģ':
		return "g"
	case 'ĥ', 'ħ':
		return "h"
	case 'ì', 'í', 'î', 'ï', 'ĩ', 'ī', 'ĭ', 'į', 'ı':
		return "i"
	case 'ĵ':
		return "j"
	case 'ķ':
		return "k"
	case 'ĺ', 'ļ', 'ľ', 'ŀ', 'ł':
		return "l"
	case 'ñ', 'ń', 'ņ', 'ň':
		return "n"
	case 'ò', 'ó', 'ô', 'õ', 'ö', 'ø', 'ō', 'ŏ', 'ő':
		return "o"
	case 'œ':
		return "oe"
	case 'ŕ', 'ŗ', 'ř':
		return "r"
	case 'ś', 'ŝ', 'ş', 'š':
		return "s"
	case 'ß':
		return "ss"
	case 'ţ', 'ť', 'ŧ':
		return "t"
	case 'ù', 'ú', 'û', 'ü', 'ũ', 'ū', 'ŭ', 'ů', 'ű', 'ų':
		return "u"
	case 'ŵ':
		return "w"
	case 'ý', 'ÿ', 'ŷ':
		return "y"
	case 'ź', 'ż', 'ž':
		return "z"
	case 'þ':
		return "th"
	}
	return ""
}

// DateRange returns the first and last instant (inclusive) a FHIR date,
// dateTime or instant covers, by its precision: "2020" covers the year,
// "2020-01-02" the day, "2020-01-02T10:00:00Z" the second,
// "2020-01-02T10:00:00.123Z" the millisecond. Values without a time zone are
// read as UTC. Minutes without seconds ("T10:30") are accepted, as search
// values use them.
func DateRange(s string) (lo, hi time.Time, ok bool) {
	n := len(s)
	if n < 4 {
		return
	}
	year, ok1 := digits(s, 0, 4)
	if !ok1 {
		return
	}
	if n == 4 {
		return utcDay(year, 1, 1, 0), utcDay(year+1, 1, 1, 0).Add(-1), true
	}
	if n < 7 || s[4] != '-' {
		return
	}
	month, ok1 := digits(s, 5, 2)
	if !ok1 || month < 1 || month > 12 {
		return
	}
	if n == 7 {
		next := utcDay(year+1, 1, 1, 0)
		if month < 12 {
			next = utcDay(year, month+1, 1, 0)
		}
		return utcDay(year, month, 1, 0), next.Add(-1), true
	}
	if n < 10 || s[7] != '-' {
		return
	}
	day, ok1 := digits(s, 8, 2)
	if !ok1 || day < 1 || day > daysIn(year, month) {
		return
	}
	if n == 10 {
		return utcDay(year, month, day, 0), utcDay(year, month, day, 86400).Add(-1), true
	}
	if s[10] != 'T' || n < 16 || s[13] != ':' {
		return
	}
	hour, ok1 := digits(s, 11, 2)
	minute, ok2 := digits(s, 14, 2)
	if !ok1 || !ok2 || hour > 23 || minute > 59 {
		return
	}
	i := 16
	sec, nanos := 0, 0
	width := time.Minute
	if i < n && s[i] == ':' {
		v, ok1 := digits(s, i+1, 2)
		if !ok1 || v > 60 {
			return
		}
		sec = v
		if sec == 60 { // leap second: clamp
			sec = 59
		}
		i += 3
		width = time.Second
		if i < n && s[i] == '.' {
			i++
			start := i
			for i < n && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			frac := i - start
			if frac == 0 || frac > 9 {
				return
			}
			v, _ := digits(s, start, frac)
			for k := 0; k < frac; k++ {
				width /= 10
			}
			nanos = v
			for k := frac; k < 9; k++ {
				nanos *= 10
			}
		}
	}
	offset := 0
	switch {
	case i == n:
	case s[i] == 'Z' && i+1 == n:
	case (s[i] == '+' || s[i] == '-') && i+6 == n && s[i+3] == ':':
		oh, ok1 := digits(s, i+1, 2)
		om, ok2 := digits(s, i+4, 2)
		if !ok1 || !ok2 || oh > 14 || om > 59 {
			return
		}
		offset = oh*3600 + om*60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return
	}
	lo = time.Unix(unixDay(year, month, day)+int64(hour*3600+minute*60+sec-offset), int64(nanos)).UTC()
	return lo, lo.Add(width - 1), true
}

func digits(s string, at, n int) (int, bool) {
	if at+n > len(s) {
		return 0, false
	}
	v := 0
	for k := at; k < at+n; k++ {
		c := s[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// daysIn is the number of days of a month (proleptic Gregorian calendar,
// as package time counts).
func daysIn(year, month int) int {
	if month == 2 {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	if month == 4 || month == 6 || month == 9 || month == 11 {
		return 30
	}
	return 31
}

// The dates DateRange builds used to come from time.Date and AddDate,
// which work out the calendar through several layers and showed in
// extraction profiles; the validated fields let the instant be computed
// directly. time.Unix(...).UTC() and time.Date(..., time.UTC) give the
// same Time for the same instant.

// unixDay returns the Unix time (seconds) of 00:00 UTC of a valid date of
// the proleptic Gregorian calendar, by the days-from-civil method: count
// in 400-year eras of 146097 days, with years starting in March so that
// the leap day comes last.
func unixDay(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era-- // floor division
	}
	yoe := y - era*400 // [0, 399]
	m := int64(month)
	if m > 2 {
		m -= 3
	} else {
		m += 9
	}
	doy := (153*m+2)/5 + int64(day) - 1    // day of the March-based year, [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy // day of the era, [0, 146096]
	return (era*146097 + doe - 719468) * 86400
}

// utcDay is the time plus seconds after 00:00 UTC of a valid date.
func utcDay(year, month, day int, plus int64) time.Time {
	return time.Unix(unixDay(year, month, day)+plus, 0).UTC()
}
