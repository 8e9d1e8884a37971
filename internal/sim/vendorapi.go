package sim

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// serveVendorAPI serves a flavour's proprietary write API (flavor.Info
// VendorAPI) under the tenant root; it reports whether rest was one of its
// paths. Writes through these APIs land in the same store the FHIR API
// serves, so a FHIR read-back sees them.
func (t *tenant) serveVendorAPI(w http.ResponseWriter, r *http.Request, rest string) bool {
	switch t.info.VendorAPI {
	case flavor.VendorAPIAthenaV1:
		if p, ok := strings.CutPrefix(rest, "/v1/"); ok {
			t.serveAthenaV1(w, r, p)
			return true
		}
	case flavor.VendorAPIECWWriteback:
		if p, ok := strings.CutPrefix(rest, "/writeback/"); ok {
			t.serveECWWriteback(w, r, p)
			return true
		}
	}
	return false
}

// vendorCall runs faults and authentication for a vendor API request on
// resource type rt; it answers and returns nil when the request must not
// be served.
func (t *tenant) vendorCall(w http.ResponseWriter, r *http.Request, rt string, op byte, unauthorized func(status int, msg string)) *call {
	c := &call{t: t, w: w, r: r, rt: rt}
	write := op == 'c' || op == 'u'
	if !t.applyFaults(w, r, fault.Request{Endpoint: rt, Write: write}, c) {
		return nil
	}
	if !t.cfg.OpenAuth {
		if _, err := t.auth.Authenticate(r, rt, op); err != nil {
			status := http.StatusUnauthorized
			var ae *authserver.AuthError
			if errors.As(err, &ae) {
				status = ae.Status
				w.Header().Set("WWW-Authenticate", ae.WWWAuthenticate())
			}
			unauthorized(status, "not authorized")
			return nil
		}
	}
	return c
}

// ---- athenahealth v1 ----

// athenaPracticer is the athenahealth flavour's practice id.
type athenaPracticer interface{ Practice() string }

// athenaApptTypeSystem codes Appointment.appointmentType from the v1
// appointmenttypeid (the system is the simulator's own).
const athenaApptTypeSystem = "urn:mediflow:sim:athenahealth:appointmenttypeid"

// athenaDefaultLimit is the length limit of v1 fields not in
// athenaFieldLimits (athenahealth documents "mostly 20").
const athenaDefaultLimit = 20

// athenaFieldLimits are the documented longer fields (lastname 30,
// addresses 100); email, the notes and the free-text reasons are our
// choice (unconfirmed).
var athenaFieldLimits = map[string]int{
	"lastname": 30, "address1": 100, "address2": 100,
	"email": 100, "bookingnote": 500, "insurancenote": 500,
	"cancellationreason": 500, "reschedulereason": 500,
}

