package writeback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// This file is the vendor-REST channel (contract.ChannelVendorREST): the
// intents a write contract sends through a vendor's own API instead of
// FHIR. The one such API mediflow executes is athenahealth's v1 API for
// appointments:
//
//	appointment.book        PUT /v1/{practiceid}/appointments/{slot}              patientid, appointmenttypeid, reasonid, departmentid, bookingnote
//	appointment.reschedule  PUT /v1/{practiceid}/appointments/{id}/reschedule     newappointmentid, patientid, reschedulereason
//	appointment.cancel      PUT /v1/{practiceid}/appointments/{id}/cancel         patientid, cancellationreason
//
// The v1 API has no ETag, no conditional request and no idempotency key,
// and none of these writes can be repeated (booking a booked slot, or
// cancelling a cancelled appointment, is refused). So an attempt that may
// have reached athenahealth — a timeout, a broken connection, a 5xx, or
// any attempt after the first — is followed by a read of the appointment
// (GET /v1/{practiceid}/appointments/{id}) before anything is sent again:
// when the appointment already shows the change, the write took effect.
// The same read, after the write, verifies it.

// VendorRESTTarget is a practice's athenahealth v1 API, which writes the
// intents its contract routes to contract.ChannelVendorREST.
type VendorRESTTarget struct {
	// BaseURL is the v1 API root without the practice, e.g.
	// https://api.platform.athenahealth.com/v1 (the simulator's:
	// {tenant root}/v1).
	BaseURL string
	// PracticeID is the athenahealth practice id (digits), the
	// {practiceid} of every path.
	PracticeID string
	// HTTPClient sends the requests (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Tokens supplies the bearer token of every request (the practice's
	// FHIR connection's token source); nil sends none. A 401 answer drops
	// the token and the request is sent once more with a fresh one.
	Tokens fhirrest.TokenSource
	// Timeout bounds one request (0: 30 s).
	Timeout time.Duration
	// Location is the time zone of v1 dates and times, the practice's
	// (nil: UTC).
	Location *time.Location
}

func (v *VendorRESTTarget) validate(practice string) error {
	u, err := url.Parse(v.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("writeback: practice %s: the vendor API base URL must be an absolute http(s) URL without a query", practice)
	}
	if !isDigitsID(v.PracticeID) {
		return fmt.Errorf("writeback: practice %s: the athenahealth practice id must be digits", practice)
	}
	if v.Timeout < 0 {
		return fmt.Errorf("writeback: practice %s: negative vendor API timeout", practice)
	}
	return nil
}

func isDigitsID(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ---- the intent as v1 requests ----

// v1Booked are the v1 appointment statuses of a booked appointment:
// f (future), 2 (checked in), 3 (checked out), 4 (charge entered).
var v1Booked = []string{"f", "2", "3", "4"}

// v1Cancelled is the v1 status of a cancelled appointment.
const v1Cancelled = "x"

// athenaOp is one intent as a v1 write and what the appointment read back
// must show.
type athenaOp struct {
	kind contract.Intent
	// path is the write's path under the practice
	// ("appointments/1234/cancel"); form its fields.
	path string
	form url.Values
	// id is the appointment that shows the write (the slot booked, the
	// new slot, the cancelled appointment); original is a reschedule's
	// first appointment.
	id, original string
	// record is the FHIR id of the appointment id (the intent's record).
	record string
	want   v1Want
}

// v1Want is what the appointment must show once the write took effect.
type v1Want struct {
	statuses []string
	patient  string
	// Checked when the intent names them.
	start                  time.Time
	typeID, dept, provider string
}

// appointmentBody is what the executor reads of an Appointment.
type appointmentBody struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Status       string    `json:"status"`
	Slot         []refBody `json:"slot"`
	Participant  []struct {
		Actor *refBody `json:"actor"`
	} `json:"participant"`
	AppointmentType   *codeableBody  `json:"appointmentType"`
	ReasonCode        []codeableBody `json:"reasonCode"`
	Start             string         `json:"start"`
	Comment           string         `json:"comment"`
	CancelationReason *codeableBody  `json:"cancelationReason"`
}

type refBody struct {
	Reference string `json:"reference"`
}

