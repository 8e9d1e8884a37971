// Package store defines mediflow's storage interface: raw inbound payloads,
// versioned canonical resources with their change feed, sync cursors, sync-run
// records, stored CapabilityStatements and audit events, all partitioned by
// practice (tenant). Implementations live in sub-packages (sqlite; postgres
// later) and must all pass the conformance suite in store/storetest.
//
// Every method takes the practice explicitly: there is no call that reads
// across practices, so tenant isolation is a property of the interface.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) when a record does not exist in the practice.
var ErrNotFound = errors.New("store: not found")

// Store is the whole storage interface. It is safe for concurrent use.
type Store interface {
	// Migrate brings the schema to the newest version. It is idempotent.
	Migrate(ctx context.Context) error
	Close() error

	RawStore
	ResourceStore
	CursorStore
	RunStore
	CapabilityStore
	AuditStore
	StateStore
	MessageStore
	DeliveryStore
	IntentStore
}

// BulkLoader is implemented by a store that takes a large load (a bulk
// export's ingest) faster when it is told where the load begins and ends.
// BeginBulkLoad opens a bulk window for a practice; end closes it and
// finishes whatever the store deferred (for the sqlite store: the search
// postings, merged into the index once). Reads give the same answers during
// the window. end must be called, also when the load fails; its error means
// the deferred work did not finish (the store retries it before it is
// needed), and a second call does nothing.
type BulkLoader interface {
	BeginBulkLoad(practice string) (end func(ctx context.Context) error)
}

// RawPayload is one inbound payload exactly as received, stored before it is
// processed so nothing is lost when parsing or mapping fails.
type RawPayload struct {
	ID          int64 // assigned by the store
	Practice    string
	Connection  string
	Source      string // transport, e.g. "fhir-rest", "hl7-mllp"
	RequestURL  string // where it was fetched from (may be empty for pushed data)
	ContentType string
	FetchedAt   time.Time
	Body        []byte
}

// RawFilter selects raw payloads for listing.
type RawFilter struct {
	Connection string // empty: all
	Since      time.Time
	Limit      int // 0: implementation default (100)
}

// RawStore keeps raw inbound payloads. An implementation may store a body
// compressed; GetRaw and ListRaw return every body exactly as it was put.
type RawStore interface {
	PutRaw(ctx context.Context, p RawPayload) (int64, error)
	GetRaw(ctx context.Context, practice string, id int64) (RawPayload, error)
	ListRaw(ctx context.Context, practice string, f RawFilter) ([]RawPayload, error)
}

// Resource is one version of a canonical FHIR resource.
type Resource struct {
	Practice     string
	ResourceType string
	ID           string
	// Version is the store's own version counter for this resource: 1, 2, ...
	Version int
	// SourceVersionID and SourceLastUpdated are meta.versionId/lastUpdated as the
	// EHR sent them (may be empty / zero).
	SourceVersionID   string
	SourceLastUpdated time.Time
	ContentHash       string // hex SHA-256 of Body
	Connection        string // the connection that wrote this version
	RawID             int64  // the raw payload this version came from (0 if none)
	Seq               int64  // change-feed position of this version (monotonic per store)
	StoredAt          time.Time
	Deleted           bool
	Body              []byte // the resource JSON
}

// ResourceWrite asks the store to record the current state of one resource.
type ResourceWrite struct {
	ResourceType      string
	ID                string
	SourceVersionID   string
	SourceLastUpdated time.Time
	Connection        string
	RawID             int64
	Deleted           bool
	Body              []byte
}

// Outcome says what a write did.
type Outcome int

const (
	// Unchanged: same content as the current version; nothing written.
	Unchanged Outcome = iota
	// Created: the first version of this resource.
	Created
	// Updated: a new version; the previous one stays in history.
	Updated
)

func (o Outcome) String() string {
	switch o {
	case Created:
		return "created"
	case Updated:
		return "updated"
	default:
		return "unchanged"
	}
}

// WriteResult is the result of one ResourceWrite.
type WriteResult struct {
	Outcome Outcome
	Version int
	Seq     int64 // 0 when unchanged
}

// Change is one entry of a practice's change feed.
type Change struct {
	Seq          int64
	ResourceType string
	ID           string
	Version      int
	Deleted      bool
	StoredAt     time.Time
}

// SearchParam is one search criterion against the search index.
// Name is a FHIR search parameter name ("family", "birthdate", "patient",
// "_lastUpdated", ...); Prefix is the FHIR comparison prefix for dates
// ("eq", "lt", "le", "gt", "ge", "ne", "" meaning eq); Values are ORed.
type SearchParam struct {
	Name   string
	Prefix string
	Values []string
}

// Query is a search within one practice and one resource type.
type Query struct {
	ResourceType string
	Params       []SearchParam // ANDed
	Count        int           // page size; 0: 20
	// After continues a search: the opaque token from the previous page's SearchPage.Next.
	After string
}

// SearchPage is one page of search results.
type SearchPage struct {
	Resources []Resource
	Total     int    // total number of matches
	Next      string // token for the next page, "" on the last
}

