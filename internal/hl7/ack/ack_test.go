package ack

import (
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

const adt = "MSH|^~\\&|SENDAPP^1.2.3^ISO|SENDFAC|RECVAPP|RECVFAC|20240501120000||ADT^A01^ADT_A01|CTRL-42|P|2.5.1|||AL|NE||UNICODE UTF-8\r" +
	"PID|1||12345^^^HOSP^MR||Doe^Jane\r"

func mustParse(t *testing.T, s string) *hl7.Message {
	t.Helper()
	m, err := hl7.Parse([]byte(s), hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuildSwapsHeaderAndEchoesControlID(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)
	a := Build(mustParse(t, adt), Options{Code: AA, Now: now, ControlID: "A1"})
	m, err := hl7.Parse(a, hl7.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("ACK does not parse strictly: %v\n%q", err, a)
	}
	want := map[string]string{
		"MSH-3-1": "RECVAPP", "MSH-4": "RECVFAC", "MSH-5-1": "SENDAPP", "MSH-5-2": "1.2.3", "MSH-6": "SENDFAC",
		"MSH-7": "20240501120001+0000", "MSH-9-1": "ACK", "MSH-9-2": "A01", "MSH-9-3": "ACK", "MSH-10": "A1",
		"MSH-11": "P", "MSH-12": "2.5.1", "MSH-18": "UNICODE UTF-8", "MSA-1": "AA", "MSA-2": "CTRL-42",
	}
	for p, v := range want {
		if got, _ := m.Get(p); got != v {
			t.Errorf("%s = %q, want %q", p, got, v)
		}
	}
	if strings.Contains(string(a), "\n") || !strings.HasSuffix(string(a), "\r") {
		t.Errorf("segments must end with CR only: %q", a)
	}
	if m.Segment("ERR", 1) != nil {
		t.Error("an AA without errors has no ERR segment")
	}
}

func TestBuildKeepsDelimitersAndEscapesText(t *testing.T) {
	orig := strings.NewReplacer("|", "#", "^", "@").Replace("MSH|^~\\&|A|B|C|D|20240501||ORU^R01|X1|P|2.3\r")
	a := Build(mustParse(t, orig), Options{Code: AE, Text: "bad | field ^ here", Errors: []Error{{Location: "OBX(2)-5", Code: 102, Text: "not a number"}}})
	if !strings.HasPrefix(string(a), "MSH#@~\\&#C#D#A#B#") {
		t.Fatalf("ACK must use the original's delimiters: %q", a)
	}
	r, err := Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != AE || r.ControlID != "X1" || r.Text != "bad | field ^ here" {
		t.Errorf("got %+v", r)
	}
	// v2.3: the error is in ERR-1
	if len(r.Errors) != 1 || r.Errors[0].Location != "OBX(2)-5" || r.Errors[0].Code != 102 {
		t.Errorf("errors %+v", r.Errors)
	}
}

func TestEnhancedModeAndV25ErrorRoundTrip(t *testing.T) {
	errs := []Error{{Location: "PID-3", Code: 101, Severity: "E", Text: "PID-3 is required"}, {Location: "MSH", Code: 207, Severity: "W"}}
	a := Build(mustParse(t, adt), Options{Code: CE, Text: "not stored", Errors: errs})
	r, err := Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != CE || r.Accepted() || r.ControlID != "CTRL-42" {
		t.Errorf("got %+v", r)
	}
	if len(r.Errors) != 2 {
		t.Fatalf("errors %+v", r.Errors)
	}
	if e := r.Errors[0]; e.Location != "PID-3" || e.Code != 101 || e.Severity != "E" || e.Text != "PID-3 is required" {
		t.Errorf("first error %+v", e)
	}
	if e := r.Errors[1]; e.Location != "MSH" || e.Code != 207 || e.Severity != "W" || e.Text != "not stored" {
		t.Errorf("second error (text falls back to the ACK's) %+v", e)
	}
	m := mustParse(t, string(a))
	if v, _ := m.Get("ERR-3-3"); v != "HL70357" {
		t.Errorf("ERR-3-3 = %q", v)
	}
	if v, _ := m.Get("ERR-2-3"); v != "3" {
		t.Errorf("ERR-2-3 = %q", v)
	}
}

func TestFreshControlIDsDiffer(t *testing.T) {
	m := mustParse(t, adt)
	seen := map[string]bool{}
	for range 100 {
		r := mustParse(t, string(Build(m, Options{})))
		id, _ := r.Get("MSH-10")
		if id == "" || len(id) > 20 || seen[id] {
			t.Fatalf("control id %q empty, too long or repeated", id)
		}
		seen[id] = true
	}
}

func TestBuildRawFromUnparseableBytes(t *testing.T) {
	cases := []struct {
		name, in, ctrl string
	}{
		{"readable MSH, broken body", "MSH|^~\\&|S|F|R|RF|2024||ORU^R01|C9|P|2.5\rOBX|\x00\x01garbage", "C9"},
		{"no MSH at all", "hello world", ""},
		{"empty", "", ""},
		{"bad delimiters", "MSH|||||", ""},
		{"LF endings and leading junk", "\n\x0bMSH!^~\\&!S!F!R!RF!2024!!ADT^A08!Z1!P!2.4\nPID!!", "Z1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := BuildRaw([]byte(c.in), Options{Code: AR, Errors: []Error{{Location: "MSH", Code: 100}}})
			r, err := Parse(a)
			if err != nil {
				t.Fatalf("ACK of raw input does not parse: %v\n%q", err, a)
			}
			if r.Code != AR || r.ControlID != c.ctrl || len(r.Errors) != 1 || r.Errors[0].Code != 100 {
				t.Errorf("got %+v", r)
			}
		})
	}
}

func TestParseRejectsNonAcks(t *testing.T) {
	if _, err := Parse([]byte(adt)); err != ErrNoMSA {
		t.Errorf("message without MSA: %v", err)
	}
	if _, err := Parse([]byte("MSH|^~\\&|A|B|C|D|2024||ACK|1|P|2.5\rMSA|ZZ|1\r")); err == nil {
		t.Error("MSA-1 ZZ accepted")
	}
	if _, err := Parse([]byte("not hl7")); err == nil {
		t.Error("garbage accepted")
	}
}

func FuzzBuildRaw(f *testing.F) {
	f.Add([]byte(adt))
	f.Add([]byte("MSH|^~\\&"))
	f.Add([]byte("MSH\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := BuildRaw(in, Options{Code: AE, Text: "x"})
		if _, err := Parse(a); err != nil {
			t.Fatalf("ACK of %q does not parse: %v\n%q", in, err, a)
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	m, err := hl7.Parse([]byte(adt), hl7.ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Build(m, Options{Code: AA})
	}
}
