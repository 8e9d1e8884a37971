// Package ack builds and reads HL7 v2 acknowledgments (ACK messages): the
// MSA answer to a received message, in original mode (AA, AE, AR) or
// enhanced mode (CA, CE, CR), with ERR segments that locate a problem and
// give its HL7 table 0357 code.
//
// Build answers a message that parsed; BuildRaw answers bytes that did not
// (it reads what it can of MSH without a parser and never fails). Parse
// reads an ACK received from a peer.
package ack

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

// Code is an acknowledgment code (HL7 table 0008).
type Code string

// Acknowledgment codes: original mode (application acknowledgment) and
// enhanced mode (commit acknowledgment).
const (
	AA Code = "AA" // application accept
	AE Code = "AE" // application error
	AR Code = "AR" // application reject
	CA Code = "CA" // commit accept
	CE Code = "CE" // commit error
	CR Code = "CR" // commit reject
)

// Accepted reports whether the code accepts the message (AA or CA).
func (c Code) Accepted() bool { return c == AA || c == CA }

// Valid reports whether c is one of the six acknowledgment codes.
func (c Code) Valid() bool {
	switch c {
	case AA, AE, AR, CA, CE, CR:
		return true
	}
	return false
}

// Error is one ERR segment: where the problem is, its HL7 table 0357 code,
// its severity and a text for people. The text must not hold PHI: it goes
// back to the sender and into logs of both sides.
type Error struct {
	Location string // "PID-3", "OBX(2)-5" or a bare segment id "MSH"; empty: unknown
	Code     int    // HL7 table 0357, e.g. 100 segment sequence error, 101 required field missing, 207 internal error
	Severity string // E (error), W (warning) or I (information); empty: E
	Text     string
}

// Table 0357 descriptions, written into ERR-3's text component.
var codeText = map[int]string{
	0:   "Message accepted",
	100: "Segment sequence error",
	101: "Required field missing",
	102: "Data type error",
	103: "Table value not found",
	104: "Value too long",
	200: "Unsupported message type",
	201: "Unsupported event code",
	202: "Unsupported processing id",
	203: "Unsupported version id",
	204: "Unknown key identifier",
	205: "Duplicate key identifier",
	206: "Application record locked",
	207: "Application internal error",
}

// Options say what an acknowledgment answers.
type Options struct {
	Code      Code   // empty: AA
	Text      string // MSA-3 and, with errors, each ERR-8 that has no text of its own
	Errors    []Error
	Now       time.Time // MSH-7; zero: time.Now()
	ControlID string    // MSH-10 of the ACK; empty: a fresh random id
}

// header is what an ACK copies from the message it answers: the raw
// (escaped) field contents of MSH.
type header struct {
	d                     hl7.Delimiters
	sendApp, sendFac      string // MSH-3, MSH-4
	recvApp, recvFac      string // MSH-5, MSH-6
	trigger, ctrl, procID string // MSH-9-2, MSH-10, MSH-11
	version, charset      string // MSH-12, MSH-18
}

// Build returns the acknowledgment of orig (segments end with CR, no MLLP
// framing): MSH with the sender and receiver swapped and the original's
// delimiters, processing id, version and character set; MSA echoing the
// original's MSH-10; one ERR per opts.Errors.
func Build(orig *hl7.Message, opts Options) []byte {
	h := header{d: orig.Delimiters()}
	if msh := orig.Segment("MSH", 1); msh != nil {
		raw := func(n int) string {
			if f := msh.Field(n); f != nil {
				return f.Raw()
			}
			return ""
		}
		h.sendApp, h.sendFac, h.recvApp, h.recvFac = raw(3), raw(4), raw(5), raw(6)
		h.ctrl, h.charset = raw(10), raw(18)
		h.procID = firstComponent(raw(11), h.d)
		h.version = firstComponent(raw(12), h.d)
		h.trigger = component(raw(9), h.d, 2)
	}
	return build(h, opts)
}

// BuildRaw is Build for bytes that did not parse: it reads the delimiters
// and MSH fields it can find in the first line that starts with MSH
// (default delimiters and empty fields otherwise). It never panics.
func BuildRaw(orig []byte, opts Options) []byte {
	h := header{d: hl7.DefaultDelimiters}
	line := mshLine(orig)
	if len(line) >= 8 {
		fs := line[3]
		enc := line[4:]
		if i := bytes.IndexByte(enc, fs); i >= 0 {
			enc = enc[:i]
		}
		d := hl7.Delimiters{Field: fs}
		if len(enc) >= 4 {
			d.Component, d.Repetition, d.Escape, d.Subcomponent = enc[0], enc[1], enc[2], enc[3]
			if validDelims(d) {
				h.d = d
			}
		}
		if h.d.Field == fs {
			parts := strings.Split(string(line), string(fs))
			field := func(n int) string { // MSH-n is parts[n-1]
				if n-1 < len(parts) {
					return clean(parts[n-1])
				}
				return ""
			}
			h.sendApp, h.sendFac, h.recvApp, h.recvFac = field(3), field(4), field(5), field(6)
			h.ctrl, h.charset = field(10), field(18)
			h.procID = firstComponent(field(11), h.d)
			h.version = firstComponent(field(12), h.d)
			h.trigger = component(field(9), h.d, 2)
		}
	}
	return build(h, opts)
}

