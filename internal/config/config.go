// Package config reads mediflow's one YAML configuration file. A single schema
// table (schema.go) drives strict decoding, validation with file:line:col
// diagnostics and hints, defaults, and the generated docs/configuration.md.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/vendors"
)

// Config is a whole, validated configuration with defaults filled in.
type Config struct {
	Server    Server
	Store     Store
	Log       Log
	Practices []Practice
	Apps      []App

	// File is the name the configuration was parsed from.
	File string `json:"-" yaml:"-"`
	// BaseDir is the directory relative paths (secret files, the SQLite
	// path) are resolved against: the config file's directory.
	BaseDir string `json:"-" yaml:"-"`
	// Warnings holds the non-fatal findings of Parse or Load.
	Warnings Diagnostics `json:"-" yaml:"-"`
}

// Server is the HTTP listener for the app-facing API and the status page.
type Server struct {
	Listen    string // host:port
	PublicURL string // may be empty
}

// Store selects and locates the storage engine.
type Store struct {
	Driver string // "sqlite" or "postgres"
	Path   string // sqlite: database file, as written (see Config.Abs)
	DSN    Secret // postgres: connection string
	// SecretKey seals the secrets the store keeps (webhook secrets): 32
	// bytes written as 64 hex characters or base64 (see DecodeSecretKey).
	// Unset: apps cannot register webhooks.
	SecretKey Secret
}

// Log configures the process log.
type Log struct {
	Level  string // debug, info, warn, error
	Format string // json, text
}

// Practice is one tenant: a medical practice, its EHR connections and its
// HL7 v2 listeners.
type Practice struct {
	ID           string
	Name         string
	Connections  []Connection
	HL7Listeners []HL7Listener
	Mapping      Mapping
	Writeback    Writeback
}

// Writeback is whether apps may write to the practice's EHR through the
// write-back outbox (see docs/writeback.md).
type Writeback struct {
	// Enabled: intents are accepted for the practice and written through
	// its first connection.
	Enabled bool
	// HL7 is the practice's outbound HL7 v2 interface for the intents its
	// write contract routes to HL7 (zero: none).
	HL7 WritebackHL7
	// Lease is how long an engine holds an intent it is writing; after a
	// crash the intent is taken up again when it runs out.
	Lease time.Duration
	// Concurrency bounds the intents written at once to the practice's
	// EHR (practices sharing a FHIR base URL share the smallest bound).
	Concurrency int
}

// WritebackHL7 is the MLLP receiver of a practice's HL7 v2 write-back
// (notes as MDM^T02, bookings and cancellations as SIU, charges as
// DFT^P03).
type WritebackHL7 struct {
	Destination string        // host:port; "" = no HL7 channel
	AckTimeout  time.Duration // one attempt: the message sent and its ACK read
	// MaxRounds is the number of failed delivery rounds after which a
	// message (and its intent) is given up; 0: never (the queue is held).
	MaxRounds int
}

// Mapping is how a practice's data is mapped to the canonical model.
type Mapping struct {
	Enabled       bool
	VendorVersion string // "" = the newest release the profile knows
	// Overrides is the practice's rules, as written (see Config.Abs): a
	// YAML file, or a folder with overrides.yaml and conceptmaps/.
	Overrides string
	TimeZone  string // IANA name; "" = the profile's default
}

// Location returns the practice's mapping time zone (nil when none is set).
func (m Mapping) Location() (*time.Location, error) {
	if m.TimeZone == "" {
		return nil, nil
	}
	return time.LoadLocation(m.TimeZone)
}

// HL7Listener is an MLLP listener that receives HL7 v2 messages for a
// practice (see docs/hl7v2.md).
type HL7Listener struct {
	Name           string
	Listen         string // host:port
	TLS            HL7TLS
	MaxMessageSize int // bytes
	MaxConnections int
	IdleTimeout    time.Duration
	DedupWindow    time.Duration // 0: no de-duplication
	AckMode        string        // HL7AckAuto, HL7AckOriginal, HL7AckEnhanced
	Unsupported    string        // HL7UnsupportedIgnore, HL7UnsupportedQuarantine
}

// HL7TLS is the optional TLS of an HL7 listener. Cert and Key are both set or
// both empty; ClientCA (optional, needs Cert) turns on mutual TLS.
type HL7TLS struct {
	Cert     string // PEM certificate chain file, as written (see Config.Abs)
	Key      Secret // PEM private key of Cert
	ClientCA string // PEM CA certificates file that client certificates must chain to
}

