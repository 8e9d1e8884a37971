package oraclehealth

import (
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// loincSystem is LOINC's code system URI.
const loincSystem = "http://loinc.org"

// appointmentTransitions are the status changes Oracle Health documents for
// Appointment updates.
var appointmentTransitions = map[string][]string{
	"proposed":   {"booked", "cancelled"},
	"booked":     {"arrived", "checked-in", "cancelled"},
	"arrived":    {"checked-in", "cancelled"},
	"checked-in": {"fulfilled", "cancelled"},
}

// CheckWrite implements flavor.WriteChecker with Oracle Health's documented
// business rules (each failure is a 422):
//   - no coding array may mix proprietary codes (https://fhir.cerner.com/
//     {tenant}/codeSet/{n}) with standard ones: in the whole body of a create
//     or update, in the values a patch adds;
//   - DocumentReference create: status current, docStatus final, type coded
//     in LOINC or proprietary codes (not both), subject a Patient, author one
//     Practitioner, exactly one content with a contentType that names a
//     charset and inline data, context.period.end, and every date with a time;
//   - Appointment create: status proposed (exactly one Patient participant
//     needing action, at least one Location, exactly one serviceType) or
//     booked (exactly one existing free Slot, exactly one participant: the
//     Patient, accepted, without a type); reasonCode at most one;
//   - Appointment update or patch: only the documented status transitions.
func (Flavor) CheckWrite(w flavor.Write) *flavor.Problem {
	bad := func(msg string) *flavor.Problem {
		return &flavor.Problem{Kind: flavor.Unprocessable, Diagnostics: msg}
	}
	if w.Op == "patch" {
		// Arrays the vendor itself serves mixed may stay; a patch may not
		// make a new one (or send one).
		before := map[string]bool{}
		for _, p := range mixedCodings(w.Old, w.ResourceType, nil) {
			before[p] = true
		}
		for _, p := range mixedCodings(w.New, w.ResourceType, nil) {
			if !before[p] {
				return bad(p + " mixes proprietary and standard codings")
			}
		}
		for _, v := range w.Patch {
			if ps := mixedCodings(v, w.ResourceType, nil); len(ps) > 0 {
				return bad(ps[0] + " mixes proprietary and standard codings")
			}
		}
	} else if ps := mixedCodings(w.New, w.ResourceType, nil); len(ps) > 0 {
		return bad(ps[0] + " mixes proprietary and standard codings")
	}
	switch {
	case w.Op == "create" && w.ResourceType == "DocumentReference":
		if msg := checkDocument(w.New); msg != "" {
			return bad(msg)
		}
	case w.Op == "create" && w.ResourceType == "Appointment":
		if msg := checkAppointmentCreate(w); msg != "" {
			return bad(msg)
		}
	case w.ResourceType == "Appointment" && w.Old != nil:
		from, to := w.Old.Str("status"), w.New.Str("status")
		if from != to && !allowed(appointmentTransitions[from], to) {
			return bad("Appointment.status cannot change from " + from + " to " + to)
		}
	}
	return nil
}

func allowed(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// proprietary reports whether a coding system is an Oracle Health code set.
func proprietary(system string) bool {
	return strings.HasPrefix(system, CodeSetBase) && strings.Contains(system, "/codeSet/")
}

// mixedCodings appends to out the element paths ("Observation.code.coding",
// array elements as [i]) of the coding arrays in v that mix proprietary and
// standard systems.
func mixedCodings(v any, path string, out []string) []string {
	switch x := v.(type) {
	case *gen.Obj:
		for _, k := range x.Keys() {
			val, _ := x.Get(k)
			if k == "coding" {
				if arr, ok := val.([]any); ok {
					prop, std := 0, 0
					for _, c := range arr {
						if co, ok := c.(*gen.Obj); ok {
							if proprietary(co.Str("system")) {
								prop++
							} else {
								std++
							}
						}
					}
					if prop > 0 && std > 0 {
						out = append(out, path+".coding")
					}
				}
			}
			out = mixedCodings(val, path+"."+k, out)
		}
	case []any:
		for i, e := range x {
			out = mixedCodings(e, path+"["+strconv.Itoa(i)+"]", out)
		}
	}
	return out
}

func refType(ref *gen.Obj) string {
	if ref == nil {
		return ""
	}
	typ, _, _ := strings.Cut(ref.Str("reference"), "/")
	return typ
}

func checkDocument(d *gen.Obj) string {
	if d.Str("status") != "current" {
		return "DocumentReference.status must be current"
	}
	if d.Str("docStatus") != "final" {
		return "DocumentReference.docStatus must be final"
	}
	typ := d.Child("type")
	if typ == nil || len(typ.List("coding")) == 0 {
		return "DocumentReference.type needs a coding"
	}
	loinc, prop := 0, 0
	for _, c := range typ.List("coding") {
		co, _ := c.(*gen.Obj)
		switch {
		case co == nil:
		case co.Str("system") == loincSystem:
			loinc++
		case proprietary(co.Str("system")):
			prop++
		default:
			return "DocumentReference.type must be coded in LOINC or a proprietary code set"
		}
	}
	if loinc > 0 && prop > 0 {
		return "DocumentReference.type may be LOINC or proprietary, not both"
	}
	if refType(d.Child("subject")) != "Patient" {
		return "DocumentReference.subject must reference a Patient"
	}
	authors := d.List("author")
	if len(authors) != 1 {
		return "DocumentReference.author must be exactly one Practitioner"
	}
	if a, _ := authors[0].(*gen.Obj); refType(a) != "Practitioner" {
		return "DocumentReference.author must reference a Practitioner"
	}
	content := d.List("content")
	if len(content) != 1 {
		return "DocumentReference.content must hold exactly one attachment"
	}
	co, _ := content[0].(*gen.Obj)
	var att *gen.Obj
	if co != nil {
		att = co.Child("attachment")
	}
	if att == nil || !strings.Contains(strings.ToLower(att.Str("contentType")), "charset=") {
		return "DocumentReference.content.attachment.contentType must name a charset"
	}
	if att.Str("data") == "" {
		return "DocumentReference.content.attachment.data is required"
	}
	ctx := d.Child("context")
	var period *gen.Obj
	if ctx != nil {
		period = ctx.Child("period")
	}
	if period == nil || period.Str("end") == "" {
		return "DocumentReference.context.period.end is required"
	}
	for _, dt := range []struct {
		where string
		o     *gen.Obj
		key   string
	}{
		{"DocumentReference.date", d, "date"},
		{"DocumentReference.context.period.start", period, "start"},
		{"DocumentReference.context.period.end", period, "end"},
		{"DocumentReference.content.attachment.creation", att, "creation"},
	} {
		if v := dt.o.Str(dt.key); v != "" && !strings.Contains(v, "T") {
			return dt.where + " must be a date with a time"
		}
	}
	return ""
}

func checkAppointmentCreate(w flavor.Write) string {
	a := w.New
	if rc := a.List("reasonCode"); len(rc) > 1 {
		return "Appointment.reasonCode may hold one CodeableConcept only"
	}
	parts := a.List("participant")
	participant := func(i int) (typ, status string, typed bool) {
		p, _ := parts[i].(*gen.Obj)
		if p == nil {
			return "", "", false
		}
		_, typed = p.Get("type")
		return refType(p.Child("actor")), p.Str("status"), typed
	}
	switch a.Str("status") {
	case "booked":
		slots := a.List("slot")
		if len(slots) != 1 {
			return "a booked Appointment needs exactly one Slot"
		}
		sr, _ := slots[0].(*gen.Obj)
		_, sid, _ := strings.Cut(refString(sr), "/")
		if refType(sr) != "Slot" || sid == "" {
			return "Appointment.slot must reference a Slot"
		}
		slot := w.Get("Slot", sid)
		if slot == nil {
			return "Appointment.slot refers to a Slot that does not exist"
		}
		if slot.Str("status") != "free" {
			return "Appointment.slot refers to a Slot that is not free"
		}
		if len(parts) != 1 {
			return "a booked Appointment needs exactly one participant, the Patient"
		}
		typ, status, typed := participant(0)
		if typ != "Patient" || status != "accepted" || typed {
			return "the participant of a booked Appointment must be the Patient, accepted, without a type"
		}
	case "proposed":
		if len(a.List("serviceType")) != 1 {
			return "a proposed Appointment needs exactly one serviceType"
		}
		patients, locations := 0, 0
		for i := range parts {
			typ, status, _ := participant(i)
			switch typ {
			case "Patient":
				patients++
			case "Location":
				locations++
			default:
				return "proposed Appointment participants must be a Patient or Locations"
			}
			if status != "needs-action" {
				return "proposed Appointment participants must have status needs-action"
			}
		}
		if patients != 1 || locations == 0 {
			return "a proposed Appointment needs exactly one Patient and at least one Location"
		}
	default:
		return "an Appointment is created proposed or booked"
	}
	return ""
}

func refString(ref *gen.Obj) string {
	if ref == nil {
		return ""
	}
	return ref.Str("reference")
}
