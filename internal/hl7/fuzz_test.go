package hl7

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// Fuzz properties:
//   - FuzzParse: Parse and ParseAll never panic, in either mode; whatever
//     lenient mode accepts, Encode writes something that parses again to the
//     same segments and field values, and encoding that again is a fixed
//     point. Strict defects always carry a code and an in-range offset.
//   - FuzzUnescape: Unescape never panics on any input and delimiters;
//     Unescape(Escape(s)) == s for every string.
//   - FuzzPath: ParsePath never panics; a path it accepts prints as a string
//     that parses back to the same Path; Get, GetAll and Set on that path
//     never panic, and a value Set is the value Get returns.

func addFixtureSeeds(f *testing.F) {
	for _, name := range []string{"oru_r01.hl7", "adt_a01.hl7"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
}

func FuzzParse(f *testing.F) {
	addFixtureSeeds(f)
	f.Add([]byte("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\rPID|1||123^^^H^MR~456||Doe\\S\\x^Jane&Q\r"))
	f.Add([]byte("\xEF\xBB\xBF\n MSH|^~\\&#|A\nNTE|1||\\.sp 3\\\\X41\\\\Zq\\\r\n\r\n"))
	f.Add([]byte("FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|x\rBTS|1\rFTS|1\r"))
	f.Add([]byte("MSH#!$*%#A\rPID#1##a!b$c*F*%d"))
	f.Add([]byte("MSH|^~\\&|A||||||||||||||||8859/1\rNTE|\xe9\xff"))
	f.Add([]byte("MSH|\r"))
	f.Add([]byte("MSH|^~"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, strict := range []bool{false, true} {
			m, err := Parse(data, ParseOptions{Strict: strict})
			if err != nil {
				pe, ok := err.(*ParseError)
				if !ok || len(pe.Defects) == 0 {
					t.Fatalf("error %v is not a *ParseError with defects", err)
				}
				for _, d := range pe.Defects {
					if d.Code == "" || d.Pos.Offset < 0 || d.Pos.Offset > len(data) {
						t.Fatalf("bad defect %+v (input %d bytes)", d, len(data))
					}
				}
				_ = pe.Error()
			}
			if !strict && err == nil && m == nil {
				t.Fatal("no message and no error")
			}
			if strict {
				continue
			}
			if m == nil {
				continue
			}
			checkReparse(t, m)
		}
		msgs, _, err := ParseAll(data, ParseOptions{})
		if err == nil {
			for _, m := range msgs {
				checkReparse(t, m)
			}
		}
		_, _, _ = ParseAll(data, ParseOptions{Strict: true})
		for _, part := range Split(data) {
			if !bytes.Contains(data, part) {
				t.Fatal("Split returned bytes that are not in the input")
			}
		}
	})
}

// checkReparse asserts that m's encoding parses to the same values.
func checkReparse(t *testing.T, m *Message) {
	t.Helper()
	enc := m.Encode()
	m2, err := Parse(enc, ParseOptions{})
	if err != nil {
		t.Fatalf("Encode output does not parse: %v\n%q", err, enc)
	}
	if m2.Delimiters() != m.Delimiters() {
		t.Fatalf("delimiters %+v became %+v", m.Delimiters(), m2.Delimiters())
	}
	s1, s2 := m.Segments(), m2.Segments()
	if len(s1) != len(s2) {
		t.Fatalf("%d segments became %d\n%q", len(s1), len(s2), enc)
	}
	for i := range s1 {
		a, b := s1[i], s2[i]
		if a.ID() != b.ID() || a.NumFields() != b.NumFields() {
			t.Fatalf("segment %d: %q/%d became %q/%d", i+1, a.ID(), a.NumFields(), b.ID(), b.NumFields())
		}
		for n := 1; n <= a.NumFields(); n++ {
			fa, fb := a.Field(n), b.Field(n)
			if fa.Raw() != fb.Raw() || fa.String() != fb.String() {
				t.Fatalf("%s-%d: %q became %q", a.ID(), n, fa.Raw(), fb.Raw())
			}
		}
	}
	if enc2 := m2.Encode(); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not a fixed point:\n%q\n%q", enc, enc2)
	}
	_ = m.Header()
	_ = m.String()
}

