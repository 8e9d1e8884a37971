package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func cr(lines ...string) []byte { return []byte(strings.Join(lines, "\r") + "\r") }

func mustParse(t *testing.T, data []byte) *Message {
	t.Helper()
	m, err := Parse(data, ParseOptions{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func mustGet(t *testing.T, m *Message, path string) string {
	t.Helper()
	v, err := m.Get(path)
	if err != nil {
		t.Fatalf("Get(%s): %v", path, err)
	}
	return v
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGetPathsOnFixture(t *testing.T) {
	m := mustParse(t, readFixture(t, "oru_r01.hl7"))
	cases := map[string]string{
		"MSH-1":        "|",
		"MSH-2":        `^~\&`,
		"MSH-3":        "LABSYS",
		"MSH-4":        "NORTHLAB^2.16.840.1.113883.3.999^ISO",
		"MSH-4-2":      "2.16.840.1.113883.3.999",
		"MSH-9":        "ORU^R01^ORU_R01",
		"MSH-9-1":      "ORU",
		"MSH-9-2":      "R01",
		"MSH-9-3":      "ORU_R01",
		"MSH-10":       "LAB20240315143012001",
		"MSH-12":       "2.5.1",
		"MSH-18":       "UNICODE UTF-8",
		"PID-3":        "PAT001234^^^VALLEYFAM^MR",
		"PID-3(1)-1":   "PAT001234",
		"PID-3(2)-1":   "999-99-9999",
		"PID-3(2)-4":   "SSA",
		"PID-3(3)-1":   "",
		"PID-5-1":      "Testperson",
		"PID-5(2)-2":   "Alex",
		"PID-13(2)-4":  "alex@example.org",
		"pid-5-2":      "Alexandra",
		"PID.5.3":      "Marie",
		"OBX-5":        "95",
		"OBX(3)-5":     "0.9",
		"OBX(5)-8":     "H",
		"OBX(14)-3-2":  "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
		"OBX(15)-5":    "Potassium slightly elevated & specimen not hemolyzed.\nRepeat in 1 week; call 555|0100.",
		"OBX(16)-5":    "",
		"SFT-1-6-2":    "2.16.840.1.113883.3.999",
		"SPM-2-1":      "LAB778812&LABSYS",
		"SPM-2-1-1":    "LAB778812",
		"SPM-2-1-2":    "LABSYS",
		"SPM-2-1-3":    "",
		"ZZZ-1":        "",
		"PID-99":       "",
		"PID-5(9)-1":   "",
		"PID-5-1-9":    "",
		"OBX(1)-23-10": "1234",
	}
	for path, want := range cases {
		if got := mustGet(t, m, path); got != want {
			t.Errorf("Get(%s) = %q, want %q", path, got, want)
		}
	}
	if n := len(m.Segments()); n != 23 {
		t.Errorf("%d segments, want 23", n)
	}
	if got := len(m.SegmentsByID("OBX")); got != 15 {
		t.Errorf("%d OBX, want 15", got)
	}
	if m.Segment("OBX", 15).Index() != 21 || m.Segment("OBX", 16) != nil {
		t.Errorf("Segment(OBX, n) wrong")
	}
	if m.Charset() != "UTF-8" {
		t.Errorf("Charset = %q", m.Charset())
	}
}

func TestGetAll(t *testing.T) {
	m := mustParse(t, cr(
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1",
		"PID|1||111^^^X^MR~222^^^Y^SS||Doe^Jane",
		"OBX|1|ST|A^a||first",
		"OBX|2|ST|B^b||",
		"OBX|3|ST|C^c||x~y",
	))
	cases := []struct {
		path string
		want []string
	}{
		{"PID-3-1", []string{"111", "222"}},
		{"PID-3(2)-4", []string{"Y"}},
		{"OBX-3-1", []string{"A", "B", "C"}},
		{"OBX-5", []string{"first", "", "x", "y"}},
		{"OBX(3)-5", []string{"x", "y"}},
		{"OBX-5(1)", []string{"first", "", "x"}},
		{"MSH-2", []string{`^~\&`}},
		{"ZZZ-1", nil},
	}
	for _, c := range cases {
		got, err := m.GetAll(c.path)
		if err != nil {
			t.Fatalf("GetAll(%s): %v", c.path, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) || len(got) != len(c.want) {
			t.Errorf("GetAll(%s) = %q, want %q", c.path, got, c.want)
		}
	}
}

func TestEncodeLossless(t *testing.T) {
	for _, name := range []string{"oru_r01.hl7", "adt_a01.hl7"} {
		data := readFixture(t, name)
		m := mustParse(t, data)
		if got := m.Encode(); !bytes.Equal(got, data) {
			t.Errorf("%s: Encode differs from the input", name)
		}
		// Encode returns a copy: changing it does not change the message
		enc := m.Encode()
		enc[0] = 'X'
		if !bytes.Equal(m.Encode(), data) {
			t.Errorf("%s: Encode shares memory with the message", name)
		}
		if got := m.String(); got != strings.ReplaceAll(string(data), "\r", "\n") {
			t.Errorf("%s: String differs", name)
		}
	}
	// the parser copies the input
	data := readFixture(t, "adt_a01.hl7")
	m := mustParse(t, data)
	want := mustGet(t, m, "PID-5-1")
	for i := range data {
		data[i] = 'Z'
	}
	if got := mustGet(t, m, "PID-5-1"); got != want {
		t.Errorf("message changed with the caller's buffer: %q", got)
	}
}

func TestSetReencodesOnlyTouchedSegment(t *testing.T) {
	data := readFixture(t, "oru_r01.hl7")
	m := mustParse(t, data)
	if err := m.Set("PID-5-1", "Müller|Smith"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("OBX(3)-5", "1.1"); err != nil {
		t.Fatal(err)
	}
	orig := bytes.Split(data, []byte("\r"))
	got := bytes.Split(m.Encode(), []byte("\r"))
	if len(orig) != len(got) {
		t.Fatalf("%d vs %d segments", len(got), len(orig))
	}
	for i := range orig {
		changed := !bytes.Equal(orig[i], got[i])
		wantChanged := i == 2 || i == 8 // PID, third OBX
		if changed != wantChanged {
			t.Errorf("segment %d changed=%v, want %v:\n%s\n%s", i+1, changed, wantChanged, orig[i], got[i])
		}
	}
	wantPID := strings.Replace(string(orig[2]), "||Testperson^", `||Müller\F\Smith^`, 1)
	if string(got[2]) != wantPID {
		t.Errorf("PID = %s\nwant  %s", got[2], wantPID)
	}
	if v := mustGet(t, m, "PID-5-1"); v != "Müller|Smith" {
		t.Errorf("PID-5-1 = %q after Set", v)
	}
	if m.Segment("PID", 1).Offset() != -1 || m.Segment("MSH", 1).Offset() != 0 {
		t.Errorf("offsets: PID %d, MSH %d", m.Segment("PID", 1).Offset(), m.Segment("MSH", 1).Offset())
	}
	// the re-encoded message parses to the same values
	m2 := mustParse(t, m.Encode())
	for _, p := range []string{"PID-5-1", "PID-5-2", "OBX(3)-5", "OBX(15)-5", "SPM-2-1-2"} {
		if a, b := mustGet(t, m, p), mustGet(t, m2, p); a != b {
			t.Errorf("%s: %q vs %q after re-parse", p, a, b)
		}
	}
}

func TestSetCreatesStructure(t *testing.T) {
	m := mustParse(t, cr("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1", "PID|1"))
	steps := []struct{ path, value string }{
		{"PID-3(2)-4-2", "2.16.840.1"},
		{"PID-5-1", "Doe"},
		{"PID-5-3", "Q"},
		{"PID-5-1-2", "van"},
		{"PID-8", "F"},
		{"PID-3(1)-1", "123"},
		{"OBX(1)-5", "a"},
		{"OBX(2)-5", "b"},
		{"ZPV-2", "local"},
		{"PID-30", ""}, // empty beyond the end: no change
	}
	for _, s := range steps {
		if err := m.Set(s.path, s.value); err != nil {
			t.Fatalf("Set(%s): %v", s.path, err)
		}
	}
	want := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\n" +
		"PID|1||123~^^^&2.16.840.1||Doe&van^^Q|||F\n" +
		"OBX|||||a\n" +
		"OBX|||||b\n" +
		"ZPV||local\n"
	if got := m.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for _, s := range steps[:len(steps)-1] {
		if s.path == "PID-5-1" { // later overwritten by the subcomponent set
			continue
		}
		if got := mustGet(t, m, s.path); got != s.value {
			t.Errorf("Get(%s) = %q, want %q", s.path, got, s.value)
		}
	}
	// occurrence beyond count+1
	if err := m.Set("OBX(4)-1", "x"); err == nil {
		t.Error("Set(OBX(4)) with 2 OBX: want an error")
	}
	// the delimiters cannot be set
	for _, p := range []string{"MSH-1", "MSH-2"} {
		if err := m.Set(p, "x"); err == nil {
			t.Errorf("Set(%s): want an error", p)
		}
	}
	// malformed paths
	for _, p := range []string{"", "PID", "PID-0", "PID-x", "PI-1", "1ID-1", "PID-1-", "PID(0)-1", "PID-1(0)", "PID-1-2-3-4", "PID-99999"} {
		if err := m.Set(p, "x"); err == nil || !errors.Is(err, ErrBadPath) {
			t.Errorf("Set(%q) = %v, want ErrBadPath", p, err)
		}
		if _, err := m.Get(p); err == nil {
			t.Errorf("Get(%q): want an error", p)
		}
	}
}

func TestSetRawAndSegmentAPI(t *testing.T) {
	m := mustParse(t, cr("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1", "PID|1"))
	if err := m.SetRaw("PID-5", "Doe^John~Roe^Rick"); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, m, "PID-5(2)-2"); got != "Rick" {
		t.Errorf("PID-5(2)-2 = %q", got)
	}
	if err := m.SetRaw("PID-5", "a|b"); err == nil {
		t.Error("SetRaw with a field separator: want an error")
	}
	pid := m.Segment("PID", 1)
	if err := pid.Set("7", "19700101"); err != nil {
		t.Fatal(err)
	}
	if v, _ := pid.Get("7"); v != "19700101" {
		t.Errorf("PID.Get(7) = %q", v)
	}
	if v, _ := pid.Get("5(2)-1"); v != "Roe" {
		t.Errorf("PID.Get(5(2)-1) = %q", v)
	}
	if _, err := pid.Get("x"); err == nil {
		t.Error("segment Get with a bad path: want an error")
	}
	if string(pid.Encode()) != "PID|1||||Doe^John~Roe^Rick||19700101" {
		t.Errorf("PID = %s", pid.Encode())
	}
}

func TestNewBuildsMessage(t *testing.T) {
	m := New(DefaultDelimiters, "2.5.1")
	sets := []struct{ path, value string }{
		{"MSH-3", "MEDIFLOW"},
		{"MSH-4", "VALLEY"},
		{"MSH-7", "20240601120000"},
		{"MSH-9-1", "ADT"},
		{"MSH-9-2", "A08"},
		{"MSH-9-3", "ADT_A01"},
		{"MSH-10", "CTRL-1"},
		{"MSH-11", "P"},
		{"EVN-1", "A08"},
		{"PID-3-1", "12345"},
		{"PID-3-4", "VALLEY"},
		{"PID-5-1", "O'Brien & Sons"},
		{"PID-5-2", "Zoë"},
		{"NTE-3", "line one\nline two"},
	}
	for _, s := range sets {
		if err := m.Set(s.path, s.value); err != nil {
			t.Fatalf("Set(%s): %v", s.path, err)
		}
	}
	want := "MSH|^~\\&|MEDIFLOW|VALLEY|||20240601120000||ADT^A08^ADT_A01|CTRL-1|P|2.5.1\r" +
		"EVN|A08\r" +
		"PID|||12345^^^VALLEY||O'Brien \\T\\ Sons^Zoë\r" +
		"NTE|||line one\\.br\\line two\r"
	if got := string(m.Encode()); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	m2 := mustParse(t, m.Encode())
	for _, s := range sets {
		if got := mustGet(t, m2, s.path); got != s.value {
			t.Errorf("re-parsed %s = %q, want %q", s.path, got, s.value)
		}
	}
	h := m2.Header()
	if h.MessageCode != "ADT" || h.TriggerEvent != "A08" || h.Structure != "ADT_A01" || h.ControlID != "CTRL-1" || h.Version != "2.5.1" || h.SendingApplication != "MEDIFLOW" {
		t.Errorf("Header = %+v", h)
	}
	// custom delimiters, with a truncation character
	d := Delimiters{'#', '!', '$', '*', '%', '@'}
	m3 := New(d, "2.7")
	if err := m3.Set("PID-5-1", "a#b!c@"); err != nil {
		t.Fatal(err)
	}
	if got := string(m3.Encode()); got != "MSH#!$*%@##########2.7\rPID#####a*F*b*S*c*P*\r" {
		t.Errorf("custom delimiters: %q", got)
	}
	m4 := mustParse(t, m3.Encode())
	if m4.Delimiters() != d {
		t.Errorf("delimiters %+v", m4.Delimiters())
	}
	if got := mustGet(t, m4, "PID-5-1"); got != "a#b!c@" {
		t.Errorf("PID-5-1 = %q", got)
	}
	// invalid delimiters fall back to the defaults
	if New(Delimiters{'|', '|', '~', '\\', '&', 0}, "").Delimiters() != DefaultDelimiters {
		t.Error("invalid delimiters kept")
	}
}

func TestSegmentEditing(t *testing.T) {
	m := mustParse(t, cr("MSH|^~\\&|A||||||ADT^A01|1|P|2.5", "PID|1", "PV1|1"))
	m.InsertSegment(1, "EVN").Set("1", "A01")
	z := m.AddSegment("ZPD")
	if err := z.Set("1", "z"); err != nil {
		t.Fatal(err)
	}
	m.InsertSegment(-5, "XXX")
	m.RemoveSegment(0) // the XXX just inserted at the front
	m.RemoveSegment(99)
	var ids []string
	for i, s := range m.Segments() {
		ids = append(ids, s.ID())
		if s.Index() != i+1 {
			t.Errorf("%s Index %d at position %d", s.ID(), s.Index(), i+1)
		}
	}
	if got := strings.Join(ids, ","); got != "MSH,EVN,PID,PV1,ZPD" {
		t.Errorf("segments %s", got)
	}
	m.RemoveSegment(3)
	if got := m.String(); got != "MSH|^~\\&|A||||||ADT^A01|1|P|2.5\nEVN|A01\nPID|1\nZPD|z\n" {
		t.Errorf("got %q", got)
	}
}

func TestFieldAndRepAPI(t *testing.T) {
	m := mustParse(t, cr(
		"MSH|^~\\&|APP^1.2.3^ISO|FAC|||20240101||ADT^A01|1|P|2.5.1",
		`PID|1|""|111^^^X&1.2&ISO^MR~222||Doe\T\Co^J|||`,
	))
	msh := m.Segment("MSH", 1)
	if msh.NumFields() != 12 {
		t.Errorf("MSH NumFields = %d", msh.NumFields())
	}
	if f := msh.Field(1); f.String() != "|" || f.NumRepetitions() != 1 || f.Rep(1).Component(1) != "|" {
		t.Errorf("MSH-1 = %q", f.String())
	}
	if f := msh.Field(2); f.String() != `^~\&` || f.Raw() != `^~\&` || f.NumRepetitions() != 1 || f.Rep(1).NumComponents() != 1 {
		t.Errorf("MSH-2 = %q (%d reps)", f.String(), f.NumRepetitions())
	}
	if f := msh.Field(3); f.Rep(1).NumComponents() != 3 || f.Rep(1).Component(2) != "1.2.3" {
		t.Errorf("MSH-3 components")
	}
	pid := m.Segment("PID", 1)
	if pid.NumFields() != 8 {
		t.Errorf("PID NumFields = %d", pid.NumFields())
	}
	if !pid.Field(2).IsNull() || pid.Field(2).IsEmpty() || pid.Field(1).IsNull() {
		t.Error("PID-2 should be the explicit null")
	}
	f3 := pid.Field(3)
	if f3.NumRepetitions() != 2 || f3.Raw() != "111^^^X&1.2&ISO^MR~222" {
		t.Errorf("PID-3 reps %d raw %q", f3.NumRepetitions(), f3.Raw())
	}
	r1 := f3.Rep(1)
	if r1.NumComponents() != 5 || r1.Component(4) != "X&1.2&ISO" || r1.Subcomponent(4, 2) != "1.2" || r1.NumSubcomponents(4) != 3 || r1.NumSubcomponents(2) != 0 {
		t.Errorf("PID-3(1): %d comps, %q, %q", r1.NumComponents(), r1.Component(4), r1.Subcomponent(4, 2))
	}
	if r1.Raw() != "111^^^X&1.2&ISO^MR" || f3.Rep(2).String() != "222" {
		t.Errorf("Rep raw/string wrong")
	}
	if f3.Rep(3).Raw() != "" || f3.Rep(0).NumComponents() != 0 || r1.Component(9) != "" || r1.Component(0) != "" {
		t.Error("absent repetition/component not empty")
	}
	if got := pid.Field(5).String(); got != "Doe&Co^J" {
		t.Errorf("PID-5 String = %q", got)
	}
	if got := pid.Field(5).Rep(1).Component(1); got != "Doe&Co" {
		t.Errorf("PID-5-1 = %q", got)
	}
	for _, n := range []int{0, -1, 8, 9, 100} {
		f := pid.Field(n)
		if f == nil || !f.IsEmpty() || f.String() != "" || f.NumRepetitions() != 0 || f.Rep(1).Component(1) != "" {
			t.Errorf("Field(%d) not an empty field", n)
		}
	}
	if pid.ID() != "PID" || pid.Index() != 2 || string(pid.Encode()) != `PID|1|""|111^^^X&1.2&ISO^MR~222||Doe\T\Co^J|||` {
		t.Errorf("PID accessors")
	}
}

func TestHeaderUniversalID(t *testing.T) {
	m := mustParse(t, cr("MSH|^~\\&|^1.2.3^ISO|FAC^9.9^ISO|R\\T\\APP|RFAC|20240101120000-0500||SIU^S12^SIU_S12|C1|T^A|2.5.1^^2.16|||AL|NE||8859/1~UNICODE UTF-8"))
	h := m.Header()
	want := Header{
		SendingApplication: "1.2.3", SendingFacility: "FAC", ReceivingApplication: "R&APP", ReceivingFacility: "RFAC",
		Timestamp: "20240101120000-0500", MessageCode: "SIU", TriggerEvent: "S12", Structure: "SIU_S12", ControlID: "C1",
		ProcessingID: "T", Version: "2.5.1", AcceptAckType: "AL", AppAckType: "NE", Charset: "8859/1",
	}
	if h != want {
		t.Errorf("Header\n got %+v\nwant %+v", h, want)
	}
	if m.Charset() != "ISO-8859-1" {
		t.Errorf("Charset %q", m.Charset())
	}
}

func TestLenientInputs(t *testing.T) {
	canon := cr("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1", "PID|1||123^^^H^MR||Doe^Jane", "PV1|1|I")
	variants := map[string]string{
		"LF":               "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\nPID|1||123^^^H^MR||Doe^Jane\nPV1|1|I\n",
		"CRLF":             "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r\nPID|1||123^^^H^MR||Doe^Jane\r\nPV1|1|I\r\n",
		"no final CR":      "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\rPID|1||123^^^H^MR||Doe^Jane\rPV1|1|I",
		"BOM":              "\xEF\xBB\xBFMSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\rPID|1||123^^^H^MR||Doe^Jane\rPV1|1|I\r",
		"blank lines":      "\n\r\nMSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\n\nPID|1||123^^^H^MR||Doe^Jane\r\r\nPV1|1|I\n\n\n",
		"stray whitespace": "  \t\nMSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\n   PID|1||123^^^H^MR||Doe^Jane\n\tPV1|1|I\n  \n",
		"mixed":            "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r\nPID|1||123^^^H^MR||Doe^Jane\nPV1|1|I\r",
	}
	for name, in := range variants {
		m, err := Parse([]byte(in), ParseOptions{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := m.Encode(); !bytes.Equal(got, canon) {
			t.Errorf("%s: Encode = %q", name, got)
		}
		if v := mustGet(t, m, "PID-5-2"); v != "Jane" {
			t.Errorf("%s: PID-5-2 = %q", name, v)
		}
		// strict mode rejects every variant
		if _, err := Parse([]byte(in), ParseOptions{Strict: true}); err == nil {
			t.Errorf("%s: strict mode accepted it", name)
		}
	}
	// trailing delimiters and missing trailing fields read the same
	a := mustParse(t, cr("MSH|^~\\&|A|||||||ADT^A01|1|P|2.5.1|||", "PID|1||123^^^^^||Doe^Jane^^^|||"))
	b := mustParse(t, cr("MSH|^~\\&|A|||||||ADT^A01|1|P|2.5.1", "PID|1||123||Doe^Jane"))
	for _, p := range []string{"MSH-12", "MSH-13", "PID-3-1", "PID-3-6", "PID-5-2", "PID-5-4", "PID-9", "PID-30"} {
		if x, y := mustGet(t, a, p), mustGet(t, b, p); x != y {
			t.Errorf("%s: %q vs %q", p, x, y)
		}
	}
	// a short MSH-2 is completed with the usual characters
	c := mustParse(t, cr("MSH|^~|A|||||||ADT^A01|1|P|2.5.1", "PID|1||a\\b"))
	if d := c.Delimiters(); d != (Delimiters{'|', '^', '~', '\\', '&', 0}) {
		t.Errorf("completed delimiters %+v", d)
	}
}

func TestParseFailures(t *testing.T) {
	cases := map[string]string{
		"":                    CodeMissingMSH,
		"   \r\n":             CodeMissingMSH,
		"PID|1|2\r":           CodeMissingMSH,
		"MSH":                 CodeMissingMSH,
		"MSHA^~\\&|":          CodeBadDelimiters,
		"MSH ^~\\&|":          CodeBadDelimiters,
		"MSH|^^\\&|":          CodeBadDelimiters,
		"MSH|^~\\&#$|":        CodeBadDelimiters,
		"MSH|^~a&|":           CodeBadDelimiters,
		"EVN|A01\rMSH|^~\\&|": CodeMissingMSH,
	}
	for in, code := range cases {
		for _, strict := range []bool{false, true} {
			m, err := Parse([]byte(in), ParseOptions{Strict: strict})
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("%q strict=%v: err = %v, want *ParseError", in, strict, err)
				continue
			}
			if m != nil {
				t.Errorf("%q: message returned with a fatal error", in)
			}
			if (!strict && pe.Defects[0].Code != code) || !pe.Has(code) {
				t.Errorf("%q strict=%v: %v, want %s", in, strict, pe.Defects, code)
			}
		}
	}
}

// at returns the byte offset of the n-th (1-based) occurrence of marker in s
// plus delta; the strict-mode tests state positions this way so the expected
// offsets are computed from the input, not copied from the parser.
func at(t *testing.T, s, marker string, n, delta int) int {
	t.Helper()
	off := -1
	for i := 0; i < n; i++ {
		j := strings.Index(s[off+1:], marker)
		if j < 0 {
			t.Fatalf("marker %q #%d not in %q", marker, n, s)
		}
		off += 1 + j
	}
	return off + delta
}

func TestStrictDefects(t *testing.T) {
	const hdr = "MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1"
	type d struct {
		code string
		pos  Position
	}
	type tc struct {
		name string
		in   string
		want func(in string) []d
	}
	seg := func(n int, id string) Position { return Position{Segment: n, SegmentID: id} }
	withOff := func(p Position, off int) Position { p.Offset = off; return p }
	leaf := func(n int, id string, f, r, c, sc int) Position {
		return Position{Segment: n, SegmentID: id, Field: f, Repetition: r, Component: c, Subcomponent: sc}
	}
	cases := []tc{
		{"clean", hdr + "\rPID|1||123^^^H^MR||Doe^Jane\r", nil},
		{"LF and no final terminator", hdr + "\nPID|1", func(in string) []d {
			return []d{
				{CodeBadTerminator, withOff(seg(1, "MSH"), at(t, in, "\n", 1, 0))},
				{CodeMissingTerminator, withOff(seg(2, "PID"), len(in))},
			}
		}},
		{"CRLF", hdr + "\r\n", func(in string) []d {
			return []d{{CodeBadTerminator, withOff(seg(1, "MSH"), at(t, in, "\r\n", 1, 0))}}
		}},
		{"BOM and whitespace", "\xEF\xBB\xBF " + hdr + "\r  PID|1\r\r", func(in string) []d {
			return []d{
				{CodeBOM, Position{Offset: 0}},
				{CodeStrayWhitespace, Position{Offset: 3}},
				{CodeStrayWhitespace, Position{Segment: 2, Offset: at(t, in, "\r  PID", 1, 1)}},
				{CodeBlankLine, Position{Segment: 3, Offset: at(t, in, "\r\r", 1, 1)}},
			}
		}},
		{"trailing delimiters", hdr + "\rPID|1||a^b^^~c~||d&&|\r", func(in string) []d {
			return []d{
				{CodeTrailingDelimiter, withOff(leaf(2, "PID", 3, 1, 3, 0), at(t, in, "^^~", 1, 0))},
				{CodeTrailingDelimiter, withOff(leaf(2, "PID", 3, 3, 0, 0), at(t, in, "c~", 1, 1))},
				{CodeTrailingDelimiter, withOff(leaf(2, "PID", 5, 1, 1, 2), at(t, in, "d&&", 1, 1))},
				{CodeTrailingDelimiter, withOff(leaf(2, "PID", 6, 0, 0, 0), at(t, in, "&&|", 1, 2))},
			}
		}},
		{"escapes", hdr + "\rNTE|1||ok\\F\\ \\Q\\ x^y\\X4G\\&\\Xabc\\&open\\here\r", func(in string) []d {
			return []d{
				{CodeBadEscape, withOff(leaf(2, "NTE", 3, 1, 1, 1), at(t, in, "\\Q", 1, 0))},
				{CodeBadEscape, withOff(leaf(2, "NTE", 3, 1, 2, 1), at(t, in, "\\X4G", 1, 0))},
				{CodeBadEscape, withOff(leaf(2, "NTE", 3, 1, 2, 2), at(t, in, "\\Xabc", 1, 0))},
				{CodeBadEscape, withOff(leaf(2, "NTE", 3, 1, 2, 3), at(t, in, "\\here", 1, 0))},
			}
		}},
		{"segment ids", hdr + "\rPi1|1\rZ1|x\rfree text line\r", func(in string) []d {
			return []d{
				{CodeBadSegmentID, withOff(seg(2, "Pi1"), at(t, in, "Pi1", 1, 0))},
				{CodeBadSegmentID, withOff(seg(3, "Z1"), at(t, in, "Z1", 1, 0))},
				{CodeBadSegmentID, withOff(seg(4, "free"), at(t, in, "free", 1, 0))},
			}
		}},
		{"characters", hdr + "\rNTE|1||caf\xC3\xA9\x01\r", func(in string) []d {
			return []d{
				{CodeBadCharacter, withOff(leaf(2, "NTE", 3, 1, 1, 1), at(t, in, "\xC3", 1, 0))},
				{CodeBadCharacter, withOff(leaf(2, "NTE", 3, 1, 1, 1), at(t, in, "\x01", 1, 0))},
			}
		}},
		{"utf-8 declared", hdr + "||||||UNICODE UTF-8\rNTE|1||caf\xC3\xA9 \xFF\r", func(in string) []d {
			return []d{{CodeBadCharacter, withOff(leaf(2, "NTE", 3, 1, 1, 1), at(t, in, "\xFF", 1, 0))}}
		}},
		{"charset", hdr + "||||||UNICODE\r", func(in string) []d {
			return []d{{CodeBadCharset, Position{Segment: 1, SegmentID: "MSH", Field: 18, Repetition: 1, Offset: at(t, in, "UNICODE", 1, 0)}}}
		}},
		{"required", "MSH|^~\\&|A||||20240101|||1||2.5.1\r", func(in string) []d {
			return []d{
				{CodeMissingRequired, withOff(Position{Segment: 1, SegmentID: "MSH", Field: 9}, at(t, in, "||1", 1, 1))},
				{CodeMissingRequired, withOff(Position{Segment: 1, SegmentID: "MSH", Field: 11}, at(t, in, "||2.5", 1, 1))},
			}
		}},
		{"second MSH", hdr + "\r" + hdr + "\r", func(in string) []d {
			return []d{{CodeUnexpectedMSH, withOff(seg(2, "MSH"), len(hdr)+1)}}
		}},
		{"values", "MSH|^~\\&|A||||2024-01-01||ADT^A01|1|P|2.5.1\rOBX|1|NM|x||1,5\rOBX|2|NM|x||-1.5~+2.~.5\rOBX|3|TS|x||20240230\rOBX|4|XX|x||a\rOBX|5|SN|x||>^1x\rOBX|6|ST|x||a^b\rOBX|7|DT|x||20240229\rOBX|8|TM|x||2460\r", func(in string) []d {
			return []d{
				{CodeBadValue, withOff(Position{Segment: 1, SegmentID: "MSH", Field: 7, Repetition: 1, Component: 1}, at(t, in, "2024-", 1, 0))},
				{CodeBadValue, withOff(Position{Segment: 2, SegmentID: "OBX", Field: 5, Repetition: 1}, at(t, in, "1,5", 1, 0))},
				{CodeBadValue, withOff(Position{Segment: 4, SegmentID: "OBX", Field: 5, Repetition: 1, Component: 1}, at(t, in, "20240230", 1, 0))},
				{CodeBadValue, withOff(Position{Segment: 5, SegmentID: "OBX", Field: 2, Repetition: 1}, at(t, in, "XX", 1, 0))},
				{CodeBadValue, withOff(Position{Segment: 6, SegmentID: "OBX", Field: 5, Repetition: 1, Component: 2}, at(t, in, "1x", 1, 0))},
				{CodeBadValue, withOff(Position{Segment: 7, SegmentID: "OBX", Field: 5, Repetition: 1}, at(t, in, "a^b", 1, 0))},
				{CodeBadValue, withOff(Position{Segment: 9, SegmentID: "OBX", Field: 5, Repetition: 1}, at(t, in, "2460", 1, 0))},
			}
		}},
	}
	for _, c := range cases {
		m, err := Parse([]byte(c.in), ParseOptions{Strict: true})
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		want := c.want(c.in)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: err = %v", c.name, err)
			continue
		}
		if m == nil {
			t.Errorf("%s: no message beside the defects", c.name)
		}
		if len(pe.Defects) != len(want) {
			t.Errorf("%s: got %d defects, want %d:\n%v", c.name, len(pe.Defects), len(want), pe.Defects)
			continue
		}
		for i, w := range want {
			g := pe.Defects[i]
			if g.Code != w.code || g.Pos != w.pos {
				t.Errorf("%s defect %d:\n got %s %+v\nwant %s %+v", c.name, i+1, g.Code, g.Pos, w.code, w.pos)
			}
			if g.Message == "" {
				t.Errorf("%s defect %d has no message", c.name, i+1)
			}
		}
	}
}

func TestParseErrorText(t *testing.T) {
	_, err := Parse([]byte("MSH|^~\\&|A||||20240101|||1|P|2.5.1\nPID|1|Secret Name\n"), ParseOptions{Strict: true})
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	want := "hl7: segment 1 (MSH) field 9, byte 24: missing-required: MSH-9 (message type) is empty (and 2 more)"
	if msg != want {
		t.Errorf("Error() = %q\nwant      %q", msg, want)
	}
	if strings.Contains(msg, "Secret") {
		t.Error("error text quotes a value")
	}
	if !err.(*ParseError).Has(CodeBadTerminator) || err.(*ParseError).Has(CodeBadEscape) {
		t.Error("Has is wrong")
	}
	p := Position{Message: 2, Segment: 3, SegmentID: "PID", Field: 5, Repetition: 2, Component: 1, Subcomponent: 4, Offset: 123}
	if got := p.String(); got != "message 2 segment 3 (PID) field 5 repetition 2 component 1 subcomponent 4, byte 123" {
		t.Errorf("Position.String = %q", got)
	}
	if got := (Position{Segment: 3, SegmentID: "PID", Field: 5, Component: 2, Offset: 123}).String(); got != "segment 3 (PID) field 5 component 2, byte 123" {
		t.Errorf("Position.String = %q", got)
	}
	if got := (Position{Segment: 1, SegmentID: "\x00\xffab", Offset: 1}).String(); got != "segment 1 (??ab), byte 1" {
		t.Errorf("Position.String with garbage id = %q", got)
	}
}

func TestPaths(t *testing.T) {
	good := map[string]Path{
		"PID-5":          {Segment: "PID", Field: 5},
		"PID-5-1":        {Segment: "PID", Field: 5, Component: 1},
		"PID-3(2)-4-2":   {Segment: "PID", Field: 3, Repetition: 2, Component: 4, Subcomponent: 2},
		"OBX(3)-5":       {Segment: "OBX", Occurrence: 3, Field: 5},
		"MSH-9-2":        {Segment: "MSH", Field: 9, Component: 2},
		"PID-5-1-1":      {Segment: "PID", Field: 5, Component: 1, Subcomponent: 1},
		" zpd(12)-1(3) ": {Segment: "ZPD", Occurrence: 12, Field: 1, Repetition: 3},
		"PID.5.1":        {Segment: "PID", Field: 5, Component: 1},
		"Z01-9999":       {Segment: "Z01", Field: 9999},
	}
	for s, want := range good {
		p, err := ParsePath(s)
		if err != nil || p != want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", s, p, err, want)
			continue
		}
		// String gives the canonical form, which parses back to the same path
		p2, err := ParsePath(p.String())
		if err != nil || p2 != p {
			t.Errorf("%q → %q → %+v, %v", s, p.String(), p2, err)
		}
	}
	if got := (Path{Segment: "PID", Occurrence: 2, Field: 3, Repetition: 4, Component: 5, Subcomponent: 6}).String(); got != "PID(2)-3(4)-5-6" {
		t.Errorf("String = %q", got)
	}
	bad := []string{"", "P", "PID", "PID-", "PID--1", "PID-a", "PID-0", "PID(1", "PID()-1", "PID(x)-1", "PID(0)-1", "PID-1(0)",
		"PID-1-0", "PID-1-1-0", "PID-1-1-1-1", "PID-1x", "PID-10000", "PI$-1", "9ID-1", "PID(99999999999)-1", "PID-1(99999)"}
	for _, s := range bad {
		if _, err := ParsePath(s); err == nil || !errors.Is(err, ErrBadPath) {
			t.Errorf("ParsePath(%q) = %v, want ErrBadPath", s, err)
		}
	}
}

func TestUnescapeSequences(t *testing.T) {
	d := DefaultDelimiters
	d27 := Delimiters{'|', '^', '~', '\\', '&', '#'}
	cases := []struct {
		in, want string
		d        Delimiters
	}{
		{`a\F\b`, "a|b", d},
		{`a\S\b`, "a^b", d},
		{`a\T\b`, "a&b", d},
		{`a\R\b`, "a~b", d},
		{`a\E\b`, `a\b`, d},
		{`a\P\b`, "a#b", d27},
		{`a\P\b`, "a#b", d},
		{`\X41\`, "A", d},
		{`\X4142\`, "AB", d},
		{`\Xc3a9\`, "é", d},             // valid UTF-8 bytes
		{`\XE9\`, "é", d},               // not UTF-8: read as ISO-8859-1
		{`\X0D0A\`, "\r\n", d},          // line break bytes
		{`\C2842\x`, `\C2842\x`, d},     // ISO 2022 switch: kept
		{`\M2442\x`, `\M2442\x`, d},     // multi-byte switch: kept
		{`\M244F41\x`, `\M244F41\x`, d}, // three-byte form
		{`\Zabc\`, `\Zabc\`, d},         // local escape: kept
		{`\H\bold\N\`, "bold", d},
		{`a\.br\b`, "a\nb", d},
		{`a\.sp\b`, "a\nb", d},
		{`a\.sp3\b`, "a\n\n\nb", d},
		{`a\.sp +2\b`, "a\n\nb", d},
		{`a\.sk2\b`, "a  b", d},
		{`a\.sk\b`, "a b", d},
		{`a\.in+4\b`, "ab", d},
		{`a\.in-2\b`, "ab", d},
		{`a\.ti4\b`, "ab", d},
		{`a\.ce\b`, "a\nb", d},
		{`\.fi\a\.nf\`, "a", d},
		{`a\.sp 99999999\`, "a" + strings.Repeat("\n", maxFormatRepeat), d},
		// malformed or unknown: kept literally
		{`C:\path\file`, `C:\path\file`, d},
		{`a\`, `a\`, d},
		{`\\`, `\\`, d},
		{`\Q\`, `\Q\`, d},
		{`\X4\`, `\X4\`, d},
		{`\XZZ\`, `\XZZ\`, d},
		{`\.xx\`, `\.xx\`, d},
		{`\.br5\`, `\.br5\`, d},
		{`\C28\`, `\C28\`, d},
		{`no escapes`, `no escapes`, d},
		// separators end an open escape: each piece is decoded on its own
		{`a\F^b\`, `a\F^b\`, d},
		{`x\T\y^z\S\`, "x&y^z^", d},
	}
	for _, c := range cases {
		if got := Unescape(c.in, c.d); got != c.want {
			t.Errorf("Unescape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEscape(t *testing.T) {
	d := DefaultDelimiters
	cases := map[string]string{
		"plain":        "plain",
		"a|b^c&d~e\\f": `a\F\b\S\c\T\d\R\e\E\f`,
		"l1\nl2":       `l1\.br\l2`,
		"cr\r":         `cr\X0D\`,
		"#":            "#",
		"é":            "é",
	}
	for in, want := range cases {
		if got := Escape(in, d); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		if back := Unescape(Escape(in, d), d); back != in {
			t.Errorf("round trip %q → %q", in, back)
		}
	}
	d27 := Delimiters{'|', '^', '~', '\\', '&', '#'}
	if got := Escape("a#b", d27); got != `a\P\b` {
		t.Errorf("Escape with truncation = %q", got)
	}
	// with '.' as a delimiter a line feed cannot be written as \.br\
	for _, dd := range []Delimiters{{'#', '!', '.', '*', '%', '@'}, {'#', '!', '$', '.', '%', 0}} {
		e := Escape("a\nb", dd)
		if want := string(dd.Escape) + "X0A" + string(dd.Escape); e != "a"+want+"b" {
			t.Errorf("Escape with '.' delimiter = %q", e)
		}
		if back := Unescape(e, dd); back != "a\nb" {
			t.Errorf("round trip with '.' delimiter = %q", back)
		}
	}
	other := Delimiters{'#', '!', '$', '*', '%', 0}
	if got := Escape("#!$*%|^", other); got != `*F**S**R**E**T*|^` {
		t.Errorf("Escape with other delimiters = %q", got)
	}
}

func TestCharsets(t *testing.T) {
	latin1 := []byte("MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1||||||8859/1\rPID|1||1||M\xFCller^Ren\xE9e\\XE9\\\r")
	m := mustParse(t, latin1)
	if m.Charset() != "ISO-8859-1" {
		t.Errorf("Charset %q", m.Charset())
	}
	if got := mustGet(t, m, "PID-5"); got != "Müller^Renéeé" {
		t.Errorf("PID-5 = %q", got)
	}
	if got := m.Segment("PID", 1).Field(5).Rep(1).Component(1); got != "Müller" {
		t.Errorf("Component = %q", got)
	}
	if !bytes.Equal(m.Encode(), latin1) {
		t.Error("Latin-1 message not encoded byte for byte")
	}
	if err := m.Set("PID-5-1", "Gödel"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(m.Encode(), []byte("G\xF6del^")) {
		t.Errorf("Set did not write Latin-1: %q", m.Encode())
	}
	if err := m.Set("PID-5-1", "€"); err == nil {
		t.Error("Set of € in ISO-8859-1: want an error")
	}

	latin9 := []byte("MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1||||||8859/15\rNTE|1||\xA4 \xBC \xE9\r")
	m9 := mustParse(t, latin9)
	if got := mustGet(t, m9, "NTE-3"); got != "€ Œ é" {
		t.Errorf("Latin-9 NTE-3 = %q", got)
	}
	if err := m9.Set("NTE-3", "€5"); err != nil || !bytes.Contains(m9.Encode(), []byte("|\xA45\r")) {
		t.Errorf("Latin-9 Set: %v %q", err, m9.Encode())
	}
	if err := m9.Set("NTE-3", "¤"); err == nil { // U+00A4 is replaced by € in Latin-9
		t.Error("Set of ¤ in ISO-8859-15: want an error")
	}

	utf := []byte("MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1||||||UNICODE UTF-8\rNTE|1||Zoë 日本 \\XE697A5\\\r")
	mu := mustParse(t, utf)
	if got := mustGet(t, mu, "NTE-3"); got != "Zoë 日本 日" {
		t.Errorf("UTF-8 NTE-3 = %q", got)
	}

	// the override wins over MSH-18
	mo, err := Parse(latin1, ParseOptions{Charset: "UTF-8"})
	if err != nil {
		t.Fatal(err)
	}
	if mo.Charset() != "UTF-8" || mustGet(t, mo, "PID-5-1") != "M\xFCller" {
		t.Errorf("override: %q %q", mo.Charset(), mustGet(t, mo, "PID-5-1"))
	}
	mo2, _ := Parse([]byte("MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1\rNTE|1||\xE9\r"), ParseOptions{Charset: "latin1"})
	if got := mustGet(t, mo2, "NTE-3"); got != "é" {
		t.Errorf("override latin1: %q", got)
	}

	names := map[string]string{
		"": "ASCII", "ASCII": "ASCII", "UNICODE UTF-8": "UTF-8", "8859/1": "ISO-8859-1", "8859/15": "ISO-8859-15",
		"ISO IR100": "ISO-8859-1", "UNICODE": "UTF-16", "8859/2": "ISO-8859-2", "GB 18030": "GB 18030",
	}
	for in, want := range names {
		if got := lookupCharset(in).name; got != want {
			t.Errorf("lookupCharset(%q) = %q, want %q", in, got, want)
		}
	}
	// unsupported sets: lenient reads them as pass-through, strict reports them
	for _, cs := range []string{"UNICODE", "8859/2", "ISO IR87"} {
		in := []byte("MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1||||||" + cs + "\r")
		if _, err := Parse(in, ParseOptions{}); err != nil {
			t.Errorf("%s lenient: %v", cs, err)
		}
		_, err := Parse(in, ParseOptions{Strict: true})
		var pe *ParseError
		if !errors.As(err, &pe) || !pe.Has(CodeBadCharset) {
			t.Errorf("%s strict: %v", cs, err)
		}
	}
	_, err = Parse([]byte("MSH|^~\\&|A||||20240101||ADT^A01|1|P|2.5.1\r"), ParseOptions{Strict: true, Charset: "EBCDIC"})
	if pe, ok := err.(*ParseError); !ok || pe.Defects[0].Code != CodeBadCharset || pe.Defects[0].Pos.Field != 0 {
		t.Errorf("bad override in strict mode: %v", err)
	}
}

func TestV27TruncationAndOtherDelimiters(t *testing.T) {
	m := mustParse(t, cr("MSH|^~\\&#|A||||20240101||ADT^A01|1|P|2.7", "NTE|1||long text#|x\\P\\y"))
	if d := m.Delimiters(); d.Truncation != '#' {
		t.Fatalf("truncation %q", d.Truncation)
	}
	if got := mustGet(t, m, "NTE-3"); got != "long text#" {
		t.Errorf("NTE-3 = %q", got)
	}
	if got := mustGet(t, m, "NTE-4"); got != "x#y" {
		t.Errorf("NTE-4 = %q", got)
	}
	if got := mustGet(t, m, "MSH-2"); got != "^~\\&#" {
		t.Errorf("MSH-2 = %q", got)
	}
	if !bytes.Equal(m.Encode(), cr("MSH|^~\\&#|A||||20240101||ADT^A01|1|P|2.7", "NTE|1||long text#|x\\P\\y")) {
		t.Error("not lossless")
	}
	// a message written with other delimiters reads the same
	o := mustParse(t, cr("MSH#!$*%#A####20240101##ADT!A01#1#P#2.5.1", "PID#1##123!!!H%1.2%ISO!MR$456##Doe*F*Smith!J"))
	for p, want := range map[string]string{"MSH-1": "#", "MSH-2": "!$*%", "MSH-9-2": "A01", "PID-3-4-2": "1.2", "PID-3(2)-1": "456", "PID-5-1": "Doe#Smith", "PID-5-2": "J"} {
		if got := mustGet(t, o, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
}

func TestBatchAndSplit(t *testing.T) {
	msg := func(id string) string {
		return "MSH|^~\\&|A||||20240101||ADT^A01|" + id + "|P|2.5.1\rPID|1||" + id + "\r"
	}
	file := "FHS|^~\\&|SENDER|||||file.hl7\rBHS|^~\\&|SENDER\r" + msg("1") + msg("2") + msg("3") + "BTS|3\rFTS|1\r"
	msgs, b, err := ParseAll([]byte(file), ParseOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || b == nil || b.FHS == nil || b.BHS == nil || b.BTS == nil || b.FTS == nil {
		t.Fatalf("%d messages, batch %+v", len(msgs), b)
	}
	for i, m := range msgs {
		if got := mustGet(t, m, "PID-3"); got != fmt.Sprint(i+1) {
			t.Errorf("message %d PID-3 = %q", i+1, got)
		}
		if string(m.Encode()) != msg(fmt.Sprint(i+1)) {
			t.Errorf("message %d not lossless", i+1)
		}
	}
	if v, _ := b.FHS.Get("8"); v != "file.hl7" {
		t.Errorf("FHS-8 = %q", v)
	}
	if v, _ := b.FHS.Get("2"); v != `^~\&` {
		t.Errorf("FHS-2 = %q", v)
	}
	if v, _ := b.BTS.Get("1"); v != "3" {
		t.Errorf("BTS-1 = %q", v)
	}

	// wrong counts and missing trailers in strict mode
	bad := "FHS|^~\\&\rBHS|^~\\&\r" + msg("1") + msg("2") + "BTS|3\rBHS|^~\\&\r" + msg("3") + "FTS|5\r"
	_, _, err = ParseAll([]byte(bad), ParseOptions{Strict: true})
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("want defects, got %v", err)
	}
	var codes []string
	for _, d := range pe.Defects {
		codes = append(codes, d.Code+"@"+fmt.Sprint(d.Pos.Offset))
	}
	btsOff := strings.Index(bad, "BTS|3") + 4
	ftsOff := strings.Index(bad, "FTS|5") + 4
	want := []string{CodeBatchCount + "@" + fmt.Sprint(btsOff), CodeBatchCount + "@" + fmt.Sprint(ftsOff)}
	if strings.Join(codes, ",") != strings.Join(want, ",") {
		t.Errorf("defects %v, want %v", codes, want)
	}
	// lenient mode accepts it
	if msgs, _, err := ParseAll([]byte(bad), ParseOptions{}); err != nil || len(msgs) != 3 {
		t.Errorf("lenient: %d, %v", len(msgs), err)
	}
	// missing trailers
	_, _, err = ParseAll([]byte("FHS|^~\\&\rBHS|^~\\&\r"+msg("1")), ParseOptions{Strict: true})
	if !errors.As(err, &pe) || len(pe.Defects) != 2 || pe.Defects[0].Code != CodeMissingTrailer || pe.Defects[1].Code != CodeMissingTrailer {
		t.Errorf("missing trailers: %v", err)
	}

	// messages back to back, LF separated, with junk before the first
	loose := "junk line\n" + strings.ReplaceAll(msg("a")+msg("b"), "\r", "\n") + "\n\n"
	msgs, b, err = ParseAll([]byte(loose), ParseOptions{})
	if err != nil || len(msgs) != 2 || b != nil {
		t.Fatalf("loose: %d, %v, %v", len(msgs), b, err)
	}
	if mustGet(t, msgs[1], "MSH-10") != "b" {
		t.Error("second message wrong")
	}
	_, _, err = ParseAll([]byte(loose), ParseOptions{Strict: true})
	if !errors.As(err, &pe) || pe.Defects[0].Code != CodeUnexpectedSegment || pe.Defects[0].Pos.Offset != 0 {
		t.Errorf("strict loose: %v", err)
	}
	for _, d := range pe.Defects[1:] {
		if d.Pos.Message == 0 {
			t.Errorf("message defect without a message number: %v", d)
		}
	}

	// Split
	parts := Split([]byte(file))
	if len(parts) != 3 {
		t.Fatalf("Split: %d parts", len(parts))
	}
	for i, p := range parts {
		if string(p) != msg(fmt.Sprint(i+1)) {
			t.Errorf("part %d = %q", i+1, p)
		}
	}
	if got := Split([]byte("no message here\n")); len(got) != 0 {
		t.Errorf("Split without MSH: %q", got)
	}
	if got := Split([]byte("MSH|^~\\&|x\nMSHX\nMSH|^~\\&|y")); len(got) != 2 || string(got[0]) != "MSH|^~\\&|x\nMSHX\n" {
		t.Errorf("Split: %q", got)
	}
	// nothing at all
	if _, _, err := ParseAll(nil, ParseOptions{}); err == nil {
		t.Error("ParseAll(nil): want an error")
	}
}

func TestConcurrentReads(t *testing.T) {
	m := mustParse(t, readFixture(t, "oru_r01.hl7"))
	want := mustGet(t, m, "OBX(15)-5")
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 200; i++ {
				for _, s := range m.Segments() {
					for n := 1; n <= s.NumFields(); n++ {
						_ = s.Field(n).String()
					}
				}
				if v, _ := m.Get("OBX(15)-5"); v != want {
					errs <- v
					return
				}
				_, _ = m.GetAll("OBX-3")
				_ = m.Header()
			}
		})
	}
	wg.Wait()
	close(errs)
	for v := range errs {
		t.Errorf("concurrent Get = %q", v)
	}
}
