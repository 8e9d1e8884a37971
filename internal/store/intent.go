package store

import (
	"context"
	"errors"
	"time"
)

// Write-back intent states. An intent is accepted when an app submits it,
// sending while an executor holds it and nothing is known to have reached
// the EHR, sent once the EHR answered the write (awaiting the read-back),
// and then final: confirmed (the read-back matches), mismatch (it does not;
// Differences lists where), conflict (the record changed under us and the
// intent's policy asks a human), rejected (the EHR refused it; Rejection
// says why in staff words) or dead (retries ran out).
const (
	IntentAccepted  = "accepted"
	IntentSending   = "sending"
	IntentSent      = "sent"
	IntentConfirmed = "confirmed"
	IntentMismatch  = "mismatch"
	IntentConflict  = "conflict"
	IntentRejected  = "rejected"
	IntentDead      = "dead"
)

// IntentOpen reports whether an intent in state s still waits for work
// (accepted, sending or sent). Only open intents hold their patient's queue.
func IntentOpen(s string) bool {
	return s == IntentAccepted || s == IntentSending || s == IntentSent
}

// IntentReplayable reports whether an intent in state s can be replayed:
// dead, conflict, rejected or mismatch.
func IntentReplayable(s string) bool {
	return s == IntentDead || s == IntentConflict || s == IntentRejected || s == IntentMismatch
}

// Conflict policies: what to do when the record changed at the EHR since
// the version an update was based on (HTTP 409/412 on If-Match).
const (
	ConflictFail    = "fail"    // stop: status conflict, with the differing elements
	ConflictReapply = "reapply" // apply the intent's changes once more on the new version
	ConflictManual  = "manual"  // stop: status conflict until a person resolves it and replays
)

// ErrIntentState is returned (wrapped) when an intent exists but is not in
// the state a call needs: UpdateIntent by a claim that is no longer the
// current one or on a final intent, ReplayIntent on an intent that is not
// replayable.
var ErrIntentState = errors.New("store: intent is not in the required state")

// Intent is one write an app asked mediflow to make at a practice's EHR.
type Intent struct {
	// Seq is assigned by the store, increasing: the order of a patient's queue.
	Seq int64
	// ID is chosen by the caller (package writeback makes ULID-like ones),
	// unique within the practice; it travels with the write as an
	// identifier so the record can be found again.
	ID       string
	Practice string
	App      string
	// IdempotencyKey is the app's key, unique per practice and app:
	// creating an intent with a key already used returns the first one.
	IdempotencyKey string
	// RequestHash fingerprints what was asked (kind, target, bodies), so a
	// key reused for a different request can be told apart.
	RequestHash string
	Kind        string // contract intent, e.g. "note.create"
	// PatientRef ("Patient/123") orders intents: an intent is not started
	// before the earlier open intents of the same patient are final. Empty:
	// the intent is ordered alone.
	PatientRef string
	TargetType string // FHIR resource type written
	TargetID   string // the record updated or cancelled ("" for creates)
	// BaseVersion is the EHR version an update was based on (If-Match); ""
	// means the version read just before writing.
	BaseVersion    string
	Body           []byte // canonical JSON of what the app asked for
	VendorBody     []byte // the vendor-shaped resource (or changes) to write
	ConflictPolicy string // ConflictFail, ConflictReapply or ConflictManual
	Status         string
	// Attempts counts claims: one is counted when it starts.
	Attempts     int
	NextAttempt  time.Time // open: not claimed before this instant
	FirstAttempt time.Time // zero before the first claim
	LastAttempt  time.Time
	// ExternalID and ExternalVersion name the record at the EHR once known.
	ExternalID      string
	ExternalVersion string
	LastError       string   // PHI-free reason of the last failure
	Rejection       string   // the EHR's refusal in words staff can act on
	Differences     []string // element paths that differ (mismatch, conflict); PHI-free
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      time.Time // when it became final (zero while open)
}

// IntentUpdate is an executor's change to a claimed intent.
type IntentUpdate struct {
	// Attempt is the Attempts value of the claim making the update; an
	// update from an older claim is refused with ErrIntentState.
	Attempt int
	Status  string
	// NextAttempt, for an open status, is when the intent is due again;
	// zero keeps the claim's lease.
	NextAttempt time.Time
	// ExternalID and ExternalVersion replace the stored ones when not empty.
	ExternalID, ExternalVersion string
	LastError                   string   // replaces ("" clears)
	Rejection                   string   // replaces
	Differences                 []string // replaces
	At                          time.Time
	// Exchanges and Audit are appended to the attempts log and the audit
	// trail in the same transaction as the update, and whether or not the
	// update applies (they happened either way): an executor records the
	// exchanges that led to a status change with it, in one write.
	Exchanges []IntentAttempt
	Audit     []AuditEvent
}

// IntentChange is one update of UpdateIntents.
type IntentChange struct {
	Practice, ID string
	Update       IntentUpdate
}

// IntentChanged is the result of one IntentChange: what UpdateIntent
// would have returned for it.
type IntentChanged struct {
	Intent Intent
	Err    error
}

