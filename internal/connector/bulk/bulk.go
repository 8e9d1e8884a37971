// Package bulk is mediflow's FHIR Bulk Data Access (v2) export client: it
// kicks off a system, Patient or Group $export, polls the job's status URL
// (honouring Retry-After, reporting X-Progress), reads the completion
// manifest, and streams the NDJSON output, deleted and error files in
// parallel and in constant memory to the caller's sinks. A job's state is a
// plain JSON-able struct (Job) so an export can be resumed after a restart.
//
// The unit of resumption is the file: a file is marked finished only after
// every resource of it was accepted by the sink and Options.FileDone
// returned. A resumed job downloads again only the files not marked
// finished, so a caller that commits a file's resources together with its
// FileDone (or stores resources idempotently) sees each resource exactly
// once. Within one run, a download that breaks mid-file is retried and the
// lines already accepted by the sink are skipped, not delivered twice.
//
// Security: the bearer token goes only to the FHIR server's origin. File
// downloads carry it only when the manifest says requiresAccessToken, and a
// redirect to another origin or out of the file's path prefix (a storage
// URL) is followed without it. Nothing this package logs or puts in an error
// holds PHI: URLs lose their query, OperationOutcomes are summarised by codes
// (Error.Diagnostics gives the server's text to a program that asks), and
// resource bodies never appear.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest"
)

// Config configures a Client. Zero values pick the documented defaults.
type Config struct {
	// BaseURL is the FHIR base, e.g. https://ehr.example/fhir/R4 (required).
	BaseURL string
	// HTTPClient sends the requests (default: a client with its own
	// transport). Its CheckRedirect is not used: redirects are followed by
	// this package so the token never leaves the server's origin. For
	// large exports give its transport a large ReadBufferSize, as the
	// default client's 256 KiB: with the 4 KiB default, a file sent
	// chunked takes about ten times the read system calls.
	HTTPClient *http.Client
	// Tokens supplies bearer tokens (internal/smart's Client implements it);
	// nil sends no Authorization header.
	Tokens fhirrest.TokenSource
	// UserAgent is sent with every request (default "mediflow").
	UserAgent string

	// Workers is how many files are downloaded at once (default 4).
	Workers int
	// MaxLineBytes bounds one NDJSON line (default 64 MiB); a longer line
	// fails the file with a *LineError naming it and the line number.
	MaxLineBytes int
	// BatchSize and BatchBytes bound one batch given to a sink (defaults
	// 1000 resources and 4 MiB of bodies; a single larger line is a batch
	// of its own).
	BatchSize  int
	BatchBytes int

	// MinPoll and MaxPoll bound the wait between two status requests
	// (defaults 1s and 2m). A server's Retry-After is clamped into
	// [MinPoll, MaxPoll]; without one the wait starts at MinPoll and grows
	// by half each poll up to MaxPoll.
	MinPoll, MaxPoll time.Duration
	// MaxRetries is how many times in a row a status request or a file
	// download that failed transiently (5xx, network, timeout) is retried
	// (default 5; negative: never). A 429 while polling is a request to slow
	// down and is not counted.
	MaxRetries int
	// BaseBackoff and MaxBackoff bound the exponential backoff with full
	// jitter between retries (defaults 500ms and 30s).
	BaseBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one kick-off, status or cancel request
	// (default 60s).
	RequestTimeout time.Duration
	// StallTimeout fails a download attempt (which is then retried) when no
	// byte arrived for this long, headers included (default 2m).
	StallTimeout time.Duration
	// MaxIssues bounds how many issues of the error files are kept in
	// Result.Issues (default 1000); the counts cover them all.
	MaxIssues int

	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sleep waits d or until ctx is done (default: a timer). Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a uniform float in [0,1) for jitter (default math/rand/v2).
	Rand func() float64
	// Logger receives retry notices (default: discarded). Nothing logged holds PHI.
	Logger *slog.Logger
}

// bulkReadBuffer is the read buffer of the default client's connections.
const bulkReadBuffer = 256 << 10

