package writeback

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/vendors/profile"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
)

// This file executes one claimed intent: one round of look / write /
// read back, ending in a decision that is stored with the claim's attempt
// number (so a round whose lease ran out cannot overwrite a newer one).

// decision is what a round came to.
type decision struct {
	kind       decisionKind
	status     string // final status (kind final)
	retryAfter time.Duration
	settle     bool // a write may be in flight: wait at least SettleDelay
	reason     string
	rejection  string
	diffs      []string
	version    string
	wait       time.Duration // decideWait
}

type decisionKind int

const (
	decideFinal   decisionKind = iota
	decideRetry                // try again later, status unchanged
	decideRelease              // stopped: hand back, status unchanged
	decideLost                 // the claim is gone: record nothing
	decideWait                 // the write is in another system's queue (HL7): look again after wait, no deadline
)

func final(status, reason string) *decision {
	return &decision{kind: decideFinal, status: status, reason: reason}
}
func retry(reason string) *decision { return &decision{kind: decideRetry, reason: reason} }
func retrySettle(reason string) *decision {
	return &decision{kind: decideRetry, reason: reason, settle: true}
}

// exec is one round of one intent.
type exec struct {
	o   *Outbox
	tgt Target
	sup contract.Support
	in  store.Intent // as stored (updated by markSent)
	// log and audit are the exchanges recorded and not yet written (see
	// record): they go with the next status change, or alone before the
	// next request.
	log   []store.IntentAttempt
	audit []store.AuditEvent
}

// finalWriteTimeout bounds recording an outcome after ctx ended.
const finalWriteTimeout = 5 * time.Second

func (o *Outbox) execute(ctx context.Context, in store.Intent) {
	tgt, ok := o.opts.Targets[in.Practice]
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, o.opts.Lease*3/4)
	defer cancel()
	e := &exec{o: o, tgt: tgt, in: in}
	d := e.work(rctx)
	if ctx.Err() != nil && d.kind != decideLost && d.kind != decideFinal {
		d = &decision{kind: decideRelease, reason: "interrupted: the outbox stopped during the attempt"}
	}
	e.finish(ctx, d)
}

func (e *exec) work(ctx context.Context) *decision {
	e.sup = e.tgt.Support(contract.Intent(e.in.Kind))
	if e.sup.Supported && e.sup.Channel == contract.ChannelHL7 && e.tgt.HL7 != nil {
		return e.hl7(ctx)
	}
	if e.sup.Supported && e.sup.Channel == contract.ChannelVendorREST && e.tgt.VendorREST != nil {
		return e.vendorREST(ctx)
	}
	if !e.sup.Supported || e.sup.Channel != contract.ChannelFHIR || e.tgt.FHIR == nil {
		reason := e.sup.Reason
		if reason == "" {
			reason = "The practice's EHR no longer accepts this write through FHIR."
		}
		d := final(store.IntentRejected, "not supported by the practice's write contract")
		d.rejection = reason
		return d
	}
	if e.in.Status == store.IntentSent {
		return e.verify(ctx)
	}
	var d *decision
	// An upsert (contract.OpUpsert) is a create without a target id and an
	// update with one.
	switch e.sup.OperationFor(e.in.TargetID != "") {
	case "create":
		d = e.create(ctx)
	case "update":
		d = e.update(ctx, false)
	case "patch":
		d = e.update(ctx, true)
	default:
		d = final(store.IntentRejected, "unknown operation")
		d.rejection = "mediflow cannot execute this write over FHIR (operation " + safeWord(e.sup.Operation) + ")."
	}
	if d != nil {
		return d
	}
	return e.verify(ctx)
}

// ---- create ----