// athenaError answers v1's error shape: {"error": "...", "detailedmessage": "..."}.
func athenaError(w http.ResponseWriter, status int, msg, detail string, extra map[string]any) {
	body := map[string]any{"error": msg}
	if detail != "" {
		body["detailedmessage"] = detail
	}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

// athenaLocal is the v1 id inside a FHIR id: the digits after the last '-'
// ("a-195900.E-1234567" → "1234567").
func athenaLocal(fhirID string) string {
	return fhirID[strings.LastIndexByte(fhirID, '-')+1:]
}

func (t *tenant) athenaID(practice, kind, local string) string {
	return "a-" + practice + "." + kind + "-" + local
}

func (t *tenant) serveAthenaV1(w http.ResponseWriter, r *http.Request, p string) {
	ap, ok := t.fl.(athenaPracticer)
	if !ok {
		athenaError(w, http.StatusNotFound, "Not found.", "", nil)
		return
	}
	practice := ap.Practice()
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) < 2 {
		athenaError(w, http.StatusNotFound, "Not found.", "", nil)
		return
	}
	if parts[0] != practice {
		athenaError(w, http.StatusForbidden, "The practice ID is not accessible to this client.", "", nil)
		return
	}
	unauthorized := func(status int, msg string) { athenaError(w, status, "Unauthorized.", msg, nil) }
	switch {
	case len(parts) == 2 && parts[1] == "patients":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			athenaError(w, http.StatusMethodNotAllowed, "Method not allowed.", "", nil)
			return
		}
		if c := t.vendorCall(w, r, "Patient", 'c', unauthorized); c != nil {
			t.athenaCreatePatient(c, practice)
		}
	case len(parts) == 3 && parts[1] == "appointments" && parts[2] == "open":
		switch r.Method {
		case http.MethodGet:
			if c := t.vendorCall(w, r, "Appointment", 's', unauthorized); c != nil {
				t.athenaListOpen(c, practice)
			}
		case http.MethodPost:
			if c := t.vendorCall(w, r, "Appointment", 'c', unauthorized); c != nil {
				t.athenaCreateOpen(c, practice)
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			athenaError(w, http.StatusMethodNotAllowed, "Method not allowed.", "", nil)
		}
	case len(parts) == 4 && parts[1] == "appointments" && (parts[3] == "reschedule" || parts[3] == "cancel"):
		if !isDigits(parts[2]) {
			athenaError(w, http.StatusNotFound, "The appointment ID is invalid.", "", nil)
			return
		}
		if r.Method != http.MethodPut {
			w.Header().Set("Allow", "PUT")
			athenaError(w, http.StatusMethodNotAllowed, "Method not allowed.", "", nil)
			return
		}
		if c := t.vendorCall(w, r, "Appointment", 'u', unauthorized); c != nil {
			if parts[3] == "reschedule" {
				t.athenaReschedule(c, practice, parts[2])
			} else {
				t.athenaCancel(c, practice, parts[2])
			}
		}
	case len(parts) == 3 && parts[1] == "appointments":
		if !isDigits(parts[2]) {
			athenaError(w, http.StatusNotFound, "The appointment ID is invalid.", "", nil)
			return
		}
		switch r.Method {
		case http.MethodGet:
			if c := t.vendorCall(w, r, "Appointment", 'r', unauthorized); c != nil {
				t.athenaGetAppointment(c, practice, parts[2])
			}
		case http.MethodPut:
			if c := t.vendorCall(w, r, "Appointment", 'u', unauthorized); c != nil {
				t.athenaBook(c, practice, parts[2])
			}
		default:
			w.Header().Set("Allow", "GET, PUT")
			athenaError(w, http.StatusMethodNotAllowed, "Method not allowed.", "", nil)
		}
	default:
		athenaError(w, http.StatusNotFound, "Not found.", "", nil)
	}
}

func isDigits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// athenaForm reads a v1 request's form (body and query), checks required
// fields and length limits, and answers 400 when they fail.
func athenaForm(c *call, required ...string) (url.Values, bool) {
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, 1<<20)
	if err := c.r.ParseForm(); err != nil {
		athenaError(c.w, http.StatusBadRequest, "The request could not be read.", "send application/x-www-form-urlencoded fields", nil)
		return nil, false
	}
	f := c.r.Form
	var missing []string
	for _, k := range required {
		if strings.TrimSpace(f.Get(k)) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		athenaError(c.w, http.StatusBadRequest, "Missing required fields.", "", map[string]any{"missingfields": missing})
		return nil, false
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		limit, ok := athenaFieldLimits[k]
		if !ok {
			limit = athenaDefaultLimit
		}
		for _, v := range f[k] {
			if len([]rune(v)) > limit {
				athenaError(c.w, http.StatusBadRequest, "A field is too long.",
					k+" may be at most "+strconv.Itoa(limit)+" characters", map[string]any{"field": k})
				return nil, false
			}
		}
	}
	return f, true
}

func athenaDate(s string) (time.Time, bool) {
	d, err := time.Parse("01/02/2006", s)
	return d, err == nil
}