// Enabled reports whether the listener speaks TLS.
func (t HL7TLS) Enabled() bool { return t.Cert != "" || t.Key.IsSet() }

// HL7 listener ack modes and unsupported-message policies.
const (
	HL7AckAuto               = "auto"
	HL7AckOriginal           = "original"
	HL7AckEnhanced           = "enhanced"
	HL7UnsupportedIgnore     = "ignore"
	HL7UnsupportedQuarantine = "quarantine"
)

// Connection is one EHR endpoint of a practice.
type Connection struct {
	Name   string
	Vendor string
	// PracticeID is the vendor's id of the practice, for vendors whose one
	// base URL serves many practices (athenahealth's ah-practice).
	PracticeID string
	BaseURL    string // without a trailing slash
	Auth       Auth
	Timeout    time.Duration
	PageSize   int
	Overlap    time.Duration
	Sync       []SyncPolicy
	// Subscriptions are the FHIR topic-based subscriptions kept on the
	// EHR for the connection's realtime classes.
	Subscriptions []Subscription
	// BulkGroup is the Group whose export nightly classes read (empty: a
	// system-level export).
	BulkGroup string
	// Reconcile is the interval of reconciliation sweeps (0: none).
	Reconcile time.Duration
	// V1BaseURL is athenahealth's v1 API root (without the practice id),
	// for write-back; "" derives it from BaseURL.
	V1BaseURL string
}

// Subscription is one FHIR topic-based subscription (Subscriptions R5
// Backport IG, rest-hook) a connection keeps on the EHR: its notifications
// feed the realtime data classes whose types it lists.
type Subscription struct {
	Topic     string   // SubscriptionTopic canonical URL
	Types     []string // resource types its events carry (read again on catch-up)
	Filters   []string // filter criteria, e.g. "Appointment?patient=Patient/123"
	Payload   string   // SubscriptionPayload* values
	Heartbeat time.Duration
	// HubSecret, when set, is the shared secret of WebSub-style
	// notification signatures (X-Hub-Signature, athenahealth).
	HubSecret Secret
}

// Subscription payload modes: what a notification carries.
const (
	SubscriptionPayloadEmpty        = "empty"
	SubscriptionPayloadIDOnly       = "id-only"
	SubscriptionPayloadFullResource = "full-resource"
)

// Auth is how a connection authenticates to the EHR.
type Auth struct {
	Type       string // "smart-backend" or "none"
	ClientID   string
	PrivateKey Secret
	KeyID      string // empty: the JWK thumbprint of the key
	Algorithm  string // RS384 or ES384
	JKU        string // optional JWKS URL for the JWT header
	TokenURL   string // empty: discovered
	Scopes     []string
}

// SyncPolicy is how one data class is kept fresh on a connection. After
// Parse every field is filled: Mode from the class (or `poll` when only an
// interval was written), Interval the poll or safety-poll interval (for
// `hourly` and `nightly`: their period, 1h or 24h), SLO the freshness
// objective.
type SyncPolicy struct {
	Class    string // current class name ("directory" is read as "reference")
	Mode     dataclass.Mode
	Interval time.Duration
	SLO      time.Duration
	Waiver   Waiver // zero: none
}

// Waiver accepts a sync policy that is staler than its class allows.
type Waiver struct {
	Reason string
}

// Waived reports whether the policy carries a waiver.
func (s SyncPolicy) Waived() bool { return s.Waiver.Reason != "" }

// Period is the longest time between two refreshes of the policy: the
// interval, or the period of an hourly or nightly batch.
func (s SyncPolicy) Period() time.Duration { return s.Mode.Period(s.Interval) }

// App is an API client and the practices its key may read.
type App struct {
	Name      string
	Key       Secret
	Practices []string // practice ids, or the single entry "*"
}

// Auth types.
const (
	AuthSMARTBackend = "smart-backend"
	AuthNone         = "none"
)

// AllPractices is the App.Practices entry that grants every practice.
const AllPractices = "*"

// Allows reports whether the app's key may read the practice.
func (a App) Allows(practiceID string) bool {
	return slices.Contains(a.Practices, AllPractices) || slices.Contains(a.Practices, practiceID)
}