func (e *exec) create(ctx context.Context) *decision {
	body, err := prepareCreate(e.in.VendorBody, e.in.TargetType, e.in.ID)
	if err != nil {
		d := final(store.IntentRejected, "cannot build the record: "+err.Error())
		d.rejection = "mediflow could not build the record to send (mapping problem). Report it to the mediflow administrator."
		return d
	}
	// Search first unless the EHR makes the create conditional itself, and
	// always after an earlier attempt (it may have reached the EHR).
	if !e.sup.ConditionalCreate || e.in.Attempts > 1 {
		id, version, d := e.find(ctx)
		if d != nil {
			return d
		}
		if id != "" {
			return e.markSent(ctx, id, version)
		}
	}
	w := fhirrest.WriteRequest{Method: http.MethodPost, ResourceType: e.in.TargetType, Body: body, Prefer: "return=representation"}
	if e.sup.ConditionalCreate {
		w.IfNoneExist = "identifier=" + IdentifierSystem + "|" + e.in.ID
	}
	res, err := e.write(ctx, "create", w)
	if err != nil {
		return e.noAnswer(ctx, err, e.lookForCreate)
	}
	switch {
	case res.OK():
		id, version := res.ID, res.VersionID
		if id == "" {
			fid, fversion, d := e.find(ctx)
			if d != nil {
				d.settle = true
				return d
			}
			if fid == "" {
				return retrySettle("the EHR accepted the create without saying where the record is, and it cannot be found yet")
			}
			id, version = fid, fversion
		}
		return e.markSent(ctx, id, version)
	case transient(res):
		return e.afterTransient(ctx, res, e.lookForCreate)
	case res.Status == http.StatusConflict || res.Status == http.StatusPreconditionFailed || duplicate(res):
		// A duplicate, or a conditional create that matched several
		// records: if ours is there, it was written.
		id, version, d := e.find(ctx)
		if d != nil {
			return d
		}
		if id != "" {
			return e.markSent(ctx, id, version)
		}
	}
	return e.reject(res)
}

// lookForCreate is the check after an ambiguous create: the record, found
// by our identifier, or nothing.
func (e *exec) lookForCreate(ctx context.Context) *decision {
	id, version, d := e.find(ctx)
	if d != nil {
		d.settle = true
		return d
	}
	if id != "" {
		return e.markSent(ctx, id, version)
	}
	return nil
}

// find searches the record by the intent's identifier: its id and
// version, "" when there is none, or a decision when the search failed.
func (e *exec) find(ctx context.Context) (id, version string, d *decision) {
	params := url.Values{"identifier": {IdentifierSystem + "|" + e.in.ID}}
	e.flush(ctx)
	start := time.Now()
	page, err := e.tgt.FHIR.Search(ctx, e.in.TargetType, params)
	a := store.IntentAttempt{Step: "search", Method: http.MethodGet, Path: e.path(e.in.TargetType, ""), Took: time.Since(start)}
	if err != nil {
		a.Status, a.Outcome = errStatus(err)
		e.record(ctx, a)
		return "", "", retry("cannot look for the record at the EHR: " + a.Outcome)
	}
	a.Status = page.Status
	var ids []string
	var versions []string
	for _, en := range page.Bundle.Entry {
		if len(en.Resource) == 0 {
			continue
		}
		h, err := fhir.ParseHeader(en.Resource)
		if err != nil || h.ResourceType != e.in.TargetType || h.ID == "" {
			continue
		}
		ids = append(ids, h.ID)
		versions = append(versions, h.VersionID)
	}
	a.Outcome = strconv.Itoa(len(ids)) + " found"
	e.record(ctx, a)
	switch len(ids) {
	case 0:
		return "", "", nil
	case 1:
		return ids[0], versions[0], nil
	}
	// More than one record carries our identifier: the EHR duplicated a
	// write. Keep the first; the log says how many there are.
	e.o.log.Warn("writeback: the EHR holds several records with one intent's identifier", "practice", e.in.Practice,
		"intent", e.in.ID, "records", len(ids))
	return ids[0], versions[0], nil
}

// ---- update and patch ----