func (t *tenant) athenaCreatePatient(c *call, practice string) {
	f, ok := athenaForm(c, "departmentid", "dob", "firstname", "lastname")
	if !ok {
		return
	}
	dob, ok := athenaDate(f.Get("dob"))
	if !ok {
		athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "dob must be MM/DD/YYYY", map[string]any{"field": "dob"})
		return
	}
	if !t.exists("Location", t.athenaID(practice, "Department", f.Get("departmentid"))) {
		athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "departmentid is not a department of this practice", map[string]any{"field": "departmentid"})
		return
	}
	pat := gen.O("resourceType", "Patient", "active", true)
	pat.Set("name", gen.A(gen.O("use", "official", "family", f.Get("lastname"), "given", gen.A(f.Get("firstname")))))
	if tel := telecoms(f); len(tel) > 0 {
		pat.Set("telecom", tel)
	}
	switch strings.ToUpper(f.Get("sex")) {
	case "M":
		pat.Set("gender", "male")
	case "F":
		pat.Set("gender", "female")
	case "":
	default:
		pat.Set("gender", "unknown")
	}
	pat.Set("birthDate", dob.Format("2006-01-02"))
	if f.Get("address1") != "" || f.Get("city") != "" || f.Get("zip") != "" {
		addr := gen.O("use", "home")
		var lines []any
		for _, k := range []string{"address1", "address2"} {
			if v := f.Get(k); v != "" {
				lines = append(lines, v)
			}
		}
		if len(lines) > 0 {
			addr.Set("line", lines)
		}
		for k, fk := range map[string]string{"city": "city", "state": "state", "postalCode": "zip"} {
			if v := f.Get(fk); v != "" {
				addr.Set(k, v)
			}
		}
		pat.Set("address", gen.A(addr))
	}
	// No idempotency: the same request twice registers two patients.
	id := t.newID("Patient")
	if _, _, err := t.store.PutObj("Patient", id, pat, simstore.Precondition{MustNotExist: true}); err != nil {
		t.sim.log.Error("athenahealth v1 patient create failed", "tenant", t.id, "err", err)
		athenaError(c.w, http.StatusInternalServerError, "Internal error.", "", nil)
		return
	}
	if c.afterCommit != nil {
		t.holdAfterCommit(c.w, c.r, c.afterCommit)
		return
	}
	writeJSON(c.w, http.StatusOK, []map[string]string{{"patientid": athenaLocal(id)}})
}

func telecoms(f url.Values) []any {
	var out []any
	for _, x := range []struct{ field, system, use string }{
		{"homephone", "phone", "home"}, {"mobilephone", "phone", "mobile"}, {"email", "email", "home"},
	} {
		if v := f.Get(x.field); v != "" {
			out = append(out, gen.O("system", x.system, "value", v, "use", x.use))
		}
	}
	return out
}

func (t *tenant) exists(rt, id string) bool {
	_, ok := t.store.Get(rt, id)
	return ok
}

// athenaOpen reports whether a FHIR Appointment is an open slot: proposed
// with no patient participant.
func athenaOpen(o *gen.Obj) bool {
	if o.Str("status") != "proposed" {
		return false
	}
	return participantRef(o, "Patient") == ""
}

// participantRef returns the id of the first participant actor of type rt.
func participantRef(appt *gen.Obj, rt string) string {
	for _, x := range appt.List("participant") {
		p, _ := x.(*gen.Obj)
		if p == nil || p.Child("actor") == nil {
			continue
		}
		if typ, id, ok := strings.Cut(p.Child("actor").Str("reference"), "/"); ok && typ == rt {
			return id
		}
	}
	return ""
}

