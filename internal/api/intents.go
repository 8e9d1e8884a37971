package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// Intents is the write-back outbox as the API uses it (docs/writeback.md);
// the engine implements it with each practice's write contract and mapping
// in front of a writeback.Outbox.
//
//   - Support says what the practice's contract allows for an intent kind;
//     writeback.ErrUnknownPractice when the practice does not write back.
//   - Submit maps and checks the request and stores it (created false: the
//     app's idempotency key named a stored intent, returned as it is). A
//     refusal wraps writeback.ErrInvalid; every contract.FieldError in its
//     chain (errors.Join) is answered to the app, one per element. A key
//     reused for another request is writeback.ErrKeyReused.
//   - Get, List, Attempts and Replay are the outbox's; an unknown intent is
//     store.ErrNotFound, a replay of an intent that is not dead, conflict,
//     rejected or mismatch store.ErrIntentState.
type Intents interface {
	Support(practice string, kind contract.Intent) (contract.Support, error)
	Submit(ctx context.Context, r writeback.Request) (store.Intent, bool, error)
	Get(ctx context.Context, practice, id string) (store.Intent, error)
	List(ctx context.Context, practice string, f store.IntentFilter) ([]store.Intent, error)
	Attempts(ctx context.Context, practice, id string) ([]store.IntentAttempt, error)
	Replay(ctx context.Context, practice, id string) (store.Intent, error)
}

// Limits of the intent endpoints.
const (
	maxIdempotencyKey   = 200
	defaultIntentsLimit = 50
	maxIntentsLimit     = 500
)

// IdempotencyKeyHeader carries the app's key for a write.
const IdempotencyKeyHeader = "Idempotency-Key"

const (
	msgNoIntents      = "write-back is not enabled on this server: the operator sets practices[].writeback.enabled in the configuration (see docs/writeback.md)"
	msgNoWriteback    = "write-back is not enabled for this practice: the operator sets practices[].writeback.enabled in the configuration (see docs/writeback.md)"
	msgIntentNotFound = "no such intent of this app in this practice"
)

// intentRequest is the body of POST /v1/practices/{practice}/intents.
type intentRequest struct {
	Kind           string          `json:"kind"`
	Resource       json.RawMessage `json:"resource"`
	Target         string          `json:"target"`
	BaseVersion    string          `json:"baseVersion"`
	ConflictPolicy string          `json:"conflictPolicy"`
}

// intentJSON is an intent as the app sees it: its state, never the
// resource it carries.
type intentJSON struct {
	ID             string            `json:"id"`
	Kind           string            `json:"kind"`
	Status         string            `json:"status"`
	IdempotencyKey string            `json:"idempotencyKey"`
	ResourceType   string            `json:"resourceType"`
	Patient        string            `json:"patient,omitempty"`
	Target         string            `json:"target,omitempty"`
	BaseVersion    string            `json:"baseVersion,omitempty"`
	ConflictPolicy string            `json:"conflictPolicy"`
	Record         string            `json:"record,omitempty"`        // the record at the EHR, "DocumentReference/123"
	RecordVersion  string            `json:"recordVersion,omitempty"` // its version there
	Attempts       int               `json:"attempts"`
	NextAttempt    *time.Time        `json:"nextAttempt,omitempty"` // open intents: not tried before
	LastError      string            `json:"lastError,omitempty"`
	Rejection      string            `json:"rejection,omitempty"`
	Differences    []string          `json:"differences,omitempty"`
	CreatedAt      time.Time         `json:"createdAt"`
	UpdatedAt      time.Time         `json:"updatedAt"`
	FinishedAt     *time.Time        `json:"finishedAt,omitempty"`
	History        []attemptJSON     `json:"history,omitempty"` // single reads only
	Links          map[string]string `json:"links"`
}