func (e *exec) update(ctx context.Context, patch bool) *decision {
	cur, version, d := e.read(ctx, e.in.TargetID, "read")
	if d != nil {
		return d
	}
	if hasTag(cur, e.in.ID) {
		return e.markSent(ctx, e.in.TargetID, version) // an earlier attempt was applied
	}
	base := e.in.BaseVersion
	if base == "" {
		base = version
	}
	for reapplied := false; ; {
		w := fhirrest.WriteRequest{ResourceType: e.in.TargetType, ID: e.in.TargetID, Prefer: "return=representation"}
		var err error
		step := "update"
		if patch {
			step, w.Method, w.ContentType = "patch", http.MethodPatch, "application/json-patch+json"
			w.Body, err = jsonPatch(cur, e.in.VendorBody, e.in.ID)
		} else {
			w.Method = http.MethodPut
			w.Body, err = applyChanges(cur, e.in.VendorBody, e.in.ID)
		}
		if err != nil {
			d := final(store.IntentRejected, "cannot build the update: "+err.Error())
			d.rejection = "mediflow could not build the change to send (mapping problem). Report it to the mediflow administrator."
			return d
		}
		if e.sup.IfMatch && base != "" {
			w.IfMatch = base
		}
		res, werr := e.write(ctx, step, w)
		if werr != nil {
			return e.noAnswer(ctx, werr, e.lookForUpdate)
		}
		switch {
		case res.OK():
			v := res.VersionID
			if v == "" || v == base {
				v = "" // unknown: the read-back says
			}
			return e.markSent(ctx, e.in.TargetID, v)
		case transient(res):
			return e.afterTransient(ctx, res, e.lookForUpdate)
		case e.stale(res):
		default:
			return e.reject(res)
		}
		// The record changed at the EHR: read it again.
		now, nowVersion, d := e.read(ctx, e.in.TargetID, "reread")
		if d != nil {
			return d
		}
		if hasTag(now, e.in.ID) {
			return e.markSent(ctx, e.in.TargetID, nowVersion)
		}
		diffs, derr := differences(e.in.VendorBody, now)
		if derr != nil {
			diffs = nil
		}
		changed := fmt.Sprintf("the record changed at the EHR (version %s, now %s)", safeWord(base), safeWord(nowVersion))
		switch {
		case e.in.ConflictPolicy == store.ConflictReapply && !reapplied:
			reapplied, cur, base = true, now, nowVersion
			continue
		case e.in.ConflictPolicy == store.ConflictReapply:
			d := final(store.IntentConflict, changed+" again while the changes were re-applied")
			d.diffs = diffs
			return d
		case e.in.ConflictPolicy == store.ConflictManual:
			d := final(store.IntentConflict, changed+"; waiting for a person: resolve it at the EHR, then replay")
			d.diffs = diffs
			return d
		default:
			d := final(store.IntentConflict, changed+"; the intent's policy is to fail")
			d.diffs = diffs
			return d
		}
	}
}

// lookForUpdate is the check after an ambiguous update: the record
// carries our tag (applied) or not.
func (e *exec) lookForUpdate(ctx context.Context) *decision {
	cur, version, d := e.read(ctx, e.in.TargetID, "reread")
	if d != nil {
		d.settle = true
		return d
	}
	if hasTag(cur, e.in.ID) {
		return e.markSent(ctx, e.in.TargetID, version)
	}
	return nil
}

// stale reports a failed If-Match: 412, 409, or the contract's status.
func (e *exec) stale(res *fhirrest.WriteResult) bool {
	return res.Status == http.StatusPreconditionFailed || res.Status == http.StatusConflict ||
		(e.sup.StaleStatus != 0 && res.Status == e.sup.StaleStatus)
}

// read reads a record: its body and version, or a decision.
func (e *exec) read(ctx context.Context, id, step string) ([]byte, string, *decision) {
	e.flush(ctx)
	start := time.Now()
	res, err := e.tgt.FHIR.Read(ctx, e.in.TargetType, id)
	a := store.IntentAttempt{Step: step, Method: http.MethodGet, Path: e.path(e.in.TargetType, id), Took: time.Since(start)}
	if err != nil {
		a.Status, a.Outcome = errStatus(err)
		e.record(ctx, a)
		var fe *fhirrest.Error
		if errors.As(err, &fe) && fe.Kind == fhirrest.KindNotFound && step != "verify" {
			d := final(store.IntentRejected, "the record does not exist at the EHR")
			d.rejection = Translate(fe.Status, fe.Outcome, fe.VendorCode)
			return nil, "", d
		}
		return nil, "", retry("cannot read the record at the EHR: " + a.Outcome)
	}
	a.Status = res.Status
	e.record(ctx, a)
	v := versionOf(res.Body)
	if v == "" {
		v = fhirrest.VersionOfETag(res.Header.Get("ETag"))
	}
	return res.Body, v, nil
}

// ---- verification ----

