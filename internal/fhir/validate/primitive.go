package validate

// Hand-written checks of the FHIR R4 primitive formats. Each follows the
// regex the type's StructureDefinition gives (model.Type.Pattern; a test
// compares them on many inputs) and, for dates, also rejects days a month
// does not have.

// isJavaSpace reports the characters \s matches in the R4 regexes.
func isJavaSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validCode: [^\s]+(\s[^\s]+)*
func validCode(s string) bool {
	if s == "" || isJavaSpace(s[0]) || isJavaSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isJavaSpace(s[i]) && isJavaSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// validID: [A-Za-z0-9\-\.]{1,64}
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validURI: \S* (uri, url, canonical); emptiness is checked apart.
func validURI(s string) bool {
	for i := 0; i < len(s); i++ {
		if isJavaSpace(s[i]) {
			return false
		}
	}
	return true
}

// validString: [ \r\n\t\S]+ — anything but vertical tab and form feed.
func validString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\v' || s[i] == '\f' {
			return false
		}
	}
	return true
}

// hasControl reports characters below U+0020 other than tab, CR and LF,
// which R4 strings SHOULD not contain.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}

// onlySpace reports a string made only of whitespace.
func onlySpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isJavaSpace(s[i]) {
			return false
		}
	}
	return true
}

// validOID: urn:oid:[0-2](\.(0|[1-9][0-9]*))+
func validOID(s string) bool {
	const prefix = "urn:oid:"
	if len(s) < len(prefix)+3 || s[:len(prefix)] != prefix {
		return false
	}
	s = s[len(prefix):]
	if s[0] < '0' || s[0] > '2' {
		return false
	}
	s = s[1:]
	if s == "" {
		return false
	}
	for s != "" {
		if s[0] != '.' || len(s) < 2 || !isDigit(s[1]) {
			return false
		}
		j := 2
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if s[1] == '0' && j > 2 {
			return false
		}
		s = s[j:]
	}
	return true
}

// validUUID: urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
func validUUID(s string) bool {
	const prefix = "urn:uuid:"
	if len(s) != len(prefix)+36 || s[:len(prefix)] != prefix {
		return false
	}
	s = s[len(prefix):]
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(isDigit(c) || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// validBase64: (\s*([0-9a-zA-Z\+/=]){4}\s*)+, with '=' only as the final
// padding.
func validBase64(s string) bool {
	n, pad := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isJavaSpace(c):
			if n%4 != 0 { // whitespace only between groups of four
				return false
			}
			continue
		case c == '=':
			pad++
		case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '+' || c == '/':
			if pad > 0 {
				return false
			}
		default:
			return false
		}
		n++
	}
	return n > 0 && n%4 == 0 && pad <= 2
}

// num2 reads two digits.
func num2(s string) (int, bool) {
	if len(s) < 2 || !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// dateParts checks YYYY(-MM(-DD)?)? at the start of s (year 0001-9999) and
// returns how many parts it found and the length used; parts is 0 when
// invalid.
func dateParts(s string) (parts, used int) {
	if len(s) < 4 || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) || !isDigit(s[3]) || s[:4] == "0000" {
		return 0, 0
	}
	year := int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	if len(s) == 4 || s[4] != '-' {
		return 1, 4
	}
	month, ok := num2(s[5:])
	if !ok || month < 1 || month > 12 {
		return 0, 0
	}
	if len(s) == 7 || s[7] != '-' {
		return 2, 7
	}
	day, ok := num2(s[8:])
	if !ok || day < 1 || day > daysIn(year, month) {
		return 0, 0
	}
	return 3, 10
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// timeLen checks hh:mm:ss(.f+)? at the start of s and returns its length,
// 0 when invalid.
func timeLen(s string) int {
	h, ok := num2(s)
	if !ok || h > 23 || len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0
	}
	if m, ok := num2(s[3:]); !ok || m > 59 {
		return 0
	}
	if sec, ok := num2(s[6:]); !ok || sec > 60 {
		return 0
	}
	n := 8
	if n < len(s) && s[n] == '.' {
		n++
		if n >= len(s) || !isDigit(s[n]) {
			return 0
		}
		for n < len(s) && isDigit(s[n]) {
			n++
		}
	}
	return n
}

// validZone: Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)
func validZone(s string) bool {
	if s == "Z" {
		return true
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return false
	}
	h, ok1 := num2(s[1:])
	m, ok2 := num2(s[4:])
	return ok1 && ok2 && (h <= 13 && m <= 59 || h == 14 && m == 0)
}

// validDate: YYYY, YYYY-MM or YYYY-MM-DD.
func validDate(s string) bool {
	parts, used := dateParts(s)
	return parts > 0 && used == len(s)
}

// validDateTime: a date, or YYYY-MM-DDThh:mm:ss(.f+)? with a time zone.
func validDateTime(s string) bool {
	parts, used := dateParts(s)
	if parts == 0 {
		return false
	}
	if used == len(s) {
		return true
	}
	if parts != 3 || s[used] != 'T' {
		return false
	}
	return validTimeWithZone(s[used+1:])
}

// validInstant: YYYY-MM-DDThh:mm:ss(.f+)? with a time zone.
func validInstant(s string) bool {
	parts, used := dateParts(s)
	return parts == 3 && used < len(s) && s[used] == 'T' && validTimeWithZone(s[used+1:])
}

func validTimeWithZone(s string) bool {
	n := timeLen(s)
	return n > 0 && validZone(s[n:])
}

// validTime: hh:mm:ss(.f+)?
func validTime(s string) bool {
	n := timeLen(s)
	return n > 0 && n == len(s)
}

// integerValue parses a JSON number literal as a FHIR integer
// (-?([0]|([1-9][0-9]*)), 32-bit).
func integerValue(lit string) (v int64, ok bool) {
	neg := false
	if lit != "" && lit[0] == '-' {
		neg, lit = true, lit[1:]
	}
	if lit == "" || len(lit) > 11 {
		return 0, false
	}
	for i := 0; i < len(lit); i++ {
		if !isDigit(lit[i]) {
			return 0, false
		}
		v = v*10 + int64(lit[i]-'0')
	}
	if neg {
		v = -v
	}
	if v < -1<<31 || v > 1<<31-1 {
		return 0, false
	}
	return v, true
}

// validXHTML checks the little of Narrative.div the validator can without
// parsing XHTML: a div element in the XHTML namespace.
func validXHTML(s string) bool {
	i := 0
	for i < len(s) && isJavaSpace(s[i]) {
		i++
	}
	s = s[i:]
	if len(s) < 5 || s[:4] != "<div" || !(s[4] == ' ' || s[4] == '>' || s[4] == '\t' || s[4] == '\n' || s[4] == '\r' || s[4] == '/') {
		return false
	}
	end := 0
	for end < len(s) && s[end] != '>' {
		end++
	}
	const ns = "http://www.w3.org/1999/xhtml"
	tag := s[:end]
	for j := 0; j+len(ns) <= len(tag); j++ {
		if tag[j:j+len(ns)] == ns {
			return true
		}
	}
	return false
}
