package v2fhir

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file holds the conversions rules name with "as": how one v2 value
// becomes one FHIR primitive.

// conversion turns a value into a FHIR primitive. Most read a string
// (extract) and convert it (make); fromVal ones need the value's parts.
type conversion struct {
	name    string
	doc     string
	whole   bool                                   // extract reads the whole value (text), not its first part
	make    func(r *run, s string) (*node, string) // node, or a problem
	fromVal func(r *run, v val) (*node, string)
}

func (c *conversion) extract(v val) string {
	if c.whole {
		return v.text()
	}
	return v.atom()
}

var conversions = map[string]*conversion{}

func init() {
	for _, c := range []*conversion{
		{name: "string", doc: "the value's first part, trimmed", make: makeString},
		{name: "text", doc: "the whole value (all components), trimmed: free text", whole: true, make: makeString},
		{name: "code", doc: "a FHIR code: trimmed, inner runs of white space made one space", make: makeCode},
		{name: "uri", doc: "a URI (must hold no white space)", make: makeURI},
		{name: "system", doc: "a coding system name (CWE.3) as a URI: table CodingSystem, HL7nnnn as terminology.hl7.org's v2-nnnn, an OID as urn:oid:, a URI as it is, else urn:mediflow:v2:cs:<name>", make: makeSystem},
		{name: "identifier-system", doc: "an assigning authority (HD: namespace, universal id, its type) as an Identifier.system: Options.IdentifierSystems, table AssigningAuthority, urn:oid:/urn:uuid:/the URI for an ISO/UUID/URI universal id, else Options.DefaultSystem + the namespace", fromVal: makeIdentifierSystem},
		{name: "decimal", doc: "a number (NM), written as a JSON number with its precision", make: makeDecimal},
		{name: "integer", doc: "a whole number", make: makeInteger},
		{name: "positiveInt", doc: "a whole number above 0", make: makePositiveInt},
		{name: "boolean", doc: "true or false (after the rule's table; Y/N also read)", make: makeBoolean},
		{name: "date", doc: "a v2 date/time (DTM, TS, DT) as a FHIR date, to the precision given (time of day dropped)", make: makeDate},
		{name: "dateTime", doc: "a v2 date/time as a FHIR dateTime, to the precision given; a time without a UTC offset takes the sender's (MSH-7) or Options.TimeZone, else UTC (with a warning)", make: makeDateTime},
		{name: "instant", doc: "a v2 date/time as a FHIR instant (seconds and offset padded as for dateTime); a date alone cannot be an instant and is left out with a warning", make: makeInstant},
		{name: "time", doc: "a v2 time (TM) as a FHIR time", make: makeTime},
		{name: "base64Binary", doc: "data already in base64 (ED.5), checked; white space removed", whole: true, make: makeBase64Binary},
		{name: "base64-text", doc: "the whole value as text, UTF-8, base64-encoded", whole: true, make: makeBase64Text},
	} {
		conversions[c.name] = c
	}
}

func conversionDocs() map[string]string {
	out := make(map[string]string, len(conversions))
	for k, c := range conversions {
		out[k] = c.doc
	}
	return out
}

func makeString(_ *run, s string) (*node, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, ""
	}
	return strNode(s), ""
}

func makeCode(_ *run, s string) (*node, string) {
	if !cleanCode(s) {
		s = strings.Join(strings.Fields(s), " ")
	}
	if s == "" {
		return nil, ""
	}
	return strNode(s), ""
}

// cleanCode reports whether s is already a FHIR code: no white space but
// single spaces between words.
func cleanCode(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\t', '\n', '\r', '\v', '\f':
			return false
		case ' ':
			if i == 0 || i == len(s)-1 || s[i+1] == ' ' {
				return false
			}
		}
	}
	return true
}

func makeURI(_ *run, s string) (*node, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, ""
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return nil, "not a URI"
	}
	return strNode(s), ""
}