// Client runs bulk exports against one FHIR server. It is safe for
// concurrent use.
type Client struct {
	cfg    Config
	base   string   // without trailing slash
	baseU  *url.URL // parsed base
	origin string
	hc     *http.Client // never follows redirects
	tokens fhirrest.TokenSource
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("bulk: BaseURL is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bulk: BaseURL %q must be an absolute http(s) URL", safeURL(cfg.BaseURL))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("bulk: BaseURL %q must not have a query or fragment", safeURL(cfg.BaseURL))
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 8
		// Servers stream NDJSON chunked; with the 4 KiB default read buffer
		// the transport makes a read system call for every chunk header and
		// the little data after it. A larger buffer cuts the reads per
		// 64 KiB chunk from about three to well under one.
		tr.ReadBufferSize = bulkReadBuffer
		hc = &http.Client{Transport: tr}
	}
	nc := *hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.UserAgent == "" {
		cfg.UserAgent = "mediflow"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = 64 << 20
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 4 << 20
	}
	if cfg.MinPoll <= 0 {
		cfg.MinPoll = time.Second
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 2 * time.Minute
	}
	if cfg.MaxPoll < cfg.MinPoll {
		cfg.MaxPoll = cfg.MinPoll
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 2 * time.Minute
	}
	if cfg.MaxIssues <= 0 {
		cfg.MaxIssues = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		baseU:  u,
		origin: originOf(u),
		hc:     &nc,
		tokens: cfg.Tokens,
	}, nil
}

// BaseURL returns the server's base URL (no trailing slash).
func (c *Client) BaseURL() string { return c.base }

// Level is the scope of an export.
type Level string

// Export levels: every resource the client may see, every patient's
// compartment, or one Group's members' compartments.
const (
	LevelSystem  Level = "system"
	LevelPatient Level = "patient"
	LevelGroup   Level = "group"
)

// NDJSON is the default (and the only widely supported) _outputFormat.
const NDJSON = "application/fhir+ndjson"

// Request is what to export.
type Request struct {
	Level   Level  // default LevelSystem
	GroupID string // required for LevelGroup
	// Types limits the export to these resource types (_type); empty: all.
	Types []string
	// Since exports only resources changed after this instant (_since);
	// zero: everything. Use a previous manifest's TransactionTime.
	Since time.Time
	// OutputFormat is _outputFormat (default application/fhir+ndjson).
	OutputFormat string
	// TypeFilters are _typeFilter values such as
	// "MedicationRequest?status=active" (optional, sent as given).
	TypeFilters []string
}

// Manifest is the body of a completed status request.
type Manifest struct {
	TransactionTime     time.Time  `json:"transactionTime"`
	Request             string     `json:"request"`
	RequiresAccessToken bool       `json:"requiresAccessToken"`
	Output              []FileItem `json:"output"`
	Deleted             []FileItem `json:"deleted,omitempty"`
	Error               []FileItem `json:"error"`
}

// FileItem is one file listed in a manifest.
type FileItem struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count,omitempty"` // the server's count, when it gives one
}

// FileKind says which manifest array a file comes from.
type FileKind string

// File kinds.
const (
	KindOutput  FileKind = "output"
	KindDeleted FileKind = "deleted"
	KindError   FileKind = "error"
)

// FileState is one file of a job and whether it is finished.
type FileState struct {
	Kind FileKind `json:"kind"`
	Type string   `json:"type"`
	URL  string   `json:"url"` // as in the manifest (may carry a signed query: keep it out of logs)
	Done bool     `json:"done"`
	// Items is how many resources, tombstones or issues the file delivered
	// (set when Done).
	Items int64 `json:"items,omitempty"`
}

// Name is the file's URL without its query, safe for messages.
func (f FileState) Name() string { return safeURL(f.URL) }

// Job is the state of one export, plain data so a caller can persist it
// (encoding/json) and continue with Client.Resume after a restart.
type Job struct {
	KickoffURL  string    `json:"kickoff_url"`
	StatusURL   string    `json:"status_url"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"` // when the manifest arrived
	// ExpiresAt is the manifest response's Expires header, when given: the
	// files may be gone after it.
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
	Manifest  *Manifest   `json:"manifest,omitempty"`
	Files     []FileState `json:"files,omitempty"`
}

// Complete reports whether every file of the job is finished.
func (j *Job) Complete() bool {
	if j.Manifest == nil {
		return false
	}
	for _, f := range j.Files {
		if !f.Done {
			return false
		}
	}
	return true
}

// clone deep-copies the job for a checkpoint.
func (j *Job) clone() Job {
	out := *j
	if j.Manifest != nil {
		m := *j.Manifest
		m.Output = append([]FileItem(nil), m.Output...)
		m.Deleted = append([]FileItem(nil), m.Deleted...)
		m.Error = append([]FileItem(nil), m.Error...)
		out.Manifest = &m
	}
	out.Files = append([]FileState(nil), j.Files...)
	return out
}

// Resource is one line of an output file. Body is the line's bytes,
// byte-exact; it (and the batch holding it) is valid only during the sink
// call: copy what you keep.
type Resource struct {
	Type string
	ID   string
	Body []byte
	File string // the file's URL without its query
	Line int    // 1-based line number in the file
}

