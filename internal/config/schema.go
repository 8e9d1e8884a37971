package config

import (
	"regexp"
	"time"

	"github.com/mediflow/mediflow/internal/dataclass"
)

// This file is the one definition of the configuration's keys. The decoder
// (decode.go) walks these tables, and docs/configuration.md is generated from
// them (reference.go). Rules that involve more than one key live in
// validate.go; each object's notes describe them for the docs.

// kind is the type of a key's value.
type kind int

const (
	kindString     kind = iota
	kindInt             // whole number within [min, max]
	kindDuration        // Go duration within [minDur, maxDur]
	kindURL             // absolute http(s) URL
	kindAddr            // host:port
	kindSecret          // a Secret: {file|env|value: ...}
	kindStringList      // list of strings, at least min items
	kindObject          // mapping described by obj
	kindObjectList      // list of mappings described by obj, at least min items
	kindBool            // true or false
)

// cond makes a key apply only when a sibling key (earlier in the table) has a
// given value: it is then required or defaulted, and ignored (with a warning)
// otherwise.
type cond struct{ key, value string }

// field is one key of an object.
type field struct {
	key      string
	kind     kind
	doc      string
	noun     string // names the value (or each list item) in messages; default: key
	required bool
	def      string // default, written as it would be in YAML
	defDoc   string // default described in words, when it is not a literal
	when     *cond
	// enum lists the allowed values of a string (or of each list item).
	enum func(o *options) []string
	// aliases maps deprecated values of a string to the current ones: they
	// are accepted, replaced and warned about.
	aliases    func() map[string]string
	pattern    *regexp.Regexp
	patternDoc string
	min, max   int
	minDur     time.Duration
	maxDur     time.Duration
	obj        *object
	// optional marks an object that may be left out entirely: it is then its
	// zero value, and its required keys are not asked for.
	optional bool
	// at returns a pointer to the key's value inside the parent struct (for
	// kindObjectList: appends a zero element and returns a pointer to it).
	at func(parent any) any
}

// object is a mapping: a name for messages, a path for the docs, its keys.
type object struct {
	name   string
	path   string
	doc    string
	notes  []string
	fields []*field
}

// ref adapts a typed accessor to field.at.
func ref[P any](f func(*P) any) func(any) any {
	return func(p any) any { return f(p.(*P)) }
}

// appendTo adapts a slice accessor to field.at for kindObjectList.
func appendTo[P, E any](f func(*P) *[]E) func(any) any {
	return func(p any) any {
		s := f(p.(*P))
		*s = append(*s, *new(E))
		return &(*s)[len(*s)-1]
	}
}

func values(v ...string) func(*options) []string { return func(*options) []string { return v } }

var (
	idPattern      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)
	idPatternDoc   = "lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 64 characters"
	scopePattern   = regexp.MustCompile(`^system/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(\?\S+)?$`)
	scopeDoc       = "a SMART system scope: `system/<Type or *>.<read|write|*>` (v1) or `system/<Type or *>.<cruds subset>` (v2)"
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

var secretObject = &object{
	name: "secret",
	path: "Secret",
	doc: "A secret is written as a mapping with exactly one key. Keep secrets out of the file: " +
		"prefer `file` or `env`; an inline `value` makes lint warn.",
	fields: []*field{
		{key: "file", kind: kindString, doc: "Path of a file holding the secret; relative paths are resolved from the config file's directory. Trailing line breaks are ignored.",
			at: ref(func(s *Secret) any { return &s.File })},
		{key: "env", noun: "environment variable name", kind: kindString, doc: "Name of an environment variable holding the secret.",
			pattern: envNamePattern, patternDoc: "an environment variable name: letters, digits and `_`, not starting with a digit",
			at: ref(func(s *Secret) any { return &s.Env })},
		{key: "value", kind: kindString, doc: "The secret itself, in the file. Discouraged: lint warns.",
			at: ref(func(s *Secret) any { return &s.Value })},
	},
}

var serverObject = &object{
	name: "server",
	path: "server",
	doc:  "The HTTP listener for the app-facing API, the status page, `/healthz`, `/readyz` and `/metrics`.",
	notes: []string{
		"A `listen` host that is not a loopback address (or an empty host, meaning every interface) is a warning: put TLS and a firewall in front first.",
	},
	fields: []*field{
		{key: "listen", kind: kindAddr, def: "127.0.0.1:8080",
			doc: "Address to listen on, as `host:port`. Port 0 picks a free port.",
			at:  ref(func(s *Server) any { return &s.Listen })},
		{key: "public_url", kind: kindURL,
			doc: "The URL applications use to reach this server, when it differs from `listen` (behind a proxy). Used in links mediflow returns, such as Bundle paging links.",
			at:  ref(func(s *Server) any { return &s.PublicURL })},
	},
}