var (
	oidRE     = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)
	hl7TabRE  = regexp.MustCompile(`^(?i:HL7)-?([0-9]{4})$`)
	uuidRE    = regexp.MustCompile(`^(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	decimalRE = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)
	intRE     = regexp.MustCompile(`^[+-]?[0-9]+$`)
)

func makeSystem(r *run, s string) (*node, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, ""
	}
	return strNode(r.c.set.systemURI(s)), ""
}

// systemURI turns a coding system name into a URI.
func (set *specSet) systemURI(name string) string {
	if e := set.codingSystems.lookup(name); e != nil {
		return e.Target
	}
	switch {
	case hl7TabRE.MatchString(name):
		return "http://terminology.hl7.org/CodeSystem/v2-" + hl7TabRE.FindStringSubmatch(name)[1]
	case oidRE.MatchString(name):
		return "urn:oid:" + name
	case isAbsoluteURI(name):
		return name
	}
	return "urn:mediflow:v2:cs:" + uriEscape(name)
}

func isAbsoluteURI(s string) bool {
	if strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "urn:")
}

// uriEscape percent-encodes what may not appear in a URI as we write it:
// white space, control characters, '%' and non-ASCII bytes.
func uriEscape(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '"' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '"' {
			sb.WriteByte('%')
			sb.WriteByte("0123456789ABCDEF"[c>>4])
			sb.WriteByte("0123456789ABCDEF"[c&0xf])
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// makeIdentifierSystem reads an HD (namespace, universal id, its type).
func makeIdentifierSystem(r *run, v val) (*node, string) {
	ns := strings.TrimSpace(v.comp(1).atom())
	uid := strings.TrimSpace(v.comp(2).atom())
	typ := strings.ToUpper(strings.TrimSpace(v.comp(3).atom()))
	opts := &r.c.opts
	if ns != "" {
		if s, ok := opts.IdentifierSystems[ns]; ok && s != "" {
			return strNode(s), ""
		}
	}
	if uid != "" {
		if s, ok := opts.IdentifierSystems[uid]; ok && s != "" {
			return strNode(s), ""
		}
	}
	if e := r.c.set.authorities.lookup(ns); ns != "" && e != nil {
		return strNode(e.Target), ""
	}
	if e := r.c.set.authorities.lookup(uid); uid != "" && e != nil {
		return strNode(e.Target), ""
	}
	if uid != "" {
		switch {
		case (typ == "ISO" || typ == "") && oidRE.MatchString(uid):
			return strNode("urn:oid:" + uid), ""
		case typ == "UUID" && uuidRE.MatchString(uid):
			return strNode("urn:uuid:" + strings.ToLower(uid)), ""
		case (typ == "URI" || typ == "URL" || typ == "") && isAbsoluteURI(uid):
			return strNode(uid), ""
		}
	}
	prefix := opts.DefaultSystem
	if prefix == "" {
		prefix = defaultSystemPrefix
	}
	switch {
	case ns != "":
		return strNode(prefix + uriEscape(ns)), ""
	case uid != "":
		return strNode(prefix + uriEscape(uid)), ""
	}
	return nil, ""
}

// normDecimal writes a v2 number as a FHIR decimal, keeping its digits.
func normDecimal(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if !decimalRE.MatchString(s) {
		return "", false
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg = true
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if hasDot && frac != "" {
		out += "." + frac
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return out, true
}

func isNumeric(s string) bool { _, ok := normDecimal(s); return ok }

func makeDecimal(_ *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	d, ok := normDecimal(s)
	if !ok {
		return nil, "not a number"
	}
	return numNode(d), ""
}

func parseWhole(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if !intRE.MatchString(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 32)
	return n, err == nil
}

func makeInteger(_ *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	n, ok := parseWhole(s)
	if !ok {
		return nil, "not a whole number"
	}
	return numNode(strconv.FormatInt(n, 10)), ""
}

func makePositiveInt(_ *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	n, ok := parseWhole(s)
	if !ok || n < 1 {
		return nil, "not a whole number above 0"
	}
	return numNode(strconv.FormatInt(n, 10)), ""
}

func makeBoolean(_ *run, s string) (*node, string) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return nil, ""
	case "true", "y", "yes":
		return boolNode(true), ""
	case "false", "n", "no":
		return boolNode(false), ""
	}
	return nil, "not a yes/no value"
}

func makeBase64Binary(_ *run, s string) (*node, string) {
	s = strings.Join(strings.Fields(s), "")
	if s == "" {
		return nil, ""
	}
	if !isBase64(s) {
		return nil, "not valid base64"
	}
	return strNode(s), ""
}

func isBase64(s string) bool {
	s = strings.Join(strings.Fields(s), "")
	if s == "" {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

func makeBase64Text(_ *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	return strNode(base64.StdEncoding.EncodeToString([]byte(s))), ""
}

// dtm is a parsed v2 date/time: YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ].
type dtm struct {
	y, mo, d, h, mi, sec int
	frac                 string // digits after the point
	prec                 int    // digits given: 4, 6, 8, 10, 12 or 14
	hasOff               bool
	off                  int // minutes east of UTC
}

// parseDTM reads a v2 DTM (also the first component of a TS, and DT).
func parseDTM(s string) (dtm, error) {
	var t dtm
	s = strings.TrimSpace(s)
	body := s
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		body = s[:i]
		z := s[i+1:]
		if len(z) != 4 || !allDigits(z) {
			return t, fmt.Errorf("bad UTC offset")
		}
		hh, _ := strconv.Atoi(z[:2])
		mm, _ := strconv.Atoi(z[2:])
		if hh > 14 || mm > 59 || (hh == 14 && mm > 0) {
			return t, fmt.Errorf("bad UTC offset")
		}
		t.hasOff = true
		t.off = hh*60 + mm
		if s[i] == '-' {
			t.off = -t.off
		}
	}
	digits, frac, hasFrac := strings.Cut(body, ".")
	if !allDigits(digits) {
		return t, fmt.Errorf("not a date/time")
	}
	switch len(digits) {
	case 4, 6, 8, 10, 12, 14:
	default:
		return t, fmt.Errorf("not a date/time")
	}
	if hasFrac {
		if len(digits) != 14 || frac == "" || len(frac) > 9 || !allDigits(frac) {
			return t, fmt.Errorf("bad fraction of a second")
		}
		t.frac = frac
	}
	t.prec = len(digits)
	num := func(i, j int) int { n, _ := strconv.Atoi(digits[i:j]); return n }
	t.y = num(0, 4)
	t.mo, t.d = 1, 1
	if t.prec >= 6 {
		t.mo = num(4, 6)
	}
	if t.prec >= 8 {
		t.d = num(6, 8)
	}
	if t.prec >= 10 {
		t.h = num(8, 10)
	}
	if t.prec >= 12 {
		t.mi = num(10, 12)
	}
	if t.prec >= 14 {
		t.sec = num(12, 14)
	}
	if t.y == 0 || t.mo < 1 || t.mo > 12 || t.d < 1 || t.d > daysIn(t.y, t.mo) || t.h > 23 || t.mi > 59 || t.sec > 59 {
		return t, fmt.Errorf("date/time out of range")
	}
	return t, nil
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (t dtm) dateString() string {
	switch {
	case t.prec == 4:
		return fmt.Sprintf("%04d", t.y)
	case t.prec == 6:
		return fmt.Sprintf("%04d-%02d", t.y, t.mo)
	}
	return fmt.Sprintf("%04d-%02d-%02d", t.y, t.mo, t.d)
}

// timeString renders a time of day with seconds, fraction and offset;
// the offset comes from the value or the run's zone.
func (t dtm) timeString(r *run) string {
	off := t.off
	if !t.hasOff {
		off = r.zoneOffset(t)
	}
	s := fmt.Sprintf("T%02d:%02d:%02d", t.h, t.mi, t.sec)
	if t.frac != "" {
		s += "." + t.frac
	}
	if off == 0 {
		return s + "Z"
	}
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	return s + fmt.Sprintf("%c%02d:%02d", sign, off/60, off%60)
}

func makeDate(_ *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	t, err := parseDTM(s)
	if err != nil {
		return nil, err.Error()
	}
	return strNode(t.dateString()), ""
}

func makeDateTime(r *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	t, err := parseDTM(s)
	if err != nil {
		return nil, err.Error()
	}
	if t.prec <= 8 {
		return strNode(t.dateString()), ""
	}
	return strNode(t.dateString() + t.timeString(r)), ""
}

func makeInstant(r *run, s string) (*node, string) {
	if strings.TrimSpace(s) == "" {
		return nil, ""
	}
	t, err := parseDTM(s)
	if err != nil {
		return nil, err.Error()
	}
	if t.prec <= 8 {
		return nil, "a date without a time cannot be an instant"
	}
	return strNode(t.dateString() + t.timeString(r)), ""
}

// makeTime reads a v2 TM: HH[MM[SS[.S...]]][+/-ZZZZ] (the offset is
// dropped: a FHIR time has none).
func makeTime(_ *run, s string) (*node, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, ""
	}
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		s = s[:i]
	}
	digits, frac, hasFrac := strings.Cut(s, ".")
	if !allDigits(digits) || (len(digits) != 2 && len(digits) != 4 && len(digits) != 6) {
		return nil, "not a time"
	}
	var hms [3]int
	for i := 0; i < len(digits)/2; i++ {
		hms[i], _ = strconv.Atoi(digits[2*i : 2*i+2])
	}
	if hms[0] > 23 || hms[1] > 59 || hms[2] > 59 {
		return nil, "time out of range"
	}
	out := fmt.Sprintf("%02d:%02d:%02d", hms[0], hms[1], hms[2])
	if hasFrac {
		if len(digits) != 6 || !allDigits(frac) {
			return nil, "bad fraction of a second"
		}
		out += "." + frac
	}
	return strNode(out), ""
}

// addSeconds adds a duration to a date/time that has a time of day; the
// result keeps the value's offset (or takes the run's zone's).
func (t dtm) addSeconds(r *run, secs int64) dtm {
	off := t.off
	if !t.hasOff {
		off = r.zoneOffset(t)
	}
	loc := time.FixedZone("", off*60)
	tt := time.Date(t.y, time.Month(t.mo), t.d, t.h, t.mi, t.sec, 0, loc).Add(time.Duration(secs) * time.Second)
	out := dtm{y: tt.Year(), mo: int(tt.Month()), d: tt.Day(), h: tt.Hour(), mi: tt.Minute(), sec: tt.Second(),
		prec: 14, hasOff: true, off: off}
	return out
}

func (t dtm) v2() string {
	s := fmt.Sprintf("%04d%02d%02d%02d%02d%02d", t.y, t.mo, t.d, t.h, t.mi, t.sec)
	if t.hasOff {
		off := t.off
		sign := byte('+')
		if off < 0 {
			sign = '-'
			off = -off
		}
		s += fmt.Sprintf("%c%02d%02d", sign, off/60, off%60)
	}
	return s
}
