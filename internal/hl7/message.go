package hl7

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Message is one parsed HL7 v2 message. It keeps the bytes it was parsed
// from; segments are split into fields only when asked, and fields into
// repetitions, components and subcomponents only when a value is read.
//
// A Message is not safe for concurrent mutation; concurrent reads of a
// message nobody modifies are safe.
type Message struct {
	d          Delimiters
	raw        string // the input (shared by all messages of a ParseAll)
	start, end int    // the message's span in raw
	canonical  bool   // raw[start:end] is exactly the CR-joined segments
	modified   bool
	segs       []*Segment
	cs         charset
	csName     string
	empty      Field // returned for absent fields
}

// New returns a message with only MSH-1 and MSH-2 set (and MSH-12 = version
// when version is not empty); add to it with Set and AddSegment. Invalid
// delimiters (repeated characters, letters, digits, spaces) are replaced
// by DefaultDelimiters.
func New(d Delimiters, version string) *Message {
	if !d.valid() {
		d = DefaultDelimiters
	}
	m := &Message{d: d, start: -1, canonical: false, modified: true, csName: "ASCII"}
	raw := "MSH" + string(d.Field) + d.encodingChars()
	s := &Segment{m: m, id: "MSH", raw: raw, off: -1, index: 1, header: true}
	m.segs = []*Segment{s}
	if version != "" {
		if err := m.Set("MSH-12", version); err != nil {
			// version with characters the default charset cannot write: keep it out
			_ = err
		}
	}
	return m
}

// Delimiters returns the message's encoding characters.
func (m *Message) Delimiters() Delimiters { return m.d }

// Segments returns the segments in order. The slice is the message's own:
// do not modify it (use AddSegment, InsertSegment, RemoveSegment).
func (m *Message) Segments() []*Segment { return m.segs }

// Segment returns the occurrence-th (1-based) segment with the given id, or
// nil when there is none. An occurrence below 1 means the first.
func (m *Message) Segment(id string, occurrence int) *Segment {
	if occurrence < 1 {
		occurrence = 1
	}
	for _, s := range m.segs {
		if s.id == id {
			occurrence--
			if occurrence == 0 {
				return s
			}
		}
	}
	return nil
}

