package hl7in

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
)

// Store is what the pipeline needs of the store: the message store for the
// raw messages and their state, the resource store for what they become.
type Store interface {
	store.MessageStore
	store.ResourceStore
}

// Converter turns a parsed message into FHIR resources. *v2fhir.Converter is
// the one the engine uses; tests may wrap it.
type Converter interface {
	Convert(m *hl7.Message) (*v2fhir.Result, error)
}

// Mapper turns a converted resource into mediflow's canonical model
// (package mapping, wired by the engine); channel is the listener's name.
// An error means the resource cannot be mapped: the message is quarantined
// with the error as its reason. Errors must not quote the resource's values.
type Mapper interface {
	Map(ctx context.Context, practice, channel, resourceType string, body []byte) ([]byte, error)
}

// Acknowledgment modes of a listener (config ack_mode).
const (
	AckAuto     = "auto"     // enhanced when MSH-15 or MSH-16 is valued, else original
	AckOriginal = "original" // AA / AE / AR
	AckEnhanced = "enhanced" // CA / CE / CR (commit acknowledgments)
)

// Policies for a message type or trigger with no conversion (config unsupported).
const (
	UnsupportedIgnore     = "ignore"     // status ignored
	UnsupportedQuarantine = "quarantine" // status quarantined
)

// Listener is one MLLP listener of a practice. Its Name is the channel
// stored with every message it receives and the Connection of every
// resource version those messages write.
type Listener struct {
	Practice string
	Name     string
	Addr     string      // host:port to listen on
	TLS      *tls.Config // nil: plain TCP
	// MaxMessageSize bounds one message in bytes (0: 1 MiB).
	MaxMessageSize int
	// MaxConns bounds the connections served at once (0: 64).
	MaxConns int
	// IdleTimeout closes a connection idle this long (0: 5 min).
	IdleTimeout time.Duration
	// DedupWindow: a message with the same sender and control id as one
	// stored on this listener within the window is a duplicate (0: off).
	DedupWindow time.Duration
	AckMode     string // AckAuto (""), AckOriginal, AckEnhanced
	Unsupported string // UnsupportedIgnore (""), UnsupportedQuarantine
}

// Event describes one message at a step of the pipeline, PHI-free: ids,
// codes and the sender's application and facility, never field values.
type Event struct {
	Practice        string
	Channel         string
	ID              int64 // message id in the store (0 when it was not stored)
	MessageCode     string
	TriggerEvent    string
	ControlID       string
	SendingApp      string
	SendingFacility string
	AckCode         string // the ACK sent (received events)
	Duplicate       bool   // a duplicate of message ID (received events)
	Status          string // store.Msg* after the step
	Error           string // PHI-free reason for quarantined, failed, ignored
	Written         int    // resource versions created or updated (processed events)
	Unchanged       int    // resources whose content was already stored
	Stale           int    // resources skipped: a later message of the channel already wrote them
}

// Options configure a Pipeline.
type Options struct {
	Store     Store
	Converter Converter
	// Mapper, when set, maps every converted resource before it is
	// written (nil: resources are written as converted). The raw message
	// stays stored as received.
	Mapper  Mapper
	Logger  *slog.Logger // nil: discard
	Metrics *obs.Metrics // nil: none
	Now     func() time.Time
	// Practices are processed even without a listener (replay tools).
	Practices []string
	// Channels are listeners that are not served but whose processing
	// settings (Unsupported) apply to the messages they stored (replay
	// tools that process without listening). Their practices are processed.
	Channels []Listener
	// DisableProcessing receives and stores messages without converting
	// them (they stay received until a pipeline that processes runs):
	// benchmarks of the receiving side, store-only receivers.
	DisableProcessing bool
	// Workers is the number of messages processed at once per practice,
	// each from a different (channel, sending facility) (0: 4).
	Workers int
	// MaxAttempts is how often a message whose processing fails with a
	// retryable (store) error is tried before it is quarantined (0: 5).
	MaxAttempts int
	// RetryBackoff is the wait after the first failure, doubled after each
	// (0: 1 s; at most 5 min).
	RetryBackoff time.Duration
	// MaxBatch and MaxDelay shape group commit: messages arriving together
	// are committed in one transaction of at most MaxBatch messages (0: 64);
	// a batch waits at most MaxDelay for messages still being parsed (0: 1 ms).
	MaxBatch int
	MaxDelay time.Duration
	// OnReceived is called after each message's ACK is built, and
	// OnProcessed after each processing outcome. They run on the
	// pipeline's goroutines and must return quickly.
	OnReceived  func(Event)
	OnProcessed func(Event)
}

func (o *Options) withDefaults() error {
	if o.Store == nil {
		return errors.New("hl7in: a store is required")
	}
	if o.Converter == nil {
		return errors.New("hl7in: a converter is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = time.Millisecond
	}
	return nil
}

// ServerTLS builds the TLS configuration of a listener from PEM data: its
// certificate chain and key, and, when clientCAPEM is not empty, the CAs
// that client certificates must chain to (mutual TLS: a client without a
// valid certificate is refused during the handshake).
func ServerTLS(certPEM, keyPEM, clientCAPEM []byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("hl7in: listener certificate and key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if len(clientCAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(clientCAPEM) {
			return nil, errors.New("hl7in: the client CA file holds no PEM certificate")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