var storeObject = &object{
	name: "store",
	path: "store",
	doc:  "Where mediflow keeps raw payloads, canonical resources, sync cursors, run records and audit events.",
	fields: []*field{
		{key: "driver", kind: kindString, def: "sqlite", enum: values("sqlite", "postgres"),
			doc: "Storage engine. `sqlite` is embedded and needs nothing else; `postgres` is accepted here but not yet available in the engine.",
			at:  ref(func(s *Store) any { return &s.Driver })},
		{key: "path", kind: kindString, def: "./data/mediflow.db", when: &cond{"driver", "sqlite"},
			doc: "SQLite database file, relative to the config file's directory unless absolute.",
			at:  ref(func(s *Store) any { return &s.Path })},
		{key: "dsn", kind: kindSecret, required: true, when: &cond{"driver", "postgres"},
			doc: "PostgreSQL connection string, a secret.",
			at:  ref(func(s *Store) any { return &s.DSN })},
		{key: "secret_key", kind: kindSecret,
			doc: "Key that seals the secrets the store keeps (each webhook's signing secret, AES-256-GCM), a secret: 32 random bytes written as " +
				"64 hex characters or as base64 (standard or URL-safe, padded or not), e.g. from `openssl rand -hex 32`. " +
				"Without it apps cannot register webhooks (the webhook endpoints answer 501). Changing or losing it makes the stored webhook secrets " +
				"unusable: each webhook then needs a new one (rotate it). See [docs/delivery.md](delivery.md).",
			at: ref(func(s *Store) any { return &s.SecretKey })},
	},
}

var logObject = &object{
	name: "log",
	path: "log",
	doc:  "The process log (standard error). Names, birth dates, identifiers, addresses and phone numbers are redacted at every level.",
	fields: []*field{
		{key: "level", kind: kindString, def: "info", enum: values("debug", "info", "warn", "error"),
			doc: "Lowest level written.",
			at:  ref(func(l *Log) any { return &l.Level })},
		{key: "format", kind: kindString, def: "json", enum: values("json", "text"),
			doc: "Output format: one JSON object per line, or key=value text for humans.",
			at:  ref(func(l *Log) any { return &l.Format })},
	},
}

var authObject = &object{
	name: "auth",
	path: "practices[].connections[].auth",
	doc:  "How mediflow authenticates to the EHR. `smart-backend` is SMART Backend Services: a JWT client assertion signed with your private key, exchanged for a short-lived access token.",
	notes: []string{
		"When the private key is resolved (lint without `--no-secrets`, and at start-up), it must be a PEM private key matching `algorithm`: RSA of at least 2048 bits for RS384, ECDSA P-384 for ES384.",
		"When `scopes` is given, every resource type of the connection's sync classes must be readable under it (warning otherwise).",
		"`type: none` with a `base_url` that is not on loopback is a warning: that is only for local testing.",
	},
	fields: []*field{
		{key: "type", kind: kindString, required: true, enum: values(AuthSMARTBackend, AuthNone),
			doc: "`smart-backend`, or `none` for an unauthenticated endpoint such as a local simulator.",
			at:  ref(func(a *Auth) any { return &a.Type })},
		{key: "client_id", kind: kindString, required: true, when: &cond{"type", AuthSMARTBackend},
			doc: "The client id the EHR assigned when you registered your public key (JWKS).",
			at:  ref(func(a *Auth) any { return &a.ClientID })},
		{key: "private_key", kind: kindSecret, required: true, when: &cond{"type", AuthSMARTBackend},
			doc: "PEM private key that signs the client assertion, a secret. `mediflow keys new` writes one with its public JWKS.",
			at:  ref(func(a *Auth) any { return &a.PrivateKey })},
		{key: "key_id", kind: kindString, when: &cond{"type", AuthSMARTBackend}, defDoc: "the key's JWK thumbprint",
			doc: "`kid` sent in the JWT header; must match the `kid` in the JWKS you registered.",
			at:  ref(func(a *Auth) any { return &a.KeyID })},
		{key: "algorithm", kind: kindString, def: "RS384", when: &cond{"type", AuthSMARTBackend}, enum: values("RS384", "ES384"),
			doc: "Signature algorithm of the client assertion.",
			at:  ref(func(a *Auth) any { return &a.Algorithm })},
		{key: "jku", kind: kindURL, when: &cond{"type", AuthSMARTBackend},
			doc: "URL of your JWKS, sent as `jku` in the JWT header. Some EHRs require it; it must equal the JWKS URL you registered.",
			at:  ref(func(a *Auth) any { return &a.JKU })},
		{key: "token_url", kind: kindURL, when: &cond{"type", AuthSMARTBackend}, defDoc: "discovered",
			doc: "Token endpoint. When empty it is discovered from `.well-known/smart-configuration` (or the CapabilityStatement).",
			at:  ref(func(a *Auth) any { return &a.TokenURL })},
		{key: "scopes", noun: "scope", kind: kindStringList, when: &cond{"type", AuthSMARTBackend}, pattern: scopePattern, patternDoc: scopeDoc,
			defDoc: "read scopes for the sync classes' resource types, in the vendor's scope syntax, and with write-back on (first connection) `crus` scopes for the types it writes",
			doc:    "Scopes to request, v1 (`system/Patient.read`) or v2 (`system/Patient.rs`) syntax.",
			at:     ref(func(a *Auth) any { return &a.Scopes })},
	},
}

