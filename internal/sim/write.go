package sim

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
)

// serveWrite handles create (POST) and update (PUT).
func (t *tenant) serveWrite(c *call) {
	create := c.op == opCreate
	if (create && !t.info.CanCreate(c.rt)) || (!create && !t.info.CanUpdate(c.rt)) {
		verb := "update"
		if create {
			verb = "create"
		}
		t.problem(c.w, flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: c.rt + " " + verb + " is not allowed by this server"},
			map[string]string{"Allow": t.allow(c.rt)})
		return
	}
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/fhir+json" && mt != "application/json") {
			t.problem(c.w, flavor.Problem{Kind: flavor.UnsupportedMedia, Diagnostics: "send application/fhir+json"}, nil)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBodySize))
	if err != nil {
		t.problem(c.w, *badRequest("cannot read the request body"), nil)
		return
	}
	obj, err := gen.ParseObj(body)
	if err != nil {
		t.problem(c.w, *badRequest("the body is not a JSON object"), nil)
		return
	}
	if rt := obj.Str("resourceType"); rt != c.rt {
		t.problem(c.w, *badRequest("the body's resourceType does not match the URL"), nil)
		return
	}
	pre := simstore.Precondition{}
	id := c.id
	if create {
		obj.Delete("id") // the server assigns ids on create
		id = t.newID(c.rt)
		pre.MustNotExist = true
	} else {
		if bid := obj.Str("id"); bid != c.id {
			t.problem(c.w, *badRequest("the body's id must equal the id in the URL"), nil)
			return
		}
		pre.MustExist = !t.info.UpdateCreate
		if im := c.r.Header.Get("If-Match"); im != "" {
			n, ok := parseETag(im)
			if !ok {
				t.problem(c.w, *badRequest("If-Match must be a version ETag like W/\"3\""), nil)
				return
			}
			pre.IfMatch = n
		}
	}
	if msg := t.validate(c.rt, obj); msg != "" {
		t.problem(c.w, flavor.Problem{Kind: flavor.Unprocessable, Diagnostics: msg}, nil)
		return
	}
	v, created, err := t.store.PutObj(c.rt, id, obj, pre)
	var ce *simstore.ConflictError
	switch {
	case errors.As(err, &ce):
		kind := flavor.StaleVersion
		if t.info.StaleStatus == http.StatusConflict {
			kind = flavor.VersionConflict
		}
		t.problem(c.w, flavor.Problem{Kind: kind, Diagnostics: "version conflict: the resource is at version " + strconv.Itoa(ce.Current) + ", If-Match named " + strconv.Itoa(ce.Want)}, nil)
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
	h := c.w.Header()
	h.Set("Location", t.sim.baseURL(t)+"/"+c.rt+"/"+id+"/_history/"+strconv.Itoa(v.VersionID))
	switch prefer := c.r.Header.Get("Prefer"); {
	case strings.Contains(prefer, "return=minimal"):
		h.Set("ETag", v.ETag())
		h.Set("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
		c.w.WriteHeader(status)
	case strings.Contains(prefer, "return=OperationOutcome"):
		h.Set("ETag", v.ETag())
		h.Set("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
		writeOutcomeKeep(c.w, status, fhir.NewOutcome("information", "informational", c.rt+" stored as version "+strconv.Itoa(v.VersionID)))
	default:
		writeVersion(c.w, c.r, status, v)
	}
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