// athenaAppointment renders a FHIR Appointment in v1's shape.
func athenaAppointment(id string, o *gen.Obj) map[string]any {
	out := map[string]any{"appointmentid": athenaLocal(id)}
	switch o.Str("status") {
	case "proposed":
		out["appointmentstatus"] = "o"
	case "booked":
		out["appointmentstatus"] = "f"
	case "arrived", "checked-in":
		out["appointmentstatus"] = "2"
	case "fulfilled":
		out["appointmentstatus"] = "3"
	case "cancelled", "noshow":
		out["appointmentstatus"] = "x"
	}
	if start, err := time.Parse(time.RFC3339, o.Str("start")); err == nil {
		out["date"] = start.UTC().Format("01/02/2006")
		out["starttime"] = start.UTC().Format("15:04")
	}
	if d, ok := o.Get("minutesDuration"); ok {
		out["duration"] = d
	}
	if p := participantRef(o, "Patient"); p != "" {
		out["patientid"] = athenaLocal(p)
	}
	if p := participantRef(o, "Practitioner"); p != "" {
		out["providerid"] = athenaLocal(p)
	}
	if l := participantRef(o, "Location"); l != "" {
		out["departmentid"] = athenaLocal(l)
	}
	if at := o.Child("appointmentType"); at != nil {
		for _, x := range at.List("coding") {
			if cd, _ := x.(*gen.Obj); cd != nil && cd.Str("system") == athenaApptTypeSystem {
				out["appointmenttypeid"] = cd.Str("code")
			}
		}
	}
	if to := athenaRescheduledTo(o); to != "" {
		out["rescheduledappointmentid"] = to
	}
	return out
}

func (t *tenant) athenaCreateOpen(c *call, practice string) {
	f, ok := athenaForm(c, "departmentid", "providerid", "appointmentdate", "appointmenttime", "appointmenttypeid")
	if !ok {
		return
	}
	day, ok := athenaDate(f.Get("appointmentdate"))
	if !ok {
		athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "appointmentdate must be MM/DD/YYYY", map[string]any{"field": "appointmentdate"})
		return
	}
	prov := t.athenaID(practice, "Provider", f.Get("providerid"))
	dept := t.athenaID(practice, "Department", f.Get("departmentid"))
	if !t.exists("Practitioner", prov) || !t.exists("Location", dept) {
		athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "providerid or departmentid is not known in this practice", nil)
		return
	}
	ids := map[string]string{}
	for _, hm := range strings.Split(f.Get("appointmenttime"), ",") {
		hm = strings.TrimSpace(hm)
		tm, err := time.Parse("15:04", hm)
		if err != nil {
			athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "appointmenttime must be HH:MM (24 h), comma-separated", map[string]any{"field": "appointmenttime"})
			return
		}
		start := day.Add(time.Duration(tm.Hour())*time.Hour + time.Duration(tm.Minute())*time.Minute).UTC()
		appt := gen.O("resourceType", "Appointment", "status", "proposed",
			"appointmentType", gen.O("coding", gen.A(gen.O("system", athenaApptTypeSystem, "code", f.Get("appointmenttypeid")))),
			"start", start.Format(time.RFC3339), "end", start.Add(30*time.Minute).Format(time.RFC3339), "minutesDuration", 30,
			"participant", gen.A(
				gen.O("actor", gen.O("reference", "Practitioner/"+prov), "status", "accepted"),
				gen.O("actor", gen.O("reference", "Location/"+dept), "status", "accepted")))
		id := t.newID("Appointment")
		if _, _, err := t.store.PutObj("Appointment", id, appt, simstore.Precondition{MustNotExist: true}); err != nil {
			t.sim.log.Error("athenahealth v1 open slot failed", "tenant", t.id, "err", err)
			athenaError(c.w, http.StatusInternalServerError, "Internal error.", "", nil)
			return
		}
		ids[hm] = athenaLocal(id)
	}
	if c.afterCommit != nil {
		t.holdAfterCommit(c.w, c.r, c.afterCommit)
		return
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"appointmentids": ids})
}

func (t *tenant) athenaListOpen(c *call, practice string) {
	q := c.r.URL.Query()
	var out []map[string]any
	for _, v := range t.store.Snapshot("Appointment", simstore.Query{}) {
		o, err := gen.ParseObj(v.Body)
		if err != nil || !athenaOpen(o) {
			continue
		}
		a := athenaAppointment(v.ID, o)
		if d := q.Get("departmentid"); d != "" && a["departmentid"] != d {
			continue
		}
		if p := q.Get("providerid"); p != "" && a["providerid"] != p {
			continue
		}
		out = append(out, a)
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"appointments": out, "totalcount": len(out)})
}