// mshLine returns the first line of data that starts with MSH.
func mshLine(data []byte) []byte {
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		line := data
		if i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimLeft(line, " \t\x0b\x00")
		if bytes.HasPrefix(line, []byte("MSH")) {
			return line
		}
	}
	return nil
}

func validDelims(d hl7.Delimiters) bool {
	cs := []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent}
	for i, c := range cs {
		if c <= ' ' || c >= 0x7f || (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z') {
			return false
		}
		for _, o := range cs[:i] {
			if o == c {
				return false
			}
		}
	}
	return true
}

// clean drops control characters from a raw value copied out of bytes that
// did not parse, so that the ACK stays one well-formed message.
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' {
			b := []byte(s)
			n := 0
			for _, c := range b {
				if c >= ' ' {
					b[n] = c
					n++
				}
			}
			return string(b[:n])
		}
	}
	return s
}

// firstComponent returns raw's first component of its first repetition.
func firstComponent(raw string, d hl7.Delimiters) string { return component(raw, d, 1) }

// component returns the n-th (1-based) component of raw's first repetition.
func component(raw string, d hl7.Delimiters, n int) string {
	if i := strings.IndexByte(raw, d.Repetition); i >= 0 {
		raw = raw[:i]
	}
	for k := 1; k < n; k++ {
		i := strings.IndexByte(raw, d.Component)
		if i < 0 {
			return ""
		}
		raw = raw[i+1:]
	}
	if i := strings.IndexByte(raw, d.Component); i >= 0 {
		raw = raw[:i]
	}
	return raw
}

func build(h header, opts Options) []byte {
	d := h.d
	code := opts.Code
	if code == "" {
		code = AA
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	ctrl := opts.ControlID
	if ctrl == "" {
		ctrl = newControlID()
	}
	esc := func(s string) string { return hl7.Escape(s, d) }
	f, c := d.Field, d.Component

	b := make([]byte, 0, 256)
	b = append(b, "MSH"...)
	b = append(b, f, d.Component, d.Repetition, d.Escape, d.Subcomponent)
	if d.Truncation != 0 {
		b = append(b, d.Truncation)
	}
	for _, v := range []string{h.recvApp, h.recvFac, h.sendApp, h.sendFac, now.Format("20060102150405-0700"), ""} {
		b = append(b, f)
		b = append(b, v...)
	}
	b = append(b, f)
	b = append(b, "ACK"...)
	if h.trigger != "" {
		b = append(b, c)
		b = append(b, h.trigger...)
		b = append(b, c)
		b = append(b, "ACK"...)
	}
	b = append(b, f)
	b = append(b, esc(ctrl)...)
	b = append(b, f)
	b = append(b, h.procID...)
	b = append(b, f)
	b = append(b, h.version...)
	if h.charset != "" {
		b = append(b, f, f, f, f, f, f)
		b = append(b, h.charset...)
	}
	b = append(b, '\r')

	b = append(b, "MSA"...)
	b = append(b, f)
	b = append(b, code...)
	b = append(b, f)
	b = append(b, h.ctrl...)
	if opts.Text != "" {
		b = append(b, f)
		b = append(b, esc(opts.Text)...)
	}
	b = append(b, '\r')

	v25 := versionAtLeast(h.version, 2, 5)
	for _, e := range opts.Errors {
		b = appendERR(b, e, opts.Text, d, v25)
	}
	return b
}

// appendERR writes one ERR segment: v2.5 and later use ERR-2 (location),
// ERR-3 (code), ERR-4 (severity) and ERR-8 (text); earlier versions ERR-1.
func appendERR(b []byte, e Error, fallback string, d hl7.Delimiters, v25 bool) []byte {
	f, c := d.Field, d.Component
	esc := func(s string) string { return hl7.Escape(s, d) }
	seg, seq, field := splitLocation(e.Location)
	text := e.Text
	if text == "" {
		text = fallback
	}
	sev := e.Severity
	if sev == "" {
		sev = "E"
	}
	b = append(b, "ERR"...)
	if v25 {
		b = append(b, f, f) // ERR-1 empty
		if seg != "" {
			b = append(b, esc(seg)...)
			b = append(b, c)
			b = strconv.AppendInt(b, int64(seq), 10)
			if field > 0 {
				b = append(b, c)
				b = strconv.AppendInt(b, int64(field), 10)
			}
		}
		b = append(b, f)
		b = strconv.AppendInt(b, int64(e.Code), 10)
		b = append(b, c)
		b = append(b, esc(codeText[e.Code])...)
		b = append(b, c)
		b = append(b, "HL70357"...)
		b = append(b, f)
		b = append(b, esc(sev)...)
		if text != "" {
			b = append(b, f, f, f, f)
			b = append(b, esc(text)...)
		}
	} else {
		// ERR-1 (ELD): segment^sequence^field^code&text&HL70357
		s := d.Subcomponent
		b = append(b, f)
		b = append(b, esc(seg)...)
		b = append(b, c)
		if seg != "" {
			b = strconv.AppendInt(b, int64(seq), 10)
		}
		b = append(b, c)
		if field > 0 {
			b = strconv.AppendInt(b, int64(field), 10)
		}
		b = append(b, c)
		b = strconv.AppendInt(b, int64(e.Code), 10)
		b = append(b, s)
		b = append(b, esc(codeText[e.Code])...)
		b = append(b, s)
		b = append(b, "HL70357"...)
	}
	return append(b, '\r')
}

// splitLocation reads "PID", "PID-3" or "OBX(2)-5" into segment id,
// occurrence (1 when not given) and field (0 when not given).
func splitLocation(loc string) (seg string, seq, field int) {
	loc = strings.TrimSpace(loc)
	if loc == "" {
		return "", 0, 0
	}
	seq = 1
	rest := ""
	if i := strings.IndexByte(loc, '-'); i >= 0 {
		loc, rest = loc[:i], loc[i+1:]
	}
	if i := strings.IndexByte(loc, '('); i >= 0 && strings.HasSuffix(loc, ")") {
		if n, err := strconv.Atoi(loc[i+1 : len(loc)-1]); err == nil && n > 0 {
			seq = n
		}
		loc = loc[:i]
	}
	if rest != "" {
		if i := strings.IndexByte(rest, '-'); i >= 0 {
			rest = rest[:i]
		}
		if n, err := strconv.Atoi(rest); err == nil && n > 0 {
			field = n
		}
	}
	return loc, seq, field
}

// versionAtLeast compares an HL7 version ("2.5.1") with major.minor; an
// empty or unreadable version counts as recent.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return true
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return true
	}
	return ma > major || (ma == major && mi >= minor)
}

