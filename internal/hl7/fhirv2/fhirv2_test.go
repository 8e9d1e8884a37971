package fhirv2

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

var update = flag.Bool("update", false, "rewrite the golden .hl7 files in testdata")

var fixedNow = time.Date(2024, 3, 1, 10, 30, 0, 0, time.FixedZone("EST", -5*3600))

// testEncoder returns an Encoder with a fixed clock and the control id id.
func testEncoder(id string) *Encoder {
	return New(Options{
		SendingApplication:   "MEDIFLOW",
		SendingFacility:      "SUNRISE",
		ReceivingApplication: "EHR",
		ReceivingFacility:    "SUNRISE-EHR",
		Now:                  func() time.Time { return fixedNow },
		ControlID:            func() string { return id },
		IdentifierSystems: map[string]string{
			"urn:oid:2.16.840.1.113883.19.5":           "SUNRISE",
			"http://hospital.example.org/visit":        "SUNRISE-VISIT",
			"http://hospital.example.org/docs":         "SUNRISE-DOCS",
			"http://mediflow.example.org/appointments": "MEDIFLOW",
			"http://ehr.example.org/appt":              "EHR",
		},
	})
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testRefs(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"Practitioner/dr-1":  read(t, "practitioner.json"),
		"Location/loc-1":     read(t, "location.json"),
		"Encounter/enc-1":    read(t, "encounter.json"),
		"Organization/org-1": read(t, "organization.json"),
	}
}

// reparse encodes m and parses it back in strict mode, failing on any defect.
func reparse(t *testing.T, m *hl7.Message) *hl7.Message {
	t.Helper()
	back, err := hl7.Parse(m.Encode(), hl7.ParseOptions{Strict: true})
	if err != nil {
		var pe *hl7.ParseError
		if errors.As(err, &pe) {
			for _, d := range pe.Defects {
				t.Errorf("defect: %s", d)
			}
		}
		t.Fatalf("strict re-parse: %v\n%s", err, m)
	}
	return back
}

// golden compares the encoded message with testdata/name byte for byte.
func golden(t *testing.T, name string, m *hl7.Message) {
	t.Helper()
	got := m.Encode()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (run go test -update to accept the new output):\ngot:\n%s\nwant:\n%s",
			name, m, strings.ReplaceAll(string(want), "\r", "\n"))
	}
}

// expect checks values at paths.
func expect(t *testing.T, m *hl7.Message, want map[string]string) {
	t.Helper()
	for path, w := range want {
		got, err := m.Get(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if got != w {
			t.Errorf("%s = %q, want %q", path, got, w)
		}
	}
}

// noteText is what documentreference.json holds, base64-encoded.
const noteText = "Progress note\nSubjective: pain 3/10 | better ^ than & before ~ ok \\ fine\n\n\tIndented with a tab\r\n" +
	"Plan: follow up in 2 weeks; Ärztin informed.\n"

func TestNoteText(t *testing.T) {
	m, err := testEncoder("MF0001").Note(read(t, "documentreference.json"), read(t, "patient.json"), testRefs(t))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "mdm_t02_text.hl7", m)
	back := reparse(t, m)
	expect(t, back, map[string]string{
		"MSH-3": "MEDIFLOW", "MSH-4": "SUNRISE", "MSH-5": "EHR", "MSH-6": "SUNRISE-EHR",
		"MSH-7": "20240301103000-0500", "MSH-9": "MDM^T02^MDM_T02", "MSH-10": "MF0001", "MSH-11": "P",
		"MSH-12": "2.5.1", "MSH-18": "UNICODE UTF-8",
		"EVN-2":   "20240301103000-0500",
		"PID-3-1": "MRN12345", "PID-3-4": "SUNRISE", "PID-3-5": "MR",
		"PID-3(2)-1": "999-99-9999", "PID-3(2)-4-2": "http://hospital.example.org/ssn-like", "PID-3(2)-4-3": "URI",
		"PID-5-1": "Müller-Smith", "PID-5-2": "Anna", "PID-5-3": "Maria", "PID-5-5": "Ms.", "PID-5-7": "L",
		"PID-5(2)-2": "Annie", "PID-7": "19800229", "PID-8": "F",
		"PID-11-1": "12 Main St", "PID-11-3": "Springfield", "PID-11-5": "62701",
		"PID-13(3)-4": "anna@example.org", "PID-14-1": "555-0111", "PID-30": "N",
		"PV1-2": "O", "PV1-3-1": "CLINIC-A", "PV1-7-1": "1234567893", "PV1-7-2": "Careful", "PV1-7-9": "NPI",
		"PV1-19-1": "V0001", "PV1-19-4": "SUNRISE-VISIT", "PV1-44": "20240228090000-0500",
		"TXA-2": "PN", "TXA-3": "TX", "TXA-4": "20240228090000-0500",
		"TXA-5-1": "1234567893", "TXA-5-2": "Careful", "TXA-5-3": "Carl", "TXA-9-1": "1234567893",
		"TXA-6":    "20240228101530.123-0500",
		"TXA-12-1": "DOC-2024-0001", "TXA-12-2": "SUNRISE-DOCS", "TXA-17": "AU", "TXA-18": "U", "TXA-19": "AV",
		"OBX-2": "TX", "OBX-3-1": "11506-3", "OBX-3-3": "LN", "OBX-11": "F",
	})
	obx := back.SegmentsByID("OBX")
	var lines []string
	for i, s := range obx {
		if got, _ := s.Get("1"); got != strconv.Itoa(i+1) {
			t.Errorf("OBX(%d)-1 = %q", i+1, got)
		}
		v, _ := s.Get("5")
		lines = append(lines, v)
	}
	want := strings.Split(strings.TrimSuffix(strings.ReplaceAll(noteText, "\r\n", "\n"), "\n"), "\n")
	if strings.Join(lines, "\n") != strings.Join(want, "\n") || len(lines) != len(want) {
		t.Errorf("OBX-5 lines = %q, want %q", lines, want)
	}
}