func (t *tenant) athenaGetAppointment(c *call, practice, local string) {
	id := t.athenaID(practice, "appointment", local)
	v, ok := t.store.Get("Appointment", id)
	if !ok {
		athenaError(c.w, http.StatusNotFound, "The appointment ID is invalid.", "", nil)
		return
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		athenaError(c.w, http.StatusInternalServerError, "Internal error.", "", nil)
		return
	}
	writeJSON(c.w, http.StatusOK, []map[string]any{athenaAppointment(id, o)})
}

// athenaBook books an open appointment for a patient: the FHIR Appointment
// becomes booked with the patient as an accepted participant. Booking an
// appointment that is not open (already booked, by this very request or
// another) answers 400: v1 has no ETag or idempotency key.
func (t *tenant) athenaBook(c *call, practice, local string) {
	f, ok := athenaForm(c, "patientid")
	if !ok {
		return
	}
	pid := t.athenaID(practice, "E", f.Get("patientid"))
	if !isDigits(f.Get("patientid")) || !t.exists("Patient", pid) {
		athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "patientid is not a patient of this practice", map[string]any{"field": "patientid"})
		return
	}
	id := t.athenaID(practice, "appointment", local)
	t.createMu.Lock()
	defer t.createMu.Unlock()
	v, ok := t.store.Get("Appointment", id)
	if !ok {
		athenaError(c.w, http.StatusNotFound, "The appointment ID is invalid.", "", nil)
		return
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		athenaError(c.w, http.StatusInternalServerError, "Internal error.", "", nil)
		return
	}
	if !athenaOpen(o) {
		athenaError(c.w, http.StatusBadRequest, "The appointment is already booked or is not open for scheduling.", "", nil)
		return
	}
	if d := f.Get("departmentid"); d != "" && athenaLocal(participantRef(o, "Location")) != d {
		athenaError(c.w, http.StatusBadRequest, "Invalid field value.", "departmentid differs from the appointment's department", map[string]any{"field": "departmentid"})
		return
	}
	o.Set("status", "booked")
	if at := f.Get("appointmenttypeid"); at != "" {
		o.Set("appointmentType", gen.O("coding", gen.A(gen.O("system", athenaApptTypeSystem, "code", at))))
	}
	if note := f.Get("bookingnote"); note != "" {
		o.Set("comment", note)
	}
	parts := gen.A(gen.O("actor", gen.O("reference", "Patient/"+pid), "status", "accepted"))
	o.Set("participant", append(parts, o.List("participant")...))
	nv, ok := t.athenaCommit(c, "booking", id, v, o)
	if !ok {
		return
	}
	bo, _ := gen.ParseObj(nv.Body)
	writeJSON(c.w, http.StatusOK, []map[string]any{athenaAppointment(id, bo)})
}

// ---- eClinicalWorks writeback ----

// eCW writeback statuses: 100 and 202 are eClinicalWorks' documented codes;
// 0 (success) and 300 (unreadable or unsupported request) are our choice.
const (
	ECWSuccess               = 0
	ECWInvalidPatient        = 100
	ECWPatientAlreadyExists  = 202
	ECWInvalidRequest        = 300
	ecwMessageSuccess        = "SUCCESS"
	ecwMessageInvalidPatient = "INVALID_PATIENT"
	ecwMessageAlreadyExists  = "INVALID_PATIENT_ALREADY_EXIST"
	ecwMessageInvalidRequest = "INVALID_REQUEST"
)

// ecwWritebackTypes are the types the writeback endpoint accepts.
var ecwWritebackTypes = map[string]bool{
	"Patient": true, "AllergyIntolerance": true, "Condition": true, "Observation": true,
	"DocumentReference": true, "MedicationRequest": true,
}

// ecwAnswer is a writeback answer: numeric status, its name, and the new
// resource's id on success.
func ecwAnswer(w http.ResponseWriter, httpStatus, status int, msg, id string) {
	body := map[string]any{"status": status, "message": msg}
	if id != "" {
		body["id"] = id
	}
	writeJSON(w, httpStatus, body)
}

