package contract

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/profiles"
)

func loadSet(t *testing.T, vendor string, overrides ...mapping.Source) *mapping.Set {
	t.Helper()
	set, err := mapping.Load(profiles.FS, vendor, "", overrides...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestValidateEndToEnd maps canonical resources with the shipped profiles
// and checks them against the shipped contracts.
func TestValidateEndToEnd(t *testing.T) {
	ctx := context.Background()
	reg := Default()
	oracle, _ := reg.For(VendorOracleHealth, "")
	oset := loadSet(t, VendorOracleHealth)

	// A valid note goes through; the body is what the EHR gets.
	body, s, fes, err := Validate(ctx, oset, oracle, NoteCreate, []byte(oracleNote))
	if err != nil || len(fes) > 0 || !s.Supported || body == nil {
		t.Fatalf("valid note: %v %v %+v", err, fes, s)
	}
	if s.Channel != ChannelFHIR || s.ResourceType != "DocumentReference" || !s.EmptyCreateBody {
		t.Errorf("support %+v", s)
	}

	// The canonical type carries an Oracle code next to LOINC: the Oracle
	// Health profile's write-back rule keeps the standard coding only, so
	// what would be a 422 at Oracle Health passes, and the body sent holds
	// no Oracle code.
	mixed := edit(t, oracleNote, func(m map[string]any) {
		cc := obj(m["type"])
		cc["coding"] = append(arr(cc["coding"]), map[string]any{"system": oracleCodeSet, "code": "2820507"})
	})
	if _, errs := oracle.Check(NoteCreate, []byte(mixed)); len(errs) != 1 || errs[0].Rule != "oracle-health.mixed-codings" {
		t.Fatalf("unmapped mixed note: %v", errs)
	}
	body, _, fes, err = Validate(ctx, oset, oracle, NoteCreate, []byte(mixed))
	if err != nil || len(fes) > 0 {
		t.Fatalf("mapped mixed note: %v %v", err, fes)
	}
	if strings.Contains(string(body), "fhir.cerner.com") || !strings.Contains(string(body), "http://loinc.org") {
		t.Errorf("the body sent: %s", body)
	}

	// A violation of the contract: field errors, no body.
	body, _, fes, err = Validate(ctx, oset, oracle, NoteCreate, []byte(edit(t, oracleNote, func(m map[string]any) {
		delete(obj(obj(m["context"])["period"]), "end")
		m["docStatus"] = "preliminary"
	})))
	if err != nil || body != nil || len(fes) != 2 || fes[0].Path != "context.period.end" || fes[1].Rule != "oracle-health.docref.doc-status" {
		t.Errorf("invalid note: body %s, %v, %v", body, fes, err)
	}

	// The wrong resource type is told before any mapping.
	_, _, fes, err = Validate(ctx, oset, oracle, AppointmentBook, []byte(oracleNote))
	if err != nil || len(fes) != 1 || fes[0].Rule != "resource-type" {
		t.Errorf("wrong type: %v %v", fes, err)
	}
	// So is a body that is not JSON.
	_, _, fes, err = Validate(ctx, oset, oracle, NoteCreate, []byte(`{"resourceType"`))
	if err != nil || len(fes) != 1 || fes[0].Rule != "json" {
		t.Errorf("bad JSON: %v %v", fes, err)
	}

	// A booking Oracle Health accepts, and one it does not.
	if _, _, fes, err = Validate(ctx, oset, oracle, AppointmentBook, []byte(oracleBookedAppt)); err != nil || len(fes) > 0 {
		t.Errorf("booking: %v %v", fes, err)
	}
	_, _, fes, _ = Validate(ctx, oset, oracle, AppointmentBook, []byte(edit(t, oracleBookedAppt, func(m map[string]any) { delete(m, "slot") })))
	if len(fes) != 1 || fes[0].Path != "slot" {
		t.Errorf("booking without a slot: %v", fes)
	}

	// A refused intent: the reason, no body, nothing checked.
	epic, _ := reg.For(VendorEpic, "")
	eset := loadSet(t, VendorEpic)
	body, s, fes, err = Validate(ctx, eset, epic, AppointmentBook, []byte(`not even JSON`))
	if err != nil || body != nil || fes != nil || s.Supported || !strings.Contains(s.Reason, "STU3") {
		t.Errorf("refused booking: %s %+v %v %v", body, s, fes, err)
	}
	// Epic vitals through the Epic profile
	if body, _, fes, err = Validate(ctx, eset, epic, ObservationRecord, []byte(epicVitals)); err != nil || len(fes) > 0 || body == nil {
		t.Errorf("epic vitals: %v %v", fes, err)
	}

	// With an HL7 interface the same booking goes as SIU^S12.
	epicHL7, _ := reg.ForPractice(VendorEpic, "", Options{HL7Outbound: true})
	appt := `{"resourceType":"Appointment","status":"booked","start":"2026-03-01T10:00:00Z","end":"2026-03-01T10:20:00Z","participant":[{"actor":{"reference":"Patient/1"},"status":"accepted"}]}`
	body, s, fes, err = Validate(ctx, eset, epicHL7, AppointmentBook, []byte(appt))
	if err != nil || len(fes) > 0 || s.Channel != ChannelHL7 || s.Operation != "SIU^S12" || body == nil {
		t.Errorf("epic booking over HL7: %+v %v %v", s, fes, err)
	}

	// athenahealth: FHIR read only, bookings through v1 with its limits.
	athena, _ := reg.For(VendorAthenahealth, "")
	aset := loadSet(t, VendorAthenahealth)
	if _, s, fes, err = Validate(ctx, aset, athena, AppointmentBook, []byte(athenaBooking)); err != nil || len(fes) > 0 || s.Channel != ChannelVendorREST {
		t.Errorf("athena booking: %+v %v %v", s, fes, err)
	}
	if _, s, _, _ = Validate(ctx, aset, athena, NoteCreate, []byte(oracleNote)); s.Supported {
		t.Error("athena took a note")
	}
}

// TestValidateMappingFailure: an element the canonical → vendor mapping
// cannot convert is a field error that names the element and the rule,
// not the value.
func TestValidateMappingFailure(t *testing.T) {
	// This practice's override runs the appointment status table on
	// write-back too; its unmapped policy is error.
	set := loadSet(t, VendorGeneric, mapping.Source{Name: "p.yaml", Data: []byte(
		"resource: Appointment\nrules:\n  - id: appointment.status\n    direction: both\n    rationale: Statuses written back are checked against the table too.\n")})
	c, _ := Default().For(VendorGeneric, "")
	appt := `{"resourceType":"Appointment","status":"tentative-xyzzy","start":"2026-03-01T10:00:00Z","end":"2026-03-01T10:20:00Z","participant":[{"actor":{"reference":"Patient/1"},"status":"accepted"}]}`
	body, _, fes, err := Validate(context.Background(), set, c, AppointmentBook, []byte(appt))
	if err != nil || body != nil || len(fes) != 1 {
		t.Fatalf("got body %s, %v, %v", body, fes, err)
	}
	if fes[0].Path != "status" || fes[0].Rule != "appointment.status" || strings.Contains(fes[0].Message, "xyzzy") {
		t.Errorf("field error %+v", fes[0])
	}
	b, _ := json.Marshal(fes[0])
	if !strings.Contains(string(b), `"path":"status"`) {
		t.Errorf("JSON %s", b)
	}
}

func TestValidateErrors(t *testing.T) {
	oracle, _ := Default().For(VendorOracleHealth, "")
	oset := loadSet(t, VendorOracleHealth)
	gset := loadSet(t, VendorGeneric)
	if _, _, _, err := Validate(context.Background(), gset, oracle, NoteCreate, []byte(oracleNote)); err == nil {
		t.Error("a generic mapping was used for an Oracle Health contract")
	}
	if _, _, _, err := Validate(context.Background(), nil, oracle, NoteCreate, []byte(oracleNote)); err == nil {
		t.Error("no mapping set, no error")
	}
	if _, _, _, err := Validate(context.Background(), oset, nil, NoteCreate, []byte(oracleNote)); err == nil {
		t.Error("no contract, no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, fes, err := Validate(ctx, oset, oracle, NoteCreate, []byte(oracleNote))
	if !errors.Is(err, context.Canceled) || fes != nil {
		t.Errorf("cancelled: %v %v", fes, err)
	}
}
