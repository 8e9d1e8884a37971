package validate

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// r4Regexp compiles a primitive's R4 regex for the whole value. The R4
// regexes are Java's: \s there also matches vertical tab, which Go's \s
// does not.
func r4Regexp(t *testing.T, typ string) *regexp.Regexp {
	t.Helper()
	p := model.R4().Type(typ).Pattern()
	if p == "" {
		t.Fatalf("%s has no pattern", typ)
	}
	// [ \r\n\t\S] (string, markdown) is everything but \v and \f.
	p = strings.ReplaceAll(p, `[ \r\n\t\S]`, `[^\x0B\f]`)
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' && i+1 < len(p) && p[i+1] == 's':
			if inClass {
				b.WriteString(` \t\n\x0B\f\r`)
			} else {
				b.WriteString(`[ \t\n\x0B\f\r]`)
			}
			i++
		case c == '\\' && i+1 < len(p) && p[i+1] == 'S':
			if inClass {
				t.Fatalf("%s: \\S inside a class", typ)
			}
			b.WriteString(`[^ \t\n\x0B\f\r]`)
			i++
		case c == '\\' && i+1 < len(p):
			b.WriteString(p[i : i+2])
			i++
		default:
			if c == '[' {
				inClass = true
			} else if c == ']' {
				inClass = false
			}
			b.WriteByte(c)
		}
	}
	return regexp.MustCompile(`^(?:` + b.String() + `)$`)
}

// The hand-written format checks accept exactly what the R4 regexes accept,
// except where the specification says more than its regex (days a month
// does not have; base64 padding only at the end).
func TestFormatsMatchR4Regexes(t *testing.T) {
	checks := []struct {
		typ    string
		check  func(string) bool
		seeds  []string
		exempt func(string) bool // inputs the regex accepts and the check rightly refuses
	}{
		{"code", validCode, []string{"a", "male", "a b", "a  b", " a", "a ", "a\tb", "\t", "x\vy", "日本", "a-b_c.d"}, nil},
		{"id", validID, []string{"a", "A-1.b", strings.Repeat("a", 64), strings.Repeat("a", 65), "a_b", "a b", "é", "-"}, nil},
		{"uri", validURI, []string{"http://x", "urn:uuid:1", "a b", "a\tb", "x\vy", "#x", "日本"}, nil},
		{"string", validString, []string{"a", " ", "a\nb", "x\vy", "x\fy", "\t", "日本"}, nil},
		{"oid", validOID, []string{"urn:oid:1.2.3", "urn:oid:2.16.840.1.113883", "urn:oid:3.1", "urn:oid:1", "urn:oid:1.02", "urn:oid:1.0", "urn:oid:1.", "urn:oid:0.0.10", "oid:1.2"}, nil},
		{"uuid", validUUID, []string{"urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "urn:uuid:C757873D-ec9a-4326-a141-556f43239520", "urn:uuid:c757873d-ec9a-4326-a141-556f4323952", "c757873d-ec9a-4326-a141-556f43239520"}, nil},
		{"base64Binary", validBase64, []string{"QQ==", "QUI=", "QUJD", "QUJDRA==", "Q", "QQ", "QQ=", "Q===", "QQ==QUJD", "QU JD", " QUJD ", "QUJD\n", "Q=QQ", "====", "QUJ!"},
			func(s string) bool {
				return strings.Contains(strings.TrimRight(strings.TrimSpace(s), "="), "=") || strings.Count(s, "=") > 2
			}},
		{"date", validDate, []string{"2024", "2024-02", "2024-02-29", "2023-02-29", "2023-02-30", "2024-04-31", "0000", "0001", "2024-13", "2024-00", "2024-1", "2024-01-1", "24", "2024-01-01T00:00:00Z", "1900-02-29", "2000-02-29"},
			badDay},
		{"dateTime", validDateTime, []string{"2024", "2024-02", "2024-02-29", "2015-02-07T13:28:17-05:00", "2015-02-07T13:28:17.239+02:00", "2017-01-01T00:00:00.000Z",
			"2015-02-07T13:28:17", "2015-02-07T13:28Z", "2015-02-07T24:00:00Z", "2015-02-07T23:59:60Z", "2015-02-07T13:28:17+14:00", "2015-02-07T13:28:17+14:01",
			"2015-02-07T13:28:17+13:59", "2015-02-07T13:28:17+1:00", "2015-02-07T13:28:17.Z", "2015-02T13:28:17Z", "2023-02-29T00:00:00Z", "2015-02-07 13:28:17Z"}, badDay},
		{"instant", validInstant, []string{"2015-02-07T13:28:17.239+02:00", "2017-01-01T00:00:00Z", "2017-01-01", "2017-01-01T00:00:00", "2017-01-01T00:00Z", "2017-02-30T00:00:00Z"}, badDay},
		{"time", validTime, []string{"00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:30", "12:30:00.5", "12:30:00.", "12:30:00Z", "1:30:00", "12:60:00"}, nil},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789-:.TZ+ aAzZ=/\t\v"
	for _, c := range checks {
		re := r4Regexp(t, c.typ)
		inputs := append([]string(nil), c.seeds...)
		// Mutations of the seeds: replace, insert or delete one byte.
		for _, s := range c.seeds {
			for range 200 {
				b := []byte(s)
				switch k := rng.IntN(3); {
				case k == 0 && len(b) > 0:
					b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
				case k == 1:
					i := rng.IntN(len(b) + 1)
					b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
				case len(b) > 0:
					i := rng.IntN(len(b))
					b = append(b[:i], b[i+1:]...)
				}
				inputs = append(inputs, string(b))
			}
		}
		for _, s := range inputs {
			want := re.MatchString(s)
			got := c.check(s)
			if got == want {
				continue
			}
			if want && !got && c.exempt != nil && c.exempt(s) {
				continue
			}
			t.Errorf("%s %q: check says %v, R4 regex says %v", c.typ, s, got, want)
		}
	}
}

// badDay reports a date whose day its month does not have.
func badDay(s string) bool {
	parts, _ := dateParts(s)
	if parts != 0 || len(s) < 10 {
		return false
	}
	// The regex-level shape is fine (the caller only asks when the regex
	// matched): the day must be what is wrong.
	y := int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	m, _ := num2(s[5:])
	d, _ := num2(s[8:])
	return m >= 1 && m <= 12 && d > daysIn(y, m)
}

func TestIntegerValue(t *testing.T) {
	for lit, want := range map[string]bool{"0": true, "-0": true, "1": true, "-1": true, "2147483647": true, "2147483648": false,
		"-2147483648": true, "-2147483649": false, "1.0": false, "1e2": false, "99999999999999": false, "": false, "-": false} {
		if _, ok := integerValue(lit); ok != want {
			t.Errorf("integerValue(%q) ok = %v", lit, ok)
		}
	}
}

func TestValidXHTML(t *testing.T) {
	for s, want := range map[string]bool{
		`<div xmlns="http://www.w3.org/1999/xhtml">x</div>`: true,
		` <div xmlns='http://www.w3.org/1999/xhtml'/>`:      true,
		`<div>x</div>`: false,
		`<p xmlns="http://www.w3.org/1999/xhtml">x</p>`:       false,
		`<divx xmlns="http://www.w3.org/1999/xhtml">x</divx>`: false,
		`<div>http://www.w3.org/1999/xhtml</div>`:             false,
		`text`: false,
	} {
		if got := validXHTML(s); got != want {
			t.Errorf("validXHTML(%q) = %v", s, got)
		}
	}
}
