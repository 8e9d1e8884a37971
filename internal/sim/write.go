package sim

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
)

// jsonPatchType is the media type of a JSON Patch (RFC 6902) body.
const jsonPatchType = "application/json-patch+json"

// serveWrite handles create (POST), update (PUT) and patch (PATCH with a
// JSON Patch), with the flavour's write rules (flavor.Info.Writes and
// flavor.WriteChecker). A timeout-after-commit fault on the call takes
// over once the write is stored.
func (t *tenant) serveWrite(c *call) {
	verb := writeVerb(c.op)
	allowed := false
	switch c.op {
	case opCreate:
		allowed = t.info.CanCreate(c.rt)
	case opUpdate:
		allowed = t.info.CanUpdate(c.rt)
	case opPatch:
		allowed = t.info.CanPatch(c.rt)
	}
	if !allowed {
		t.problem(c.w, flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: c.rt + " " + verb + " is not allowed by this server"},
			map[string]string{"Allow": t.allow(c.rt)})
		return
	}
	if ct := c.r.Header.Get("Content-Type"); ct != "" || c.op == opPatch {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case c.op == opPatch && (err != nil || mt != jsonPatchType):
			t.problem(c.w, flavor.Problem{Kind: flavor.UnsupportedMedia, Diagnostics: "send a JSON Patch as " + jsonPatchType}, nil)
			return
		case c.op != opPatch && (err != nil || (mt != "application/fhir+json" && mt != "application/json")):
			t.problem(c.w, flavor.Problem{Kind: flavor.UnsupportedMedia, Diagnostics: "send application/fhir+json"}, nil)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBodySize))
	if err != nil {
		t.problem(c.w, *badRequest("cannot read the request body"), nil)
		return
	}
	if c.op != opCreate && c.r.Header.Get("If-None-Exist") != "" {
		t.problem(c.w, *badRequest("If-None-Exist applies to create only"), nil)
		return
	}
	pre := simstore.Precondition{}
	if c.op != opCreate {
		im := c.r.Header.Get("If-Match")
		if im == "" && t.info.Writes.RequireIfMatch {
			t.problem(c.w, flavor.Problem{Kind: flavor.PreconditionRequired, Diagnostics: "If-Match with the current version (W/\"n\") is required"}, nil)
			return
		}
		if im != "" {
			n, ok := parseIfMatch(im)
			if !ok {
				t.problem(c.w, *badRequest("If-Match must be a version ETag like W/\"3\""), nil)
				return
			}
			internal := n - t.store.VersionBase() + 1
			if internal < 1 {
				t.staleProblem(c, c.id, n)
				return
			}
			pre.IfMatch = internal
		}
	}
	switch c.op {
	case opCreate:
		t.serveCreate(c, body)
	case opUpdate:
		t.serveUpdate(c, body, pre)
	case opPatch:
		t.servePatch(c, body, pre)
	}
}

func writeVerb(op interaction) string {
	switch op {
	case opCreate:
		return "create"
	case opPatch:
		return "patch"
	}
	return "update"
}

// parseBody parses a resource body and checks its type against the URL.
func (t *tenant) parseBody(c *call, body []byte) (*gen.Obj, bool) {
	obj, err := gen.ParseObj(body)
	if err != nil {
		t.problem(c.w, *badRequest("the body is not a JSON object"), nil)
		return nil, false
	}
	if rt := obj.Str("resourceType"); rt != c.rt {
		t.problem(c.w, *badRequest("the body's resourceType does not match the URL"), nil)
		return nil, false
	}
	return obj, true
}