func (t *tenant) serveECWWriteback(w http.ResponseWriter, r *http.Request, rt string) {
	rt = strings.Trim(rt, "/")
	if !ecwWritebackTypes[rt] || !t.info.Serves(rt) {
		ecwAnswer(w, http.StatusNotFound, ECWInvalidRequest, ecwMessageInvalidRequest, "")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		ecwAnswer(w, http.StatusMethodNotAllowed, ECWInvalidRequest, ecwMessageInvalidRequest, "")
		return
	}
	c := t.vendorCall(w, r, rt, 'c', func(status int, _ string) {
		ecwAnswer(w, status, ECWInvalidRequest, "UNAUTHORIZED", "")
	})
	if c == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodySize))
	if err != nil {
		ecwAnswer(w, http.StatusBadRequest, ECWInvalidRequest, ecwMessageInvalidRequest, "")
		return
	}
	obj, err := gen.ParseObj(body)
	if err != nil || obj.Str("resourceType") != rt {
		ecwAnswer(w, http.StatusBadRequest, ECWInvalidRequest, ecwMessageInvalidRequest, "")
		return
	}
	obj.Delete("id")
	t.createMu.Lock()
	defer t.createMu.Unlock()
	if rt == "Patient" {
		if t.ecwPatientExists(obj) {
			ecwAnswer(w, http.StatusOK, ECWPatientAlreadyExists, ecwMessageAlreadyExists, "")
			return
		}
	} else {
		ref := obj.Child("subject")
		if ref == nil {
			ref = obj.Child("patient")
		}
		typ, pid, ok := "", "", false
		if ref != nil {
			typ, pid, ok = strings.Cut(ref.Str("reference"), "/")
		}
		if !ok || typ != "Patient" || !t.exists("Patient", pid) {
			ecwAnswer(w, http.StatusOK, ECWInvalidPatient, ecwMessageInvalidPatient, "")
			return
		}
	}
	id := t.newID(rt)
	if _, _, err := t.store.PutObj(rt, id, obj, simstore.Precondition{MustNotExist: true}); err != nil {
		t.sim.log.Error("eclinicalworks writeback failed", "tenant", t.id, "type", rt, "err", err)
		ecwAnswer(w, http.StatusInternalServerError, ECWInvalidRequest, ecwMessageInvalidRequest, "")
		return
	}
	if c.afterCommit != nil {
		t.holdAfterCommit(w, r, c.afterCommit)
		return
	}
	ecwAnswer(w, http.StatusOK, ECWSuccess, ecwMessageSuccess, id)
}

// ecwPatientExists reports whether a patient with one of obj's identifiers,
// or with the same family name, first given name and birth date, exists.
func (t *tenant) ecwPatientExists(obj *gen.Obj) bool {
	for _, x := range obj.List("identifier") {
		if idf, _ := x.(*gen.Obj); idf != nil && idf.Str("value") != "" {
			if len(t.findByIdentifier("Patient", idf.Str("system"), idf.Str("value"))) > 0 {
				return true
			}
		}
	}
	fam, given := nameOf(obj)
	dob := obj.Str("birthDate")
	if fam == "" || dob == "" {
		return false
	}
	found := false
	t.store.Snapshot("Patient", simstore.Query{Match: func(v *simstore.Version) bool {
		if found {
			return false
		}
		o, err := gen.ParseObj(v.Body)
		if err != nil || o.Str("birthDate") != dob {
			return false
		}
		f, g := nameOf(o)
		if strings.EqualFold(f, fam) && strings.EqualFold(g, given) {
			found = true
		}
		return false
	}})
	return found
}

// nameOf returns the first name's family and first given name.
func nameOf(o *gen.Obj) (family, given string) {
	names := o.List("name")
	if len(names) == 0 {
		return "", ""
	}
	n, _ := names[0].(*gen.Obj)
	if n == nil {
		return "", ""
	}
	if gs := n.List("given"); len(gs) > 0 {
		given, _ = gs[0].(string)
	}
	return n.Str("family"), given
}