func FuzzUnescape(f *testing.F) {
	for _, s := range []string{
		`a\F\b\S\c\T\d\R\e\E\f`, `\P\`, `\X41C3A9\`, `\XE9\`, `\C2842\`, `\M244F41\`, `\Zloc\`, `\H\b\N\`,
		`\.br\`, `\.sp 3\`, `\.sk2\`, `\.in+4\`, `\.ti-2\`, `\.ce\`, `\.fi\`, `\.nf\`, `C:\path`, `\`, `\\`,
		"line\nbreak\r", "ünï©ødé", "\xff\xfe",
	} {
		f.Add(s, byte('|'), byte('^'), byte('~'), byte('\\'), byte('&'), byte(0))
	}
	f.Add(`a*F*b#c`, byte('#'), byte('!'), byte('$'), byte('*'), byte('%'), byte('@'))
	f.Fuzz(func(t *testing.T, s string, fs, cs, rs, es, ss, tr byte) {
		d := Delimiters{fs, cs, rs, es, ss, tr}
		_ = Unescape(s, d) // never panics, whatever the delimiters
		if !d.valid() {
			return
		}
		e := Escape(s, d)
		if back := Unescape(e, d); back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q (escaped %q)", s, back, e)
		}
		for i := 0; i < len(e); i++ {
			if c := e[i]; c == d.Field || c == d.Component || c == d.Repetition || c == d.Subcomponent || c == '\r' || c == '\n' ||
				(d.Truncation != 0 && c == d.Truncation) {
				t.Fatalf("Escape(%q) = %q leaves a delimiter raw", s, e)
			}
		}
		// a value written with Set reads back the same
		m := New(d, "2.5.1")
		if err := m.Set("NTE-3-2", s); err != nil {
			t.Fatalf("Set: %v", err)
		}
		m2, err := Parse(m.Encode(), ParseOptions{})
		if err != nil {
			t.Fatalf("parse after Set: %v", err)
		}
		if got, _ := m2.Get("NTE-3-2"); got != s {
			t.Fatalf("Set/Get %q → %q", s, got)
		}
	})
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"PID-5", "PID-5-1", "PID-3(2)-4-2", "OBX(3)-5", "MSH-9-2", "PID-5-1-1", "MSH-1", "MSH-2",
		"zpd(2)-1(3)", "PID.5.1", "PID-0", "PID(", "PID-9999", "ZZZ(1048576)-1"} {
		f.Add(s, "value")
	}
	base, err := os.ReadFile(filepath.Join("testdata", "adt_a01.hl7"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, value string) {
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		p2, err := ParsePath(p.String())
		if err != nil || p2 != p {
			t.Fatalf("%q → %+v → %q → %+v, %v", path, p, p.String(), p2, err)
		}
		if p.Occurrence > 3 || p.Field > 300 || p.Repetition > 300 || p.Component > 300 || p.Subcomponent > 300 {
			// valid, but padding that far only tests memory: read only
			m, _ := Parse(base, ParseOptions{})
			_, _ = m.Get(path)
			_, _ = m.GetAll(path)
			return
		}
		m, err := Parse(base, ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = m.Get(path)
		_, _ = m.GetAll(path)
		if !utf8.ValidString(value) {
			value = string([]rune(value))
		}
		err = m.Set(path, value)
		if err != nil {
			return // MSH-1/2, or an occurrence that cannot be created
		}
		if got, _ := m.Get(path); got != value {
			t.Fatalf("Set(%s, %q) then Get = %q", path, value, got)
		}
		m2, err := Parse(m.Encode(), ParseOptions{})
		if err != nil {
			t.Fatalf("after Set: %v", err)
		}
		if got, _ := m2.Get(path); got != value {
			t.Fatalf("Set(%s, %q), re-parse, Get = %q", path, value, got)
		}
	})
}
