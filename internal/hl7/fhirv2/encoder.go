package fhirv2

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

// Version is the HL7 v2 version written in MSH-12.
const Version = "2.5.1"

// Options configures an Encoder.
type Options struct {
	// MSH-3 to MSH-6 (namespace ids; empty ones are left out).
	SendingApplication, SendingFacility, ReceivingApplication, ReceivingFacility string
	// Now gives MSH-7 and EVN-2 (nil: time.Now).
	Now func() time.Time
	// ControlID gives MSH-10 (nil: 20 random hex digits). It is called once
	// per message and must be safe for concurrent use when the Encoder is.
	ControlID func() string
	// IdentifierSystems maps a FHIR identifier system URI to the HL7 v2
	// assigning authority (namespace id) written in CX-4, EI-2 and XCN-9.
	IdentifierSystems map[string]string
	// ProcessingID is MSH-11 ("" : "P", production).
	ProcessingID string
}

// Encoder builds HL7 v2 messages from FHIR resources. It holds no mutable
// state: it is safe for concurrent use when Options.Now and
// Options.ControlID are.
type Encoder struct {
	opts Options
}

// New returns an Encoder with opts.
func New(opts Options) *Encoder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ControlID == nil {
		opts.ControlID = randomControlID
	}
	if opts.ProcessingID == "" {
		opts.ProcessingID = "P"
	}
	// a private copy: the caller may change its map afterwards
	sys := make(map[string]string, len(opts.IdentifierSystems))
	for k, v := range opts.IdentifierSystems {
		sys[k] = v
	}
	opts.IdentifierSystems = sys
	return &Encoder{opts: opts}
}

func randomControlID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

const v2TimeLayout = "20060102150405-0700"

// builder writes one message and keeps the first error, so the segment code
// reads as a list of assignments.
type builder struct {
	m   *hl7.Message
	d   hl7.Delimiters
	occ map[string]int
	now time.Time
	err error
}

// seg is one segment of a builder's message.
type seg struct {
	b   *builder
	s   *hl7.Segment
	id  string
	occ int
}

// start begins a message with its MSH.
func (e *Encoder) start(code, trigger, structure string) *builder {
	m := hl7.New(hl7.DefaultDelimiters, Version)
	b := &builder{m: m, d: m.Delimiters(), occ: map[string]int{"MSH": 1}, now: e.opts.Now()}
	msh := seg{b: b, s: m.Segment("MSH", 1), id: "MSH", occ: 1}
	msh.set("3", e.opts.SendingApplication)
	msh.set("4", e.opts.SendingFacility)
	msh.set("5", e.opts.ReceivingApplication)
	msh.set("6", e.opts.ReceivingFacility)
	msh.set("7", b.now.Format(v2TimeLayout))
	msh.set("9-1", code)
	msh.set("9-2", trigger)
	msh.set("9-3", structure)
	id := e.opts.ControlID()
	if id == "" {
		b.fail(fmt.Errorf("fhirv2: Options.ControlID returned an empty control id"))
	}
	msh.set("10", id)
	msh.set("11", e.opts.ProcessingID)
	return b
}

func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// add appends a segment.
func (b *builder) add(id string) seg {
	b.occ[id]++
	return seg{b: b, s: b.m.AddSegment(id), id: id, occ: b.occ[id]}
}

// finish declares UTF-8 in MSH-18 when any value is not ASCII and returns the
// message or the first error.
func (b *builder) finish() (*hl7.Message, error) {
	if b.err != nil {
		return nil, b.err
	}
	for _, s := range b.m.Segments() {
		if !isASCII(s.Raw()) {
			if err := b.m.Set("MSH-18", "UNICODE UTF-8"); err != nil {
				return nil, fmt.Errorf("fhirv2: set MSH-18: %w", err)
			}
			break
		}
	}
	return b.m, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// set writes v (escaped by package hl7) at rel, a path relative to the
// segment ("5", "3(2)-4-1"). Empty values are not written, so no empty
// trailing components appear. Control characters other than CR and LF
// (which the library escapes) are written as \Xhh\ so the segment stays
// valid and the value reads back unchanged.
func (w seg) set(rel, v string) {
	if v == "" || w.b.err != nil {
		return
	}
	var err error
	if hasControl(v) {
		raw := hexControls(hl7.Escape(v, w.b.d), w.b.d.Escape)
		err = w.b.m.SetRaw(w.id+"("+strconv.Itoa(w.occ)+")-"+rel, raw)
	} else {
		err = w.s.Set(rel, v)
	}
	if err != nil {
		w.b.fail(fmt.Errorf("fhirv2: set %s-%s: %w", w.id, rel, err))
	}
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\n' && c != '\r') || c == 0x7f {
			return true
		}
	}
	return false
}

