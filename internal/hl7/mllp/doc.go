// Package mllp carries HL7 v2 messages over TCP with the Minimal Lower Layer
// Protocol: its one job is moving framed messages and their
// acknowledgments between a sender and a receiver, without looking inside
// them.
//
// # Framing
//
// A frame is the byte 0x0B, the message, and the bytes 0x1C 0x0D.
// AppendFrame and WriteFrame build frames; a Reader takes them apart. The
// Reader buffers its input, so it returns messages the same whether many
// frames arrive in one read or one frame arrives byte by byte. Bytes
// outside frames (a CR or LF some senders add between frames) are skipped.
// A message is ended by 0x1C alone (the CR after it is skipped like any
// byte between frames), and a 0x0B in the middle of a frame starts the
// frame over; a returned message thus never contains either byte. A message
// longer than the limit gives ErrTooLarge as soon as the limit is passed;
// the Reader can go on with the next frame, the Server closes the
// connection instead. The slice ReadMessage returns is reused by the next
// call (it usually points into the Reader's buffer: no copy).
//
// # Server
//
// A Server accepts connections (optionally TLS, or mutual TLS with
// tls.RequireAndVerifyClientCert) and serves each in one goroutine: read a
// message, call the Handler, write its ACK in a single write, repeat. So
// messages of one connection are handled one at a time and in order, and a
// busy handler stops the reading of its connection (backpressure through
// TCP flow control); MaxConns bounds the connections (excess ones are
// accepted and closed at once). Nothing is allocated per message by the
// server itself: the handler sees the message in the read buffer and must
// copy what it keeps. A handler error, an oversized message, an idle
// timeout (no complete message within IdleTimeout) or a failed ACK write
// close the connection without an answer: the sender then resends, which
// is how "not durably stored, so not acknowledged" works. When Serve's
// context ends, connections waiting for input are closed at once, and a
// handler in progress finishes and writes its ACK before its connection is
// closed. Logs never hold message contents.
//
// # Client
//
// A Client sends one message at a time over a kept-open connection and
// waits for the answer up to AckTimeout. On a timeout or a connection
// failure it closes the connection, waits (exponential, jittered backoff)
// and resends the very same bytes on a new connection, so that the control
// id (MSH-10) stays the same and the receiver can de-duplicate. After
// MaxAttempts failures Send returns an error wrapping ErrNoAck. The client
// does not read the ACK; package ack does.
package mllp