var waiverObject = &object{
	name: "waiver",
	path: "practices[].connections[].sync[].waiver",
	doc: "An explicit acceptance of stale data for one sync entry. Without it, lint and the engine refuse " +
		"`hourly` or `nightly` for operational data (clinical, scheduling, insurance, billing) and any refresh " +
		"slower than the class's maximum interval. With it they accept the entry, and lint prints the reason " +
		"as a warning every time, so the decision stays visible.",
	fields: []*field{
		{key: "reason", kind: kindString, required: true,
			doc: "Why stale data is acceptable for this practice and class, in words a reviewer can check, e.g. `analytics copy only; the scheduling app reads the EHR directly`.",
			at:  ref(func(w *Waiver) any { return &w.Reason })},
	},
}

var syncObject = &object{
	name: "sync entry",
	path: "practices[].connections[].sync[]",
	doc: "One data class and how it is kept fresh. See [Data classes](#data-classes) for the classes, their default " +
		"policies and maximum intervals, and [docs/sync.md](sync.md) for what each mode does.",
	notes: []string{
		"A class may appear once per connection.",
		"An entry with `interval` and no `mode` polls (the meaning it had before modes existed).",
		"`hourly` or `nightly` for an operational class (clinical, scheduling, insurance, billing) is an error without a `waiver`: " + dataclass.StaleReason + ".",
		"A refresh period longer than the class's maximum interval (a poll or safety-poll `interval`, or the 1h/24h of `hourly`/`nightly`) is an error without a `waiver`.",
		"With a `waiver`, both are accepted and reported as warnings that quote the reason; a waiver that is not needed is a warning too.",
		"`interval` is ignored (with a warning) for `hourly` and `nightly`.",
		"For `poll`, `hourly` and `nightly`, `slo` may not be shorter than the refresh period: such an objective can never be met.",
		"The deprecated class name `directory` is read as `reference`, with a warning.",
	},
	fields: []*field{
		{key: "class", kind: kindString, required: true, enum: func(*options) []string { return dataclass.Names() },
			aliases: dataclass.Aliases,
			doc:     "Data class name.",
			at:      ref(func(s *SyncPolicy) any { return &s.Class })},
		{key: "mode", kind: kindString, enum: func(*options) []string { return dataclass.ModeNames() },
			defDoc: "the class's default mode; `poll` when `interval` is given",
			doc: "How the class is kept fresh: `realtime` (pushed by a FHIR Subscription, vendor webhook or HL7 v2 feed, with a safety poll every `interval`), " +
				"`poll` (an incremental search every `interval`), `hourly`, or `nightly` (Bulk Data export with `_since`).",
			at: ref(func(s *SyncPolicy) any { return (*string)(&s.Mode) })},
		{key: "interval", kind: kindDuration, minDur: time.Second, defDoc: "the class's default interval",
			doc: "Time between polls (`poll`), or between safety polls (`realtime`); at most the class's maximum interval.",
			at:  ref(func(s *SyncPolicy) any { return &s.Interval })},
		{key: "slo", kind: kindDuration, minDur: time.Second, maxDur: 30 * 24 * time.Hour,
			defDoc: "the class's default objective, or twice the refresh period when that is longer (not for `realtime`)",
			doc:    "Freshness objective: the longest time from a change in the EHR to the moment it can be read through mediflow. Freshness is measured against it.",
			at:     ref(func(s *SyncPolicy) any { return &s.SLO })},
		{key: "waiver", kind: kindObject, obj: waiverObject, optional: true,
			doc: "Accepts a policy that would otherwise be refused as too stale; see below.",
			at:  ref(func(s *SyncPolicy) any { return &s.Waiver })},
	},
}