// Batch is one batch of an output file's resources, as a BatchSink gets it.
type Batch struct {
	Resources []Resource
	// NDJSON is the batch's lines back to back, in order, each exactly its
	// Resource's Body followed by '\n': the batch as NDJSON, ready to be
	// stored as one raw payload without being assembled again.
	NDJSON []byte
}

// Tombstone is one deleted resource, from a deleted file (a Bundle entry
// whose request is DELETE Type/id).
type Tombstone struct {
	Type string
	ID   string
	File string
	Line int
}

// Issue is one issue of an OperationOutcome from an error file. Diagnostics
// is the server's text and may echo patient data: do not log it.
type Issue struct {
	Severity    string
	Code        string
	Details     string // details.text or the first coding's code
	Diagnostics string
	Expression  []string
	File        string
	Line        int
}

// ResourceSink receives the resources of output files in batches. It may be
// called concurrently (one goroutine per file being downloaded, at most
// Config.Workers); the batches of one file come in order from one goroutine.
// An error stops the export.
type ResourceSink func(ctx context.Context, batch []Resource) error

// BatchSink is a ResourceSink that also gets each batch's lines as one
// NDJSON block (Batch.NDJSON), which the client has at hand anyway. Like
// the bodies, the block and the batch are valid only during the call: copy
// what you keep. Calls come as for a ResourceSink.
type BatchSink func(ctx context.Context, batch Batch) error

// TombstoneSink receives the resources listed in deleted files, like ResourceSink.
type TombstoneSink func(ctx context.Context, batch []Tombstone) error

// Phase is where an export is.
type Phase string

// Phases, in order.
const (
	PhaseKickoff     Phase = "kick-off"
	PhasePolling     Phase = "polling"
	PhaseDownloading Phase = "downloading"
	PhaseDone        Phase = "done"
)

// Progress is a snapshot given to Options.Progress.
type Progress struct {
	Phase Phase
	// Polls is how many status requests were answered; XProgress the last
	// X-Progress header (printable, at most 100 bytes).
	Polls     int
	XProgress string
	// RetryAfter is the wait before the next status request.
	RetryAfter time.Duration
	FilesDone  int
	FilesTotal int
	Resources  int64 // delivered to the resource sink in this run
	Deleted    int64 // tombstones delivered in this run
	Issues     int64 // issues read from error files in this run
	Bytes      int64 // decoded bytes of files read in this run
	Elapsed    time.Duration
}

// Options says where an export's data goes and how the run behaves.
type Options struct {
	// Resources receives the output files' resources (required).
	Resources ResourceSink
	// Batches, when set, receives the output files' resources instead of
	// Resources, each batch with its lines as one NDJSON block: for a sink
	// that stores batches raw, it saves assembling (and copying) them.
	// Export and Resume still require Resources to be set.
	Batches BatchSink
	// Deleted receives the deleted files' tombstones; required when the
	// manifest lists deleted files (they are never silently ignored).
	Deleted TombstoneSink
	// FileDone is called when every item of a file was delivered, before the
	// file is marked finished and checkpointed: commit the file's resources
	// here for exactly-once delivery across a resume. Calls are serialised.
	FileDone func(ctx context.Context, f FileState) error
	// Checkpoint receives a copy of the job state after the kick-off, when
	// the manifest arrives and after each finished file: persist it to
	// resume later. Calls are serialised; an error stops the export.
	Checkpoint func(ctx context.Context, job Job) error
	// Progress receives snapshots (serialised; keep it quick).
	Progress func(Progress)
	// CancelOnAbort sends DELETE to the status URL when ctx is cancelled
	// before the job's files are all downloaded (the server may then drop
	// the job; it cannot be resumed).
	CancelOnAbort bool
	// DeleteWhenDone sends DELETE to the status URL after every file was
	// downloaded, telling the server it may delete the files.
	DeleteWhenDone bool
}

// Result sums up one run (Export or Resume).
type Result struct {
	Job       Job // the state at the end (persist it when the run failed)
	Resources int64
	Deleted   int64
	Files     int // files finished in this run
	Skipped   int // files already finished before this run (Resume)
	Bytes     int64
	// Issues are the error files' issues (at most Config.MaxIssues);
	// IssueCounts counts all of them by "severity/code".
	Issues      []Issue
	IssueCounts map[string]int
	Canceled    bool // the job was cancelled on the server (CancelOnAbort)
	Duration    time.Duration
}