type codeableBody struct {
	Coding []struct {
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"coding"`
	Text string `json:"text"`
}

// code is the first coding's code.
func (c *codeableBody) code() string {
	if c == nil {
		return ""
	}
	for _, cd := range c.Coding {
		if cd.Code != "" {
			return cd.Code
		}
	}
	return ""
}

// words is the concept as text: the text, else a display, else a code.
func (c *codeableBody) words() string {
	if c == nil {
		return ""
	}
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	return c.code()
}

// refParts splits a reference ("Patient/a-1.E-2", or an absolute URL) into
// type and id.
func refParts(ref string) (typ, id string) {
	ref = strings.TrimSuffix(ref, "/")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j < 0 {
		return "", ref
	}
	typ = ref[:j]
	if k := strings.LastIndexByte(typ, '/'); k >= 0 {
		typ = typ[k+1:]
	}
	return typ, ref[j+1:]
}

// v1ID turns an id into a v1 id, or "" when it is not one (digits).
func v1ID(id string) string {
	id = contract.AthenaV1ID(id)
	if !isDigitsID(id) {
		return ""
	}
	return id
}

// athenaPrefix is an athenahealth FHIR id's prefix ("a-195900.appointment-").
var athenaPrefix = regexp.MustCompile(`^(a-\d+\.([A-Za-z]+)-)`)

// recordID is the FHIR id of v1 appointment v1id: in the form of like
// when like is an athenahealth appointment id, else
// a-{practice}.appointment-{id} (the form the simulator serves).
func (v *VendorRESTTarget) recordID(like, v1id string) string {
	if m := athenaPrefix.FindStringSubmatch(like); m != nil && strings.EqualFold(m[2], "appointment") {
		return m[1] + v1id
	}
	return "a-" + v.PracticeID + ".appointment-" + v1id
}

// athenaOp builds the v1 write of an intent from its vendor body. Its
// errors are PHI-free and say what is missing.
func (v *VendorRESTTarget) athenaOp(kind contract.Intent, targetID string, body []byte) (*athenaOp, error) {
	var a appointmentBody
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, errors.New("the body is not an Appointment")
	}
	if a.ResourceType != "" && a.ResourceType != "Appointment" {
		return nil, errors.New("the body is not an Appointment")
	}
	op := &athenaOp{kind: kind, form: url.Values{}}
	for _, p := range a.Participant {
		if p.Actor == nil {
			continue
		}
		typ, id := refParts(p.Actor.Reference)
		switch typ {
		case "Patient":
			if op.want.patient == "" {
				op.want.patient = v1ID(id)
				if op.want.patient == "" {
					return nil, errors.New("the Patient participant's id is not an athenahealth patient id")
				}
			}
		case "Location":
			if op.want.dept == "" {
				op.want.dept = v1ID(id)
			}
		case "Practitioner":
			if op.want.provider == "" {
				op.want.provider = v1ID(id)
			}
		}
	}
	if op.want.patient == "" {
		return nil, errors.New("no Patient participant (patientid)")
	}
	op.form.Set("patientid", op.want.patient)
	if a.Start != "" {
		start, err := time.Parse(time.RFC3339, a.Start)
		if err != nil {
			return nil, errors.New("start is not a date and time with a time zone")
		}
		op.want.start = start
	}
	op.want.typeID = a.AppointmentType.code()
	slot, slotRef := "", ""
	if len(a.Slot) > 0 {
		_, slotRef = refParts(a.Slot[0].Reference)
		if slot = v1ID(slotRef); slot == "" {
			return nil, errors.New("the slot is not an athenahealth appointment id")
		}
		if len(a.Slot) > 1 {
			return nil, errors.New("more than one slot")
		}
	}
	target := targetID
	if target == "" {
		target = a.ID
	}
	switch kind {
	case contract.AppointmentBook:
		if slot == "" {
			return nil, errors.New("no slot: athenahealth books an open appointment slot")
		}
		op.id, op.record, op.path = slot, v.recordID(slotRef, slot), "appointments/"+slot
		op.want.statuses = v1Booked
		setIf(op.form, "appointmenttypeid", op.want.typeID)
		setIf(op.form, "departmentid", op.want.dept)
		if len(a.ReasonCode) > 0 {
			setIf(op.form, "reasonid", a.ReasonCode[0].code())
		}
		setIf(op.form, "bookingnote", a.Comment)
	case contract.AppointmentResched:
		orig := v1ID(target)
		switch {
		case orig == "":
			return nil, errors.New("no athenahealth appointment id to reschedule (target)")
		case slot == "":
			return nil, errors.New("no slot: a reschedule moves the appointment to an open slot")
		case slot == orig:
			return nil, errors.New("the new slot is the appointment itself")
		}
		op.id, op.original, op.record = slot, orig, v.recordID(target, slot)
		op.path = "appointments/" + orig + "/reschedule"
		op.form.Set("newappointmentid", slot)
		setIf(op.form, "reschedulereason", a.CancelationReason.words())
		op.want.statuses = v1Booked
	case contract.AppointmentCancel:
		id := v1ID(target)
		if id == "" {
			return nil, errors.New("no athenahealth appointment id to cancel (target)")
		}
		if a.Status != "" && a.Status != "cancelled" {
			return nil, errors.New("a cancellation sets status cancelled")
		}
		op.id, op.record, op.path = id, v.recordID(target, id), "appointments/"+id+"/cancel"
		setIf(op.form, "cancellationreason", a.CancelationReason.words())
		op.want = v1Want{statuses: []string{v1Cancelled}, patient: op.want.patient}
	default:
		return nil, fmt.Errorf("athenahealth's v1 API executor writes appointment.book, appointment.reschedule and appointment.cancel, not %s", safeWord(string(kind)))
	}
	return op, nil
}

func setIf(f url.Values, k, v string) {
	if v != "" {
		f.Set(k, v)
	}
}

// checkVendorREST refuses a request the practice's vendor API cannot
// carry, before it is stored.
func (o *Outbox) checkVendorREST(r Request) error {
	v := o.opts.Targets[r.Practice].VendorREST
	kind := safeWord(string(r.Kind))
	if v == nil {
		return refused("%s goes through the EHR's own API (vendor-rest channel), and the practice has no vendor API connection for write-back", kind)
	}
	if r.BaseVersion != "" {
		return refused("athenahealth's v1 API has no record versions (no ETag or If-Match): leave baseVersion out")
	}
	body := r.VendorBody
	if len(body) == 0 {
		body = r.Body
	}
	if _, err := v.athenaOp(r.Kind, r.TargetID, body); err != nil {
		return refused("%s cannot be sent to athenahealth's v1 API: %v", kind, err)
	}
	return nil
}

// ---- execution ----

// vendorREST runs one round of an intent over the v1 API.
func (e *exec) vendorREST(ctx context.Context) *decision {
	op, err := e.tgt.VendorREST.athenaOp(contract.Intent(e.in.Kind), e.in.TargetID, e.in.VendorBody)
	if err != nil {
		d := final(store.IntentRejected, "cannot build the athenahealth v1 request: "+err.Error())
		d.rejection = "mediflow could not build the request to athenahealth: " + err.Error() + ". Correct the appointment and send again."
		return d
	}
	if e.in.Status == store.IntentSent {
		return e.v1Verify(ctx, op)
	}
	if e.in.Attempts > 1 {
		// An earlier attempt may have reached athenahealth: look first.
		took, d := e.v1Look(ctx, op)
		if d != nil {
			return d
		}
		if took {
			return e.v1Sent(ctx, op)
		}
	}
	ans, fail := e.v1Call(ctx, http.MethodPut, op.path, op.form, op.step())
	if fail != nil {
		if !fail.sent {
			return retry("the write was not sent: " + fail.kind)
		}
		if ctx.Err() != nil {
			return retrySettle("no answer: " + fail.kind)
		}
		took, d := e.v1Look(ctx, op)
		if d != nil {
			d.settle = true
			return d
		}
		if took {
			return e.v1Sent(ctx, op)
		}
		return retrySettle("no answer (" + fail.kind + ") and the appointment does not show the change; the write will be retried")
	}
	switch {
	case ans.status >= 200 && ans.status < 300:
		return e.v1Sent(ctx, op)
	case ans.status == http.StatusTooManyRequests || ans.status == http.StatusUnauthorized:
		// Refused before processing: nothing to look for.
		d := retry(statusText(ans.status))
		d.retryAfter = ans.retryAfter
		return d
	case ans.status == http.StatusRequestTimeout || (ans.status >= 500 && ans.status != http.StatusNotImplemented && ans.status != http.StatusHTTPVersionNotSupported):
		took, d := e.v1Look(ctx, op)
		if d != nil {
			d.settle, d.retryAfter = true, ans.retryAfter
			return d
		}
		if took {
			return e.v1Sent(ctx, op)
		}
		d = retrySettle(statusText(ans.status) + " and the appointment does not show the change; the write will be retried")
		d.retryAfter = ans.retryAfter
		return d
	}
	if e.in.Attempts > 1 && ans.status == http.StatusBadRequest {
		// An earlier attempt that got no answer may have landed since this
		// round's look: a repeated write is refused, so look once more.
		took, d := e.v1Look(ctx, op)
		if d != nil {
			return d
		}
		if took {
			return e.v1Sent(ctx, op)
		}
	}
	d := final(store.IntentRejected, "refused by the EHR: "+athenaCodes(ans.status, ans.body))
	d.rejection = TranslateAthena(ans.status, ans.body)
	return d
}

// step names the write in the attempts log: book, reschedule or cancel.
func (op *athenaOp) step() string {
	k := string(op.kind)
	return k[strings.LastIndexByte(k, '.')+1:]
}

// v1Sent records that athenahealth holds the write and verifies it.
func (e *exec) v1Sent(ctx context.Context, op *athenaOp) *decision {
	if d := e.markSent(ctx, op.record, ""); d != nil {
		return d
	}
	return e.v1Verify(ctx, op)
}

// v1Look reads the appointment that shows the write: took is true when
// it already does; d is set when it cannot be read.
func (e *exec) v1Look(ctx context.Context, op *athenaOp) (took bool, d *decision) {
	appt, found, d := e.v1Read(ctx, op.id, "look")
	if d != nil || !found {
		return false, d
	}
	return slices.Contains(op.want.statuses, appt.Status) && appt.PatientID == op.want.patient, nil
}

// v1Verify reads the appointment back and compares it with the intent.
func (e *exec) v1Verify(ctx context.Context, op *athenaOp) *decision {
	appt, found, d := e.v1Read(ctx, op.id, "verify")
	if d != nil {
		d.reason = "written, but cannot be read back yet: " + d.reason
		return d
	}
	if !found {
		d := final(store.IntentMismatch, "the appointment cannot be found at athenahealth after the write")
		d.diffs = []string{"id"}
		return d
	}
	diffs := op.differences(appt, e.tgt.VendorREST.Location)
	if op.original != "" {
		orig, found, d := e.v1Read(ctx, op.original, "verify")
		if d != nil {
			d.reason = "written, but the original appointment cannot be read back yet: " + d.reason
			return d
		}
		if !found || orig.Status != v1Cancelled {
			diffs = append(diffs, "original appointment status")
		}
	}
	if len(diffs) > 0 {
		d := final(store.IntentMismatch, fmt.Sprintf("the appointment read back differs from what was asked in %d element(s)", len(diffs)))
		d.diffs = diffs
		return d
	}
	return final(store.IntentConfirmed, "")
}

// differences lists the element paths where the appointment read back
// differs from what the intent asked.
func (op *athenaOp) differences(a v1Appointment, loc *time.Location) []string {
	var out []string
	if !slices.Contains(op.want.statuses, a.Status) {
		out = append(out, "status")
	}
	if a.PatientID != op.want.patient {
		out = append(out, "participant.actor(Patient)")
	}
	if !op.want.start.IsZero() {
		if loc == nil {
			loc = time.UTC
		}
		s := op.want.start.In(loc)
		if a.Date != s.Format("01/02/2006") || a.StartTime != s.Format("15:04") {
			out = append(out, "start")
		}
	}
	if op.kind == contract.AppointmentCancel {
		return out
	}
	if op.want.typeID != "" && a.AppointmentTypeID != op.want.typeID {
		out = append(out, "appointmentType")
	}
	if op.want.dept != "" && a.DepartmentID != op.want.dept {
		out = append(out, "participant.actor(Location)")
	}
	if op.want.provider != "" && a.ProviderID != op.want.provider {
		out = append(out, "participant.actor(Practitioner)")
	}
	return out
}

// v1Appointment is what the executor reads of a v1 appointment.
type v1Appointment struct {
	AppointmentID, Status, PatientID, Date, StartTime string
	AppointmentTypeID, DepartmentID, ProviderID       string
}

// v1Read reads a v1 appointment: found is false on 404; d is set when it
// cannot be read.
func (e *exec) v1Read(ctx context.Context, id, step string) (v1Appointment, bool, *decision) {
	ans, fail := e.v1Call(ctx, http.MethodGet, "appointments/"+id, nil, step)
	if fail != nil {
		return v1Appointment{}, false, retry("cannot read the appointment at athenahealth: " + fail.kind)
	}
	switch {
	case ans.status == http.StatusNotFound:
		return v1Appointment{}, false, nil
	case ans.status < 200 || ans.status >= 300:
		d := retry("cannot read the appointment at athenahealth: " + athenaCodes(ans.status, ans.body))
		d.retryAfter = ans.retryAfter
		return v1Appointment{}, false, d
	}
	a, ok := parseV1Appointment(ans.body)
	if !ok || a.AppointmentID != id {
		return v1Appointment{}, false, retry("athenahealth answered the appointment read with something else than the appointment")
	}
	return a, true, nil
}

// parseV1Appointment reads a v1 appointment answer: an array of one
// appointment, or the appointment. Numbers are read as strings.
func parseV1Appointment(body []byte) (v1Appointment, bool) {
	var raws []map[string]any
	if err := json.Unmarshal(body, &raws); err != nil {
		var one map[string]any
		if err := json.Unmarshal(body, &one); err != nil {
			return v1Appointment{}, false
		}
		raws = []map[string]any{one}
	}
	if len(raws) != 1 {
		return v1Appointment{}, false
	}
	m := raws[0]
	s := func(k string) string {
		switch x := m[k].(type) {
		case string:
			return x
		case float64:
			return fmt.Sprintf("%.0f", x)
		}
		return ""
	}
	return v1Appointment{AppointmentID: s("appointmentid"), Status: s("appointmentstatus"), PatientID: s("patientid"),
		Date: s("date"), StartTime: s("starttime"), AppointmentTypeID: s("appointmenttypeid"), DepartmentID: s("departmentid"),
		ProviderID: s("providerid")}, true
}

// ---- HTTP ----

// v1Answer is an HTTP answer of the v1 API.
type v1Answer struct {
	status     int
	body       []byte
	retryAfter time.Duration
}

// v1Failure is a request without an answer; sent is false when it
// certainly did not leave (no token, not built).
type v1Failure struct {
	kind string // PHI-free: "timeout", "network", "no token", "cannot build the request"
	sent bool
}

// maxV1Body bounds a v1 answer read.
const maxV1Body = 1 << 20

// v1Call sends one v1 request (a form for PUT) and records the exchange
// as step; a 401 is retried once with a fresh token.
func (e *exec) v1Call(ctx context.Context, method, path string, form url.Values, step string) (*v1Answer, *v1Failure) {
	v := e.tgt.VendorREST
	u := strings.TrimRight(v.BaseURL, "/") + "/" + v.PracticeID + "/" + path
	var body []byte
	if form != nil {
		body = []byte(form.Encode())
	}
	a := store.IntentAttempt{Step: step, Method: method, Path: urlPath(u), BodyHash: bodyHash(body)}
	if method != http.MethodGet {
		a.Headers = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	}
	e.flush(ctx) // the previous exchange is stored before this one is made
	start := time.Now()
	ans, tok, fail := v.once(ctx, method, u, body)
	if fail == nil && ans.status == http.StatusUnauthorized && v.Tokens != nil && ctx.Err() == nil {
		v.Tokens.Invalidate(tok)
		ans, _, fail = v.once(ctx, method, u, body)
	}
	a.Took = time.Since(start)
	if fail != nil {
		a.Outcome = fail.kind
	} else {
		a.Status, a.Outcome = ans.status, athenaCodes(ans.status, ans.body)
	}
	e.record(ctx, a)
	return ans, fail
}

// once sends one request; it returns the token used.
func (v *VendorRESTTarget) once(ctx context.Context, method, u string, body []byte) (*v1Answer, string, *v1Failure) {
	var tok string
	if v.Tokens != nil {
		t, err := v.Tokens.Token(ctx)
		if err != nil {
			return nil, "", &v1Failure{kind: "no token"}
		}
		tok = t
	}
	timeout := v.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return nil, tok, &v1Failure{kind: "cannot build the request"}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := v.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, tok, &v1Failure{kind: transportKind(ctx, rctx, err), sent: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxV1Body))
	if err != nil {
		// The status line came but the answer broke off: what it said is
		// unknown, so it counts as no answer.
		return nil, tok, &v1Failure{kind: transportKind(ctx, rctx, err), sent: true}
	}
	ans := &v1Answer{status: resp.StatusCode, body: b}
	if ra := resp.Header.Get("Retry-After"); ra != "" && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) {
		if d, ok := fhirrest.ParseRetryAfter(ra, time.Now()); ok {
			ans.retryAfter = min(d, maxV1RetryAfter)
		}
	}
	return ans, tok, nil
}

// maxV1RetryAfter caps a v1 Retry-After.
const maxV1RetryAfter = 2 * time.Minute

// transportKind names a failed exchange without PHI.
func transportKind(ctx, rctx context.Context, err error) string {
	switch {
	case ctx.Err() != nil:
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded) || rctx.Err() != nil:
		return "timeout"
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return "timeout"
	}
	return "network"
}

// urlPath is a URL's path (no query, no host).
func urlPath(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Path
}
