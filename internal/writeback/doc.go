// Package writeback is mediflow's outbox of writes to the EHR: its one job
// is making each write an app asked for (an intent) take effect at the
// practice's EHR exactly once, in order per patient, and saying truthfully
// what became of it.
//
// # Intents
//
// Submit stores an intent before anything is sent: the app's idempotency
// key is unique per practice and app, so submitting again returns the
// intent already stored (a key reused for a different request is refused
// with ErrKeyReused). Before accepting, Submit runs the caller's Validate
// (the API passes the write contract's checks) and asks the practice's
// contract (Target.Support) whether the intent is supported and through
// which channel. This package executes the FHIR REST channel; the
// athenahealth v1 API for appointments when the practice's Target has a
// VendorREST path (vendorrest.go: no ETag or idempotency key there, so an
// appointment is read back before any write is retried); and the HL7 v2
// channel when the practice's Target has an HL7 destination (hl7.go):
// the message (MSH-10 = hl7out.ControlID of the intent id) is stored in the hl7out Sender's
// queue, the intent is sent, and the receiver's ACK confirms it (AA, CA)
// or rejects it (AE, AR, with a staff message from the ERR codes); a
// message the destination gives up makes the intent dead.
//
// Every intent gets an id of ours (ULID-like). It travels with the write
// as an identifier {system "urn:mediflow:intent", value id} on created
// records and as a meta.tag with the same system on every written version,
// so mediflow can always ask the EHR "did this write happen?".
//
// # Exactly once in effect
//
//   - Create: when the contract says the EHR honours conditional create,
//     the POST carries If-None-Exist: identifier=urn:mediflow:intent|<id>;
//     otherwise, and on every attempt after the first whatever the
//     contract says, the record is first searched by that identifier and
//     created only when absent.
//   - A write that got no answer (timeout, broken connection) or a 5xx is
//     never sent again blindly: the record is looked for first (search by
//     identifier for a create, a read and a look at the tag for an update).
//     Found: it is treated as written. Not found: the write is retried
//     later, after at least SettleDelay, so a request still in flight at
//     the EHR lands before the next look.
//   - An attempt cut short by a stop or a crash leaves the intent claimed;
//     the next executor (after the lease, or at once after a clean stop)
//     starts by looking for the record.
//
// # Updates and conflicts
//
// An update's body is the elements to set. The record is read, the
// elements are applied on that version and the result is sent with
// If-Match: the version the intent was based on (Request.BaseVersion), or
// the version just read. On 409 or 412 the record is read again: if it
// carries our tag the write had happened; otherwise the intent's conflict
// policy decides. fail: status conflict, with the paths whose values at
// the EHR differ from the intent's; reapply: the elements are applied once
// more on the new version (a second conflict ends in conflict); manual:
// status conflict until a person resolves it at the EHR and replays the
// intent (a replay applies on the version of that moment).
//
// # Retries and dead letters
//
// Transient failures (no answer, 408, 429, 5xx, 401) are retried with
// exponential backoff and jitter (BaseDelay doubling up to MaxDelay); a
// Retry-After replaces the computed delay. After MaxAge from the first
// attempt an intent is dead. Dead, conflict, rejected and mismatch intents
// can be replayed.
//
// # Order
//
// The open intents of one patient (Request.PatientRef) form a queue: the
// store lets only its head be claimed, so a later intent waits until the
// earlier one is final. Different patients run concurrently, up to
// Options.Concurrency at a time. An intent without a patient is ordered
// alone.
//
// # Verification
//
// After the EHR accepted a write the intent is sent; the record is then
// read back and compared with what the intent set: with Target.MapIn the
// read-back is mapped to the canonical model and compared with the
// intent's canonical body, otherwise the written vendor body's elements
// are compared with the read-back. Equal: confirmed. Different: mismatch,
// with the differing element paths (never values).
//
// # Rejections and audit
//
// A refusal (a 4xx that sending again would not change) ends the intent
// rejected, with a short message for practice staff built from the
// OperationOutcome codes, the vendor's code (Epic, eClinicalWorks) or the
// HTTP status (rejections.go); diagnostics texts, which can echo patient
// data, are never stored or logged. Every exchange with the EHR is
// appended to the intent's attempts log (method, path without query, the
// headers that matter, a hash of the body, status, outcome codes, time
// taken) and recorded as an audit event by the app that asked.
//
// Logs and stored errors carry ids, statuses and codes only.
package writeback