// newControlID returns a fresh MSH-10 for an ACK: "ACK" and 12 random hex
// digits (15 characters, within the 20 of v2.3's ST).
func newControlID() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return "ACK" + hex.EncodeToString(r[:])
}

// Result is what an acknowledgment says.
type Result struct {
	Code      Code   // MSA-1
	ControlID string // MSA-2: the MSH-10 of the acknowledged message
	Text      string // MSA-3
	Errors    []Error
}

// Accepted reports whether the acknowledgment accepts the message.
func (r Result) Accepted() bool { return r.Code.Accepted() }

// ErrNoMSA is returned by Parse for a message without an MSA segment.
var ErrNoMSA = errors.New("ack: no MSA segment")

// Parse reads an acknowledgment (unframed). It fails when the bytes do not
// parse as HL7 v2, have no MSA, or MSA-1 is not an acknowledgment code.
func Parse(data []byte) (Result, error) {
	m, err := hl7.Parse(data, hl7.ParseOptions{})
	if err != nil {
		return Result{}, fmt.Errorf("ack: %w", err)
	}
	msa := m.Segment("MSA", 1)
	if msa == nil {
		return Result{}, ErrNoMSA
	}
	get := func(s *hl7.Segment, p string) string {
		v, _ := s.Get(p)
		return v
	}
	r := Result{Code: Code(strings.TrimSpace(get(msa, "1"))), ControlID: get(msa, "2"), Text: get(msa, "3")}
	if !r.Code.Valid() {
		return r, fmt.Errorf("ack: MSA-1 %q is not an acknowledgment code", string(r.Code))
	}
	for _, s := range m.SegmentsByID("ERR") {
		e := Error{Severity: get(s, "4"), Text: get(s, "8")}
		if seg := get(s, "2-1"); seg != "" {
			e.Location = locationString(seg, get(s, "2-2"), get(s, "2-3"))
			e.Code, _ = strconv.Atoi(get(s, "3-1"))
		} else if code := get(s, "3-1"); code != "" {
			e.Code, _ = strconv.Atoi(code)
		} else {
			// v2.4 and earlier: ERR-1 segment^sequence^field^code&text&table
			e.Location = locationString(get(s, "1-1"), get(s, "1-2"), get(s, "1-3"))
			e.Code, _ = strconv.Atoi(get(s, "1-4-1"))
			if e.Text == "" {
				e.Text = get(s, "1-4-2")
			}
		}
		if e.Text == "" {
			e.Text = get(s, "3-2")
		}
		r.Errors = append(r.Errors, e)
	}
	return r, nil
}

func locationString(seg, seq, field string) string {
	if seg == "" {
		return ""
	}
	loc := seg
	if seq != "" && seq != "1" {
		loc += "(" + seq + ")"
	}
	if field != "" && field != "0" {
		loc += "-" + field
	}
	return loc
}
