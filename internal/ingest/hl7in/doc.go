// Package hl7in takes HL7 v2 over MLLP into the message store, then into
// canonical resources.
//
// # Receiving: commit-then-ACK
//
// Each listener is an MLLP server (internal/hl7/mllp) whose handler reads
// the MSH metadata with a lenient parse and hands the message to the
// listener's group committer. The committer stores the messages of
// concurrent connections together in one PutHL7Messages call (one
// transaction): it takes everything waiting when the previous commit ends,
// waits up to Options.MaxDelay (1 ms) only while other messages are still
// being parsed, and stops at Options.MaxBatch (64). Each handler waits for
// its batch's commit and builds its ACK only after the commit returned: an
// ACK means the raw message is in the store. If the store fails, there is
// no ACK: the handler returns an error, the connection closes, and the
// sender sends again (a resend keeps its MSH-10, so de-duplication makes
// this safe when the commit did happen after all).
//
// ACKs are built with internal/hl7/ack. The mode follows the message
// (Listener.AckMode auto): enhanced mode when MSH-15 or MSH-16 is valued,
// with commit ACKs CA/CE/CR; original mode AA/AE/AR otherwise. In original
// mode AA means "accepted and stored", not "converted": conversion happens
// afterwards and its problems are visible in the store (quarantine), not in
// the ACK. mediflow sends no application-level ACK later.
//
// A message the lenient parser cannot read (no usable MSH) is stored all
// the same, raw, with status quarantined and the parser's PHI-free error,
// and answered AE (CE in forced enhanced mode) with an ERR segment (table
// 0357 code 100 at the first defect's position). Not AR: AR says the
// message was refused for reasons unrelated to its content (type, version,
// processing id, a receiver that is down) and invites the sender to send it
// again, and some senders stop their queue on it. Here the content is the
// problem and the message is kept: sending the same bytes again cannot
// help, and the ACK text names the quarantined message's id so it can be
// found and replayed after a fix. An empty frame holds nothing to store and
// is refused with AR.
//
// # Duplicates
//
// Inbound messages with the same practice, channel (listener), sending
// application, sending facility and MSH-10 within Listener.DedupWindow
// (default 24 h) are duplicates: the store keeps the original only (and
// counts the duplicate on it), and the handler ACKs again with the code
// the original got. A duplicate is never processed again.
//
// # Processing: ordered per sending facility
//
// One processor per practice converts stored messages with the Converter
// (internal/hl7/v2fhir) and writes the resources with WriteResources
// (Connection = the channel, RawID = the hl7_messages id: the raw message
// stays where it was stored and is not copied to raw_payloads). Messages
// are processed in id order within each (channel, sending facility);
// different facilities run in parallel on Options.Workers workers. The
// processor takes messages with status received (and failed) from the
// store, not from memory: after a crash, what was stored but not processed
// is processed at the next start. At most a few thousand messages are held
// in memory; a backlog waits in the store.
//
// Outcomes: processed; ignored when no conversion exists for the message
// type and trigger (Listener.Unsupported "quarantine" quarantines them
// instead); quarantined with a PHI-free reason when the message cannot be
// parsed or converted; failed when writing to the store failed, retried
// with exponential backoff (Options.RetryBackoff doubling, at most 5 min)
// and quarantined after Options.MaxAttempts attempts. Failed messages keep
// their place: later messages of the same facility wait for them.
//
// Merges (ADT^A40): every resource that references the merged record is
// re-pointed to the surviving one with v2fhir.Repoint, and the merged
// record is marked inactive with a link of type replaced-by (a stub is
// written when it was never stored). The referencing resources are found
// with the search index, for every resource type with a reference search
// parameter that can point at the record's type; resource types the index
// does not know are found by reading the practice's change feed, which
// costs a read of every stored change. Limits: a resource synced from an
// EHR connection that is re-pointed here is re-pointed back if the EHR
// still sends the old reference; contained resources and references held
// in extensions are re-pointed only as far as Repoint finds them.
//
// # Exactly once
//
// Marking a message processed and writing its resources are two
// transactions, so a crash can fall between them. That is safe because
// processing is idempotent:
//
//   - Conversion is deterministic: the same message gives the same
//     resources with the same ids (derived from v2 identifiers).
//   - WriteResources compares content hashes: a resource whose content is
//     already the current version is Unchanged and gets no new version.
//   - Messages of one facility are processed one at a time in id order, so
//     the message that was interrupted is the one taken again, before any
//     later message of that facility.
//   - A resource whose current version came from a later message of the
//     same channel (its RawID is higher) is not written again; the check
//     and the write run under a per-resource lock. This keeps a message of
//     another facility, processed in parallel, or a replayed old message,
//     from putting older data back.
//
// So a message processed twice adds no version, and a duplicate delivery
// is never processed twice; TestCrashBetweenWriteAndMark shows the first,
// the receiver tests the second.
//
// # Replay
//
// Replay sets one message, or those a store.HL7Filter selects (Status must
// be given), back to received; a processor then takes them in id order.
// Pipeline.Replay does that and wakes the running processor; replay on a
// stopped engine's store (mediflow hl7 replay) is picked up at the next
// start. Quarantined messages are replayed after the cause is fixed (a
// newer converter, a different policy); one that still fails returns to
// quarantine with its new reason.
package hl7in