// ResourceStore keeps canonical resources, their history and the change feed.
type ResourceStore interface {
	// WriteResources records a batch atomically. For each write: if the resource
	// does not exist it is Created; if its content hash equals the current
	// version's it is Unchanged; otherwise a new version is Updated. A batch may
	// name the same resource twice; the later entry wins, the earlier may be
	// reported Unchanged or Updated.
	WriteResources(ctx context.Context, practice string, ws []ResourceWrite) ([]WriteResult, error)
	GetResource(ctx context.Context, practice, resourceType, id string) (Resource, error)
	GetResourceVersion(ctx context.Context, practice, resourceType, id string, version int) (Resource, error)
	// History lists all versions, newest first.
	History(ctx context.Context, practice, resourceType, id string) ([]Resource, error)
	Search(ctx context.Context, practice string, q Query) (SearchPage, error)
	// Changes lists changes with Seq > since, oldest first, at most limit.
	Changes(ctx context.Context, practice string, since int64, limit int) ([]Change, error)
	// CountResources counts current (non-deleted) resources per type.
	CountResources(ctx context.Context, practice string) (map[string]int, error)
	// CurrentRefs lists the current version of every resource of one type
	// in the practice, deleted ones included (flagged), ordered by id,
	// without bodies. Reconciliation compares it with what the EHR holds.
	CurrentRefs(ctx context.Context, practice, resourceType string) ([]ResourceRef, error)
}

// ResourceRef is the current version of one resource, without its body.
type ResourceRef struct {
	ID                string
	Version           int
	SourceVersionID   string
	SourceLastUpdated time.Time
	Connection        string
	Deleted           bool
}

// Cursor is the sync position of one connection for one resource type.
type Cursor struct {
	Practice     string
	Connection   string
	ResourceType string
	// Watermark is the highest meta.lastUpdated fully synced (the next
	// incremental search starts from Watermark minus the overlap window).
	Watermark time.Time
	// PageURL is the next page of an unfinished run ("" when no run is in flight).
	PageURL string
	// RunID is the sync run the PageURL belongs to.
	RunID int64
	// RunStart is the high-water mark the in-flight run will commit when done.
	RunStart  time.Time
	UpdatedAt time.Time
}

// CursorStore keeps sync cursors.
type CursorStore interface {
	// GetCursor returns the cursor, or a zero Cursor (with the keys set) and no error when none exists.
	GetCursor(ctx context.Context, practice, connection, resourceType string) (Cursor, error)
	PutCursor(ctx context.Context, c Cursor) error
}

// Run status values.
const (
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunPartial   = "partial" // finished, but some resources failed
)

// TypeStats counts what a run did for one resource type.
type TypeStats struct {
	Fetched   int `json:"fetched"`
	New       int `json:"new"`
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
	Pages     int `json:"pages"`
	// Deleted counts records a reconciliation sweep found gone at the EHR
	// and stored as tombstones.
	Deleted  int      `json:"deleted,omitempty"`
	Failures []string `json:"failures,omitempty"` // reasons, PHI-free
	// MappingIssues counts what the mapping reported for the resources
	// of the run, keyed "<rule id>: <kind>" (kind failed, required-empty or
	// unmapped-code): rule ids only, PHI-free. Nil when there were none.
	MappingIssues map[string]int `json:"mappingIssues,omitempty"`
}

// Run is one sync run of a connection.
type Run struct {
	ID         int64
	Practice   string
	Connection string
	Trigger    string // "schedule", "manual", "startup", ...
	Status     string
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	Error      string    // PHI-free
	Stats      map[string]*TypeStats
}

// RunStore keeps sync-run records.
type RunStore interface {
	StartRun(ctx context.Context, r Run) (int64, error)
	// UpdateRun overwrites status, finish time, error and stats of run r.ID.
	UpdateRun(ctx context.Context, r Run) error
	GetRun(ctx context.Context, practice string, id int64) (Run, error)
	// ListRuns lists a practice's runs, newest first; connection "" means all.
	ListRuns(ctx context.Context, practice, connection string, limit int) ([]Run, error)
}

// Capability is a CapabilityStatement fetched from a connection's server.
type Capability struct {
	Practice    string
	Connection  string
	FetchedAt   time.Time
	FHIRVersion string
	Software    string // software.name + " " + software.version
	Body        []byte
}

// CapabilityStore keeps the latest CapabilityStatement per connection, with history.
type CapabilityStore interface {
	PutCapability(ctx context.Context, c Capability) error
	GetCapability(ctx context.Context, practice, connection string) (Capability, error)
}

// StateStore keeps small, PHI-free state documents of the engine's
// long-running parts per practice, so they resume where they were after a
// restart: a bulk export job in flight, a subscription's last event
// number, a scheduler's next due times. Keys are chosen by their owners
// ("bulk/<connection>", "subscription/<connection>/<topic>").
type StateStore interface {
	// GetState returns the document under key, or ErrNotFound.
	GetState(ctx context.Context, practice, key string) ([]byte, error)
	// PutState creates or replaces the document under key.
	PutState(ctx context.Context, practice, key string, value []byte) error
	// DeleteState removes the document; removing a missing key is not an error.
	DeleteState(ctx context.Context, practice, key string) error
	// ListState lists the keys with the given prefix, sorted.
	ListState(ctx context.Context, practice, prefix string) ([]string, error)
}

// AuditEvent records one access to PHI. Detail must be PHI-free.
type AuditEvent struct {
	ID       int64
	Practice string
	Time     time.Time
	Actor    string // "app:<name>", "connection:<name>", "system"
	Action   string // "read", "search", "write", "sync"
	Entity   string // "Patient/123", "Patient?family", "changes"
	Outcome  string // "success", "denied", "error"
	Detail   string
}

// AuditFilter selects audit events.
type AuditFilter struct {
	Actor string
	Since time.Time
	Limit int
}

// AuditStore keeps the audit trail.
type AuditStore interface {
	Audit(ctx context.Context, events ...AuditEvent) error
	ListAudit(ctx context.Context, practice string, f AuditFilter) ([]AuditEvent, error)
}
