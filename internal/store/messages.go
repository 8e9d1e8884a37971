package store

import (
	"context"
	"time"
)

// HL7 v2 message directions.
const (
	DirectionInbound  = "in"
	DirectionOutbound = "out"
)

// HL7 v2 message processing states. Inbound: Received → Processed | Failed |
// Quarantined (replay sets a message back to Received). Outbound: Queued →
// Sent → Acked | Rejected | TimedOut (a resend keeps the row and its control id).
const (
	MsgReceived    = "received"    // stored and ACKed (commit); not yet converted
	MsgProcessed   = "processed"   // converted and written to the resource store
	MsgFailed      = "failed"      // processing failed with a retryable error
	MsgQuarantined = "quarantined" // cannot be parsed or converted as is; waits for a fix and a replay
	MsgIgnored     = "ignored"     // understood, but nothing to do (e.g. an unsupported trigger by policy)
	MsgQueued      = "queued"      // outbound, waiting to be sent
	MsgSent        = "sent"        // outbound, sent, waiting for the ACK
	MsgAcked       = "acked"       // outbound, peer answered AA/CA
	MsgRejected    = "rejected"    // outbound, peer answered AE/AR/CE/CR
	MsgTimedOut    = "timed-out"   // outbound, no ACK after all attempts
)

// HL7Message is one HL7 v2 message as received or sent: the raw bytes exactly
// as they crossed the wire, and the metadata it is searched by. Metadata is
// extracted from MSH when the message parses; a message that does not parse
// is still stored (Status MsgQuarantined, Error set).
type HL7Message struct {
	ID                int64 // assigned by the store, increasing
	Practice          string
	Direction         string    // DirectionInbound or DirectionOutbound
	Channel           string    // the listener or outbound connection name from config
	Peer              string    // remote address ("127.0.0.1:53211")
	SendingApp        string    // MSH-3-1
	SendingFacility   string    // MSH-4-1
	ReceivingApp      string    // MSH-5-1
	ReceivingFacility string    // MSH-6-1
	MessageCode       string    // MSH-9-1, "ADT"
	TriggerEvent      string    // MSH-9-2, "A01"
	ControlID         string    // MSH-10
	ReceivedAt        time.Time // inbound: when it arrived; outbound: when it was queued
	SentAt            time.Time // outbound: last send attempt (zero before)
	ProcessedAt       time.Time // when Status last changed to a final state
	AckCode           string    // inbound: the code we answered; outbound: the code the peer answered
	Status            string
	Attempts          int    // processing (inbound) or send (outbound) attempts
	Duplicates        int    // inbound: how many times the same sender + control id arrived again within the window
	Error             string // PHI-free reason for Failed/Quarantined/Rejected/TimedOut
	Body              []byte
}

// HL7PutResult is the outcome of storing one inbound or outbound message.
type HL7PutResult struct {
	ID int64
	// Duplicate is true when an inbound message with the same practice,
	// channel, sending application, sending facility and control id was stored
	// within the dedup window: nothing new was stored, the original's
	// Duplicates counter was incremented, and ID/AckCode/Status are the
	// original's, so the caller can ACK again without reprocessing.
	Duplicate bool
	AckCode   string
	Status    string
}

// HL7Update changes the mutable part of a stored message. Zero fields are left as they are.
type HL7Update struct {
	Status      string
	AckCode     string
	Error       string // set together with Status; "" with a non-empty Status clears it
	SentAt      time.Time
	ProcessedAt time.Time
	// AddAttempt increments Attempts by one.
	AddAttempt bool
}

// HL7Filter selects stored messages. Empty fields match everything.
type HL7Filter struct {
	Direction       string
	Channel         string
	MessageCode     string
	TriggerEvent    string
	ControlID       string
	SendingFacility string
	Status          []string // any of
	AckCode         string
	Since, Until    time.Time // on ReceivedAt; Until exclusive
	// AfterID pages: with Ascending, IDs > AfterID; otherwise IDs < AfterID (0: from the start).
	AfterID   int64
	Ascending bool // oldest first (replay, processing); default newest first
	Limit     int  // 0: 100
	// WithBody loads Body; without it Body is nil (listing is cheaper).
	WithBody bool
}

// MessageStore keeps HL7 v2 messages (and later other pushed messages) with
// their processing state. PutHL7Messages is the commit point of
// commit-then-ACK: when it returns nil the messages are durable.
type MessageStore interface {
	// PutHL7Messages stores a batch in one transaction (group commit). Inbound
	// messages are de-duplicated against messages stored within dedupWindow
	// (0: no de-duplication) and against earlier messages of the same batch.
	PutHL7Messages(ctx context.Context, practice string, msgs []HL7Message, dedupWindow time.Duration) ([]HL7PutResult, error)
	GetHL7Message(ctx context.Context, practice string, id int64) (HL7Message, error)
	UpdateHL7Message(ctx context.Context, practice string, id int64, u HL7Update) error
	ListHL7Messages(ctx context.Context, practice string, f HL7Filter) ([]HL7Message, error)
	// CountHL7Messages counts messages by Status for one direction ("" both).
	CountHL7Messages(ctx context.Context, practice, direction string) (map[string]int, error)
}