func hexControls(s string, esc byte) string {
	const hexdigits = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			sb.WriteByte(esc)
			sb.WriteByte('X')
			sb.WriteByte(hexdigits[c>>4])
			sb.WriteByte(hexdigits[c&0xF])
			sb.WriteByte(esc)
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// ts writes a FHIR date, dateTime or instant as an HL7 DTM; element names
// the FHIR element for the error (values are never quoted: they may be PHI).
func (w seg) ts(rel, fhirTime, element string) {
	if fhirTime == "" {
		return
	}
	v, ok := v2Time(fhirTime)
	if !ok {
		w.b.fail(invalid("%s is not a FHIR date/time", element))
		return
	}
	w.set(rel, v)
}

// date writes the date part (YYYY[MM[DD]]) of a FHIR date or dateTime.
func (w seg) date(rel, fhirTime, element string) {
	if fhirTime == "" {
		return
	}
	v, ok := v2Time(fhirTime)
	if !ok {
		w.b.fail(invalid("%s is not a FHIR date/time", element))
		return
	}
	if len(v) > 8 {
		v = v[:8]
	}
	w.set(rel, v)
}

// v2Time converts a FHIR date, dateTime or instant (YYYY, YYYY-MM,
// YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.f+]][Z|(+|-)hh:mm]) to an HL7 v2 DTM
// (YYYY[MM[DD[HHMM[SS[.ffff]]]]][+/-ZZZZ]), keeping precision and offset.
func v2Time(s string) (string, bool) {
	out := make([]byte, 0, 24)
	i := 0
	num := func(n, lo, hi int) bool {
		if i+n > len(s) {
			return false
		}
		v := 0
		for j := i; j < i+n; j++ {
			if s[j] < '0' || s[j] > '9' {
				return false
			}
			v = v*10 + int(s[j]-'0')
		}
		if v < lo || v > hi {
			return false
		}
		out = append(out, s[i:i+n]...)
		i += n
		return true
	}
	sep := func(c byte) bool {
		if i < len(s) && s[i] == c {
			i++
			return true
		}
		return false
	}
	if !num(4, 0, 9999) {
		return "", false
	}
	if i == len(s) {
		return string(out), true
	}
	if !sep('-') || !num(2, 1, 12) {
		return "", false
	}
	if i == len(s) {
		return string(out), true
	}
	if !sep('-') || !num(2, 1, 31) {
		return "", false
	}
	if i == len(s) {
		return string(out), true
	}
	if !sep('T') || !num(2, 0, 23) || !sep(':') || !num(2, 0, 59) {
		return "", false
	}
	if sep(':') {
		if !num(2, 0, 60) {
			return "", false
		}
		if sep('.') {
			j := i
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			frac := s[j:i]
			if frac == "" {
				return "", false
			}
			if len(frac) > 4 {
				frac = frac[:4]
			}
			out = append(out, '.')
			out = append(out, frac...)
		}
	}
	if i == len(s) {
		return string(out), true
	}
	switch s[i] {
	case 'Z':
		i++
		out = append(out, "+0000"...)
	case '+', '-':
		out = append(out, s[i])
		i++
		if !num(2, 0, 14) || !sep(':') || !num(2, 0, 59) {
			return "", false
		}
	default:
		return "", false
	}
	if i != len(s) {
		return "", false
	}
	return string(out), true
}

// minutesBetween returns the whole minutes from start to end (two FHIR
// instants), or 0 when either cannot be read or end is not after start.
func minutesBetween(start, end string) int {
	a, err1 := time.Parse(time.RFC3339, start)
	b, err2 := time.Parse(time.RFC3339, end)
	if err1 != nil || err2 != nil || !b.After(a) {
		return 0
	}
	return int(b.Sub(a) / time.Minute)
}
