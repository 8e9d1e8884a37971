package contract

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/vendors"
	"github.com/mediflow/mediflow/profiles"
)

// want is what a contract must say about one vendor × intent.
type want struct {
	supported bool
	channel   Channel
	op        string // Support.Operation, for a supported intent
	reason    string // a phrase the refusal's reason must hold
}

func yes(ch Channel, op string) want { return want{supported: true, channel: ch, op: op} }
func no(reason string) want          { return want{reason: reason} }

// expected is written from the vendors' published write APIs
// (../shared/reference/ehr-vendors.md); a contract that changes without
// this table changing fails the test.
var expected = map[string]map[Intent]want{
	VendorGeneric: {
		NoteCreate:         yes(ChannelFHIR, "create"),
		AppointmentBook:    yes(ChannelFHIR, "create"),
		AppointmentResched: yes(ChannelFHIR, "update"),
		AppointmentCancel:  yes(ChannelFHIR, "update"),
		ConditionUpsert:    yes(ChannelFHIR, OpUpsert),
		ObservationRecord:  yes(ChannelFHIR, "create"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
	VendorEpic: {
		NoteCreate:         yes(ChannelFHIR, "create"),
		AppointmentBook:    no("STU3 Appointment/$find and $book"),
		AppointmentResched: no("cannot change an Appointment's time"),
		AppointmentCancel:  no("cannot change an Appointment's status"),
		ConditionUpsert:    yes(ChannelFHIR, "create"),
		ObservationRecord:  yes(ChannelFHIR, "create"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
	VendorOracleHealth: {
		NoteCreate:         yes(ChannelFHIR, "create"),
		AppointmentBook:    yes(ChannelFHIR, "create"),
		AppointmentResched: no("never its time"),
		AppointmentCancel:  yes(ChannelFHIR, "patch"),
		ConditionUpsert:    yes(ChannelFHIR, OpUpsert),
		ObservationRecord:  yes(ChannelFHIR, "create"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
	VendorAthenahealth: {
		NoteCreate:         no("FHIR API is read only"),
		AppointmentBook:    yes(ChannelVendorREST, "PUT /v1/{practiceid}/appointments/{appointmentid}"),
		AppointmentResched: yes(ChannelVendorREST, "PUT /v1/{practiceid}/appointments/{appointmentid}/reschedule"),
		AppointmentCancel:  yes(ChannelVendorREST, "PUT /v1/{practiceid}/appointments/{appointmentid}/cancel"),
		ConditionUpsert:    no("only for appointments"),
		ObservationRecord:  no("only for appointments"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
	VendorEClinicalWorks: {
		NoteCreate:         no("FHIR Facade is read only"),
		AppointmentBook:    no("FHIR Facade is read only"),
		AppointmentResched: no("FHIR Facade is read only"),
		AppointmentCancel:  no("FHIR Facade is read only"),
		ConditionUpsert:    no("writeback API covers patient records"),
		ObservationRecord:  no("writeback API covers patient records"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
	VendorNextGen: {
		NoteCreate:         no("read only"),
		AppointmentBook:    no("read only"),
		AppointmentResched: no("read only"),
		AppointmentCancel:  no("read only"),
		ConditionUpsert:    no("no write API mediflow uses"),
		ObservationRecord:  no("no write API mediflow uses"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
	VendorVeradigm: {
		NoteCreate:         no("Unity API"),
		AppointmentBook:    no("Unity API"),
		AppointmentResched: no("Unity API"),
		AppointmentCancel:  no("Unity API"),
		ConditionUpsert:    no("Unity API"),
		ObservationRecord:  no("Unity API"),
		ChargePost:         no("only as HL7 v2 DFT^P03"),
	},
}

func TestEveryVendorEveryIntent(t *testing.T) {
	reg := Default()
	if got, wantV := reg.Vendors(), sortedKeys(expected); !slices.Equal(got, wantV) {
		t.Fatalf("Default vendors = %v, the test expects %v", got, wantV)
	}
	routes := map[Intent]string{}
	for _, r := range HL7Routes() {
		routes[r.Intent] = r.Operation
	}
	for _, vendor := range sortedKeys(expected) {
		c, err := reg.For(vendor, "")
		if err != nil {
			t.Fatalf("%s: %v", vendor, err)
		}
		if len(expected[vendor]) != len(Intents()) {
			t.Fatalf("%s: the test lists %d intents, there are %d", vendor, len(expected[vendor]), len(Intents()))
		}
		for _, i := range Intents() {
			w := expected[vendor][i]
			s := c.Support(i)
			name := vendor + " × " + string(i)
			if s.Intent != i {
				t.Errorf("%s: Support.Intent = %q", name, s.Intent)
			}
			if s.Supported != w.supported {
				t.Errorf("%s: supported = %v, want %v (reason %q)", name, s.Supported, w.supported, s.Reason)
				continue
			}
			if !w.supported {
				if strings.TrimSpace(s.Reason) == "" {
					t.Errorf("%s: refused without a reason", name)
				}
				if !strings.Contains(s.Reason, w.reason) {
					t.Errorf("%s: reason %q does not say %q", name, s.Reason, w.reason)
				}
				// the reason offers the HL7 alternative exactly when an HL7
				// interface would carry the intent
				carried := c.WithHL7().Support(i).Channel == ChannelHL7
				if op, ok := routes[i]; ok && carried && !strings.Contains(s.Reason, hl7Alternative(i)) {
					t.Errorf("%s: reason %q does not name the HL7 alternative %s", name, s.Reason, op)
				}
				if !carried && strings.Contains(s.Reason, "mediflow then sends it as") {
					t.Errorf("%s: reason %q offers an HL7 alternative the HL7 interface does not carry", name, s.Reason)
				}
				if s.Channel != "" || len(s.Rules) > 0 || len(s.Required) > 0 {
					t.Errorf("%s: a refused intent carries a channel, rules or required elements", name)
				}
				if _, fe := c.Check(i, []byte(`{"resourceType":"DocumentReference"}`)); fe != nil {
					t.Errorf("%s: a refused intent gave field errors %v", name, fe)
				}
				continue
			}
			if s.Channel != w.channel || s.Operation != w.op {
				t.Errorf("%s: %s %q, want %s %q", name, s.Channel, s.Operation, w.channel, w.op)
			}
			if s.ResourceType == "" || s.Reason != "" {
				t.Errorf("%s: supported with resource type %q and reason %q", name, s.ResourceType, s.Reason)
			}
			if s.IfMatch && s.StaleStatus != 409 && s.StaleStatus != 412 {
				t.Errorf("%s: If-Match with stale status %d", name, s.StaleStatus)
			}
			for _, r := range s.Rules {
				if r.ID == "" || r.Description == "" || r.Check == nil {
					t.Errorf("%s: rule %+v lacks an id, description or check", name, r)
				}
			}
		}
	}
}

// TestDefaultCoversProfiles: every shipped mapping profile and every engine
// vendor profile has a contract.
func TestDefaultCoversProfiles(t *testing.T) {
	reg := Default()
	shipped, err := mapping.Vendors(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append(shipped, vendors.Names()...) {
		if _, err := reg.For(v, ""); err != nil {
			t.Errorf("vendor %s: %v", v, err)
		}
	}
	if _, err := reg.For("acme", ""); err == nil {
		t.Error("a vendor without a contract got one")
	}
}

func TestVendorFacts(t *testing.T) {
	reg := Default()
	get := func(v string, i Intent) Support {
		c, err := reg.For(v, "")
		if err != nil {
			t.Fatal(err)
		}
		return c.Support(i)
	}
	// Oracle Health: 201 with an empty body, If-Match with 409 on stale.
	if s := get(VendorOracleHealth, NoteCreate); !s.EmptyCreateBody || s.ConditionalCreate {
		t.Errorf("oracle note: %+v", s)
	}
	if s := get(VendorOracleHealth, AppointmentCancel); !s.IfMatch || s.StaleStatus != 409 {
		t.Errorf("oracle cancel: If-Match %v stale %d", s.IfMatch, s.StaleStatus)
	}
	// Generic FHIR: conditional create, If-Match with 412.
	if s := get(VendorGeneric, ConditionUpsert); !s.ConditionalCreate || !s.IfMatch || s.StaleStatus != 412 {
		t.Errorf("generic condition: %+v", s)
	}
	// Epic: no conditional create, no versioning.
	for _, i := range []Intent{NoteCreate, ConditionUpsert, ObservationRecord} {
		if s := get(VendorEpic, i); s.ConditionalCreate || s.IfMatch {
			t.Errorf("epic %s: conditional create %v, If-Match %v", i, s.ConditionalCreate, s.IfMatch)
		}
	}
	c, _ := reg.For(VendorEpic, "")
	for _, code := range []string{"59141", "59187", "59188"} {
		if !strings.Contains(c.Errors, code) {
			t.Errorf("epic errors do not explain %s", code)
		}
	}
	c, _ = reg.For(VendorEClinicalWorks, "")
	if !strings.Contains(c.Errors, "100 INVALID_PATIENT") {
		t.Errorf("eCW errors do not explain its numeric status codes: %q", c.Errors)
	}
}

func TestWithHL7(t *testing.T) {
	reg := Default()
	for _, vendor := range reg.Vendors() {
		base, err := reg.For(vendor, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := reg.ForPractice(vendor, "", Options{HL7Outbound: true})
		if err != nil {
			t.Fatal(err)
		}
		if !c.HL7 || base.HL7 {
			t.Errorf("%s: HL7 flag %v on the practice's contract, %v on the vendor's", vendor, c.HL7, base.HL7)
		}
		for _, i := range Intents() {
			b, s := base.Support(i), c.Support(i)
			switch {
			case b.Supported:
				if s.Channel != b.Channel || s.Operation != b.Operation {
					t.Errorf("%s %s: an HL7 interface changed a supported intent from %s to %s", vendor, i, b.Channel, s.Channel)
				}
			case !hasRoute(i):
				if s.Supported {
					t.Errorf("%s %s: became supported over %s without an HL7 route", vendor, i, s.Channel)
				}
			case i == AppointmentResched && base.Support(AppointmentBook).Supported && base.Support(AppointmentCancel).Supported:
				// the vendor's API books and cancels: a reschedule over HL7
				// would name an appointment the HL7 interface never saw
				if s.Supported || s.Reason != b.Reason {
					t.Errorf("%s %s: the vendor books and cancels through its API, yet the HL7 interface changed the refusal: %+v", vendor, i, s)
				}
			default:
				if !s.Supported || s.Channel != ChannelHL7 {
					t.Errorf("%s %s: refused by the vendor, not carried over HL7 (%+v)", vendor, i, s)
				}
			}
		}
		if cc, _ := reg.ForPractice(vendor, "", Options{}); cc.HL7 {
			t.Errorf("%s: no HL7 outbound, yet the contract counts one", vendor)
		}
	}
	// the HL7 routes check what fhirv2 needs
	c, _ := reg.ForPractice(VendorEpic, "", Options{HL7Outbound: true})
	assertErrors(t, c, AppointmentBook, `{"resourceType":"Appointment","status":"cancelled","start":"2026-03-01T10:00:00Z","participant":[{"actor":{"reference":"Patient/1"}}]}`,
		fe("status", "hl7.appointment.book-status"))
	assertErrors(t, c, AppointmentBook, `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Location/1"}}]}`,
		fe("start", "required"), fe("participant", "hl7.appointment.patient"))
	assertErrors(t, c, ChargePost, `{"resourceType":"ChargeItem","status":"billable","subject":{"reference":"Patient/1"}}`, fe("code", "required"))
	ng, _ := reg.ForPractice(VendorNextGen, "", Options{HL7Outbound: true})
	assertErrors(t, ng, NoteCreate, `{"resourceType":"DocumentReference","subject":{"reference":"Patient/1"},"type":{"text":"Progress"},"content":[{"attachment":{"contentType":"text/plain"}}]}`,
		fe("content[0].attachment.data", "hl7.note.content"))
	assertErrors(t, c, AppointmentCancel, `{"resourceType":"Appointment","status":"cancelled"}`)

	// a reschedule names the appointment moved and its new start
	resched := `{"resourceType":"Appointment","id":"a1","status":"booked","start":"2026-03-02T10:00:00Z","participant":[{"actor":{"reference":"Patient/1"}}]}`
	assertErrors(t, c, AppointmentResched, resched)
	assertErrors(t, c, AppointmentResched, edit(t, resched, func(m map[string]any) { delete(m, "id"); delete(m, "start") }),
		fe("id", "required"), fe("start", "required"))
	assertErrors(t, c, AppointmentResched, edit(t, resched, func(m map[string]any) { m["status"] = "cancelled" }),
		fe("status", "hl7.appointment.reschedule-status"))
	assertErrors(t, c, AppointmentResched, edit(t, resched, func(m map[string]any) {
		m["participant"] = []any{map[string]any{"actor": map[string]any{"reference": "Location/1"}}}
	}), fe("participant", "hl7.appointment.patient"))
}

// TestRescheduleOverHL7: with an HL7 interface, a reschedule goes as
// SIU^S13 exactly where bookings and cancellations go over HL7 too.
func TestRescheduleOverHL7(t *testing.T) {
	want := map[string]Channel{
		VendorGeneric:        ChannelFHIR,       // its FHIR API reschedules
		VendorEpic:           ChannelHL7,        // books and cancels over HL7
		VendorOracleHealth:   "",                // books and cancels over FHIR: refused
		VendorAthenahealth:   ChannelVendorREST, // the v1 reschedule endpoint
		VendorEClinicalWorks: ChannelHL7,
		VendorNextGen:        ChannelHL7,
		VendorVeradigm:       ChannelHL7,
	}
	reg := Default()
	for _, v := range reg.Vendors() {
		w, ok := want[v]
		if !ok {
			t.Errorf("vendor %s is not in this test", v)
			continue
		}
		for _, base := range reg.Contracts(v) {
			c := base.WithHL7()
			s := c.Support(AppointmentResched)
			if s.Channel != w || s.Supported != (w != "") {
				t.Errorf("%s: reschedule with an HL7 interface: supported %v over %q, want %q", base.Title(), s.Supported, s.Channel, w)
			}
			if w == ChannelHL7 && (s.Operation != "SIU^S13" || c.Support(AppointmentBook).Operation != "SIU^S12" ||
				c.Support(AppointmentCancel).Operation != "SIU^S15") {
				t.Errorf("%s: reschedule %q, booking %q, cancellation %q over HL7", base.Title(), s.Operation,
					c.Support(AppointmentBook).Operation, c.Support(AppointmentCancel).Operation)
			}
			if w == "" && (!strings.Contains(s.Reason, "SIU^S13") || strings.Contains(s.Reason, "mediflow then sends it as")) {
				t.Errorf("%s: the refusal %q does not say why SIU^S13 is not offered", base.Title(), s.Reason)
			}
		}
	}
	// without the interface nothing goes over HL7, and no refusal names a
	// missing reschedule message any more
	for _, v := range reg.Vendors() {
		for _, c := range reg.Contracts(v) {
			s := c.Support(AppointmentResched)
			if s.Channel == ChannelHL7 {
				t.Errorf("%s: reschedule over HL7 without an HL7 interface", c.Title())
			}
			if strings.Contains(s.Reason, "no reschedule message") {
				t.Errorf("%s: stale refusal %q", c.Title(), s.Reason)
			}
		}
	}
}

// ---- helpers ---------------------------------------------------------------

func hasRoute(i Intent) bool {
	for _, r := range HL7Routes() {
		if r.Intent == i {
			return true
		}
	}
	return false
}

type wantFE struct{ path, rule string }

func fe(path, rule string) wantFE { return wantFE{path, rule} }

// assertErrors checks that the resource gives exactly the field errors
// wanted (path and rule), in any order, each with a message.
func assertErrors(t *testing.T, c *Contract, i Intent, body string, wants ...wantFE) {
	t.Helper()
	s, got := c.Check(i, []byte(body))
	if !s.Supported {
		t.Fatalf("%s %s: refused: %s", c.Vendor, i, s.Reason)
	}
	var gotK []wantFE
	for _, e := range got {
		gotK = append(gotK, wantFE{e.Path, e.Rule})
		if strings.TrimSpace(e.Message) == "" {
			t.Errorf("%s %s: field error %s (%s) has no message", c.Vendor, i, e.Path, e.Rule)
		}
	}
	key := func(a, b wantFE) int { return strings.Compare(a.path+"|"+a.rule, b.path+"|"+b.rule) }
	slices.SortFunc(gotK, key)
	w := slices.Clone(wants)
	slices.SortFunc(w, key)
	if !slices.Equal(gotK, w) {
		t.Errorf("%s %s: field errors %v, want %v\n(all: %v)", c.Vendor, i, gotK, w, got)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// edit decodes body, applies f and encodes the result.
func edit(t *testing.T, body string, f func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if f != nil {
		f(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func obj(v any) map[string]any { return v.(map[string]any) }
func arr(v any) []any          { return v.([]any) }

func mustFor(t *testing.T, vendor string) *Contract {
	t.Helper()
	c, err := Default().For(vendor, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOperationFor(t *testing.T) {
	c := mustFor(t, VendorOracleHealth)
	up := c.Support(ConditionUpsert)
	if up.OperationFor(false) != OpCreate || up.OperationFor(true) != OpUpdate {
		t.Errorf("upsert: %q / %q", up.OperationFor(false), up.OperationFor(true))
	}
	if p := c.Support(AppointmentCancel); p.OperationFor(false) != OpPatch || p.OperationFor(true) != OpPatch {
		t.Errorf("patch: %q", p.OperationFor(true))
	}
	// every FHIR operation of the shipped contracts is one the executor knows
	reg := Default()
	for _, v := range reg.Vendors() {
		for _, cc := range reg.Contracts(v) {
			for _, s := range cc.Supports() {
				if s.Channel != ChannelFHIR {
					continue
				}
				for _, hasID := range []bool{false, true} {
					switch s.OperationFor(hasID) {
					case OpCreate, OpUpdate, OpPatch:
					default:
						t.Errorf("%s %s: operation %q", v, s.Intent, s.OperationFor(hasID))
					}
				}
			}
		}
	}
}
