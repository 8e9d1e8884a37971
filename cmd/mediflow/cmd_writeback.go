package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/writeback"
	"github.com/mediflow/mediflow/internal/writeback/contract"
)

// writebackCmd groups the write-back tools.
func writebackCmd() *command {
	return &command{
		name:    "writeback",
		summary: "write-back to a practice's EHR: a scripted sandbox test",
		long:    `Write-back (docs/writeback.md). Each subcommand has its own --help.`,
		subs:    []*command{writebackTestCmd()},
	}
}

func writebackTestCmd() *command {
	return &command{
		name:    "test",
		summary: "write to a practice's EHR sandbox through the real outbox and report each step",
		long: `Runs a scripted write-back session against the EHR of practice --practice in
the configuration file --config, through the same outbox, write contract and
mapping the engine uses (write-back is turned on for the practice for this
run, whatever its writeback.enabled says). Point it at a sandbox: it creates
records there.

  1. create note                 note.create; waits until confirmed (read back and compared)
  2. read note back              reads the record: mediflow's identifier is on it, with a version
  3. book appointment            appointment.book, the record the next steps change
  4. update with If-Match        appointment.reschedule based on the version read (If-Match)
  5. stale update -> conflict    a reschedule based on the old version, policy fail: status conflict
  6. duplicate idempotency key   step 1's request again: the same intent, still one record

A step the practice's write contract refuses is reported "not supported"
with the contract's reason, and is not a failure. A step that needs an
earlier one that failed is skipped. The intents are kept in a temporary
store that is removed afterwards (--keep-store keeps it), never in the
engine's.

Exit status: 0 when no step failed; 1 when one did; 2 for a usage error.

Examples:
  mediflow writeback test --config mediflow.yaml --practice valley-family
  mediflow writeback test --config mediflow.yaml --practice lakeside --encounter 4711 --patient 12`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			cfgPath := fs.String("config", "", "configuration `file` (required)")
			practice := fs.String("practice", "", "practice `id` (required)")
			patient := fs.String("patient", "", "the patient `id` at the EHR to write for (default: the first one a search finds)")
			encounter := fs.String("encounter", "", "an encounter `id` at the EHR for the note's context (EHRs that require one)")
			timeout := fs.Duration("timeout", 2*time.Minute, "how long each step may wait for its intent to be final")
			keep := fs.Bool("keep-store", false, "keep the temporary store with the intents and their exchanges (its path is printed)")
			verbose := fs.Bool("verbose", false, "log the engine's and the outbox's info messages to standard error")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				switch {
				case len(args) > 0:
					return usagef("writeback test takes no arguments (got %q)", args[0])
				case *cfgPath == "":
					return usagef("--config FILE is required")
				case *practice == "":
					return usagef("--practice ID is required")
				case *timeout <= 0:
					return usagef("--timeout must be positive")
				}
				cfg, err := config.Load(*cfgPath, env.getenv)
				if err != nil {
					return err
				}
				for _, w := range cfg.Warnings {
					fmt.Fprintln(env.stderr, w.String())
				}
				found := false
				for i := range cfg.Practices {
					p := &cfg.Practices[i]
					p.Writeback.Enabled = p.ID == *practice && len(p.Connections) > 0
					if p.ID == *practice {
						found = true
						if len(p.Connections) == 0 {
							return fmt.Errorf("practice %s has no FHIR connection to write through", *practice)
						}
					}
				}
				if !found {
					return fmt.Errorf("practice %q is not in %s", *practice, *cfgPath)
				}
				level := slog.LevelWarn
				if *verbose {
					level = slog.LevelInfo
				}
				wt := &writebackTest{env: env, practice: *practice, patient: *patient, encounter: *encounter, timeout: *timeout}
				return wt.run(ctx, cfg, obs.NewLogger(env.stderr, level, cfg.Log.Format), *keep)
			}
		},
	}
}

// Step outcomes.
const (
	stepPass        = "PASS"
	stepFail        = "FAIL"
	stepUnsupported = "N/A"
	stepSkip        = "SKIP"
)

type stepResult struct {
	name, outcome, detail string
}

// writebackTest is one run of `mediflow writeback test`.
type writebackTest struct {
	env       *cliEnv
	practice  string
	patient   string
	encounter string
	timeout   time.Duration

	wb    *engine.Intents
	fhir  *fhirrest.Client
	runID string
	steps []stepResult
}