func (t *tenant) serveCreate(c *call, body []byte) {
	obj, ok := t.parseBody(c, body)
	if !ok {
		return
	}
	obj.Delete("id") // the server assigns ids on create
	cond := c.r.Header.Get("If-None-Exist")
	if cond != "" && !t.info.Writes.ConditionalCreate {
		t.problem(c.w, *badRequest("conditional create (If-None-Exist) is not supported by this server"), nil)
		return
	}
	// Creates are serialized per tenant so that the conditional-create
	// search, duplicate rules and the insert are one atomic step.
	t.createMu.Lock()
	defer t.createMu.Unlock()
	if cond != "" {
		ids, prob := t.matchCondition(c.rt, cond)
		if prob != nil {
			t.problem(c.w, *prob, nil)
			return
		}
		switch {
		case len(ids) == 1:
			v, ok := t.store.Get(c.rt, ids[0])
			if ok {
				t.answerWrite(c, http.StatusOK, v)
				return
			}
		case len(ids) > 1:
			t.problem(c.w, flavor.Problem{Kind: flavor.StaleVersion, Diagnostics: "If-None-Exist matched " + strconv.Itoa(len(ids)) + " resources"}, nil)
			return
		}
	}
	if !t.checkWrite(c, flavor.Write{Op: "create", ResourceType: c.rt, New: obj}) {
		return
	}
	id := t.newID(c.rt)
	v, _, err := t.store.PutObj(c.rt, id, obj, simstore.Precondition{MustNotExist: true})
	if err != nil {
		t.sim.log.Error("write failed", "tenant", t.id, "type", c.rt, "err", err)
		t.problem(c.w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "write failed"}, nil)
		return
	}
	t.afterCreate(c.rt, obj)
	t.answerWrite(c, http.StatusCreated, v)
}

func (t *tenant) serveUpdate(c *call, body []byte, pre simstore.Precondition) {
	obj, ok := t.parseBody(c, body)
	if !ok {
		return
	}
	if bid := obj.Str("id"); bid != c.id {
		t.problem(c.w, *badRequest("the body's id must equal the id in the URL"), nil)
		return
	}
	pre.MustExist = !t.info.UpdateCreate
	var oldObj *gen.Obj
	if old, ok := t.store.Get(c.rt, c.id); ok {
		oldObj, _ = gen.ParseObj(old.Body)
	}
	if !t.checkWrite(c, flavor.Write{Op: "update", ResourceType: c.rt, New: obj, Old: oldObj}) {
		return
	}
	t.put(c, obj, pre)
}

func (t *tenant) servePatch(c *call, body []byte, pre simstore.Precondition) {
	ops, err := parseJSONPatch(body)
	if err != nil {
		t.problem(c.w, *badRequest(err.Error()), nil)
		return
	}
	// Without If-Match the patch applies to the version read here; a
	// concurrent write in between is retried on the newer version.
	for range 3 {
		old, ok := t.store.Get(c.rt, c.id)
		if !ok {
			t.problem(c.w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: c.rt + " not found"}, nil)
			return
		}
		if pre.IfMatch > 0 && pre.IfMatch != old.VersionID {
			t.staleProblem(c, c.id, pre.IfMatch+t.store.VersionBase()-1)
			return
		}
		obj, err := gen.ParseObj(old.Body)
		if err != nil {
			t.problem(c.w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "stored resource unreadable"}, nil)
			return
		}
		oldObj, _ := gen.ParseObj(old.Body)
		if err := applyJSONPatch(obj, ops); err != nil {
			t.problem(c.w, flavor.Problem{Kind: flavor.Unprocessable, Diagnostics: err.Error()}, nil)
			return
		}
		if obj.Str("resourceType") != c.rt || obj.Str("id") != c.id {
			t.problem(c.w, flavor.Problem{Kind: flavor.Unprocessable, Diagnostics: "a patch may not change resourceType or id"}, nil)
			return
		}
		var vals []any
		for _, op := range ops {
			if op.hasValue {
				vals = append(vals, op.value)
			}
		}
		if !t.checkWrite(c, flavor.Write{Op: "patch", ResourceType: c.rt, New: obj, Old: oldObj, Patch: vals}) {
			return
		}
		p := pre
		p.MustExist = true
		p.IfMatch = old.VersionID
		v, _, err := t.store.PutObj(c.rt, c.id, obj, p)
		var ce *simstore.ConflictError
		if errors.As(err, &ce) && pre.IfMatch == 0 {
			continue // someone wrote in between; patch the newer version
		}
		t.answerPut(c, v, false, err)
		return
	}
	t.problem(c.w, flavor.Problem{Kind: flavor.VersionConflict, Diagnostics: "the resource kept changing while being patched"}, nil)
}

