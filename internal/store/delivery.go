package store

import (
	"context"
	"errors"
	"time"
)

// Webhook delivery states. A delivery is Pending from enqueue until it is
// Delivered (the receiver answered 2xx) or Dead (it was refused for good, or
// retries ran out). A dead delivery can be replayed, which makes it Pending
// again.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// ErrDeliveryState is returned (wrapped) when a delivery exists but is not
// in the state the call needs: RecordAttempt on a delivery that is no longer
// pending or was claimed again since, ReplayDelivery on one that is not dead.
var ErrDeliveryState = errors.New("store: delivery is not in the required state")

// Webhook is one app's subscription to one practice's changes.
type Webhook struct {
	// ID is chosen by the caller (package delivery makes random ones); unique
	// within the practice.
	ID       string
	Practice string
	App      string // the app (config.App.Name) that owns the subscription
	URL      string
	// SealedSecret is the signing secret, sealed by the caller (package
	// delivery encrypts it with AES-GCM under a key the store never sees).
	// The store keeps the bytes as given and never logs them.
	SealedSecret []byte
	// Types are the FHIR resource types the webhook wants; empty: all.
	Types     []string
	Active    bool
	CreatedAt time.Time // set by the store on first put
	UpdatedAt time.Time // set by the store on every put
}

// WebhookFilter selects webhooks. Empty fields match everything.
type WebhookFilter struct {
	App        string
	ActiveOnly bool
}

// Delivery is one event to send to one webhook.
type Delivery struct {
	ID        int64 // assigned by the store, increasing: the order of a webhook's queue
	Practice  string
	App       string // the webhook's app, filled in by the store
	WebhookID string
	// EventID is the idempotency key: unique per webhook; enqueueing it again
	// is a no-op.
	EventID string
	Seq     int64  // the change-feed position the event is about
	Payload []byte // the JSON body sent (PHI-free)
	Status  string
	// Attempts counts claims: an attempt is counted when it starts, so one
	// cut short by a crash counts too.
	Attempts     int
	NextAttempt  time.Time // pending: not claimed before this instant
	FirstAttempt time.Time // zero before the first claim
	LastAttempt  time.Time
	LastError    string // PHI-free reason of the last failure ("" if none)
	CreatedAt    time.Time
	UpdatedAt    time.Time
	DeliveredAt  time.Time
}

// EnqueueResult is the outcome of enqueueing one delivery.
type EnqueueResult struct {
	ID int64
	// Duplicate is true when the webhook already had a delivery with the
	// same EventID: nothing was stored and ID is the existing delivery's.
	Duplicate bool
}

// Claim is what ClaimDeliveries found.
type Claim struct {
	// Deliveries are the claimed queue heads, at most one per webhook,
	// earliest NextAttempt first, with Attempts already incremented.
	Deliveries []Delivery
	// NextDue is the earliest NextAttempt among the heads not claimed
	// (zero: none), so the caller knows when to look again.
	NextDue time.Time
}

// AttemptResult is the outcome of one claimed attempt.
type AttemptResult struct {
	// Attempt is the Attempts value of the claim the result belongs to; a
	// result for an older claim (whose lease ran out and which was claimed
	// again) is refused with ErrDeliveryState.
	Attempt int
	// Status is DeliveryDelivered, DeliveryDead, or DeliveryPending to try
	// again at NextAttempt (a release after an interrupted attempt is
	// pending with NextAttempt now).
	Status      string
	At          time.Time
	NextAttempt time.Time
	Error       string // PHI-free; "" clears
}

// DeliveryFilter selects deliveries for listing. Empty fields match everything.
type DeliveryFilter struct {
	WebhookID string
	App       string
	Status    []string // any of
	// BeforeID pages newest first: only IDs < BeforeID (0: from the newest).
	BeforeID int64
	Limit    int // 0: 100
}

// DeliveryStore keeps webhook subscriptions, the deliveries queued for them
// and the change-feed position up to which deliveries have been made.
//
// Order: a webhook's queue is its pending deliveries in ID order, and only
// its head (lowest ID) can be claimed. A later delivery is never claimed
// while an earlier one of the same webhook is pending, so a webhook (which
// belongs to one practice) receives its events in order. A dead delivery
// leaves the queue; replaying it puts it back in ID order, ahead of the
// pending ones after it.
//
// Claims are leases: ClaimDeliveries moves a head's NextAttempt to the end
// of the lease, so a claim lost in a crash is claimed again when the lease
// ends, and two dispatchers never hold the same head at once.
type DeliveryStore interface {
	// PutWebhook creates or replaces a webhook (by practice and ID). The
	// store sets CreatedAt on creation and UpdatedAt on every put.
	PutWebhook(ctx context.Context, w Webhook) error
	GetWebhook(ctx context.Context, practice, id string) (Webhook, error)
	// ListWebhooks lists a practice's webhooks in ID order.
	ListWebhooks(ctx context.Context, practice string, f WebhookFilter) ([]Webhook, error)

	// DeliveryCursor is the change-feed position up to which the practice's
	// changes have been turned into deliveries (0 at first).
	DeliveryCursor(ctx context.Context, practice string) (int64, error)
	// EnqueueDeliveries stores ds in one transaction, in order, skipping
	// those whose webhook already has a delivery with the same EventID, and
	// moves the practice's delivery cursor to through if that is later. A
	// zero NextAttempt or CreatedAt is the store's now; Status, attempts and
	// App are set by the store. An unknown webhook fails the whole batch
	// with ErrNotFound.
	EnqueueDeliveries(ctx context.Context, practice string, ds []Delivery, through int64) ([]EnqueueResult, error)
	// ClaimDeliveries claims up to limit due queue heads of active webhooks
	// (NextAttempt <= now): it counts an attempt, sets FirstAttempt if
	// unset, LastAttempt to now and NextAttempt to now + lease. Heads of
	// inactive webhooks are neither claimed nor reported in NextDue.
	ClaimDeliveries(ctx context.Context, practice string, now time.Time, lease time.Duration, limit int) (Claim, error)
	// RecordAttempt records the outcome of a claimed attempt; see AttemptResult.
	RecordAttempt(ctx context.Context, practice string, id int64, r AttemptResult) error
	GetDelivery(ctx context.Context, practice string, id int64) (Delivery, error)
	// ListDeliveries lists a practice's deliveries, newest first.
	ListDeliveries(ctx context.Context, practice string, f DeliveryFilter) ([]Delivery, error)
	// CountDeliveries counts deliveries by status for one webhook ("" all).
	CountDeliveries(ctx context.Context, practice, webhookID string) (map[string]int, error)
	// ReplayDelivery makes a dead delivery pending again, due at now, with
	// its attempts and FirstAttempt reset (a fresh retry window).
	ReplayDelivery(ctx context.Context, practice string, id int64, now time.Time) error
	// PruneDeliveries deletes delivered deliveries delivered before before
	// and returns how many. Pending and dead ones are kept.
	PruneDeliveries(ctx context.Context, practice string, before time.Time) (int64, error)
}