func (e *exec) verify(ctx context.Context) *decision {
	body, version, d := e.read(ctx, e.in.ExternalID, "verify")
	if d != nil {
		d.reason = "written, but cannot be read back yet: " + d.reason
		return d
	}
	want, got := e.in.VendorBody, body
	if e.sup.OperationFor(e.in.TargetID != "") == "create" {
		prepared, err := prepareCreate(e.in.VendorBody, e.in.TargetType, e.in.ID)
		if err == nil {
			want = prepared
		}
	}
	if e.tgt.MapIn != nil {
		mapped, err := e.tgt.MapIn(ctx, e.in.TargetType, body)
		if err != nil {
			d := final(store.IntentMismatch, "the record read back cannot be mapped to the canonical model")
			d.version = version
			return d
		}
		want, got = e.in.Body, mapped
	}
	diffs, err := differences(want, got)
	if err != nil {
		d := final(store.IntentMismatch, "the record read back cannot be compared: "+err.Error())
		d.version = version
		return d
	}
	if len(diffs) > 0 {
		d := final(store.IntentMismatch, fmt.Sprintf("the record read back differs from what was written in %d element(s)", len(diffs)))
		d.diffs, d.version = diffs, version
		return d
	}
	d = final(store.IntentConfirmed, "")
	d.version = version
	return d
}

// ---- answers ----

// write sends one write and records the exchange.
func (e *exec) write(ctx context.Context, step string, w fhirrest.WriteRequest) (*fhirrest.WriteResult, error) {
	hdr := map[string]string{}
	if w.IfMatch != "" {
		hdr["If-Match"] = fhirrest.ETagOf(w.IfMatch)
	}
	if w.IfNoneExist != "" {
		hdr["If-None-Exist"] = w.IfNoneExist
	}
	if w.Prefer != "" {
		hdr["Prefer"] = w.Prefer
	}
	if w.ContentType != "" {
		hdr["Content-Type"] = w.ContentType
	}
	e.flush(ctx)
	start := time.Now()
	res, err := e.tgt.FHIR.Write(ctx, w)
	a := store.IntentAttempt{Step: step, Method: w.Method, Path: e.path(w.ResourceType, w.ID), Headers: hdr, BodyHash: bodyHash(w.Body),
		Took: time.Since(start)}
	if err != nil {
		a.Status, a.Outcome = errStatus(err)
	} else {
		a.Status, a.Outcome = res.Status, answerCodes(res)
	}
	e.record(ctx, a)
	return res, err
}

// noAnswer handles a write without an answer: never resent blindly.
func (e *exec) noAnswer(ctx context.Context, err error, look func(context.Context) *decision) *decision {
	var we *fhirrest.WriteError
	if errors.As(err, &we) && !we.Sent {
		return retry("the write was not sent: " + we.Kind.String())
	}
	_, reason := errStatus(err)
	if ctx.Err() != nil {
		return retrySettle("no answer: " + reason)
	}
	if d := look(ctx); d != nil {
		return d
	}
	return retrySettle("no answer (" + reason + ") and the record was not found; the write will be retried")
}

// afterTransient handles 408, 429, 5xx and 401 answers.
func (e *exec) afterTransient(ctx context.Context, res *fhirrest.WriteResult, look func(context.Context) *decision) *decision {
	reason := statusText(res.Status)
	if res.Status == http.StatusTooManyRequests || res.Status == http.StatusUnauthorized {
		// Refused before processing: nothing to look for.
		d := retry(reason)
		d.retryAfter = res.RetryAfter
		return d
	}
	if d := look(ctx); d != nil {
		return d
	}
	d := retrySettle(reason + " and the record was not found; the write will be retried")
	d.retryAfter = res.RetryAfter
	return d
}

// transient reports answers worth retrying.
func transient(res *fhirrest.WriteResult) bool {
	switch {
	case res.Status == http.StatusRequestTimeout, res.Status == http.StatusTooManyRequests, res.Status == http.StatusUnauthorized:
		return true
	case res.Status == http.StatusNotImplemented || res.Status == http.StatusHTTPVersionNotSupported:
		return false
	case res.Status >= 500:
		return true
	}
	return res.Kind == profile.KindRateLimited || res.Kind == profile.KindServer
}