// checkWrite runs the flavour's write rules, then the simulator's own; it
// answers and returns false when one fails.
func (t *tenant) checkWrite(c *call, w flavor.Write) bool {
	w.Tenant = t.id
	w.Exists = func(rt, id string) bool { _, ok := t.store.Get(rt, id); return ok }
	w.Get = func(rt, id string) *gen.Obj {
		v, ok := t.store.Get(rt, id)
		if !ok {
			return nil
		}
		o, err := gen.ParseObj(v.Body)
		if err != nil {
			return nil
		}
		return o
	}
	w.FindByIdentifier = t.findByIdentifier
	if wc, ok := t.fl.(flavor.WriteChecker); ok {
		if prob := wc.CheckWrite(w); prob != nil {
			t.problem(c.w, *prob, nil)
			return false
		}
	}
	if msg := t.validate(w.ResourceType, w.New); msg != "" {
		t.problem(c.w, flavor.Problem{Kind: flavor.Unprocessable, Diagnostics: msg}, nil)
		return false
	}
	return true
}

// put stores an update and answers it.
func (t *tenant) put(c *call, obj *gen.Obj, pre simstore.Precondition) {
	v, created, err := t.store.PutObj(c.rt, c.id, obj, pre)
	t.answerPut(c, v, created, err)
}

func (t *tenant) answerPut(c *call, v *simstore.Version, created bool, err error) {
	var ce *simstore.ConflictError
	switch {
	case errors.As(err, &ce):
		t.staleProblem(c, c.id, ce.Want+t.store.VersionBase()-1)
		return
	case errors.Is(err, simstore.ErrNotFound):
		t.problem(c.w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: c.rt + " not found (update does not create here)"}, nil)
		return
	case err != nil:
		t.sim.log.Error("write failed", "tenant", t.id, "type", c.rt, "err", err)
		t.problem(c.w, flavor.Problem{Kind: flavor.ServerError, Diagnostics: "write failed"}, nil)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	t.answerWrite(c, status, v)
}

// staleProblem answers a failed If-Match (want is the version the client
// named, as served).
func (t *tenant) staleProblem(c *call, id string, want int) {
	kind := flavor.StaleVersion
	if t.info.StaleStatus == http.StatusConflict {
		kind = flavor.VersionConflict
	}
	msg := "version conflict: If-Match named " + strconv.Itoa(want)
	if v, ok := t.store.Get(c.rt, id); ok {
		msg = "version conflict: the resource is at version " + strconv.Itoa(v.Number()) + ", If-Match named " + strconv.Itoa(want)
	}
	t.problem(c.w, flavor.Problem{Kind: kind, Diagnostics: msg}, nil)
}