var subscriptionObject = &object{
	name: "subscription",
	path: "practices[].connections[].subscriptions[]",
	doc: "A FHIR topic-based subscription (Subscriptions R5 Backport IG over rest-hook) that mediflow creates on the EHR " +
		"and keeps: the EHR posts a notification for each change, mediflow stores it raw, answers at once, and then reads " +
		"or takes the changed resources. Lost notifications and heartbeats are detected and recovered ($events, $status, " +
		"or a catch-up poll); see [docs/sync.md](sync.md).",
	notes: []string{
		"The EHR must reach mediflow: notifications go to `server.public_url` + `/hooks/fhir/{practice}/{connection}/{n}` (n counts the connection's subscriptions from 1); without `public_url` the listen address is used, which only a local EHR or the simulator can reach.",
		"The connection's scopes must allow creating, reading and deleting Subscription (e.g. `system/Subscription.crds`) as well as reading the listed types.",
		"A realtime class whose types no subscription lists is kept fresh by its safety poll alone (a warning).",
	},
	fields: []*field{
		{key: "topic", kind: kindURL, required: true,
			doc: "Canonical URL of the SubscriptionTopic the EHR offers, e.g. `http://mediflow.dev/topic/appointment-change` on the simulator.",
			at:  ref(func(s *Subscription) any { return &s.Topic })},
		{key: "types", noun: "resource type", kind: kindStringList, required: true, min: 1,
			pattern: regexp.MustCompile(`^[A-Z][A-Za-z]+$`), patternDoc: "a FHIR resource type name",
			doc: "Resource types the topic's events carry; polled again when notifications were lost and cannot be recovered.",
			at:  ref(func(s *Subscription) any { return &s.Types })},
		{key: "filters", noun: "filter", kind: kindStringList,
			doc: "Filter criteria the EHR applies, as `Type?param=value`.",
			at:  ref(func(s *Subscription) any { return &s.Filters })},
		{key: "payload", kind: kindString, def: SubscriptionPayloadIDOnly,
			enum: values(SubscriptionPayloadEmpty, SubscriptionPayloadIDOnly, SubscriptionPayloadFullResource),
			doc:  "What a notification carries: `full-resource` (the changed resource), `id-only` (mediflow reads it), or `empty` (mediflow polls).",
			at:   ref(func(s *Subscription) any { return &s.Payload })},
		{key: "heartbeat", kind: kindDuration, def: "1m", minDur: time.Second, maxDur: 24 * time.Hour,
			doc: "Heartbeat period asked of the EHR; a heartbeat missing for longer makes mediflow ask the EHR what it missed.",
			at:  ref(func(s *Subscription) any { return &s.Heartbeat })},
		{key: "hub_secret", kind: kindSecret,
			doc: "Shared secret that signs notifications (athenahealth signs this way), a secret. mediflow gives it to the EHR " +
				"once, in the `X-Hub-Secret` header of the Subscription create, and then accepts only notifications whose " +
				"`X-Hub-Signature: sha256=…` is the HMAC-SHA256 of the body under it (401 otherwise, nothing stored). " +
				"Use a long random value, e.g. `openssl rand -hex 32`; see [docs/sync.md](sync.md).",
			at: ref(func(s *Subscription) any { return &s.HubSecret })},
	},
}