func (wt *writebackTest) run(ctx context.Context, cfg *config.Config, log *slog.Logger, keep bool) error {
	dir, err := os.MkdirTemp("", "mediflow-writeback-test-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(wt.env.stderr, "the intents are kept in %s\n", filepath.Join(dir, "writeback-test.db"))
	} else {
		defer os.RemoveAll(dir)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "writeback-test.db"), sqlite.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	eng, err := engine.New(ctx, cfg, engine.Options{Logger: log, Getenv: wt.env.getenv, Store: st})
	if err != nil {
		return err
	}
	defer eng.Close()
	wt.wb = eng.Intents()
	if wt.wb == nil {
		return errors.New("write-back could not be set up for the practice")
	}
	wt.fhir = wt.wb.FHIR(wt.practice)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	wt.runID = fmt.Sprintf("mwt-%d-%s", time.Now().Unix(), hex.EncodeToString(rnd[:]))

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- wt.wb.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			fmt.Fprintf(wt.env.stderr, "outbox: %v\n", err)
		}
	}()

	vendor := ""
	for _, p := range cfg.Practices {
		if p.ID == wt.practice {
			vendor = p.Connections[0].Vendor
		}
	}
	if wt.patient == "" {
		if wt.patient, err = wt.findPatient(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(wt.env.stdout, "mediflow writeback test: practice %s (%s), patient Patient/%s, run %s\n", wt.practice, vendor, wt.patient, wt.runID)
	wt.script(ctx)
	return wt.report()
}

// findPatient returns the id of a patient at the EHR.
func (wt *writebackTest) findPatient(ctx context.Context) (string, error) {
	page, err := wt.fhir.Search(ctx, "Patient", url.Values{"_count": {"1"}})
	if err != nil {
		return "", fmt.Errorf("find a patient to write for (or give --patient): %w", err)
	}
	for _, e := range page.Bundle.Entry {
		var h struct{ ResourceType, ID string }
		if json.Unmarshal(e.Resource, &h) == nil && h.ResourceType == "Patient" && h.ID != "" {
			return h.ID, nil
		}
	}
	return "", errors.New("the EHR's Patient search found nobody: give --patient ID")
}

func (wt *writebackTest) add(name, outcome, detail string) {
	wt.steps = append(wt.steps, stepResult{name: name, outcome: outcome, detail: detail})
}

// script runs the steps in order.
func (wt *writebackTest) script(ctx context.Context) {
	const (
		sCreate = "create note"
		sRead   = "read note back"
		sBook   = "book appointment"
		sUpdate = "update with If-Match"
		sStale  = "stale update -> conflict"
		sDup    = "duplicate idempotency key"
	)
	// Notes: create, read back, resubmit.
	noteReq := wt.request(contract.NoteCreate, "note", wt.noteBody(), "", "")
	if reason, ok := wt.supported(contract.NoteCreate); !ok {
		for _, s := range []string{sCreate, sRead} {
			wt.add(s, stepUnsupported, "not supported ("+reason+")")
		}
	} else if note, ok := wt.submitAndWait(ctx, sCreate, noteReq, store.IntentConfirmed); !ok {
		wt.add(sRead, stepSkip, "needs a created note")
	} else {
		wt.readBack(ctx, sRead, note)
	}

	// Appointments: book one, update it with If-Match, then with a stale version.
	bookSup, bookOK := wt.supported(contract.AppointmentBook)
	reschedSup, reschedOK := wt.supported(contract.AppointmentResched)
	sup, _ := wt.wb.Support(wt.practice, contract.AppointmentResched)
	switch {
	case !bookOK:
		wt.add(sBook, stepUnsupported, "not supported ("+bookSup+")")
		wt.add(sUpdate, stepUnsupported, "not supported (the steps change an appointment mediflow books)")
		wt.add(sStale, stepUnsupported, "not supported (the steps change an appointment mediflow books)")
	default:
		start := time.Now().UTC().Add(14 * 24 * time.Hour).Truncate(time.Hour)
		appt, ok := wt.submitAndWait(ctx, sBook, wt.request(contract.AppointmentBook, "book", wt.appointmentBody("", start), "", ""), store.IntentConfirmed)
		var v1 string
		if ok {
			if v1, ok = wt.version(ctx, "Appointment", appt.ExternalID); !ok {
				wt.steps[len(wt.steps)-1] = stepResult{name: sBook, outcome: stepFail, detail: "booked, but the record cannot be read back with its version"}
			}
		}
		switch {
		case !reschedOK:
			wt.add(sUpdate, stepUnsupported, "not supported ("+reschedSup+")")
			wt.add(sStale, stepUnsupported, "not supported ("+reschedSup+")")
		case !sup.IfMatch:
			wt.add(sUpdate, stepUnsupported, "not supported (the EHR's contract has no If-Match: updates cannot be based on a version)")
			wt.add(sStale, stepUnsupported, "not supported (the EHR's contract has no If-Match)")
		case !ok:
			wt.add(sUpdate, stepSkip, "needs a booked appointment")
			wt.add(sStale, stepSkip, "needs a booked appointment")
		default:
			moved := start.Add(time.Hour)
			upd, ok := wt.submitAndWait(ctx, sUpdate, wt.request(contract.AppointmentResched, "update",
				wt.appointmentBody(appt.ExternalID, moved), appt.ExternalID, v1), store.IntentConfirmed)
			if ok {
				wt.checkUpdate(ctx, upd, v1, moved)
			}
			if !ok {
				wt.add(sStale, stepSkip, "needs the update to have gone through")
				break
			}
			stale, ok := wt.submitAndWait(ctx, sStale, wt.request(contract.AppointmentResched, "stale",
				wt.appointmentBody(appt.ExternalID, moved.Add(time.Hour)), appt.ExternalID, v1), store.IntentConflict)
			if ok {
				wt.steps[len(wt.steps)-1].detail = fmt.Sprintf("conflict as expected: %s (%d element(s) differ)", stale.LastError, len(stale.Differences))
			}
		}
	}

	// The note's request again, with its key.
	if reason, ok := wt.supported(contract.NoteCreate); !ok {
		wt.add(sDup, stepUnsupported, "not supported ("+reason+")")
	} else if first := wt.find(sCreate); first.outcome != stepPass {
		wt.add(sDup, stepSkip, "needs a created note")
	} else {
		wt.duplicate(ctx, sDup, noteReq)
	}
}

func (wt *writebackTest) find(name string) stepResult {
	for _, s := range wt.steps {
		if s.name == name {
			return s
		}
	}
	return stepResult{}
}

// supported says whether the contract writes an intent over FHIR, or why not.
func (wt *writebackTest) supported(kind contract.Intent) (string, bool) {
	s, err := wt.wb.Support(wt.practice, kind)
	switch {
	case err != nil:
		return err.Error(), false
	case !s.Supported:
		return strings.TrimSuffix(s.Reason, "."), false
	case s.Channel != contract.ChannelFHIR:
		return fmt.Sprintf("%s goes through the %s channel, which this test does not drive", kind, s.Channel), false
	}
	return "", true
}

func (wt *writebackTest) request(kind contract.Intent, key string, body []byte, target, base string) writeback.Request {
	return writeback.Request{Practice: wt.practice, App: "mediflow-writeback-test", IdempotencyKey: wt.runID + "-" + key,
		Kind: kind, PatientRef: "Patient/" + wt.patient, TargetID: target, BaseVersion: base, Body: body, ConflictPolicy: store.ConflictFail}
}

func (wt *writebackTest) noteBody() []byte {
	note := map[string]any{
		"resourceType": "DocumentReference",
		"status":       "current",
		"type":         map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}}},
		"subject":      map[string]any{"reference": "Patient/" + wt.patient},
		"content": []any{map[string]any{"attachment": map[string]any{
			"contentType": "text/plain",
			"data":        base64Text("mediflow write-back test " + wt.runID + ": this note can be deleted."),
		}}},
	}
	if wt.encounter != "" {
		note["context"] = map[string]any{"encounter": []any{map[string]any{"reference": "Encounter/" + wt.encounter}}}
	}
	b, _ := json.Marshal(note)
	return b
}