// ResourceTypes returns the FHIR resource types the connection's sync
// classes always read, in class order, each once. Optional types (see
// OptionalResourceTypes) are not included: default scopes do not ask for them.
func (c Connection) ResourceTypes() []string {
	var out []string
	for _, s := range c.Sync {
		cl, ok := dataclass.Lookup(s.Class)
		if !ok {
			continue
		}
		for _, t := range cl.ResourceTypes {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// OptionalResourceTypes returns the optional resource types of the
// connection's sync classes (billing's ChargeItem and Claim), synced only when
// the server lists them and the scopes allow it.
func (c Connection) OptionalResourceTypes() []string {
	var out []string
	for _, s := range c.Sync {
		cl, ok := dataclass.Lookup(s.Class)
		if !ok {
			continue
		}
		for _, t := range cl.OptionalTypes {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// ScopesAllowSearch reports whether the connection's access token may search
// resource type rt: always without authentication; with configured scopes
// when one of them permits it; with the default scopes (see ResourceTypes)
// when rt is one of the types they name.
func (c Connection) ScopesAllowSearch(rt string) bool {
	switch {
	case c.Auth.Type != AuthSMARTBackend:
		return true
	case len(c.Auth.Scopes) == 0:
		return slices.Contains(c.ResourceTypes(), rt)
	}
	return scopesAllowSearch(c.Auth.Scopes, rt)
}

// Practice returns the practice with the given id.
func (c *Config) Practice(id string) (*Practice, bool) {
	for i := range c.Practices {
		if c.Practices[i].ID == id {
			return &c.Practices[i], true
		}
	}
	return nil, false
}

// Abs resolves a path from the configuration (such as Store.Path) against
// BaseDir; absolute paths are returned unchanged.
func (c *Config) Abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.BaseDir, p)
}

// SecretCheck says whether Parse resolves secrets (reads files, looks up
// environment variables) and how it reports the ones it cannot resolve.
type SecretCheck int

const (
	// SecretsUnchecked checks only the shape of secret references.
	SecretsUnchecked SecretCheck = iota
	// SecretsWarn resolves secrets; unresolvable ones are warnings (lint --no-secrets).
	SecretsWarn
	// SecretsRequired resolves secrets; unresolvable ones are errors (Load, lint).
	SecretsRequired
)

// Option changes how Parse works.
type Option func(*options)

type options struct {
	getenv  func(string) string
	secrets SecretCheck
	vendors []string
	baseDir string
	// secretKeyAdvice warns about apps without store.secret_key.
	secretKeyAdvice bool
}

// WithEnv sets the environment lookup used to resolve `env:` secrets
// (default os.Getenv).
func WithEnv(getenv func(string) string) Option {
	return func(o *options) {
		if getenv != nil {
			o.getenv = getenv
		}
	}
}

// WithSecretCheck sets whether and how secrets are resolved (default SecretsUnchecked).
func WithSecretCheck(c SecretCheck) Option { return func(o *options) { o.secrets = c } }

// WithVendors replaces the list of vendor names a connection may name
// (default DefaultVendors()).
func WithVendors(names ...string) Option {
	return func(o *options) { o.vendors = slices.Clone(names) }
}

// WithBaseDir sets the directory relative paths are resolved against
// (default: the directory of the file name given to Parse).
func WithBaseDir(dir string) Option { return func(o *options) { o.baseDir = dir } }

// DefaultVendors returns the vendor names known when no WithVendors option is
// given: the profiles registered in internal/vendors.
func DefaultVendors() []string { return vendors.Names() }

// Parse decodes and validates a configuration. filename is used in
// diagnostics and to resolve relative paths. When any error is found the
// result is nil and the error is a Diagnostics holding every error and
// warning; otherwise the warnings are in Config.Warnings.
func Parse(filename string, data []byte, opts ...Option) (*Config, error) {
	o := options{getenv: os.Getenv, vendors: DefaultVendors(), baseDir: filepath.Dir(filename)}
	for _, opt := range opts {
		opt(&o)
	}
	p := newParser(filename, o)
	cfg := &Config{File: filename, BaseDir: o.baseDir}
	p.decodeFile(data, cfg)
	if !p.fatal {
		p.validate(cfg)
		if o.secrets != SecretsUnchecked {
			p.checkSecrets(cfg)
		}
	}
	p.diags.Sort()
	if p.diags.HasErrors() {
		return nil, p.diags
	}
	cfg.Warnings = p.diags
	return cfg, nil
}

// Load reads the file at path and parses it, resolving every secret: a secret
// that cannot be read is an error. getenv looks up `env:` secrets (nil means
// os.Getenv).
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Diagnostics{{File: path, Severity: SeverityError,
			Message: fmt.Sprintf("cannot read the file: %v", unwrapPathError(err)),
			Hint:    "check the path and the file's permissions"}}
	}
	return Parse(path, data, WithEnv(getenv), WithSecretCheck(SecretsRequired))
}

// unwrapPathError drops the path from an *os.PathError, since diagnostics
// already name the file.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