var connectionObject = &object{
	name: "connection",
	path: "practices[].connections[]",
	doc:  "One EHR endpoint of a practice.",
	notes: []string{
		"Connection names are unique within a practice.",
		"A plain `http` URL to a host that is not on loopback is a warning: tokens and patient data would travel unencrypted.",
	},
	fields: []*field{
		{key: "name", noun: "connection name", kind: kindString, required: true, pattern: idPattern, patternDoc: idPatternDoc,
			doc: "Connection name, unique within the practice; used in logs, metrics and the API.",
			at:  ref(func(c *Connection) any { return &c.Name })},
		{key: "vendor", kind: kindString, required: true, enum: func(o *options) []string { return o.vendors },
			doc: "EHR vendor profile: its error codes, paging limits and quirks. `generic` is plain FHIR R4.",
			at:  ref(func(c *Connection) any { return &c.Vendor })},
		{key: "practice_id", kind: kindString, required: true, when: &cond{"vendor", "athenahealth"},
			pattern: regexp.MustCompile(`^[0-9]{1,12}$`), patternDoc: "digits",
			doc: "athenahealth only: the practice's athenahealth id; every search carries it as `ah-practice=Organization/a-1.Practice-{id}`.",
			at:  ref(func(c *Connection) any { return &c.PracticeID })},
		{key: "base_url", kind: kindURL, required: true,
			doc: "FHIR R4 base URL (the one that serves `/metadata`).",
			at:  ref(func(c *Connection) any { return &c.BaseURL })},
		{key: "v1_base_url", kind: kindURL, when: &cond{"vendor", "athenahealth"},
			defDoc: "`base_url` with its `/fhir/…` path replaced by `/v1`",
			doc: "athenahealth only: the root of athenahealth's v1 API, without the practice id (e.g. `https://api.platform.athenahealth.com/v1`). " +
				"Write-back books, reschedules and cancels appointments through it, with the connection's token; see [docs/writeback.md](writeback.md#vendor-rest-channel-athenahealth).",
			at: ref(func(c *Connection) any { return &c.V1BaseURL })},
		{key: "auth", kind: kindObject, required: true, obj: authObject,
			doc: "Authentication; see below.",
			at:  ref(func(c *Connection) any { return &c.Auth })},
		{key: "timeout", kind: kindDuration, def: "30s", minDur: time.Second, maxDur: 10 * time.Minute,
			doc: "Timeout of one HTTP request to the EHR, including reading the response.",
			at:  ref(func(c *Connection) any { return &c.Timeout })},
		{key: "page_size", kind: kindInt, def: "100", min: 1, max: 1000,
			doc: "`_count` asked for on searches; servers may return fewer.",
			at:  ref(func(c *Connection) any { return &c.PageSize })},
		{key: "overlap", kind: kindDuration, def: "2m", maxDur: 24 * time.Hour,
			doc: "How far before the last watermark each incremental `_lastUpdated` search starts, to catch late commits on the EHR side. Re-fetched resources are recognised and counted as unchanged.",
			at:  ref(func(c *Connection) any { return &c.Overlap })},
		{key: "sync", kind: kindObjectList, required: true, min: 1, obj: syncObject,
			doc: "The data classes to sync, each with its policy.",
			at:  appendTo(func(c *Connection) *[]SyncPolicy { return &c.Sync })},
		{key: "bulk_group", kind: kindString, pattern: regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`), patternDoc: "a FHIR id",
			defDoc: "none: a system-level export",
			doc:    "Group id whose Bulk Data export (`Group/{id}/$export`) the `nightly` classes read. Epic and Oracle Health export Groups only, so they need it; other servers also offer a system-level export (`$export`).",
			at:     ref(func(c *Connection) any { return &c.BulkGroup })},
		{key: "reconcile", kind: kindDuration, def: "24h", maxDur: 30 * 24 * time.Hour,
			doc: "Interval of reconciliation sweeps: every resource of the polled classes is read again, changes the incremental searches missed are stored, and records gone at the EHR become tombstones. `0s` turns sweeps off.",
			at:  ref(func(c *Connection) any { return &c.Reconcile })},
		{key: "subscriptions", kind: kindObjectList, obj: subscriptionObject,
			doc: "FHIR Subscriptions that push changes of the realtime classes; see below.",
			at:  appendTo(func(c *Connection) *[]Subscription { return &c.Subscriptions })},
	},
}

var hl7TLSObject = &object{
	name: "tls",
	path: "practices[].hl7_listeners[].tls",
	doc: "TLS for an HL7 listener. Without this mapping the listener speaks plain MLLP over TCP. " +
		"With `client_ca`, every client must present a certificate signed by one of its CAs (mutual TLS).",
	notes: []string{
		"`cert` and `key` are given together; `client_ca` needs them.",
		"When secrets are resolved (lint without `--no-secrets`, and at start-up), `cert` and `key` must be a matching PEM certificate and private key, and `client_ca` must hold at least one PEM certificate.",
	},
	fields: []*field{
		{key: "cert", kind: kindString,
			doc: "PEM file with the listener's certificate (and any intermediates), relative to the config file's directory unless absolute.",
			at:  ref(func(t *HL7TLS) any { return &t.Cert })},
		{key: "key", kind: kindSecret,
			doc: "PEM private key of `cert`, a secret.",
			at:  ref(func(t *HL7TLS) any { return &t.Key })},
		{key: "client_ca", kind: kindString,
			doc: "PEM file with the CA certificates client certificates must chain to; set it to require client certificates (mutual TLS).",
			at:  ref(func(t *HL7TLS) any { return &t.ClientCA })},
	},
}

var hl7ListenerObject = &object{
	name: "HL7 listener",
	path: "practices[].hl7_listeners[]",
	doc: "An MLLP listener that receives HL7 v2 messages (ADT, SIU, ORU, MDM, ...) for the practice. Each message is " +
		"stored before it is acknowledged (commit-then-ACK), then converted to FHIR resources in the practice's store. " +
		"See [docs/hl7v2.md](hl7v2.md).",
	notes: []string{
		"Listener names are unique within a practice and differ from its connection names (both name the source of stored resources).",
		"Two listeners may not share a `listen` address (port 0 excepted), nor use `server.listen`'s.",
		"A `listen` host that is not a loopback address is a warning when the listener has no `tls`: HL7 messages carry patient data.",
	},
	fields: []*field{
		{key: "name", noun: "listener name", kind: kindString, required: true, pattern: idPattern, patternDoc: idPatternDoc,
			doc: "Listener name, unique within the practice; stored with every message as its channel and used in logs, metrics and `mediflow hl7 messages`.",
			at:  ref(func(l *HL7Listener) any { return &l.Name })},
		{key: "listen", kind: kindAddr, def: "127.0.0.1:2575",
			doc: "Address to listen on, as `host:port`. Port 0 picks a free port.",
			at:  ref(func(l *HL7Listener) any { return &l.Listen })},
		{key: "tls", kind: kindObject, obj: hl7TLSObject,
			doc: "Optional TLS and mutual TLS; see below.",
			at:  ref(func(l *HL7Listener) any { return &l.TLS })},
		{key: "max_message_size", kind: kindInt, def: "1048576", min: 1024, max: 64 << 20,
			doc: "Largest message accepted, in bytes; a larger frame closes the connection without an ACK.",
			at:  ref(func(l *HL7Listener) any { return &l.MaxMessageSize })},
		{key: "max_connections", kind: kindInt, def: "64", min: 1, max: 4096,
			doc: "Connections served at once; one beyond the limit is closed as soon as it is accepted. With `max_message_size` it bounds the memory a flooding sender can take.",
			at:  ref(func(l *HL7Listener) any { return &l.MaxConnections })},
		{key: "idle_timeout", kind: kindDuration, def: "5m", minDur: time.Second, maxDur: 24 * time.Hour,
			doc: "Close a connection that sent nothing for this long.",
			at:  ref(func(l *HL7Listener) any { return &l.IdleTimeout })},
		{key: "dedup_window", kind: kindDuration, def: "24h", maxDur: 30 * 24 * time.Hour,
			doc: "A message with the same sending application, sending facility and control id (MSH-10) as one received on this listener within this window is a duplicate: it is acknowledged again with the original's code and not processed again. `0s` turns de-duplication off.",
			at:  ref(func(l *HL7Listener) any { return &l.DedupWindow })},
		{key: "ack_mode", kind: kindString, def: HL7AckAuto, enum: values(HL7AckAuto, HL7AckOriginal, HL7AckEnhanced),
			doc: "Acknowledgment mode. `auto` follows each message: enhanced mode (commit ACK `CA`/`CE`) when MSH-15 or MSH-16 is valued, original mode (`AA`/`AE`) otherwise; `original` and `enhanced` force one.",
			at:  ref(func(l *HL7Listener) any { return &l.AckMode })},
		{key: "unsupported", kind: kindString, def: HL7UnsupportedIgnore, enum: values(HL7UnsupportedIgnore, HL7UnsupportedQuarantine),
			doc: "What happens to a message type or trigger event mediflow has no conversion for: `ignore` marks it ignored (it stays stored and can be replayed), `quarantine` puts it in quarantine.",
			at:  ref(func(l *HL7Listener) any { return &l.Unsupported })},
	},
}

var mappingObject = &object{
	name: "mapping",
	path: "practices[].mapping",
	doc: "How the practice's data is mapped to mediflow's canonical FHIR model (see [docs/mapping.md](mapping.md)). " +
		"Each connection is mapped with the shipped profile of its `vendor`; HL7 v2 listeners with the profile of the " +
		"practice's first connection, or `generic` without one. Without this mapping the shipped profiles run with their defaults.",
	notes: []string{
		"`time_zone` must be a name of the IANA time zone database, such as `America/Chicago`.",
		"When files are checked (lint without `--no-secrets`, and at start-up), `overrides` must exist: a YAML file, or a folder holding `overrides.yaml` and optionally `conceptmaps/`. The engine refuses to start when the overrides do not load; each problem names its file and line.",
	},
	fields: []*field{
		{key: "enabled", kind: kindBool, def: "true",
			doc: "Map the practice's resources to the canonical model. With `false` they are stored as the EHR sent them.",
			at:  ref(func(m *Mapping) any { return &m.Enabled })},
		{key: "vendor_version", kind: kindString, defDoc: "the newest release the profile knows",
			doc: "The EHR's software version (`May 2026`, `5.0.1.698`): rules that apply only to some releases are chosen by it.",
			at:  ref(func(m *Mapping) any { return &m.VendorVersion })},
		{key: "overrides", kind: kindString,
			doc: "The practice's own mapping rules, relative to the config file's directory unless absolute: a YAML file in the profile format, or a folder with `overrides.yaml` and `conceptmaps/` (FHIR ConceptMap JSON), the layout `mediflow mapping test` reads.",
			at:  ref(func(m *Mapping) any { return &m.Overrides })},
		{key: "time_zone", kind: kindString, defDoc: "the profile's `timeZone` parameter, else UTC",
			doc: "The practice's time zone, to which the `datetime` and `date` transforms normalise times.",
			at:  ref(func(m *Mapping) any { return &m.TimeZone })},
	},
}

var writebackObject = &object{
	name: "writeback",
	path: "practices[].writeback",
	doc: "Write-back: apps submit intents (a note, a booking, a problem) through the API and mediflow writes them to the practice's EHR " +
		"exactly once, through the practice's first connection, as its vendor's write contract allows (see [docs/writeback.md](writeback.md)).",
	notes: []string{
		"Write-back needs a connection: a practice with `enabled: true` and no `connections` is refused.",
		"With write-back on and no `auth.scopes` given, the first connection's default scopes add `system/<Type>.crus` for every resource type the vendor's write contract writes; with `auth.scopes` given, include them yourself.",
	},
	fields: []*field{
		{key: "enabled", kind: kindBool, def: "false",
			doc: "Accept write intents for the practice and write them to its EHR. With `false` the intent endpoints answer 501 for it.",
			at:  ref(func(w *Writeback) any { return &w.Enabled })},
		{key: "lease", kind: kindDuration, def: "2m", minDur: 5 * time.Second, maxDur: time.Hour,
			doc: "How long the engine holds an intent while writing it; one attempt is cut at three quarters of it (and retried later, looking for the record first). After a crash the intents it held, and the later ones of the same patients, resume when it runs out. The engine uses the smallest lease of its practices.",
			at:  ref(func(w *Writeback) any { return &w.Lease })},
		{key: "concurrency", kind: kindInt, def: "8", min: 1, max: 64,
			doc: "How many intents are written to the practice's EHR at once (one request each in flight: a write, its search or its read-back); a patient never has more than one. Practices whose first connections share a `base_url` share one EHR and the smallest of their values. Raise it only as far as the EHR allows: its rate limits still apply (a 429 is retried after its `Retry-After`). The engine writes at most 32 intents at once over all practices, or the largest `concurrency` when higher.",
			at:  ref(func(w *Writeback) any { return &w.Concurrency })},
		{key: "hl7", kind: kindObject, obj: writebackHL7Object, optional: true,
			doc: "The practice's HL7 v2 interface for write-back; see below. Without it, intents the vendor's FHIR API does not take are refused.",
			at:  ref(func(w *Writeback) any { return &w.HL7 })},
	},
}

var writebackHL7Object = &object{
	name: "writeback HL7 destination",
	path: "practices[].writeback.hl7",
	doc: "An MLLP receiver at the EHR (its HL7 v2 interface engine) for the intents the vendor's write contract cannot take over FHIR: " +
		"notes as MDM^T02, bookings as SIU^S12, reschedules as SIU^S13, cancellations as SIU^S15, charges as DFT^P03. Each message is stored before it is sent, " +
		"carries the same 20-character control id (MSH-10), derived from the intent id, on every resend, and the receiver's ACK confirms (AA) or rejects (AE/AR) the intent " +
		"(see [docs/writeback.md](writeback.md#hl7-v2-channel)).",
	notes: []string{
		"Messages to the destination are sent one at a time, in order; one without an ACK holds the ones behind it until it is acknowledged or, with `max_rounds`, given up.",
	},
	fields: []*field{
		{key: "destination", kind: kindAddr, required: true,
			doc: "The receiver's address, as `host:port`.",
			at:  ref(func(h *WritebackHL7) any { return &h.Destination })},
		{key: "ack_timeout", kind: kindDuration, def: "30s", minDur: 100 * time.Millisecond, maxDur: 10 * time.Minute,
			doc: "How long one attempt waits for the receiver's ACK before it counts as failed.",
			at:  ref(func(h *WritebackHL7) any { return &h.AckTimeout })},
		{key: "max_rounds", kind: kindInt, def: "0", min: 0, max: 1000,
			doc: "Failed delivery rounds (3 attempts each, then a pause that grows from 10s to 5m) after which a message is given up and its intent is dead. `0` never gives up: the destination holds its queue until the receiver answers.",
			at:  ref(func(h *WritebackHL7) any { return &h.MaxRounds })},
	},
}

var practiceObject = &object{
	name:  "practice",
	path:  "practices[]",
	doc:   "A practice is a tenant: its data is stored and served apart from every other practice's.",
	notes: []string{"Practice ids are unique.", "A practice has at least one connection or one HL7 listener."},
	fields: []*field{
		{key: "id", noun: "practice id", kind: kindString, required: true, pattern: idPattern, patternDoc: idPatternDoc,
			doc: "Practice id, unique; used in API paths (`/fhir/{id}/…`) and must not change once data is stored.",
			at:  ref(func(p *Practice) any { return &p.ID })},
		{key: "name", kind: kindString, required: true,
			doc: "Display name.",
			at:  ref(func(p *Practice) any { return &p.Name })},
		{key: "connections", kind: kindObjectList, obj: connectionObject,
			doc: "The practice's EHR endpoints (FHIR R4), polled for changes.",
			at:  appendTo(func(p *Practice) *[]Connection { return &p.Connections })},
		{key: "hl7_listeners", kind: kindObjectList, obj: hl7ListenerObject,
			doc: "MLLP listeners that receive the practice's HL7 v2 messages.",
			at:  appendTo(func(p *Practice) *[]HL7Listener { return &p.HL7Listeners })},
		{key: "mapping", kind: kindObject, obj: mappingObject,
			doc: "Data mapping to the canonical model; see below.",
			at:  ref(func(p *Practice) any { return &p.Mapping })},
		{key: "writeback", kind: kindObject, obj: writebackObject,
			doc: "Writing to the practice's EHR; see below.",
			at:  ref(func(p *Practice) any { return &p.Writeback })},
	},
}

var appObject = &object{
	name: "app",
	path: "apps[]",
	doc:  "An application that reads the API, with its key and the practices it may see.",
	notes: []string{
		"App names are unique.",
		"Every entry of `practices` names a configured practice, or is the single entry `*`.",
		"When secrets are resolved, `key` must be at least 32 characters and differ from every other app's key.",
	},
	fields: []*field{
		{key: "name", noun: "app name", kind: kindString, required: true, pattern: idPattern, patternDoc: idPatternDoc,
			doc: "App name, unique; recorded in audit events.",
			at:  ref(func(a *App) any { return &a.Name })},
		{key: "key", kind: kindSecret, required: true,
			doc: "API key the app sends as `Authorization: Bearer <key>`, a secret of at least 32 characters.",
			at:  ref(func(a *App) any { return &a.Key })},
		{key: "practices", noun: "practice", kind: kindStringList, required: true, min: 1,
			doc: "Practice ids the app may read, or `[\"*\"]` for all.",
			at:  ref(func(a *App) any { return &a.Practices })},
	},
}

var rootObject = &object{
	name: "the top level",
	path: "",
	notes: []string{
		"A file without practices, or without apps, is valid but gets a warning: nothing would be synced or served.",
	},
	fields: []*field{
		{key: "server", kind: kindObject, obj: serverObject, doc: "HTTP listener.",
			at: ref(func(c *Config) any { return &c.Server })},
		{key: "store", kind: kindObject, obj: storeObject, doc: "Storage.",
			at: ref(func(c *Config) any { return &c.Store })},
		{key: "log", kind: kindObject, obj: logObject, doc: "Logging.",
			at: ref(func(c *Config) any { return &c.Log })},
		{key: "practices", kind: kindObjectList, obj: practiceObject, doc: "The practices (tenants) and their EHR connections.",
			at: appendTo(func(c *Config) *[]Practice { return &c.Practices })},
		{key: "apps", kind: kindObjectList, obj: appObject, doc: "API clients.",
			at: appendTo(func(c *Config) *[]App { return &c.Apps })},
	},
}

// objects lists every object in the order the reference documents them.
func objects() []*object {
	return []*object{rootObject, serverObject, storeObject, logObject, practiceObject,
		connectionObject, authObject, syncObject, waiverObject, subscriptionObject, hl7ListenerObject, hl7TLSObject, mappingObject, writebackObject, writebackHL7Object, appObject}
}