func (wt *writebackTest) appointmentBody(id string, start time.Time) []byte {
	appt := map[string]any{
		"resourceType": "Appointment",
		"status":       "booked",
		"description":  "mediflow write-back test " + wt.runID,
		"start":        start.Format(time.RFC3339),
		"end":          start.Add(30 * time.Minute).Format(time.RFC3339),
		"participant":  []any{map[string]any{"actor": map[string]any{"reference": "Patient/" + wt.patient}, "status": "accepted"}},
	}
	if id != "" {
		appt["id"] = id
	}
	b, _ := json.Marshal(appt)
	return b
}

// submitAndWait submits an intent and waits until it is final; the step
// passes when it ends in want.
func (wt *writebackTest) submitAndWait(ctx context.Context, step string, r writeback.Request, want string) (store.Intent, bool) {
	in, _, err := wt.wb.Submit(ctx, r)
	if err != nil {
		wt.add(step, stepFail, "refused: "+refusal(err))
		return store.Intent{}, false
	}
	in, err = wt.wait(ctx, in.ID)
	if err != nil {
		wt.add(step, stepFail, err.Error())
		return in, false
	}
	if in.Status != want {
		detail := fmt.Sprintf("intent %s ended %s, want %s", in.ID, in.Status, want)
		if in.Rejection != "" {
			detail += ": " + in.Rejection
		} else if in.LastError != "" {
			detail += ": " + in.LastError
		}
		if len(in.Differences) > 0 {
			detail += " (differences: " + strings.Join(in.Differences, ", ") + ")"
		}
		wt.add(step, stepFail, detail)
		return in, false
	}
	detail := fmt.Sprintf("%s/%s %s (intent %s)", in.TargetType, in.ExternalID, in.Status, in.ID)
	wt.add(step, stepPass, detail)
	return in, true
}