func TestNoteBinaryAndURL(t *testing.T) {
	m, err := testEncoder("MF0002").Note(read(t, "documentreference-pdf.json"), read(t, "patient.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "mdm_t02_pdf.hl7", m)
	back := reparse(t, m)
	expect(t, back, map[string]string{
		"PV1-2": "U", "TXA-2": "DS", "TXA-3": "AP", "TXA-17": "IP", "TXA-12-1": "DOC-2024-0002",
		"TXA-5-1": "", "TXA-5-2": "Doe, Jane", // author not in refs: its display
		"TXA-6":  "20240229160000+0000",
		"OBX-2":  "ED",
		"OBX-4":  "1",
		"OBX-11": "P", "OBX-5-2": "AP", "OBX-5-3": "PDF", "OBX-5-4": "Base64",
		"OBX(2)-2": "RP", "OBX(2)-4": "2", "OBX(2)-5-1": "https://docs.example.org/get?id=7&fmt=pdf",
	})
	data, _ := back.Get("OBX-5-5")
	if !strings.HasPrefix(data, "JVBERi0") { // "%PDF-" in base64
		t.Errorf("OBX-5-5 does not hold the PDF in base64: %.20s", data)
	}
}

func TestBook(t *testing.T) {
	m, err := testEncoder("MF0003").Book(read(t, "appointment.json"), read(t, "patient.json"), testRefs(t))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "siu_s12.hl7", m)
	back := reparse(t, m)
	expect(t, back, map[string]string{
		"MSH-9":   "SIU^S12^SIU_S12",
		"SCH-1-1": "A-100", "SCH-1-2": "MEDIFLOW", "SCH-2-1": "E-555", "SCH-2-2": "EHR",
		"SCH-6":   "",
		"SCH-7-1": "25064002", "SCH-7-3": "SCT",
		"SCH-9": "30", "SCH-10": "MIN",
		"SCH-11-3": "M30", "SCH-11-4": "20240305140000-0500", "SCH-11-5": "20240305143000-0500",
		"SCH-25":  "Booked",
		"TQ1-6-1": "30", "TQ1-7": "20240305140000-0500", "TQ1-8": "20240305143000-0500",
		"NTE-3": `Bring list of meds | allergies ^ & ~ \`, "NTE-4": "RE", "NTE(2)-4": "PI",
		"PID-3-1": "MRN12345",
		"RGS-1":   "1",
		"AIS-3-1": "11429006", "AIS-4": "20240305140000-0500", "AIS-7": "30",
		"AIL-3-1": "CLINIC-A", "AIL-3-9": "Clinic A, Room 3", "AIL-4-1": "OF",
		"AIP-3-1": "1234567893", "AIP-3-2": "Careful", "AIP-4-1": "ATND", "AIP-12": "Booked",
	})
	// segment order as SIU_S12 defines it
	var ids []string
	for _, s := range back.Segments() {
		ids = append(ids, s.ID())
	}
	if got := strings.Join(ids, " "); got != "MSH SCH TQ1 NTE NTE PID RGS AIS AIL AIP" {
		t.Errorf("segments %s", got)
	}
}

func TestCancel(t *testing.T) {
	m, err := testEncoder("MF0004").Cancel(read(t, "appointment-cancelled.json"), read(t, "patient.json"), testRefs(t))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "siu_s15.hl7", m)
	back := reparse(t, m)
	expect(t, back, map[string]string{
		"MSH-9":   "SIU^S15^SIU_S12",
		"SCH-1-1": "A-100", "SCH-2-1": "E-555",
		"SCH-6-1": "pat", "SCH-6-2": "Patient", "SCH-25": "Cancelled",
		"AIS-10": "Cancelled", "AIP-12": "Cancelled", "AIL-12": "Cancelled",
		"AIP-4": "",
	})
}

func TestCharges(t *testing.T) {
	refs := testRefs(t)
	cov := read(t, "coverage.json")
	m, err := testEncoder("MF0005").Charges(read(t, "patient.json"), []Charge{
		{Item: read(t, "chargeitem-1.json"), Coverage: cov},
		{Item: read(t, "chargeitem-2.json"), Encounter: read(t, "encounter.json"), Coverage: cov},
	}, refs)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "dft_p03.hl7", m)
	back := reparse(t, m)
	expect(t, back, map[string]string{
		"MSH-9": "DFT^P03^DFT_P03", "EVN-1": "P03",
		"PV1-19-1": "V0001",
		"FT1-1":    "1", "FT1-2": "CH-1", "FT1-4-1": "20240228090000-0500", "FT1-5": "20240228110000-0500",
		"FT1-6":   "CG",
		"FT1-7-1": "99213", "FT1-7-3": "C4", "FT1-7-4": "185349003", "FT1-7-6": "SCT",
		"FT1-10":   "1",
		"FT1-11-1": "125.5&USD",
		"FT1-16-1": "CLINIC-A",
		"FT1-19-1": "R51.9", "FT1-19-3": "I10C", "FT1(1)-19(2)-1": "Z00.00",
		"FT1-20-1": "1234567893", "FT1-24-2": "Careful",
		"FT1-25-1": "99213", "FT1-25-3": "C4",
		"FT1(2)-1": "2", "FT1(2)-2": "ci-2", "FT1(2)-4-1": "20240228091000-0500", "FT1(2)-4-2": "20240228091500-0500",
		"FT1(2)-7-1": "J1100", "FT1(2)-7-3": "HCPCS", "FT1(2)-10": "4", "FT1(2)-25-1": "J1100",
		"IN1-1": "1", "IN1-2-1": "PLAN-A", "IN1-3-1": "PAYER-9", "IN1-4": "Example Health Insurance & Co",
		"IN1-8": "GRP-42", "IN1-12": "20240101", "IN1-13": "20241231", "IN1-17": "SEL", "IN1-36": "SUB-778899",
	})
	if n := len(back.SegmentsByID("IN1")); n != 1 {
		t.Errorf("%d IN1 segments for one coverage given twice, want 1", n)
	}
}

// TestEscapingRoundTrip writes values full of delimiters, escape characters
// and control characters and reads them back from the strictly parsed
// message.
func TestEscapingRoundTrip(t *testing.T) {
	nasty := []string{
		`a|b^c&d~e\f`,
		`\F\ is not an escape here \.br\ nor this`,
		"tab\there\x01and\x7fcontrol",
		`^^^|||&&&~~~\\\`,
		"  leading and trailing spaces  ",
		"ünïcødé ✓ 漢字",
		`\`,
	}
	for i, s := range nasty {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			text := s + "\n" + s + "|second"
			doc := docWithText(t, text)
			m, err := testEncoder("RT").Note(doc, read(t, "patient.json"), nil)
			if err != nil {
				t.Fatal(err)
			}
			back := reparse(t, m)
			v1, _ := back.Get("OBX(1)-5")
			v2, _ := back.Get("OBX(2)-5")
			if v1 != s || v2 != s+"|second" {
				t.Errorf("OBX-5 round trip: got %q, %q; want %q, %q", v1, v2, s, s+"|second")
			}

			appt := strings.Replace(string(read(t, "appointment.json")),
				`"comment": "Bring list of meds | allergies ^ & ~ \\"`, `"comment": `+jsonString(s+"\nnext line"), 1)
			m, err = testEncoder("RT").Book([]byte(appt), read(t, "patient.json"), nil)
			if err != nil {
				t.Fatal(err)
			}
			back = reparse(t, m)
			if got, _ := back.Get("NTE-3"); got != s+"\nnext line" {
				t.Errorf("NTE-3 round trip: got %q, want %q", got, s+"\nnext line")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	e := New(Options{})
	seen := map[string]bool{}
	for range 50 {
		m, err := e.Note(read(t, "documentreference-pdf.json"), read(t, "patient.json"), nil)
		if err != nil {
			t.Fatal(err)
		}
		back := reparse(t, m)
		id, _ := back.Get("MSH-10")
		if len(id) != 20 || seen[id] {
			t.Fatalf("control id %q: want 20 characters, unique", id)
		}
		seen[id] = true
		ts, _ := back.Get("MSH-7")
		at, err := time.Parse(v2TimeLayout, ts)
		if err != nil || time.Since(at) > time.Minute || time.Since(at) < -time.Minute {
			t.Fatalf("MSH-7 %q is not now (%v)", ts, err)
		}
		if app, _ := back.Get("MSH-3"); app != "" {
			t.Fatalf("MSH-3 = %q without a sending application", app)
		}
	}
}

func TestOptionsMapIsCopied(t *testing.T) {
	sys := map[string]string{"urn:oid:2.16.840.1.113883.19.5": "FIRST"}
	e := New(Options{IdentifierSystems: sys, ControlID: func() string { return "X" }})
	sys["urn:oid:2.16.840.1.113883.19.5"] = "CHANGED"
	m, err := e.Note(read(t, "documentreference-pdf.json"), read(t, "patient.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get("PID-3-4"); got != "FIRST" {
		t.Errorf("PID-3-4 = %q: the encoder should keep its own copy of IdentifierSystems", got)
	}
}

func TestAuthorities(t *testing.T) {
	e := New(Options{IdentifierSystems: map[string]string{"http://a.example/mrn": "AMRN"}})
	for _, c := range []struct{ system, ns, uid, typ string }{
		{"http://a.example/mrn", "AMRN", "", ""},
		{systemNPI, "NPI", "", ""},
		{systemSSN, "SSA", "", ""},
		{"urn:mediflow:v2:id:HOSP", "HOSP", "", ""},
		{"urn:oid:1.2.3", "", "1.2.3", "ISO"},
		{"http://other.example/id", "", "http://other.example/id", "URI"},
		{"", "", "", ""},
	} {
		ns, uid, typ := e.authority(c.system)
		if ns != c.ns || uid != c.uid || typ != c.typ {
			t.Errorf("authority(%q) = %q %q %q, want %q %q %q", c.system, ns, uid, typ, c.ns, c.uid, c.typ)
		}
	}
}

func TestV2Time(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"2024", "2024"},
		{"2024-03", "202403"},
		{"2024-03-05", "20240305"},
		{"2024-03-05T14:00:00-05:00", "20240305140000-0500"},
		{"2024-03-05T14:00:00Z", "20240305140000+0000"},
		{"2024-03-05T14:00:00.123456789+01:00", "20240305140000.1234+0100"},
		{"2024-03-05T14:00:00", "20240305140000"},
		{"2024-03-05T14:00Z", "202403051400+0000"},
	} {
		got, ok := v2Time(c.in)
		if !ok || got != c.want {
			t.Errorf("v2Time(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "24", "2024-13", "2024-02-30x", "2024-03-05 14:00:00", "2024-03-05T25:00:00Z",
		"2024-03-05T14:00:00.Z", "2024-03-05T14:00:00+0500", "2024-03-05T14:00:00+05:00x", "March 5"} {
		if got, ok := v2Time(bad); ok {
			t.Errorf("v2Time(%q) = %q, want failure", bad, got)
		}
	}
}

func TestRefKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Practitioner/1", "Practitioner/1"},
		{"https://fhir.example/r4/Practitioner/1", "Practitioner/1"},
		{"Practitioner/1/_history/3", "Practitioner/1"},
		{"#contained", ""},
		{"", ""},
		{"justanid", ""},
	} {
		if got := refKey(&reference{Reference: c.in}); got != c.want {
			t.Errorf("refKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestErrors(t *testing.T) {
	pat := read(t, "patient.json")
	doc := read(t, "documentreference.json")
	appt := read(t, "appointment.json")
	item := read(t, "chargeitem-1.json")
	e := testEncoder("E")
	edit := func(body []byte, from, to string) []byte {
		t.Helper()
		if !strings.Contains(string(body), from) {
			t.Fatalf("test input lacks %q", from)
		}
		return []byte(strings.Replace(string(body), from, to, 1))
	}
	noIDs := []byte(`{"resourceType":"Patient","id":"pat-1","name":[{"family":"X"}],"identifier":[{"system":"s"}]}`)
	noName := []byte(`{"resourceType":"Patient","id":"pat-1","identifier":[{"value":"1"}]}`)
	otherEnc := []byte(strings.Replace(string(read(t, "encounter.json")), `"id": "enc-1"`, `"id": "enc-2"`, 1))
	cases := []struct {
		name string
		run  func() error
		want error
		says string
	}{
		{"no patient identifier", func() error { _, err := e.Note(doc, noIDs, nil); return err }, ErrMissingData, "Patient.identifier"},
		{"no patient name", func() error { _, err := e.Book(appt, noName, nil); return err }, ErrMissingData, "Patient.name"},
		{"no patient", func() error { _, err := e.Note(doc, nil, nil); return err }, ErrMissingData, "Patient"},
		{"patient is not JSON", func() error { _, err := e.Note(doc, []byte("{"), nil); return err }, ErrInvalid, "Patient"},
		{"wrong resource type", func() error { _, err := e.Note(pat, pat, nil); return err }, ErrInvalid, "DocumentReference"},
		{"document without type", func() error {
			_, err := e.Note(edit(doc, `"type"`, `"typo"`), pat, nil)
			return err
		}, ErrMissingData, "DocumentReference.type"},
		{"document without content", func() error {
			_, err := e.Note(edit(doc, `"content"`, `"contents"`), pat, nil)
			return err
		}, ErrMissingData, "DocumentReference.content"},
		{"document for another patient", func() error {
			_, err := e.Note(edit(doc, `"Patient/pat-1"`, `"Patient/pat-2"`), pat, nil)
			return err
		}, ErrInvalid, "DocumentReference.subject"},
		{"document entered in error", func() error {
			_, err := e.Note(edit(doc, `"status": "current"`, `"status": "entered-in-error"`), pat, nil)
			return err
		}, ErrInvalid, "entered-in-error"},
		{"bad base64", func() error {
			_, err := e.Note(edit(doc, `"data": "`, `"data": "*`), pat, nil)
			return err
		}, ErrInvalid, "base64"},
		{"bad date", func() error {
			_, err := e.Note(edit(doc, `"date": "2024-02-28T10:15:30.123-05:00"`, `"date": "yesterday"`), pat, nil)
			return err
		}, ErrInvalid, "DocumentReference.date"},
		{"appointment without ids", func() error {
			a := edit(edit(appt, `"identifier"`, `"identifiers"`), `"id": "appt-1"`, `"id": ""`)
			_, err := e.Book(a, pat, nil)
			return err
		}, ErrMissingData, "SCH-1"},
		{"appointment without start", func() error {
			_, err := e.Book(edit(appt, `"start"`, `"begin"`), pat, nil)
			return err
		}, ErrMissingData, "Appointment.start"},
		{"booking a cancelled appointment", func() error {
			_, err := e.Book(edit(appt, `"status": "booked"`, `"status": "cancelled"`), pat, nil)
			return err
		}, ErrInvalid, "cancelled"},
		{"appointment of another patient", func() error {
			_, err := e.Book(edit(appt, `"Patient/pat-1"`, `"Patient/pat-9"`), pat, nil)
			return err
		}, ErrInvalid, "not a participant"},
		{"no charges", func() error { _, err := e.Charges(pat, nil, nil); return err }, ErrMissingData, "charges"},
		{"charge without code", func() error {
			_, err := e.Charges(pat, []Charge{{Item: edit(item, `"code"`, `"kode"`)}}, nil)
			return err
		}, ErrMissingData, "ChargeItem.code"},
		{"charge without date", func() error {
			_, err := e.Charges(pat, []Charge{{Item: edit(edit(item, `"occurrenceDateTime"`, `"x"`), `"enteredDate"`, `"y"`)}}, nil)
			return err
		}, ErrMissingData, "FT1-4"},
		{"charge not billable", func() error {
			_, err := e.Charges(pat, []Charge{{Item: edit(item, `"billable"`, `"aborted"`)}}, nil)
			return err
		}, ErrInvalid, "aborted"},
		{"charges of two encounters", func() error {
			_, err := e.Charges(pat, []Charge{{Item: item, Encounter: read(t, "encounter.json")}, {Item: item, Encounter: otherEnc}}, nil)
			return err
		}, ErrInvalid, "one DFT^P03 per encounter"},
		{"charges of two encounters, one not resolved", func() error {
			_, err := e.Charges(pat, []Charge{{Item: item}, {Item: edit(item, `"Encounter/enc-1"`, `"Encounter/enc-9"`)}}, testRefs(t))
			return err
		}, ErrInvalid, "one DFT^P03 per encounter"},
		{"referenced resource of the wrong type", func() error {
			refs := testRefs(t)
			refs["Practitioner/dr-1"] = read(t, "location.json")
			_, err := e.Note(doc, pat, refs)
			return err
		}, ErrInvalid, "want a Practitioner"},
		{"coverage without payor", func() error {
			cov := edit(read(t, "coverage.json"), `"payor"`, `"payer"`)
			_, err := e.Charges(pat, []Charge{{Item: item, Coverage: cov}}, nil)
			return err
		}, ErrMissingData, "Coverage.payor"},
		{"empty control id", func() error {
			_, err := testEncoder("").Note(doc, pat, nil)
			return err
		}, nil, "control id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.run()
			if err == nil {
				t.Fatal("no error")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %q does not wrap %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not mention %q", err, c.says)
			}
			for _, phi := range []string{"MRN12345", "Müller", "Anna", "1980"} {
				if strings.Contains(err.Error(), phi) {
					t.Errorf("error %q quotes patient data", err)
				}
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	e := New(Options{SendingApplication: "MEDIFLOW"})
	doc, pat, appt := read(t, "documentreference.json"), read(t, "patient.json"), read(t, "appointment.json")
	refs := testRefs(t)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			var err error
			for range 20 {
				if i%2 == 0 {
					_, err = e.Note(doc, pat, refs)
				} else {
					_, err = e.Book(appt, pat, refs)
				}
				if err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func docWithText(t testing.TB, text string) []byte {
	t.Helper()
	return []byte(`{"resourceType":"DocumentReference","id":"d","status":"current",
		"type":{"coding":[{"system":"http://loinc.org","code":"11506-3"}]},
		"content":[{"attachment":{"contentType":"text/plain","data":"` + b64(text) + `"}}]}`)
}

func TestPractitionerRole(t *testing.T) {
	appt := strings.Replace(string(read(t, "appointment.json")), `"Practitioner/dr-1"`, `"PractitionerRole/role-1"`, 1)
	refs := testRefs(t)
	refs["PractitionerRole/role-1"] = []byte(`{"resourceType":"PractitionerRole","id":"role-1","practitioner":{"reference":"Practitioner/dr-1"}}`)
	m, err := testEncoder("R").Book([]byte(appt), read(t, "patient.json"), refs)
	if err != nil {
		t.Fatal(err)
	}
	back := reparse(t, m)
	expect(t, back, map[string]string{"AIP-3-1": "1234567893", "AIP-3-2": "Careful"})

	// without the role in refs, the reference's display is all there is: no AIP
	delete(refs, "PractitionerRole/role-1")
	m, err = testEncoder("R").Book([]byte(appt), read(t, "patient.json"), refs)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.SegmentsByID("AIP")); n != 0 {
		t.Errorf("%d AIP segments for an unresolvable participant", n)
	}
}
