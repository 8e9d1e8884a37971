// Package hl7 parses and encodes HL7 version 2 messages in their ordinary
// text form (ER7, "pipe and hat"): the one job of this package is to turn
// bytes into a Message you can read and change, and back into bytes.
//
// # Model
//
// A Message is a list of Segments (MSH, PID, OBX, Z-segments, ...). A
// segment holds Fields, numbered from 1; a field holds repetitions (Rep),
// a repetition components, a component subcomponents. The separators come
// from MSH-1 (field) and MSH-2 (component, repetition, escape, subcomponent
// and, from v2.7, truncation), so a message written with "#" instead of "|"
// reads the same. In MSH (and FHS/BHS) field 1 is the field separator itself
// and field 2 the encoding characters, as the standard numbers them.
//
// Values are addressed with paths: "PID-5" (first repetition of field 5),
// "PID-5-1" (its first component), "PID-3(2)-4-2" (second repetition of
// PID-3, component 4, subcomponent 2), "OBX(3)-5" (field 5 of the third OBX)
// and "MSH-9-2". Get returns "" for anything absent; GetAll returns every
// occurrence and repetition; Set creates whatever structure is missing
// (including a new segment when the occurrence is one past the last).
//
// Parsing is lazy: Parse copies the input once and indexes the segment
// boundaries; a segment is split into fields the first time Field is asked
// for, and components are found (and unescaped) only when a value is read.
// Get walks the raw text directly without allocating for plain values.
// The message keeps the bytes it came from, so Encode of an unmodified,
// well-formed message (segments ended by CR, nothing stray) returns exactly
// the input, and after Set only the touched segment is written anew.
//
// # Lenient and strict
//
// Real feeds are untidy. By default (lenient) Parse accepts segments ended by
// CR, LF or CR LF, blank lines and whitespace before segments, a leading
// UTF-8 byte order mark, trailing delimiters, missing trailing fields, and an
// MSH-2 with fewer than four characters (the missing ones take their usual
// values when free). It fails only when there is no usable MSH at the start.
// Encode then writes canonical CR-ended segments.
//
// With ParseOptions.Strict the parser reports every defect, each with a
// stable code and a Position (message, segment index and id, field,
// repetition, component, subcomponent and byte offset): missing or malformed
// MSH and delimiters, a BOM, stray whitespace and blank lines, LF or CR LF
// segment ends, a missing final CR, bad segment ids, trailing delimiters at
// every level, malformed or unknown escape sequences, characters the declared
// character set does not allow (and control characters), unsupported
// character sets, empty required MSH fields (MSH-9, -10, -11, -12), a second
// MSH inside one message, and in files (ParseAll) lines outside any message,
// batch and file counts (BTS-1, FTS-1) that do not match and missing
// trailers. Defect messages never quote field values, which may hold PHI.
//
// # Escape sequences
//
// Get and the other readers return unescaped values; Set escapes what it
// writes. Unescape decodes \F\ \S\ \T\ \R\ \E\ (the delimiters), \P\ (the
// truncation character), \Xhh...\ (bytes in hexadecimal, decoded with the
// message's character set; in an ASCII/UTF-8 message they are read as UTF-8
// when valid and as ISO-8859-1 otherwise), and the formatted-text commands:
// \.br\ is a line feed, \.sp n\ n line feeds, \.sk n\ n spaces, \.ce\ a line
// feed (text cannot be centred), while \.in\, \.ti\, \.fi\ and \.nf\ only
// change layout and are dropped. \H\ and \N\ (highlighting) are dropped.
// Character-set switches \Cxxyy\ and \Mxxyyzz\ and locally defined \Zxx\
// sequences are kept as written. A malformed or unknown sequence is kept
// literally (strict mode reports it). Escape writes \F\ \S\ \T\ \R\ \E\ \P\,
// turns a line feed into \.br\ and a carriage return into \X0D\, so that
// Unescape(Escape(s)) == s.
//
// # Character sets
//
// MSH-18 (first repetition), or ParseOptions.Charset, selects how bytes
// become Go strings: empty or "ASCII" and "UNICODE UTF-8" pass bytes
// through (real senders that declare nothing usually send UTF-8), "8859/1"
// (ISO-8859-1) and "8859/15" (ISO-8859-15) are converted to UTF-8. Values
// returned by Get are UTF-8; Set converts back, and fails for a character the
// message's set cannot hold. Other sets ("UNICODE" i.e. UTF-16, other ISO
// 8859 parts, the Asian sets) are read as pass-through in lenient mode and
// reported as bad-charset in strict mode. Encode never re-encodes data that
// was not touched.
//
// # Files and batches
//
// ParseAll reads a file of one or more messages, optionally wrapped in
// FHS/BHS ... BTS/FTS; Split finds the message boundaries without parsing.
package hl7