// duplicate reports an answer saying the record already exists.
func duplicate(res *fhirrest.WriteResult) bool {
	if res.VendorCode == "59141" {
		return true
	}
	if res.Outcome != nil {
		for _, is := range res.Outcome.Issue {
			if is.Code == "duplicate" {
				return true
			}
		}
	}
	return false
}

func (e *exec) reject(res *fhirrest.WriteResult) *decision {
	d := final(store.IntentRejected, "refused by the EHR: "+answerCodes(res))
	d.rejection = Translate(res.Status, res.Outcome, res.VendorCode)
	return d
}

// answerCodes summarizes an answer without PHI: status, outcome codes and
// the vendor code.
func answerCodes(res *fhirrest.WriteResult) string {
	s := statusText(res.Status)
	if res.Outcome != nil && len(res.Outcome.Issue) > 0 {
		s += " [" + res.Outcome.Summary() + "]"
	}
	if res.VendorCode != "" {
		s += " vendor code " + safeWord(res.VendorCode)
	}
	return s
}

// errStatus returns the status and a PHI-free description of a failed call.
func errStatus(err error) (int, string) {
	var we *fhirrest.WriteError
	if errors.As(err, &we) {
		return 0, we.Kind.String()
	}
	var fe *fhirrest.Error
	if errors.As(err, &fe) {
		s := fe.Kind.String()
		if fe.Status != 0 {
			s += " (" + statusText(fe.Status) + ")"
		}
		if fe.Outcome != nil && len(fe.Outcome.Issue) > 0 {
			s += " [" + fe.Outcome.Summary() + "]"
		}
		return fe.Status, s
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, "cancelled"
	}
	return 0, "request failed"
}

// path is the URL path of a request to the target (no query).
func (e *exec) path(resourceType, id string) string {
	u, err := url.Parse(e.tgt.FHIR.BaseURL())
	p := ""
	if err == nil {
		p = u.Path
	}
	p += "/" + resourceType
	if id != "" {
		p += "/" + id
	}
	return p
}

// record notes an exchange for the attempts log and the audit trail. The
// note is written with the round's next status change (markSent, finish:
// one store write for the step) or, when another request comes first,
// just before it (flush), so every exchange is stored before the next one
// is made; an exchange's record is never lost to a claim that is gone, and
// a failure to write is logged while the round goes on (the EHR has seen
// the request either way).
func (e *exec) record(ctx context.Context, a store.IntentAttempt) {
	a.Practice, a.IntentID, a.Attempt, a.At = e.in.Practice, e.in.ID, e.in.Attempts, e.o.opts.Now().UTC()
	entity := e.in.TargetType
	if id := e.in.ExternalID; id != "" {
		entity += "/" + id
	} else if e.in.TargetID != "" {
		entity += "/" + e.in.TargetID
	}
	outcome := "success"
	switch {
	case a.Status == 401 || a.Status == 403:
		outcome = "denied"
	case a.Status < 200 || a.Status >= 300:
		outcome = "error"
	}
	if len(e.log) > 0 {
		// A caller that did not flush before its request: the earlier
		// exchange is written now.
		e.flush(ctx)
	}
	e.log = append(e.log, a)
	e.audit = append(e.audit, store.AuditEvent{Practice: e.in.Practice, Time: a.At, Actor: "app:" + e.in.App, Action: "write", Entity: entity,
		Outcome: outcome, Detail: fmt.Sprintf("intent %s attempt %d %s: %s %s -> %d %s", e.in.ID, a.Attempt, a.Step, a.Method, a.Path, a.Status, a.Outcome)})
}

// flush writes the exchanges recorded and not yet written, in one store
// write (even after ctx ended: they happened).
func (e *exec) flush(ctx context.Context) {
	if len(e.log) == 0 && len(e.audit) == 0 {
		return
	}
	rctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
		defer cancel()
	}
	log, audit := e.takeLog()
	if err := e.o.st.RecordIntentAttempts(rctx, e.in.Practice, log, audit); err != nil {
		e.o.log.Error("writeback: cannot record exchanges", "practice", e.in.Practice, "intent", e.in.ID, "error", err.Error())
	}
}

// takeLog hands over the exchanges not yet written.
func (e *exec) takeLog() ([]store.IntentAttempt, []store.AuditEvent) {
	log, audit := e.log, e.audit
	e.log, e.audit = nil, nil
	return log, audit
}

