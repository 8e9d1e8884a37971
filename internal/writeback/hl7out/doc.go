// Package hl7out sends HL7 v2 messages from the message store to MLLP
// receivers: its one job is getting each queued outbound message to its
// destination, in order, and recording what the receiver answered.
//
// # Store first
//
// Enqueue stores the message (direction out, status queued, channel = the
// destination's name, peer = its address, MSH metadata) and returns its id
// only after the store has committed it. Nothing is sent from memory: a
// destination's goroutine reads its queued messages from the store, so a
// message that was enqueued is delivered even if mediflow stops before
// sending it. The bytes stored are the bytes sent, on every attempt and
// after every restart, so MSH-10 never changes and the receiver can
// recognise a repeat.
//
// # Control ids
//
// A message is matched with its ACK by MSH-10 (MSA-2 must equal it), and a
// receiver drops a repeat by it. HL7 v2.5.1 allows 20 characters there
// (MaxControlID); ControlID derives such an id from a longer stable key,
// such as a write-back intent id, so that every message built for the same
// key carries the same MSH-10. Enqueue takes a message's MSH-10 as it is.
//
// # Order
//
// Each destination delivers its messages one at a time in id order (the
// order Enqueue returned for that destination). A message is not sent
// before the previous one of its destination has an outcome: acknowledged,
// rejected or given up. A message that gets no answer holds the messages
// after it. Different destinations run independently.
//
// # Outcomes
//
// The stored message moves queued → sent → acked | rejected | timed-out:
//
//   - sent: set at every attempt (sent_at, attempts + 1). A message stays
//     sent while it waits for an answer and between retries; its error says
//     why the last attempt failed and when the next one is.
//   - acked: the receiver answered AA or CA. ack_code holds the code.
//   - rejected: the receiver answered AE, AR, CE or CR. ack_code holds the
//     code, error the receiver's MSA-3 text and its ERR segments (location,
//     HL7 table 0357 code, text). Delivery continues with the next message:
//     the receiver has seen the message and answered it, and sending the
//     same bytes again would only get the same answer. AR and CR included:
//     they often mean "not this message type" rather than "try later", and
//     retrying them would stop the queue for good. A rejected message can
//     be found by status and sent again deliberately.
//   - timed-out: no usable answer after Destination.MaxRounds rounds. Only
//     when MaxRounds is set; the default is never to give up.
//
// # Retries
//
// A round is up to Destination.MaxAttempts attempts with a short, growing
// pause between them (Backoff, doubling, at most 5 s, jittered). An attempt
// fails when the connection cannot be made or breaks, when no answer comes
// within AckTimeout, and when the answer is not an acknowledgment of this
// message: unreadable, or with an MSA-2 that is not the message's MSH-10.
// After a failed answer the connection is dropped and the next attempt
// uses a new one, so a late ACK of an earlier attempt cannot be taken for
// the answer to a later message.
//
// After a failed round the destination waits RetryDelay (doubling after
// each round up to MaxRetryDelay, jittered) and starts another round with
// the same message; the messages behind it keep waiting. This is the
// production default (MaxRounds 0): a receiver that is down for an hour
// gets the whole backlog, in order, when it comes back. With MaxRounds
// set, a message is marked timed-out after that many rounds and the next
// one is sent; rounds are counted from the start of Run, so a restart
// gives a held message a fresh set of rounds.
//
// # Restarts
//
// At the start of Run each destination reads its messages with status
// queued or sent, oldest first. A message left sent was sent without a
// recorded answer (mediflow stopped while it waited, or between the
// answer and the store update): it is sent again with the same bytes, and
// the receiver's de-duplication on MSH-10 keeps it from being processed
// twice. An answer that was already received when Run stops is still
// recorded.
//
// # Wake-up
//
// Enqueue wakes the destination's goroutine; an idle destination does not
// poll the store except every Options.PollInterval (one minute) as a
// fallback. Between wake-ups a destination remembers the id of the last
// message it finished and lists only later ones, which the store finds
// with its (practice, id) index. Enqueue stores the messages of one
// destination one at a time, so they become visible in id order. Only one
// Sender per store should deliver a destination; messages put into the
// store behind its back are found at the next poll and, if their id is
// below the destination's position, at the next start.
//
// # Logs and events
//
// Logs carry ids, control ids, codes and counts, never message contents.
// Options.OnEvent reports every step (queued, a failed attempt, an
// outcome) on the destination's goroutine before it moves on, which is
// what the command line uses to print outcomes and to stop a run.
package hl7out
