package v2fhir_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
)

func newConverter(t testing.TB, opts v2fhir.Options) *v2fhir.Converter {
	t.Helper()
	c, err := v2fhir.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parse(t testing.TB, segs ...string) *hl7.Message {
	t.Helper()
	m, err := hl7.Parse([]byte(strings.Join(segs, "\r")+"\r"), hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func convert(t testing.TB, c *v2fhir.Converter, segs ...string) *v2fhir.Result {
	t.Helper()
	res, err := c.Convert(parse(t, segs...))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// bodyOf decodes the one resource of the given type.
func bodyOf(t testing.TB, res *v2fhir.Result, typ string) map[string]any {
	t.Helper()
	var found []v2fhir.Resource
	for _, r := range res.Resources {
		if r.Type == typ {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s resources, want 1", len(found), typ)
	}
	var m map[string]any
	if err := json.Unmarshal(found[0].Body, &m); err != nil {
		t.Fatal(err)
	}
	if m["resourceType"] != typ || m["id"] != found[0].ID {
		t.Fatalf("body of %s/%s says %v/%v", typ, found[0].ID, m["resourceType"], m["id"])
	}
	return m
}

func get(m any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, _ := m.(map[string]any)
			m = mm[k]
		case int:
			a, _ := m.([]any)
			if k >= len(a) {
				return nil
			}
			m = a[k]
		}
	}
	return m
}

// seg writes a segment from numbered fields.
func seg(id string, fields map[int]string) string {
	n := 0
	for k := range fields {
		n = max(n, k)
	}
	parts := make([]string, n+1)
	parts[0] = id
	for k, v := range fields {
		parts[k] = v
	}
	return strings.Join(parts, "|")
}

const (
	mshADT = "MSH|^~\\&|EHR|FAC|MEDIFLOW|CLINIC|20240501120000-0400||ADT^%s^ADT_A01|CTRL%s|P|2.5.1"
	pidA   = "PID|1||MRN1^^^HOSP^MR||Doe^Jane||19800101|F"
)

var (
	pv1A    = seg("PV1", map[int]string{1: "1", 2: "I", 3: "W1^101^A^HOSP", 19: "V100^^^HOSP^VN", 44: "20240501080000-0400"})
	pv1Done = seg("PV1", map[int]string{1: "1", 2: "I", 3: "W1^101^A^HOSP", 19: "V100^^^HOSP^VN", 44: "20240501080000-0400", 45: "20240503090000-0400"})
)

func adt(trigger string, extra ...string) []string {
	return append([]string{fmt.Sprintf(mshADT, trigger, trigger), "EVN|" + trigger + "|20240501120000-0400||||20240501115500-0400", pidA}, extra...)
}

// The encounter status follows the trigger: A01 in progress, A03 finished
// (period.end from PV1-45, else EVN-6), A11 entered in error, A13 back in
// progress without an end.
func TestEncounterStatusByTrigger(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	cases := []struct {
		trigger, pv1, status, end string
	}{
		{"A01", pv1A, "in-progress", ""},
		{"A02", pv1A, "in-progress", ""},
		{"A03", pv1Done, "finished", "2024-05-03T09:00:00-04:00"},
		{"A03", pv1A, "finished", "2024-05-01T11:55:00-04:00"},
		{"A04", pv1A, "in-progress", ""},
		{"A08", pv1Done, "finished", "2024-05-03T09:00:00-04:00"},
		{"A11", pv1A, "entered-in-error", ""},
		{"A13", pv1Done, "in-progress", ""},
	}
	var encID string
	for _, tc := range cases {
		res := convert(t, c, adt(tc.trigger, tc.pv1)...)
		enc := bodyOf(t, res, "Encounter")
		if enc["status"] != tc.status {
			t.Errorf("%s: status %v, want %s", tc.trigger, enc["status"], tc.status)
		}
		if end, _ := get(enc, "period", "end").(string); end != tc.end {
			t.Errorf("%s: period.end %q, want %q", tc.trigger, end, tc.end)
		}
		if encID == "" {
			encID = enc["id"].(string)
		} else if enc["id"] != encID {
			t.Errorf("%s: encounter id %v differs from %s: the visit number should key it", tc.trigger, enc["id"], encID)
		}
		pat := bodyOf(t, res, "Patient")
		if get(enc, "subject", "reference") != "Patient/"+pat["id"].(string) {
			t.Errorf("%s: subject %v", tc.trigger, get(enc, "subject"))
		}
	}
}

// A40 names the merged patient by the id its identifier gave it before.
func TestMergeFromIsTheOldPatientsID(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	old := convert(t, c, fmt.Sprintf(mshADT, "A08", "x"), "PID|1||OLD7^^^HOSP^MR||Doe^Jane||19800101|F")
	oldID := old.Resources[0].ID
	res := convert(t, c, "MSH|^~\\&|EHR|FAC|MEDIFLOW|CLINIC|20240501120000-0400||ADT^A40^ADT_A39|M1|P|2.5.1",
		"EVN|A40|20240501120000-0400", pidA, "MRG|OLD7^^^HOSP^MR")
	pat := bodyOf(t, res, "Patient")
	want := []v2fhir.Merge{{Type: "Patient", From: oldID, Into: pat["id"].(string)}}
	if !reflect.DeepEqual(res.Merges, want) {
		t.Errorf("merges = %+v, want %+v", res.Merges, want)
	}
	// Without an authority on either side the ids still match.
	old = convert(t, c, fmt.Sprintf(mshADT, "A08", "y"), "PID|1||OLD8||Doe^Jane")
	res = convert(t, c, "MSH|^~\\&|EHR|FAC|||20240501120000-0400||ADT^A40^ADT_A39|M2|P|2.5.1", pidA, "MRG|OLD8")
	if len(res.Merges) != 1 || res.Merges[0].From != old.Resources[0].ID {
		t.Errorf("merges = %+v, want from %s", res.Merges, old.Resources[0].ID)
	}
	// A merge into itself is no merge.
	res = convert(t, c, "MSH|^~\\&|EHR|FAC|||20240501120000-0400||ADT^A40^ADT_A39|M3|P|2.5.1", pidA, "MRG|MRN1^^^HOSP^MR")
	if len(res.Merges) != 0 || len(res.Warnings) == 0 {
		t.Errorf("self merge: %+v, warnings %v", res.Merges, res.Warnings)
	}
}

func TestAppointmentStatusByTrigger(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	for trig, want := range map[string]string{"S12": "booked", "S13": "booked", "S14": "booked", "S15": "cancelled", "S17": "entered-in-error", "S26": "noshow"} {
		res := convert(t, c, "MSH|^~\\&|SCHED|FAC|||20240501120000-0400||SIU^"+trig+"^SIU_S12|S"+trig+"|P|2.5.1",
			"SCH||A77^SCHED|||||||30|min|^^^20240510090000-0400",
			pidA, "RGS|1", "AIP|1||DR1^Who^Doc|||20240510090000-0400")
		appt := bodyOf(t, res, "Appointment")
		if appt["status"] != want {
			t.Errorf("%s: status %v, want %s", trig, appt["status"], want)
		}
		if appt["start"] != "2024-05-10T09:00:00-04:00" || appt["end"] != "2024-05-10T09:30:00-04:00" {
			t.Errorf("%s: start %v end %v", trig, appt["start"], appt["end"])
		}
		pat := bodyOf(t, res, "Patient")
		prac := bodyOf(t, res, "Practitioner")
		parts, _ := appt["participant"].([]any)
		var actors []string
		for _, p := range parts {
			actors = append(actors, fmt.Sprint(get(p, "actor", "reference")))
		}
		wantActors := []string{"Patient/" + pat["id"].(string), "Practitioner/" + prac["id"].(string)}
		if !reflect.DeepEqual(actors, wantActors) {
			t.Errorf("%s: participants %v, want %v", trig, actors, wantActors)
		}
	}
}

func TestReportReferencesItsObservations(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	res := convert(t, c, "MSH|^~\\&|LAB|FAC|||20240501120000-0400||ORU^R01^ORU_R01|L1|P|2.5.1", pidA,
		seg("OBR", map[int]string{1: "1", 3: "F1^LAB", 4: "1234-5^Panel^LN", 7: "20240501070000-0400", 25: "F"}),
		seg("OBX", map[int]string{1: "1", 2: "NM", 3: "1-1^A^LN", 5: "1.5", 6: "mg", 11: "F"}),
		seg("OBX", map[int]string{1: "2", 2: "NM", 3: "2-2^B^LN", 5: "2", 6: "mg", 11: "F"}),
		seg("OBR", map[int]string{1: "2", 3: "F2^LAB", 4: "6789-0^Other^LN", 7: "20240501070000-0400", 25: "P"}),
		seg("OBX", map[int]string{1: "1", 2: "ST", 3: "3-3^C^LN", 5: "text", 11: "P"}))
	var reports, obs []map[string]any
	for _, r := range res.Resources {
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		switch r.Type {
		case "DiagnosticReport":
			reports = append(reports, m)
		case "Observation":
			obs = append(obs, m)
		}
	}
	if len(reports) != 2 || len(obs) != 3 {
		t.Fatalf("%d reports, %d observations", len(reports), len(obs))
	}
	ref := func(m map[string]any) string { return "Observation/" + m["id"].(string) }
	results := func(m map[string]any) []string {
		var out []string
		for _, r := range m["result"].([]any) {
			out = append(out, get(r, "reference").(string))
		}
		return out
	}
	if got, want := results(reports[0]), []string{ref(obs[0]), ref(obs[1])}; !reflect.DeepEqual(got, want) {
		t.Errorf("first report results %v, want %v", got, want)
	}
	if got, want := results(reports[1]), []string{ref(obs[2])}; !reflect.DeepEqual(got, want) {
		t.Errorf("second report results %v, want %v", got, want)
	}
	if obs[2]["status"] != "preliminary" || reports[1]["status"] != "preliminary" || obs[2]["valueString"] != "text" {
		t.Errorf("second report: %v %v %v", reports[1]["status"], obs[2]["status"], obs[2]["valueString"])
	}
	if get(obs[0], "valueQuantity", "value") != 1.5 || get(obs[0], "valueQuantity", "unit") != "mg" {
		t.Errorf("valueQuantity %v", obs[0]["valueQuantity"])
	}
	if obs[0]["effectiveDateTime"] != "2024-05-01T07:00:00-04:00" {
		t.Errorf("an observation without OBX-14 takes OBR-7: %v", obs[0]["effectiveDateTime"])
	}
}

// The document's text is the OBX text, base64, text/plain.
func TestDocumentText(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	res := convert(t, c, "MSH|^~\\&|DOC|FAC|||20240501120000-0400||MDM^T02^MDM_T02|D1|P|2.5.1", "EVN|T02|20240501120000-0400", pidA,
		"PV1|1|O", seg("TXA", map[int]string{1: "1", 2: "CN", 3: "TX", 12: "DOC1^FAC", 17: "AU", 19: "AV"}),
		"OBX|1|TX|||First line \\T\\ more||||||F", "OBX|2|FT|||Second\\.br\\third||||||F")
	doc := bodyOf(t, res, "DocumentReference")
	if get(doc, "content", 0, "attachment", "contentType") != "text/plain" {
		t.Errorf("contentType %v", get(doc, "content", 0, "attachment"))
	}
	data, _ := get(doc, "content", 0, "attachment", "data").(string)
	var txt []byte
	if err := json.Unmarshal([]byte(`"`+data+`"`), &txt); err != nil {
		t.Fatal(err)
	}
	if string(txt) != "First line & more\nSecond\nthird" {
		t.Errorf("text %q", txt)
	}
	if doc["status"] != "current" || doc["docStatus"] != "final" {
		t.Errorf("status %v docStatus %v", doc["status"], doc["docStatus"])
	}
}

// The e2e crash test's message: an A08 without a visit.
func TestUpdateWithoutVisit(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	res := convert(t, c, "MSH|^~\\&|EHR|FAC1|MEDIFLOW|CRASH|20240501120000||ADT^A08^ADT_A01|S1K00001|P|2.5.1",
		"EVN|A08|20240501120000", "PID|1||MRN1001^^^HOSP^MR||Crashtest^Pat1||19750101|F|||1 Crash Street 1^^Springfield^IL^62701")
	if len(res.Resources) != 1 {
		t.Fatalf("%d resources", len(res.Resources))
	}
	pat := bodyOf(t, res, "Patient")
	if get(pat, "address", 0, "line", 0) != "1 Crash Street 1" || get(pat, "identifier", 0, "value") != "MRN1001" {
		t.Errorf("patient %v", pat)
	}
}

func TestUnsupported(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	for _, typ := range []string{"ORM^O01^ORM_O01", "ADT^A05^ADT_A05", "ACK", "ADT^A40X"} {
		_, err := c.Convert(parse(t, "MSH|^~\\&|A|B|||20240501||"+typ+"|1|P|2.5.1", pidA))
		var u *v2fhir.UnsupportedError
		if !errors.As(err, &u) {
			t.Errorf("%s: err = %v, want *UnsupportedError", typ, err)
			continue
		}
		if want := strings.SplitN(typ+"^", "^", 3); u.MessageCode != want[0] || u.TriggerEvent != want[1] {
			t.Errorf("%s: %+v", typ, u)
		}
	}
	if _, err := c.Convert(nil); err == nil {
		t.Error("Convert(nil) succeeded")
	}
}

// Required resources: a message without them is not converted.
func TestRequiredResources(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	for name, segs := range map[string][]string{
		"ADT without PID":      {fmt.Sprintf(mshADT, "A01", "r1"), pv1A},
		"ADT without a MRN":    {fmt.Sprintf(mshADT, "A01", "r2"), "PID|1||||Doe^Jane", pv1A},
		"ORU without OBR":      {"MSH|^~\\&|L|F|||20240501||ORU^R01|1|P|2.5.1", pidA, "OBX|1|NM|1^A^LN||1"},
		"SIU without SCH id":   {"MSH|^~\\&|S|F|||20240501||SIU^S12|1|P|2.5.1", "SCH|||", pidA},
		"MDM without document": {"MSH|^~\\&|D|F|||20240501||MDM^T02|1|P|2.5.1", pidA, "OBX|1|TX|||text"},
	} {
		res, err := c.Convert(parse(t, segs...))
		if err == nil {
			t.Errorf("%s: converted to %d resources", name, len(res.Resources))
		}
	}
}

// Replays are idempotent: the same content gives the same resources, even
// under another control id, from another converter.
func TestReplayGivesTheSameResources(t *testing.T) {
	segs := adt("A01", pv1A, "OBX|1|NM|8302-2^Height^LN||170|cm^^UCUM|||||F", "AL1|1|DA|123^Penicillin^RXNORM", "DG1|1||I10^Hypertension^I10")
	a := convert(t, newConverter(t, v2fhir.Options{}), segs...)
	segs[0] = strings.Replace(segs[0], "CTRLA01", "OTHER99", 1)
	b := convert(t, newConverter(t, v2fhir.Options{}), segs...)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("results differ:\n%+v\n%+v", a, b)
	}
	seen := map[string]bool{}
	for _, r := range a.Resources {
		k := r.Type + "/" + r.ID
		if seen[k] {
			t.Errorf("%s twice", k)
		}
		seen[k] = true
	}
}

func TestOptions(t *testing.T) {
	zone := time.FixedZone("test", -7*3600)
	c := newConverter(t, v2fhir.Options{
		IdentifierSystems: map[string]string{"HOSP": "https://hosp.example/mrn"},
		DefaultSystem:     "urn:test:",
		TimeZone:          zone,
	})
	res := convert(t, c, "MSH|^~\\&|EHR|FAC|||20240501120000||ADT^A01^ADT_A01|1|P|2.5.1",
		"PID|1||MRN1^^^HOSP^MR~X9^^^OTHER^PI||Doe^Jane||19800101|F",
		seg("PV1", map[int]string{1: "1", 2: "I", 19: "V100^^^HOSP^VN", 44: "202405010800"}))
	pat := bodyOf(t, res, "Patient")
	if get(pat, "identifier", 0, "system") != "https://hosp.example/mrn" || get(pat, "identifier", 1, "system") != "urn:test:OTHER" {
		t.Errorf("identifiers %v", pat["identifier"])
	}
	enc := bodyOf(t, res, "Encounter")
	if get(enc, "period", "start") != "2024-05-01T08:00:00-07:00" {
		t.Errorf("period.start %v", get(enc, "period", "start"))
	}
	for _, w := range res.Warnings {
		if strings.Contains(w, "UTC") {
			t.Errorf("warning %q with a time zone configured", w)
		}
	}
}

// Warnings never carry field values (they may be PHI).
func TestWarningsHoldNoValues(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	res := convert(t, c, "MSH|^~\\&|L|F|||20240501||ORU^R01^ORU_R01|1|P|2.5.1",
		"PID|1||SECRETMRN^^^H||Secretname^Jane||19800230",
		seg("OBR", map[int]string{1: "1", 3: "F1", 4: "1^A^LN", 7: "notadate"}),
		seg("OBX", map[int]string{1: "1", 2: "NM", 3: "1^A^LN", 5: "1", 11: "SECRETSTATUS", 14: "alsonotadate"}),
		"OBX|2|ED|2^B^LN||^AP^PDF^Base64^SECRET*DATA||||||F")
	if len(res.Warnings) < 3 {
		t.Fatalf("warnings %v", res.Warnings)
	}
	for _, w := range res.Warnings {
		for _, secret := range []string{"SECRET", "Secretname", "19800230", "notadate"} {
			if strings.Contains(w, secret) {
				t.Errorf("warning %q holds a value", w)
			}
		}
	}
}

// One converter serves many goroutines (run with -race).
func TestConcurrentConvert(t *testing.T) {
	c := newConverter(t, v2fhir.Options{})
	files := goldenFiles(t)
	want := make([][]byte, len(files))
	for i, f := range files {
		res, err := c.Convert(readMessage(t, f))
		want[i] = render(t, res, err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(files))
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, f := range files {
				res, err := c.Convert(readMessage(t, f))
				if got := render(t, res, err); string(got) != string(want[i]) {
					errs <- f
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for f := range errs {
		t.Errorf("%s converted differently under concurrency", f)
	}
}