// attemptJSON is one exchange with the EHR (PHI-free: no query, no body).
type attemptJSON struct {
	Attempt int       `json:"attempt"`
	Step    string    `json:"step"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Status  int       `json:"status"` // 0: no answer
	Outcome string    `json:"outcome,omitempty"`
	At      time.Time `json:"at"`
	TookMS  int64     `json:"tookMs"`
}

type rejectionJSON struct {
	IntentID string    `json:"intentId"`
	Kind     string    `json:"kind"`
	Message  string    `json:"message"`
	At       time.Time `json:"at"`
	Intent   string    `json:"intent"` // the intent's URL
}

// refusalJSON answers 422: why the intent was not accepted.
type refusalJSON struct {
	Code    string                `json:"code"` // "not-supported" or "invalid"
	Message string                `json:"message"`
	Errors  []contract.FieldError `json:"errors"`
}

// intentCall starts every intent handler: it names the audit entity and
// answers 501 when write-back is not configured (false: answered).
func (s *server) intentCall(c *call, entity string) bool {
	c.entity = entity
	if s.intents == nil {
		c.fail(http.StatusNotImplemented, "not-supported", msgNoIntents)
		return false
	}
	return true
}

func (s *server) intentPath(r *http.Request, practice, id string) string {
	return s.baseURL(r) + "/v1/practices/" + url.PathEscape(practice) + "/intents/" + url.PathEscape(id)
}

func (s *server) intentView(r *http.Request, in store.Intent, history []store.IntentAttempt) intentJSON {
	v := intentJSON{ID: in.ID, Kind: in.Kind, Status: in.Status, IdempotencyKey: in.IdempotencyKey, ResourceType: in.TargetType,
		Patient: in.PatientRef, BaseVersion: in.BaseVersion, ConflictPolicy: in.ConflictPolicy, RecordVersion: in.ExternalVersion,
		Attempts: in.Attempts, LastError: in.LastError, Rejection: in.Rejection, Differences: in.Differences,
		CreatedAt: in.CreatedAt.UTC(), UpdatedAt: in.UpdatedAt.UTC()}
	if in.TargetID != "" {
		v.Target = in.TargetType + "/" + in.TargetID
	}
	if in.ExternalID != "" {
		v.Record = in.TargetType + "/" + in.ExternalID
	}
	if store.IntentOpen(in.Status) && !in.NextAttempt.IsZero() {
		t := in.NextAttempt.UTC()
		v.NextAttempt = &t
	}
	if !in.FinishedAt.IsZero() {
		t := in.FinishedAt.UTC()
		v.FinishedAt = &t
	}
	self := s.intentPath(r, in.Practice, in.ID)
	v.Links = map[string]string{"self": self}
	if store.IntentReplayable(in.Status) {
		v.Links["replay"] = self + "/replay"
	}
	for _, a := range history {
		v.History = append(v.History, attemptJSON{Attempt: a.Attempt, Step: a.Step, Method: a.Method, Path: a.Path,
			Status: a.Status, Outcome: a.Outcome, At: a.At.UTC(), TookMS: a.Took.Milliseconds()})
	}
	return v
}

// intentFailed maps an outbox error to the answer.
func (s *server) intentFailed(ctx context.Context, c *call, op string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fail(http.StatusNotFound, "not-found", msgIntentNotFound)
	case errors.Is(err, store.ErrIntentState):
		c.fail(http.StatusConflict, "conflict", "only a dead, conflict, rejected or mismatch intent can be replayed")
	case errors.Is(err, writeback.ErrUnknownPractice):
		c.fail(http.StatusNotImplemented, "not-supported", msgNoWriteback)
	case errors.Is(err, writeback.ErrKeyReused):
		c.fail(http.StatusConflict, "conflict", "the Idempotency-Key was already used for a different request: use a new key for a new write")
	default:
		s.log.ErrorContext(ctx, "intent call failed", "op", op, "practice", c.practice, "app", c.app.name, "err", err)
		c.fail(http.StatusInternalServerError, "exception", "the write-back outbox could not answer")
	}
}

// refuse answers 422.
func (s *server) refuse(c *call, code, message string, fes []contract.FieldError) {
	if fes == nil {
		fes = []contract.FieldError{}
	}
	s.webhookAnswer(c, http.StatusUnprocessableEntity, refusalJSON{Code: code, Message: message, Errors: fes})
	c.issueCode = code
}

// submitIntent: POST /v1/practices/{practice}/intents with an Idempotency-Key.
func (s *server) submitIntent(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.intentCall(c, "intents") {
		return
	}
	key := strings.TrimSpace(r.Header.Get(IdempotencyKeyHeader))
	switch {
	case key == "":
		c.fail(http.StatusBadRequest, "required", "the Idempotency-Key header is required: a key of yours, unique per write, so a retried request cannot write twice")
		return
	case len(key) > maxIdempotencyKey:
		c.fail(http.StatusBadRequest, "invalid", fmt.Sprintf("the Idempotency-Key is longer than %d characters", maxIdempotencyKey))
		return
	}
	var body intentRequest
	if err := decodeIntent(r, &body); err != nil {
		c.fail(http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if body.Kind == "" {
		c.fail(http.StatusBadRequest, "required", "kind is required: one of "+kindList())
		return
	}
	kind := contract.Intent(body.Kind)
	if !slices.Contains(contract.Intents(), kind) {
		c.fail(http.StatusBadRequest, "invalid", "unknown kind: use one of "+kindList())
		return
	}
	switch body.ConflictPolicy {
	case "", store.ConflictFail, store.ConflictReapply, store.ConflictManual:
	default:
		c.fail(http.StatusBadRequest, "invalid", "conflictPolicy must be fail, reapply or manual")
		return
	}
	sup, err := s.intents.Support(c.practice, kind)
	if err != nil {
		s.intentFailed(r.Context(), c, "support", err)
		return
	}
	if !sup.Supported {
		reason := sup.Reason
		if reason == "" {
			reason = "the practice's EHR does not accept " + string(kind)
		}
		s.refuse(c, "not-supported", reason, nil)
		return
	}
	res, fes := parseResource(body.Resource)
	if len(fes) > 0 {
		s.refuse(c, "invalid", "the resource cannot be written as it is: fix the elements listed", fes)
		return
	}
	targetID, fes := checkTarget(body.Target, sup.ResourceType, res)
	if len(fes) > 0 {
		s.refuse(c, "invalid", "the target does not fit the resource: fix the elements listed", fes)
		return
	}
	canonical := []byte(body.Resource)
	if targetID != "" && res["id"] == nil {
		res["id"] = targetID // an update names its record in the resource too
		if canonical, err = json.Marshal(res); err != nil {
			c.fail(http.StatusInternalServerError, "exception", "cannot encode the resource")
			return
		}
	}
	in, created, err := s.intents.Submit(r.Context(), writeback.Request{
		Practice: c.practice, App: c.app.name, IdempotencyKey: key, Kind: kind, PatientRef: patientOf(res),
		TargetID: targetID, BaseVersion: strings.TrimSpace(body.BaseVersion), Body: canonical, ConflictPolicy: body.ConflictPolicy,
	})
	if err != nil {
		if fes := fieldErrors(err); len(fes) > 0 {
			s.refuse(c, "invalid", "the resource does not meet the practice's write contract: fix the elements listed", fes)
			return
		}
		if errors.Is(err, writeback.ErrInvalid) {
			s.refuse(c, "invalid", strings.TrimPrefix(err.Error(), writeback.ErrInvalid.Error()+": "), nil)
			return
		}
		s.intentFailed(r.Context(), c, "submit", err)
		return
	}
	c.entity = "intents/" + clip(in.ID)
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK
	}
	w.Header().Set("Location", s.intentPath(r, c.practice, in.ID))
	s.webhookAnswer(c, status, s.intentView(r, in, nil))
}

func kindList() string {
	var ks []string
	for _, k := range contract.Intents() {
		ks = append(ks, string(k))
	}
	return strings.Join(ks, ", ")
}

// decodeIntent reads the request body, refusing unknown keys and trailing data.
func decodeIntent(r *http.Request, v *intentRequest) error {
	// serveTenant caps POST bodies at maxFormBody.
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return fmt.Errorf("the body is larger than %d bytes", maxFormBody)
		case errors.Is(err, io.EOF):
			return errors.New("the body must be a JSON object: {\"kind\", \"resource\", \"target\", \"baseVersion\", \"conflictPolicy\"}")
		}
		// The decoder names the offending key or type, never a value.
		return fmt.Errorf("the body is not a valid intent: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return errors.New("the body must hold one JSON object")
	}
	return nil
}

// parseResource reads the resource of an intent: a JSON object with a resourceType.
func parseResource(raw json.RawMessage) (map[string]any, []contract.FieldError) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, []contract.FieldError{{Path: "resource", Rule: "required", Message: "give the FHIR resource to write (canonical JSON)"}}
	}
	var res map[string]any
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, []contract.FieldError{{Path: "resource", Rule: "json", Message: "the resource must be a JSON object"}}
	}
	if rt, _ := res["resourceType"].(string); rt == "" {
		return nil, []contract.FieldError{{Path: "resource.resourceType", Rule: "required", Message: "the resource needs its resourceType"}}
	}
	return res, nil
}

// checkTarget reads "Type/id" and checks it against the contract's type
// and the resource's id; it returns the id.
func checkTarget(target, contractType string, res map[string]any) (string, []contract.FieldError) {
	target = strings.TrimSpace(target)
	if target == "" {
		return "", nil
	}
	typ, id, ok := strings.Cut(target, "/")
	if !ok || typ == "" || id == "" || strings.ContainsAny(id, "/?#") {
		return "", []contract.FieldError{{Path: "target", Rule: "reference", Message: "target must be the record to change, as Type/id"}}
	}
	if contractType != "" && typ != contractType {
		return "", []contract.FieldError{{Path: "target", Rule: "target-type",
			Message: "this intent writes " + contractType + " records: the target must be a " + contractType}}
	}
	if rid, ok := res["id"]; ok && rid != id {
		return "", []contract.FieldError{{Path: "resource.id", Rule: "target-id", Message: "the resource's id differs from the target's: leave it out or make them equal"}}
	}
	return id, nil
}

// patientOf finds the patient an intent is about, which orders the
// practice's intents: the subject or patient reference, or an
// appointment's patient participant.
func patientOf(res map[string]any) string {
	ref := func(v any) string {
		m, _ := v.(map[string]any)
		s, _ := m["reference"].(string)
		if strings.HasPrefix(s, "Patient/") && len(s) > len("Patient/") {
			return s
		}
		return ""
	}
	for _, k := range []string{"subject", "patient"} {
		if p := ref(res[k]); p != "" {
			return p
		}
	}
	parts, _ := res["participant"].([]any)
	for _, p := range parts {
		m, _ := p.(map[string]any)
		if r := ref(m["actor"]); r != "" {
			return r
		}
	}
	return ""
}

// fieldErrors collects every contract.FieldError in an error's chain.
func fieldErrors(err error) []contract.FieldError {
	var out []contract.FieldError
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case nil:
			return
		case contract.FieldError:
			out = append(out, x)
			return
		case *contract.FieldError:
			out = append(out, *x)
			return
		case interface{ Unwrap() []error }:
			for _, c := range x.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// ownIntent reads an intent of the calling app (another app's is not found).
func (s *server) ownIntent(ctx context.Context, c *call, id string) (store.Intent, error) {
	in, err := s.intents.Get(ctx, c.practice, id)
	if err != nil {
		return store.Intent{}, err
	}
	if in.App != c.app.name {
		return store.Intent{}, fmt.Errorf("intent of another app: %w", store.ErrNotFound)
	}
	return in, nil
}

// getIntent: GET /v1/practices/{practice}/intents/{id}, with its history.
func (s *server) getIntent(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	if !s.intentCall(c, "intents/"+clip(id)) {
		return
	}
	in, err := s.ownIntent(r.Context(), c, id)
	if err != nil {
		s.intentFailed(r.Context(), c, "read", err)
		return
	}
	as, err := s.intents.Attempts(r.Context(), c.practice, id)
	if err != nil {
		s.intentFailed(r.Context(), c, "attempts", err)
		return
	}
	s.webhookAnswer(c, http.StatusOK, s.intentView(r, in, as))
}

// intentStatuses are the statuses a list may filter on.
var intentStatuses = []string{store.IntentAccepted, store.IntentSending, store.IntentSent, store.IntentConfirmed,
	store.IntentMismatch, store.IntentConflict, store.IntentRejected, store.IntentDead}

// listIntents: GET /v1/practices/{practice}/intents?status=&limit=&before=, the app's, newest first.
func (s *server) listIntents(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.intentCall(c, "intents") {
		return
	}
	q := r.URL.Query()
	f := store.IntentFilter{App: c.app.name, Limit: defaultIntentsLimit}
	if v := q.Get("status"); v != "" {
		for _, st := range strings.Split(v, ",") {
			st = strings.TrimSpace(st)
			if !slices.Contains(intentStatuses, st) {
				c.fail(http.StatusBadRequest, "invalid", "status must be one or more (comma-separated) of "+strings.Join(intentStatuses, ", "))
				return
			}
			f.Status = append(f.Status, st)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "invalid", "limit must be a positive integer")
			return
		}
		f.Limit = min(n, maxIntentsLimit)
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "invalid", "before must be the cursor of a previous page (a positive integer)")
			return
		}
		f.BeforeSeq = n
	}
	ins, err := s.intents.List(r.Context(), c.practice, f)
	if err != nil {
		s.intentFailed(r.Context(), c, "list", err)
		return
	}
	out := struct {
		Intents []intentJSON `json:"intents"`
		Next    string       `json:"next,omitempty"`
	}{Intents: make([]intentJSON, 0, len(ins))}
	for _, in := range ins {
		out.Intents = append(out.Intents, s.intentView(r, in, nil))
	}
	if len(ins) == f.Limit {
		next := url.Values{}
		if len(f.Status) > 0 {
			next.Set("status", strings.Join(f.Status, ","))
		}
		next.Set("limit", strconv.Itoa(f.Limit))
		next.Set("before", strconv.FormatInt(ins[len(ins)-1].Seq, 10))
		out.Next = s.baseURL(r) + "/v1/practices/" + url.PathEscape(c.practice) + "/intents?" + next.Encode()
	}
	s.webhookAnswer(c, http.StatusOK, out)
}

// listRejections: GET /v1/practices/{practice}/rejections?limit=, the app's
// rejected intents with the message for practice staff, newest first.
func (s *server) listRejections(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.intentCall(c, "rejections") {
		return
	}
	limit := defaultIntentsLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "invalid", "limit must be a positive integer")
			return
		}
		limit = min(n, maxIntentsLimit)
	}
	ins, err := s.intents.List(r.Context(), c.practice, store.IntentFilter{App: c.app.name, Status: []string{store.IntentRejected}, Limit: limit})
	if err != nil {
		s.intentFailed(r.Context(), c, "rejections", err)
		return
	}
	out := struct {
		Rejections []rejectionJSON `json:"rejections"`
	}{Rejections: make([]rejectionJSON, 0, len(ins))}
	for _, in := range ins {
		out.Rejections = append(out.Rejections, rejectionJSON{IntentID: in.ID, Kind: in.Kind, Message: in.Rejection,
			At: in.FinishedAt.UTC(), Intent: s.intentPath(r, c.practice, in.ID)})
	}
	s.webhookAnswer(c, http.StatusOK, out)
}

// replayIntent: POST /v1/practices/{practice}/intents/{id}/replay → 202.
func (s *server) replayIntent(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	if !s.intentCall(c, "intents/"+clip(id)) {
		return
	}
	if _, err := s.ownIntent(r.Context(), c, id); err != nil {
		s.intentFailed(r.Context(), c, "replay", err)
		return
	}
	in, err := s.intents.Replay(r.Context(), c.practice, id)
	if err != nil {
		s.intentFailed(r.Context(), c, "replay", err)
		return
	}
	s.webhookAnswer(c, http.StatusAccepted, s.intentView(r, in, nil))
}