// answerWrite answers a successful write: Location, ETag and the body the
// flavour and Prefer ask for. With a timeout-after-commit fault on the call
// nothing is answered: the connection is held, then closed.
func (t *tenant) answerWrite(c *call, status int, v *simstore.Version) {
	if c.afterCommit != nil {
		t.holdAfterCommit(c.w, c.r, c.afterCommit)
		return
	}
	h := c.w.Header()
	loc := t.sim.baseURL(t) + "/" + v.ResourceType + "/" + v.ID
	if !t.info.Writes.LocationWithoutHistory {
		loc += "/_history/" + strconv.Itoa(v.Number())
	}
	h.Set("Location", loc)
	switch prefer := c.r.Header.Get("Prefer"); {
	case t.info.Writes.EmptyBody || strings.Contains(prefer, "return=minimal"):
		h.Set("ETag", v.ETag())
		h.Set("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
		c.w.WriteHeader(status)
	case strings.Contains(prefer, "return=OperationOutcome"):
		h.Set("ETag", v.ETag())
		h.Set("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
		writeOutcomeKeep(c.w, status, fhir.NewOutcome("information", "informational", v.ResourceType+" stored as version "+strconv.Itoa(v.Number())))
	default:
		writeVersion(c.w, c.r, status, v)
	}
}

// matchCondition runs an If-None-Exist query ("identifier=sys|val") and
// returns the ids of the current resources it matches.
func (t *tenant) matchCondition(rt, cond string) ([]string, *flavor.Problem) {
	q, err := url.ParseQuery(strings.TrimPrefix(cond, "?"))
	if err != nil || len(q) == 0 {
		return nil, badRequest("If-None-Exist must be a search query like identifier=system|value")
	}
	for k := range q {
		if k == "_count" || k == "_sort" || k == "_summary" || strings.HasPrefix(k, "_include") || strings.HasPrefix(k, "_revinclude") {
			return nil, badRequest("If-None-Exist takes search parameters only")
		}
	}
	t.fl.NormalizeQuery(rt, q)
	params, _, prob := t.parseSearch(rt, q, false)
	if prob != nil {
		return nil, prob
	}
	crit, prob := t.compileCriteria(rt, params)
	if prob != nil {
		return nil, prob
	}
	var ids []string
	for _, v := range t.store.Snapshot(rt, simstore.Query{Range: crit.rng, Match: crit.match, Identifier: identifierKey(params)}) {
		ids = append(ids, v.ID)
	}
	return ids, nil
}

func writeOutcomeKeep(w http.ResponseWriter, status int, oo *fhir.OperationOutcome) {
	b, _ := gen.AppendJSON(nil, outcomeObj(oo))
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// validate applies the simulator's business rules for writes (FHIR 422):
// required elements and references to patients that must exist.
func (t *tenant) validate(rt string, o *gen.Obj) string {
	switch rt {
	case "DocumentReference":
		if o.Str("status") == "" {
			return "DocumentReference.status is required"
		}
		content := o.List("content")
		if len(content) == 0 {
			return "DocumentReference.content is required"
		}
		for _, x := range content {
			co, _ := x.(*gen.Obj)
			att := (*gen.Obj)(nil)
			if co != nil {
				att = co.Child("attachment")
			}
			if att == nil || (att.Str("data") == "" && att.Str("url") == "") {
				return "every DocumentReference.content needs an attachment with data or url"
			}
		}
		if msg := t.checkPatientRef(o.Child("subject"), "DocumentReference.subject"); msg != "" {
			return msg
		}
	case "Appointment":
		switch o.Str("status") {
		case "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow", "entered-in-error", "checked-in", "waitlist":
		case "":
			return "Appointment.status is required"
		default:
			return "Appointment.status is not a valid appointment status"
		}
		parts := o.List("participant")
		if len(parts) == 0 {
			return "Appointment.participant is required"
		}
		for _, x := range parts {
			p, _ := x.(*gen.Obj)
			if p == nil {
				return "Appointment.participant must be objects"
			}
			if msg := t.checkPatientRef(p.Child("actor"), "Appointment.participant.actor"); msg != "" {
				return msg
			}
		}
	default:
		for _, field := range []string{"subject", "patient", "beneficiary"} {
			if msg := t.checkPatientRef(o.Child(field), rt+"."+field); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// checkPatientRef requires a Patient reference, when present, to resolve.
func (t *tenant) checkPatientRef(ref *gen.Obj, where string) string {
	if ref == nil {
		return ""
	}
	typ, id, ok := strings.Cut(ref.Str("reference"), "/")
	if !ok || typ != "Patient" {
		return ""
	}
	if _, exists := t.store.Get("Patient", id); !exists {
		return where + " refers to a Patient that does not exist"
	}
	return ""
}