// IntentClaim is what ClaimIntents found.
type IntentClaim struct {
	// Intents are the claimed queue heads, at most one per patient,
	// earliest NextAttempt first, Attempts already incremented, accepted
	// ones already moved to sending.
	Intents []Intent
	// NextDue is the earliest NextAttempt among the heads not claimed
	// (zero: none).
	NextDue time.Time
}

// IntentFilter selects intents for listing. Empty fields match everything.
type IntentFilter struct {
	App        string
	PatientRef string
	Status     []string // any of
	// BeforeSeq pages newest first: only Seq < BeforeSeq (0: from the newest).
	BeforeSeq int64
	Limit     int // 0: 100
}

// IntentAttempt is one exchange with the EHR made for an intent: an
// append-only audit line. Nothing in it may hold PHI: the path has no query,
// the body is a hash.
type IntentAttempt struct {
	ID       int64 // assigned by the store
	Practice string
	IntentID string
	Attempt  int    // the claim it belongs to (Intent.Attempts)
	Step     string // "search", "create", "update", "patch", "read", "verify"
	At       time.Time
	Method   string
	Path     string            // URL path only, no query
	Headers  map[string]string // the headers that matter (If-Match, If-None-Exist, Prefer, ...)
	BodyHash string            // hex SHA-256 of the request body ("" none)
	Status   int               // HTTP status (0: no answer)
	Outcome  string            // codes: OperationOutcome summary, vendor code, transport kind
	Took     time.Duration
}

// IntentStore keeps write-back intents, their per-patient queues and the
// log of every exchange made for them.
//
// Order: the open intents of one practice and patient form a queue in Seq
// order, and only its head can be claimed, so a later intent never starts
// before an earlier one of the same patient is final. A final intent
// leaves the queue; replaying it puts it back in Seq order.
//
// Claims are leases: ClaimIntents moves a head's NextAttempt to the end of
// the lease, so a claim lost in a crash is claimed again when it ends.
//
// Cost: a claim reads and writes only the heads it claims (plus one), not
// the backlog; executors bundle the exchanges of a step with its status
// change (IntentUpdate.Exchanges, Audit) or record them in one write
// (RecordIntentAttempts).
type IntentStore interface {
	// CreateIntent stores a new intent (Status accepted, due at
	// NextAttempt or now) unless the practice and app already have one with
	// the same IdempotencyKey: then nothing is stored and the existing one
	// is returned with created false. ID, App, IdempotencyKey, Kind and
	// TargetType are required; the store sets Seq, Status, Attempts and the
	// timestamps.
	CreateIntent(ctx context.Context, in Intent) (out Intent, created bool, err error)
	GetIntent(ctx context.Context, practice, id string) (Intent, error)
	// GetIntentByKey finds an intent by its app and idempotency key.
	GetIntentByKey(ctx context.Context, practice, app, key string) (Intent, error)
	// ListIntents lists a practice's intents, newest first.
	ListIntents(ctx context.Context, practice string, f IntentFilter) ([]Intent, error)
	// CountIntents counts a practice's intents by status.
	CountIntents(ctx context.Context, practice string) (map[string]int, error)
	// ClaimIntents claims up to limit due queue heads (NextAttempt <= now):
	// it counts an attempt, sets FirstAttempt if unset, LastAttempt to now,
	// NextAttempt to now + lease, and moves accepted heads to sending.
	ClaimIntents(ctx context.Context, practice string, now time.Time, lease time.Duration, limit int) (IntentClaim, error)
	// UpdateIntent records an executor's progress on a claimed, open
	// intent; see IntentUpdate. It returns the intent as stored.
	UpdateIntent(ctx context.Context, practice, id string, u IntentUpdate) (Intent, error)
	// UpdateIntents applies changes in order, each as UpdateIntent would,
	// in one transaction when it can (executors' updates made at the same
	// moment share one commit), and returns one result per change: one
	// change's failure does not undo the others.
	UpdateIntents(ctx context.Context, cs []IntentChange) []IntentChanged
	// ReplayIntent makes a replayable intent accepted again, with its
	// attempts, FirstAttempt, Rejection and BaseVersion cleared (a replayed
	// update applies to the EHR's version of the moment), at its Seq's place
	// in its queue. It is due at now, except when it goes before a later
	// intent of its queue that was already claimed (which may still be
	// executing): then it is due no earlier than that intent's NextAttempt
	// (the end of its lease, or its next retry), so the two never run at
	// once.
	ReplayIntent(ctx context.Context, practice, id string, now time.Time) (Intent, error)
	// AppendIntentAttempts appends exchanges to the attempts log.
	AppendIntentAttempts(ctx context.Context, practice string, as ...IntentAttempt) error
	// RecordIntentAttempts appends exchanges to the attempts log and events
	// (each of the practice) to the audit trail, all in one transaction.
	RecordIntentAttempts(ctx context.Context, practice string, as []IntentAttempt, events []AuditEvent) error
	// ListIntentAttempts lists an intent's exchanges, oldest first.
	ListIntentAttempts(ctx context.Context, practice, intentID string) ([]IntentAttempt, error)
}