// refusal is a Submit error in words: the field errors, or the reason.
func refusal(err error) string {
	var msgs []string
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case contract.FieldError:
			msgs = append(msgs, x.Error())
		case interface{ Unwrap() []error }:
			for _, c := range x.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	if len(msgs) > 0 {
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), writeback.ErrInvalid.Error()+": ")
}

// wait polls an intent until it is final or the step's time is up.
func (wt *writebackTest) wait(ctx context.Context, id string) (store.Intent, error) {
	ctx, cancel := context.WithTimeout(ctx, wt.timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		in, err := wt.wb.Get(ctx, wt.practice, id)
		if err != nil {
			return in, fmt.Errorf("read intent %s: %w", id, err)
		}
		if !store.IntentOpen(in.Status) {
			return in, nil
		}
		select {
		case <-ctx.Done():
			return in, fmt.Errorf("intent %s still %s after %s (last error: %s)", id, in.Status, wt.timeout, orNone(in.LastError))
		case <-tick.C:
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// version reads a record and returns its version (ETag, else meta.versionId).
func (wt *writebackTest) version(ctx context.Context, rt, id string) (string, bool) {
	res, err := wt.fhir.Read(ctx, rt, id)
	if err != nil {
		return "", false
	}
	if v := fhirrest.VersionOfETag(res.Header.Get("ETag")); v != "" {
		return v, true
	}
	var m struct {
		Meta struct{ VersionID string } `json:"meta"`
	}
	if json.Unmarshal(res.Body, &m) == nil && m.Meta.VersionID != "" {
		return m.Meta.VersionID, true
	}
	return "", false
}

// readBack reads the note at the EHR: it must carry the intent's identifier
// and a version.
func (wt *writebackTest) readBack(ctx context.Context, step string, in store.Intent) {
	res, err := wt.fhir.Read(ctx, in.TargetType, in.ExternalID)
	if err != nil {
		wt.add(step, stepFail, fmt.Sprintf("read %s/%s: %v", in.TargetType, in.ExternalID, err))
		return
	}
	var rec struct {
		Identifier []struct{ System, Value string } `json:"identifier"`
		Meta       struct{ VersionID string }       `json:"meta"`
	}
	if err := json.Unmarshal(res.Body, &rec); err != nil {
		wt.add(step, stepFail, "the record read back is not JSON")
		return
	}
	found := false
	for _, x := range rec.Identifier {
		found = found || (x.System == writeback.IdentifierSystem && x.Value == in.ID)
	}
	v := fhirrest.VersionOfETag(res.Header.Get("ETag"))
	if v == "" {
		v = rec.Meta.VersionID
	}
	switch {
	case !found:
		wt.add(step, stepFail, fmt.Sprintf("%s/%s lacks the identifier %s|%s: the EHR dropped it, so mediflow cannot tell whether a write happened", in.TargetType, in.ExternalID, writeback.IdentifierSystem, in.ID))
	case v == "":
		wt.add(step, stepFail, fmt.Sprintf("%s/%s has neither an ETag nor meta.versionId", in.TargetType, in.ExternalID))
	default:
		wt.add(step, stepPass, fmt.Sprintf("%s/%s carries %s|%s, version %s", in.TargetType, in.ExternalID, writeback.IdentifierSystem, in.ID, v))
	}
}

// checkUpdate confirms that the update was sent with If-Match on the base
// version and that the record now starts at the new time.
func (wt *writebackTest) checkUpdate(ctx context.Context, in store.Intent, base string, start time.Time) {
	i := len(wt.steps) - 1
	as, err := wt.wb.Attempts(ctx, wt.practice, in.ID)
	if err != nil {
		wt.steps[i] = stepResult{name: wt.steps[i].name, outcome: stepFail, detail: "cannot read the intent's exchanges: " + err.Error()}
		return
	}
	ifMatch := ""
	for _, a := range as {
		if a.Method == "PUT" || a.Method == "PATCH" {
			ifMatch = a.Headers["If-Match"]
		}
	}
	if ifMatch != fhirrest.ETagOf(base) {
		wt.steps[i] = stepResult{name: wt.steps[i].name, outcome: stepFail, detail: fmt.Sprintf("the update carried If-Match %q, want %s", ifMatch, fhirrest.ETagOf(base))}
		return
	}
	res, err := wt.fhir.Read(ctx, "Appointment", in.ExternalID)
	var rec struct{ Start string }
	if err != nil || json.Unmarshal(res.Body, &rec) != nil {
		wt.steps[i] = stepResult{name: wt.steps[i].name, outcome: stepFail, detail: "cannot read the appointment back"}
		return
	}
	if t, err := time.Parse(time.RFC3339, rec.Start); err != nil || !t.Equal(start) {
		wt.steps[i] = stepResult{name: wt.steps[i].name, outcome: stepFail, detail: "the appointment at the EHR does not start at the new time"}
		return
	}
	wt.steps[i].detail = fmt.Sprintf("Appointment/%s moved, sent with If-Match %s, now version %s (intent %s)", in.ExternalID, ifMatch, orNone(in.ExternalVersion), in.ID)
}

// duplicate submits the note's request again: the same intent must come
// back, and the EHR must still hold one record with its identifier.
func (wt *writebackTest) duplicate(ctx context.Context, step string, r writeback.Request) {
	in, created, err := wt.wb.Submit(ctx, r)
	if err != nil {
		wt.add(step, stepFail, "refused: "+refusal(err))
		return
	}
	first := wt.find("create note").detail
	if created || !strings.Contains(first, in.ID) {
		wt.add(step, stepFail, fmt.Sprintf("a new intent %s was made for a key already used", in.ID))
		return
	}
	page, err := wt.fhir.Search(ctx, in.TargetType, url.Values{"identifier": {writeback.IdentifierSystem + "|" + in.ID}})
	if err != nil {
		wt.add(step, stepFail, "search the EHR by the intent's identifier: "+err.Error())
		return
	}
	n := 0
	for _, e := range page.Bundle.Entry {
		if e.Search == nil || e.Search.Mode == "" || e.Search.Mode == "match" {
			n++
		}
	}
	if n != 1 {
		wt.add(step, stepFail, fmt.Sprintf("the EHR holds %d records with the intent's identifier, want 1", n))
		return
	}
	wt.add(step, stepPass, fmt.Sprintf("the same intent %s (%s), one record at the EHR", in.ID, in.Status))
}

// report prints the steps and returns an error when one failed.
func (wt *writebackTest) report() error {
	counts := map[string]int{}
	for _, s := range wt.steps {
		counts[s.outcome]++
		fmt.Fprintf(wt.env.stdout, "  %-4s  %-26s %s\n", s.outcome, s.name, s.detail)
	}
	fmt.Fprintf(wt.env.stdout, "%d steps: %d passed, %d failed, %d not supported, %d skipped\n",
		len(wt.steps), counts[stepPass], counts[stepFail], counts[stepUnsupported], counts[stepSkip])
	if counts[stepFail] > 0 {
		return fmt.Errorf("%d of %d steps failed", counts[stepFail], len(wt.steps))
	}
	return nil
}

func base64Text(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