// SegmentsByID returns every segment with the given id, in order.
func (m *Message) SegmentsByID(id string) []*Segment {
	var out []*Segment
	for _, s := range m.segs {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

func (m *Message) countSegments(id string) int {
	n := 0
	for _, s := range m.segs {
		if s.id == id {
			n++
		}
	}
	return n
}

// AddSegment appends an empty segment with the given id (three characters,
// e.g. "PID" or "ZPV") and returns it.
func (m *Message) AddSegment(id string) *Segment {
	return m.InsertSegment(len(m.segs), id)
}

// InsertSegment inserts an empty segment at index (0-based into Segments();
// clamped to the valid range) and returns it.
func (m *Message) InsertSegment(index int, id string) *Segment {
	if index < 0 {
		index = 0
	}
	if index > len(m.segs) {
		index = len(m.segs)
	}
	s := &Segment{m: m, id: id, raw: id, off: -1, header: id == "MSH" || id == "FHS" || id == "BHS"}
	if s.header {
		s.raw = id + string(m.d.Field) + m.d.encodingChars()
	}
	m.segs = append(m.segs, nil)
	copy(m.segs[index+1:], m.segs[index:])
	m.segs[index] = s
	m.renumber(index)
	m.modified = true
	return s
}

// RemoveSegment removes the segment at index (0-based into Segments()); an
// index out of range does nothing.
func (m *Message) RemoveSegment(index int) {
	if index < 0 || index >= len(m.segs) {
		return
	}
	copy(m.segs[index:], m.segs[index+1:])
	m.segs[len(m.segs)-1] = nil
	m.segs = m.segs[:len(m.segs)-1]
	m.renumber(index)
	m.modified = true
}

func (m *Message) renumber(from int) {
	for i := from; i < len(m.segs); i++ {
		m.segs[i].index = i + 1
	}
}

// Get returns the value at path (see Path), unescaped and decoded to UTF-8.
// It returns "" with a nil error when the value is absent, and an error only
// for a malformed path. MSH-1 and MSH-2 return the delimiters as written.
func (m *Message) Get(path string) (string, error) {
	p, err := ParsePath(path)
	if err != nil {
		return "", err
	}
	return m.GetPath(p), nil
}

// GetPath is Get with a parsed path.
func (m *Message) GetPath(p Path) string {
	s := m.Segment(p.Segment, p.Occurrence)
	if s == nil {
		return ""
	}
	return s.value(p)
}

// GetAll returns every value the path matches: all occurrences of the
// segment when the path names none, and all repetitions of the field when the
// path names none. A segment whose field is empty contributes one "" so that,
// for a field that does not repeat, the i-th value belongs to the i-th
// segment.
func (m *Message) GetAll(path string) ([]string, error) {
	p, err := ParsePath(path)
	if err != nil {
		return nil, err
	}
	n := 1
	if p.Occurrence == 0 {
		n = m.countSegments(p.Segment)
	}
	out := make([]string, 0, n)
	occ := 0
	for _, s := range m.segs {
		if s.id != p.Segment {
			continue
		}
		occ++
		if p.Occurrence > 0 && occ != p.Occurrence {
			continue
		}
		if p.Repetition > 0 || (s.header && p.Field <= 2) {
			out = append(out, s.value(p))
			continue
		}
		f := s.rawField(p.Field)
		q := p
		for r := 1; ; r++ {
			rep, ok := nthPart(f, m.d.Repetition, r-1)
			if !ok {
				break
			}
			q.Repetition = r
			out = append(out, m.decode(pick(rep, &m.d, q.Component, q.Subcomponent)))
		}
	}
	return out, nil
}

// Set writes value (escaped, and encoded in the message's character set) at
// path, creating the segment (occurrence == count+1 appends one), fields,
// repetitions and components as needed. Only the touched segment is
// re-encoded. MSH-1 and MSH-2 cannot be set (the delimiters are fixed when a
// message is created).
func (m *Message) Set(path, value string) error {
	p, err := ParsePath(path)
	if err != nil {
		return err
	}
	return m.SetPath(p, value)
}

// SetPath is Set with a parsed path.
func (m *Message) SetPath(p Path, value string) error {
	enc, err := m.encodeValue(value)
	if err != nil {
		return err
	}
	return m.setRaw(p, enc)
}

// SetRaw is Set without escaping: raw is written as it is, so it may carry
// components ("Smith^John") or escape sequences. It must not contain the
// field separator or a line break (nor, without a repetition in the path,
// the repetition separator beyond what the caller means).
func (m *Message) SetRaw(path, raw string) error {
	p, err := ParsePath(path)
	if err != nil {
		return err
	}
	if strings.IndexByte(raw, m.d.Field) >= 0 || strings.ContainsAny(raw, "\r\n") {
		return fmt.Errorf("hl7: SetRaw %s: value holds the field separator or a line break", p)
	}
	return m.setRaw(p, raw)
}

func (m *Message) setRaw(p Path, enc string) error {
	occ := p.Occurrence
	if occ < 1 {
		occ = 1
	}
	s := m.Segment(p.Segment, occ)
	if s == nil {
		if n := m.countSegments(p.Segment); n != occ-1 {
			return fmt.Errorf("hl7: set %s: the message has %d %s segment(s); occurrence %d cannot be created", p, n, p.Segment, occ)
		}
		s = m.AddSegment(p.Segment)
	}
	return s.setRaw(p, enc)
}

func (m *Message) encodeValue(v string) (string, error) {
	v, err := encodeCharset(v, m.cs, m.csName)
	if err != nil {
		return "", err
	}
	return Escape(v, m.d), nil
}

// decode unescapes a raw value and converts it to UTF-8.
func (m *Message) decode(raw string) string {
	return unescapeCS(raw, &m.d, m.cs)
}

// Encode returns the message: segments joined by '\r', with a trailing '\r'.
// For an unmodified, well-formed message (CR segment ends, nothing stray)
// that is byte for byte the input.
func (m *Message) Encode() []byte {
	if !m.modified && m.canonical {
		return []byte(m.raw[m.start:m.end])
	}
	return m.appendEncoded(nil, '\r')
}

// AppendEncode appends Encode's output to dst.
func (m *Message) AppendEncode(dst []byte) []byte {
	if !m.modified && m.canonical {
		return append(dst, m.raw[m.start:m.end]...)
	}
	return m.appendEncoded(dst, '\r')
}

func (m *Message) appendEncoded(dst []byte, term byte) []byte {
	n := 0
	for _, s := range m.segs {
		n += len(s.raw) + 1
	}
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), len(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	for _, s := range m.segs {
		dst = append(dst, s.raw...)
		dst = append(dst, term)
	}
	return dst
}

// String is Encode with segments ended by '\n' instead of '\r', for people.
func (m *Message) String() string {
	return string(m.appendEncoded(nil, '\n'))
}

// Charset returns MSH-18 (or ParseOptions.Charset) normalised: "ASCII" (also
// when MSH-18 is empty), "UTF-8", "ISO-8859-1", "ISO-8859-15", or the
// upper-cased value for character sets that are not decoded.
func (m *Message) Charset() string { return m.csName }

// Header holds convenience values from MSH, unescaped.
type Header struct {
	SendingApplication, SendingFacility, ReceivingApplication, ReceivingFacility string // HD namespace id, or universal id when that is all there is
	Timestamp                                                                    string // MSH-7 as sent
	MessageCode                                                                  string // MSH-9-1, e.g. "ADT"
	TriggerEvent                                                                 string // MSH-9-2, e.g. "A01"
	Structure                                                                    string // MSH-9-3, e.g. "ADT_A01" (may be empty)
	ControlID                                                                    string // MSH-10
	ProcessingID                                                                 string // MSH-11-1
	Version                                                                      string // MSH-12-1
	AcceptAckType                                                                string // MSH-15
	AppAckType                                                                   string // MSH-16
	Charset                                                                      string // MSH-18 (first repetition) as sent
}

// Header returns the convenience values of the message's first MSH.
func (m *Message) Header() Header {
	s := m.Segment("MSH", 1)
	if s == nil {
		return Header{}
	}
	get := func(f, c int) string { return m.decode(s.rawValue(f, 1, c, 0)) }
	hd := func(f int) string {
		if v := get(f, 1); v != "" {
			return v
		}
		return get(f, 2)
	}
	return Header{
		SendingApplication:   hd(3),
		SendingFacility:      hd(4),
		ReceivingApplication: hd(5),
		ReceivingFacility:    hd(6),
		Timestamp:            get(7, 1),
		MessageCode:          get(9, 1),
		TriggerEvent:         get(9, 2),
		Structure:            get(9, 3),
		ControlID:            get(10, 1),
		ProcessingID:         get(11, 1),
		Version:              get(12, 1),
		AcceptAckType:        get(15, 1),
		AppAckType:           get(16, 1),
		Charset:              get(18, 0),
	}
}

// Segment is one segment of a message.
type Segment struct {
	m      *Message
	id     string
	raw    string // the segment without its terminator
	off    int    // byte offset of raw in the input; -1 once rebuilt
	index  int
	header bool // MSH, FHS or BHS: field 1 is the separator, field 2 the encoding characters
	fields atomic.Pointer[[]Field]
}

// ID returns the segment id, e.g. "PID".
func (s *Segment) ID() string { return s.id }

// Index returns the segment's 1-based position in its message.
func (s *Segment) Index() int { return s.index }

// Offset returns the byte offset of the segment in the parsed input, or -1
// for a segment that was added or modified.
func (s *Segment) Offset() int { return s.off }

// NumFields returns the highest field number present as written (trailing
// empty fields count). For MSH, MSH-1 counts as field 1.
func (s *Segment) NumFields() int {
	n := strings.Count(s.raw, string(s.m.d.Field))
	if s.header {
		return n + 1
	}
	return n
}

// Field returns field n (1-based). It is never nil: an absent field is
// empty. For MSH, Field(1) is the field separator and Field(2) the encoding
// characters.
func (s *Segment) Field(n int) *Field {
	fs := s.fieldIndex()
	if n < 1 || n > len(fs) {
		return &s.m.empty
	}
	return &fs[n-1]
}

// fieldIndex splits the segment into fields once; concurrent callers may
// both split, and either result is kept.
func (s *Segment) fieldIndex() []Field {
	if p := s.fields.Load(); p != nil {
		return *p
	}
	m := s.m
	fsep := m.d.Field
	var out []Field
	rest := s.raw
	k := strings.IndexByte(rest, fsep)
	if k >= 0 {
		rest = rest[k+1:]
		n := strings.Count(rest, string(fsep)) + 1
		if s.header {
			n++
		}
		out = make([]Field, 0, n)
		if s.header {
			out = append(out, Field{m: m, raw: s.raw[k : k+1], literal: true})
		}
		first := true
		for {
			j := strings.IndexByte(rest, fsep)
			part := rest
			if j >= 0 {
				part = rest[:j]
			}
			out = append(out, Field{m: m, raw: part, literal: first && s.header})
			first = false
			if j < 0 {
				break
			}
			rest = rest[j+1:]
		}
	}
	s.fields.Store(&out)
	return out
}

// Get returns the value at a path relative to the segment ("5-1",
// "3(2)-4-2"), unescaped.
func (s *Segment) Get(path string) (string, error) {
	p, err := parseRelPath(path)
	if err != nil {
		return "", err
	}
	return s.value(p), nil
}

// Set writes value (escaped) at a path relative to the segment.
func (s *Segment) Set(path, value string) error {
	p, err := parseRelPath(path)
	if err != nil {
		return err
	}
	p.Segment = s.id
	enc, err := s.m.encodeValue(value)
	if err != nil {
		return err
	}
	return s.setRaw(p, enc)
}

// Encode returns the segment's bytes without a terminator.
func (s *Segment) Encode() []byte { return []byte(s.raw) }

// Raw returns the segment's text without a terminator.
func (s *Segment) Raw() string { return s.raw }

func (s *Segment) value(p Path) string {
	if s.header && p.Field <= 2 {
		return s.rawField(p.Field)
	}
	return s.m.decode(s.rawValue(p.Field, p.Repetition, p.Component, p.Subcomponent))
}

// rawField returns the raw text of field f (all repetitions).
func (s *Segment) rawField(f int) string {
	if s.header {
		switch {
		case f == 1:
			if len(s.raw) > 3 {
				return s.raw[3:4]
			}
			return ""
		case f < 1:
			return ""
		}
		f--
	}
	v, _ := nthPart(s.raw, s.m.d.Field, f)
	return v
}

// rawValue returns the raw (escaped) text at field f, repetition r (0 = 1),
// component c (0 = all), subcomponent sc (0 = all).
func (s *Segment) rawValue(f, r, c, sc int) string {
	fv := s.rawField(f)
	if fv == "" {
		return ""
	}
	if s.header && f <= 2 {
		return fv
	}
	if r < 1 {
		r = 1
	}
	rv, _ := nthPart(fv, s.m.d.Repetition, r-1)
	return pick(rv, &s.m.d, c, sc)
}

// pick selects component c and subcomponent sc of a repetition (0 = all).
func pick(rep string, d *Delimiters, c, sc int) string {
	if c == 0 || rep == "" {
		return rep
	}
	cv, _ := nthPart(rep, d.Component, c-1)
	if sc == 0 || cv == "" {
		return cv
	}
	v, _ := nthPart(cv, d.Subcomponent, sc-1)
	return v
}

// fieldOffset returns the byte offset of field f within the segment's raw
// text (the start of the segment when f is absent).
func (s *Segment) fieldOffset(f int) int {
	if s.header {
		if f <= 1 {
			return 3
		}
		f--
	}
	off := 0
	for i := 0; i < f; i++ {
		j := strings.IndexByte(s.raw[off:], s.m.d.Field)
		if j < 0 {
			return len(s.raw)
		}
		off += j + 1
	}
	return off
}

func (s *Segment) setRaw(p Path, enc string) error {
	part := p.Field
	if s.header {
		if p.Field <= 2 {
			return fmt.Errorf("hl7: set %s-%d: MSH-1 and MSH-2 (the delimiters) cannot be set", s.id, p.Field)
		}
		part = p.Field - 1
	}
	r := p.Repetition
	if r < 1 {
		r = 1
	}
	idx := make([]int, 0, 4)
	idx = append(idx, part, r-1)
	if p.Component > 0 {
		idx = append(idx, p.Component-1)
		if p.Subcomponent > 0 {
			idx = append(idx, p.Subcomponent-1)
		}
	}
	d := &s.m.d
	seps := [4]byte{d.Field, d.Repetition, d.Component, d.Subcomponent}
	nr := setIn(s.raw, seps[:], idx, enc)
	if nr == s.raw {
		return nil
	}
	s.raw = nr
	s.off = -1
	s.fields.Store(nil)
	s.m.modified = true
	return nil
}

// setIn replaces the part at idx (0-based, one index per level) of raw,
// split by seps level by level, with val; missing parts are created. Setting
// "" where nothing exists changes nothing.
func setIn(raw string, seps []byte, idx []int, val string) string {
	if len(idx) == 0 {
		return val
	}
	sep := seps[0]
	i := idx[0]
	start := 0
	for k := 0; k < i; k++ {
		j := strings.IndexByte(raw[start:], sep)
		if j < 0 {
			// part i does not exist: pad
			if val == "" {
				return raw
			}
			missing := i - k
			inner := setIn("", seps[1:], idx[1:], val)
			return raw + strings.Repeat(string(sep), missing) + inner
		}
		start += j + 1
	}
	end := len(raw)
	if j := strings.IndexByte(raw[start:], sep); j >= 0 {
		end = start + j
	}
	inner := setIn(raw[start:end], seps[1:], idx[1:], val)
	return raw[:start] + inner + raw[end:]
}

// nthPart returns the n-th (0-based) part of s split by sep.
func nthPart(s string, sep byte, n int) (string, bool) {
	for ; n > 0; n-- {
		j := strings.IndexByte(s, sep)
		if j < 0 {
			return "", false
		}
		s = s[j+1:]
	}
	if j := strings.IndexByte(s, sep); j >= 0 {
		return s[:j], true
	}
	return s, true
}

// Field is one field of a segment (all its repetitions).
type Field struct {
	m       *Message
	raw     string
	literal bool // MSH-1 / MSH-2: not split, not unescaped
}

// NumRepetitions returns how many repetitions the field has (0 when empty).
func (f *Field) NumRepetitions() int {
	if f.raw == "" {
		return 0
	}
	if f.literal {
		return 1
	}
	return strings.Count(f.raw, string(f.m.d.Repetition)) + 1
}

// Rep returns repetition i (1-based); never nil.
func (f *Field) Rep(i int) *Rep {
	if f.m == nil || i < 1 {
		return &Rep{}
	}
	if f.literal {
		if i == 1 {
			return &Rep{m: f.m, raw: f.raw, literal: true}
		}
		return &Rep{m: f.m}
	}
	v, _ := nthPart(f.raw, f.m.d.Repetition, i-1)
	return &Rep{m: f.m, raw: v}
}

// String returns the first repetition unescaped: its components, each
// decoded, joined by the component separator (and subcomponents by the
// subcomponent separator). MSH-1 and MSH-2 are returned as written.
func (f *Field) String() string {
	if f.m == nil || f.raw == "" {
		return ""
	}
	if f.literal {
		return f.raw
	}
	v, _ := nthPart(f.raw, f.m.d.Repetition, 0)
	return f.m.decode(v)
}

// Raw returns the field's text as written (escaped), all repetitions.
func (f *Field) Raw() string { return f.raw }

// IsEmpty reports whether the field has no text.
func (f *Field) IsEmpty() bool { return f.raw == "" }

// IsNull reports whether the field is the explicit null `""`.
func (f *Field) IsNull() bool { return f.raw == `""` }

// Rep is one repetition of a field.
type Rep struct {
	m       *Message
	raw     string
	literal bool
}

// NumComponents returns how many components the repetition has (0 when empty).
func (r *Rep) NumComponents() int {
	if r.raw == "" {
		return 0
	}
	if r.literal {
		return 1
	}
	return strings.Count(r.raw, string(r.m.d.Component)) + 1
}

// Component returns component i (1-based), unescaped; its subcomponents are
// joined by the subcomponent separator.
func (r *Rep) Component(i int) string {
	if r.m == nil || r.raw == "" || i < 1 {
		return ""
	}
	if r.literal {
		if i == 1 {
			return r.raw
		}
		return ""
	}
	v, _ := nthPart(r.raw, r.m.d.Component, i-1)
	return r.m.decode(v)
}

// NumSubcomponents returns how many subcomponents component i has.
func (r *Rep) NumSubcomponents(i int) int {
	if r.m == nil || r.raw == "" || i < 1 || r.literal {
		if r.literal && i == 1 && r.raw != "" {
			return 1
		}
		return 0
	}
	v, _ := nthPart(r.raw, r.m.d.Component, i-1)
	if v == "" {
		return 0
	}
	return strings.Count(v, string(r.m.d.Subcomponent)) + 1
}

// Subcomponent returns subcomponent j of component i (both 1-based), unescaped.
func (r *Rep) Subcomponent(i, j int) string {
	if r.m == nil || r.raw == "" || i < 1 || j < 1 {
		return ""
	}
	if r.literal {
		if i == 1 && j == 1 {
			return r.raw
		}
		return ""
	}
	return r.m.decode(pick(r.raw, &r.m.d, i, j))
}

// String returns the repetition unescaped (components joined by the
// component separator).
func (r *Rep) String() string {
	if r.m == nil || r.literal {
		return r.raw
	}
	return r.m.decode(r.raw)
}

// Raw returns the repetition's text as written (escaped).
func (r *Rep) Raw() string { return r.raw }

func itoa(n int) string { return strconv.Itoa(n) }