// markSent records that the EHR holds the write; the round goes on to
// verification (nil), or stops when the claim is gone.
func (e *exec) markSent(ctx context.Context, id, version string) *decision {
	from := e.in.Status
	// What the EHR holds is recorded even when the round is being stopped:
	// it spares the next round a search.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
	defer cancel()
	u := store.IntentUpdate{Attempt: e.in.Attempts, Status: store.IntentSent, ExternalID: id, ExternalVersion: version, At: e.o.opts.Now()}
	u.Exchanges, u.Audit = e.takeLog()
	in, err := e.o.updateIntent(sctx, e.in.Practice, e.in.ID, u)
	if err != nil {
		if !errors.Is(err, store.ErrIntentState) {
			e.o.log.Error("writeback: cannot record a sent intent; it is looked for again after its lease", "practice", e.in.Practice,
				"intent", e.in.ID, "error", err.Error())
		}
		return &decision{kind: decideLost}
	}
	e.in = in
	e.o.report(in, from, in.Status)
	return nil
}

// finish stores the round's decision.
func (e *exec) finish(ctx context.Context, d *decision) {
	if d.kind == decideLost {
		e.flush(ctx)
		return
	}
	now := e.o.opts.Now()
	u := store.IntentUpdate{Attempt: e.in.Attempts, At: now, LastError: clip(d.reason), Differences: d.diffs, ExternalVersion: d.version}
	switch d.kind {
	case decideFinal:
		u.Status, u.Rejection = d.status, d.rejection
	case decideRelease:
		u.Status, u.NextAttempt = e.in.Status, now.Add(e.o.opts.SettleDelay)
	case decideWait:
		u.Status, u.NextAttempt = e.in.Status, now.Add(d.wait)
	default:
		u.Status = e.in.Status
		first := e.in.FirstAttempt
		if first.IsZero() {
			first = e.in.LastAttempt
		}
		deadline := first.Add(e.o.opts.MaxAge)
		if !now.Before(deadline) {
			u.Status = store.IntentDead
			u.LastError = clip(fmt.Sprintf("gave up %s after the first attempt; last: %s", e.o.opts.MaxAge, d.reason))
			break
		}
		delay := e.o.retryDelay(e.in.Attempts, d.retryAfter)
		if d.settle {
			delay = max(delay, e.o.opts.SettleDelay)
		}
		u.NextAttempt = now.Add(delay)
		if u.NextAttempt.After(deadline) {
			u.NextAttempt = deadline
		}
	}
	rctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
		defer cancel()
	}
	from := e.in.Status
	u.Exchanges, u.Audit = e.takeLog()
	in, err := e.o.updateIntent(rctx, e.in.Practice, e.in.ID, u)
	if err != nil {
		if !errors.Is(err, store.ErrIntentState) {
			e.o.log.Error("writeback: cannot record an outcome; the intent is claimed again after its lease", "practice", e.in.Practice,
				"intent", e.in.ID, "status", u.Status, "error", err.Error())
		}
		return
	}
	if e.tgt.HL7 != nil && e.o.hl7Outcome(in.Practice, in.ID) && d.kind == decideWait {
		// The message's outcome came while this round decided to wait.
		e.o.nudge(rctx, hl7out.Event{Practice: in.Practice, Destination: e.tgt.HL7.Destination, ControlID: in.ID})
		e.o.kick()
	}
	log := e.o.log.With("practice", in.Practice, "intent", in.ID, "kind", in.Kind, "attempt", in.Attempts)
	switch in.Status {
	case store.IntentConfirmed:
		log.Debug("writeback: confirmed", "record", in.TargetType+"/"+in.ExternalID)
	case store.IntentDead, store.IntentRejected, store.IntentConflict, store.IntentMismatch:
		log.Warn("writeback: intent "+in.Status, "reason", in.LastError, "differences", len(in.Differences))
	default:
		if d.kind == decideRetry {
			log.Info("writeback: attempt failed; retrying", "reason", in.LastError, "next_attempt", in.NextAttempt)
		}
	}
	e.o.report(in, from, in.Status)
	if !store.IntentOpen(in.Status) {
		e.o.kick() // the patient's next intent may go
	}
}

// maxErrorText bounds a stored reason.
const maxErrorText = 300

func clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	cut := maxErrorText
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
