package hl7

import (
	"bytes"
	"sort"
	"strings"
)

// Delimiters are the message's encoding characters, read from MSH-1 and MSH-2.
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent byte
	Truncation                                         byte // v2.7+ fifth encoding character ('#'), 0 when absent
}

// DefaultDelimiters are the recommended encoding characters "|^~\&".
// Treat it as read-only.
var DefaultDelimiters = Delimiters{'|', '^', '~', '\\', '&', 0}

// encodingChars returns MSH-2 as written for d.
func (d Delimiters) encodingChars() string {
	b := []byte{d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		b = append(b, d.Truncation)
	}
	return string(b)
}

// valid reports whether d can be used to write a message: all characters
// distinct, none a letter, digit, space or line break.
func (d Delimiters) valid() bool {
	cs := []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		cs = append(cs, d.Truncation)
	}
	for i, c := range cs {
		if !delimiterChar(c) {
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

// delimiterChar reports whether c may serve as a delimiter: printable ASCII
// punctuation (no letters, digits or space).
func delimiterChar(c byte) bool {
	return c > ' ' && c < 0x7f && !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z')
}

// ParseOptions chooses how Parse treats defects and character sets.
type ParseOptions struct {
	Strict  bool   // report every defect (see ParseError); lenient otherwise
	Charset string // override MSH-18 ("" = use MSH-18; default ASCII/UTF-8 pass-through)
}

// Parse parses one message. Lenient mode accepts CR, LF or CRLF segment
// ends, trailing delimiters, missing trailing fields, stray whitespace and
// blank lines and a leading BOM; it fails (with a *ParseError) only when
// there is no usable MSH. Strict mode checks everything and returns a
// *ParseError listing every defect with its position; the message is
// returned beside that error whenever it could be read (it is what lenient
// mode would have returned), so a caller can still ACK it.
//
// The input is copied; the caller may reuse data afterwards.
func Parse(data []byte, opts ParseOptions) (*Message, error) {
	raw := string(data)
	p := parser{raw: raw, strict: opts.Strict}
	m := p.message(0, len(raw), opts)
	if len(p.defects) > 0 && (opts.Strict || m == nil) {
		return m, p.err()
	}
	return m, nil
}

// parser holds the state of one Parse or ParseAll call.
type parser struct {
	raw     string
	strict  bool
	msgNum  int // Position.Message for defects (0 in Parse)
	defects []Defect
}

func (p *parser) add(pos Position, code, msg string) {
	pos.Message = p.msgNum
	p.defects = append(p.defects, Defect{Pos: pos, Code: code, Message: msg})
}

// err returns the defects found, in input order, as a *ParseError.
func (p *parser) err() *ParseError {
	sort.SliceStable(p.defects, func(i, j int) bool {
		a, b := p.defects[i].Pos, p.defects[j].Pos
		if a.Message != b.Message {
			return a.Message < b.Message
		}
		return a.Offset < b.Offset
	})
	return &ParseError{Defects: p.defects}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\v' || c == '\f' }

// message parses raw[start:end] as one message. It returns nil when there is
// no usable MSH (a defect says why).
func (p *parser) message(start, end int, opts ParseOptions) *Message {
	raw := p.raw
	pos := start
	canonical := true
	if strings.HasPrefix(raw[pos:end], "\xEF\xBB\xBF") {
		if p.strict {
			p.add(Position{Offset: pos}, CodeBOM, "byte order mark before MSH")
		}
		pos += 3
		canonical = false
	}
	// leading whitespace and blank lines
	ws := pos
	for pos < end && (isSpace(raw[pos]) || raw[pos] == '\r' || raw[pos] == '\n') {
		pos++
	}
	if pos > ws {
		canonical = false
		if p.strict {
			p.add(Position{Offset: ws}, CodeStrayWhitespace, "whitespace or blank lines before MSH")
		}
	}
	if end-pos < 4 || raw[pos:pos+3] != "MSH" {
		p.add(Position{Segment: 1, Offset: pos}, CodeMissingMSH, "message does not start with an MSH segment")
		return nil
	}
	d, ok := p.delimiters(raw, pos, end)
	if !ok {
		return nil
	}

	m := &Message{d: d, raw: raw, start: pos}
	// count an upper bound of the segments so the slices never grow
	body := raw[pos:end]
	hasLF := strings.IndexByte(body, '\n') >= 0
	n := strings.Count(body, "\r") + 1
	if hasLF {
		n += strings.Count(body, "\n")
		canonical = false
	}
	store := make([]Segment, 0, n)
	fs := d.Field
	nextCR, nextLF := -1, -1 // next CR / LF at or after pos (end when none)
	for pos < end {
		// find the end of the line
		if nextCR < pos {
			nextCR = end
			if k := strings.IndexByte(raw[pos:end], '\r'); k >= 0 {
				nextCR = pos + k
			}
		}
		e := nextCR
		if hasLF {
			if nextLF < pos {
				nextLF = end
				if k := strings.IndexByte(raw[pos:end], '\n'); k >= 0 {
					nextLF = pos + k
				}
			}
			e = min(e, nextLF)
		}
		next := e
		switch {
		case e >= end:
			// last line without a terminator
		case raw[e] == '\r' && e+1 < end && raw[e+1] == '\n':
			next = e + 2
		default:
			next = e + 1
		}
		line := raw[pos:e]
		lineOff := pos
		segNum := len(store) + 1
		// stray whitespace before the segment id
		if len(line) > 0 && isSpace(line[0]) {
			k := 0
			for k < len(line) && isSpace(line[k]) {
				k++
			}
			canonical = false
			if p.strict {
				p.add(Position{Segment: segNum, Offset: lineOff}, CodeStrayWhitespace, "whitespace before the segment id")
			}
			line = line[k:]
			lineOff += k
		}
		if len(line) == 0 {
			canonical = false
			if p.strict && pos < end && !(e >= end && pos == e) {
				p.add(Position{Segment: segNum, Offset: pos}, CodeBlankLine, "empty line between segments")
			}
			pos = next
			continue
		}
		store = store[:len(store)+1]
		s := &store[len(store)-1]
		s.m = m
		s.raw = line
		s.off = lineOff
		s.index = segNum
		if k := strings.IndexByte(line, fs); k >= 0 {
			s.id = line[:k]
		} else {
			s.id = line
		}
		s.header = s.id == "MSH" || s.id == "FHS" || s.id == "BHS"
		if p.strict {
			if e >= end {
				p.add(Position{Segment: segNum, SegmentID: posID(s.id), Offset: e}, CodeMissingTerminator, "segment is not ended by a carriage return")
			} else if raw[e] != '\r' || next != e+1 {
				p.add(Position{Segment: segNum, SegmentID: posID(s.id), Offset: e}, CodeBadTerminator, "segment ended by a line feed instead of a carriage return")
			}
		}
		if e >= end {
			canonical = false
		}
		if p.strict && segNum > 1 && s.id == "MSH" {
			p.add(Position{Segment: segNum, SegmentID: "MSH", Offset: lineOff}, CodeUnexpectedMSH, "a second MSH inside one message (use ParseAll for files)")
		}
		pos = next
	}
	m.end = pos
	m.canonical = canonical
	m.segs = make([]*Segment, len(store))
	for i := range store {
		m.segs[i] = &store[i]
	}
	// character set
	csv := opts.Charset
	fromMSH := csv == ""
	if fromMSH {
		csv = m.segs[0].rawValue(18, 1, 0, 0)
	}
	info := lookupCharset(csv)
	m.csName = info.name
	m.cs = info.cs
	if p.strict {
		if !info.supported {
			pos := Position{Segment: 1, SegmentID: "MSH", Offset: m.segs[0].off}
			if fromMSH {
				pos.Field = 18
				pos.Repetition = 1
				pos.Offset += m.segs[0].fieldOffset(18)
			}
			p.add(pos, CodeBadCharset, "character set "+printable(info.name)+" is not supported (ASCII, UTF-8, ISO-8859-1, ISO-8859-15)")
		}
		p.checkMessage(m)
	}
	return m
}

// delimiters reads MSH-1 and MSH-2 starting at raw[pos] ("MSH").
func (p *parser) delimiters(raw string, pos, end int) (Delimiters, bool) {
	fs := raw[pos+3]
	mshPos := Position{Segment: 1, SegmentID: "MSH", Field: 1, Offset: pos + 3}
	if !delimiterChar(fs) {
		p.add(mshPos, CodeBadDelimiters, "MSH-1 (field separator) is not a punctuation character")
		return Delimiters{}, false
	}
	// MSH-2 runs to the next field separator or the end of the line
	k := pos + 4
	for k < end && raw[k] != fs && raw[k] != '\r' && raw[k] != '\n' {
		k++
	}
	enc := raw[pos+4 : k]
	d := Delimiters{Field: fs}
	encPos := Position{Segment: 1, SegmentID: "MSH", Field: 2, Offset: pos + 4}
	fail := func(msg string) (Delimiters, bool) {
		p.add(encPos, CodeBadDelimiters, msg)
		return Delimiters{}, false
	}
	if len(enc) > 5 {
		return fail("MSH-2 (encoding characters) has more than five characters")
	}
	for i := 0; i < len(enc); i++ {
		if !delimiterChar(enc[i]) || enc[i] == fs {
			return fail("MSH-2 (encoding characters) holds a letter, digit, space or the field separator")
		}
		for j := 0; j < i; j++ {
			if enc[j] == enc[i] {
				return fail("MSH-2 (encoding characters) repeats a character")
			}
		}
	}
	slots := []*byte{&d.Component, &d.Repetition, &d.Escape, &d.Subcomponent, &d.Truncation}
	for i := 0; i < len(enc); i++ {
		*slots[i] = enc[i]
	}
	if len(enc) < 4 {
		if p.strict {
			p.add(encPos, CodeBadDelimiters, "MSH-2 (encoding characters) has fewer than four characters")
		}
		// fill the missing ones with the defaults that are still free
		def := []byte{'^', '~', '\\', '&'}
		for i := len(enc); i < 4; i++ {
			c := def[i]
			if strings.IndexByte(enc, c) >= 0 || c == fs {
				// the default is taken: use any free punctuation
				for _, alt := range []byte("^~\\&#!$%*+") {
					if alt != fs && strings.IndexByte(enc, alt) < 0 && !used(d, alt) {
						c = alt
						break
					}
				}
			}
			if used(d, c) {
				return fail("MSH-2 (encoding characters) cannot be completed")
			}
			*slots[i] = c
		}
	}
	return d, true
}

func used(d Delimiters, c byte) bool {
	return c == d.Field || c == d.Component || c == d.Repetition || c == d.Escape || c == d.Subcomponent || (c == d.Truncation && c != 0)
}

// Batch holds the batch and file header and trailer segments of a file
// parsed with ParseAll. Any may be nil. A file with several batches keeps the
// first BHS and the last BTS.
type Batch struct {
	FHS, BHS, BTS, FTS *Segment
}

// lineStart reports the segment id at raw[i] when i starts a line.
func segAt(raw string, i int) string {
	if i+3 > len(raw) {
		return ""
	}
	return raw[i : i+3]
}

// isMSHAt reports whether an MSH segment starts at data[i]: "MSH" followed by
// a character that can be a field separator.
func isHeaderAt(raw string, i int, id string) bool {
	return i+4 <= len(raw) && raw[i:i+3] == id && delimiterChar(raw[i+3])
}

// Split finds message boundaries without parsing fields: every MSH at the
// start of a line starts a message, which runs to the next MSH or batch
// segment (FHS, BHS, BTS, FTS). Lines before the first MSH are not part of
// any message. It returns sub-slices of data.
func Split(data []byte) [][]byte {
	var out [][]byte
	cur := -1
	forEachLine(data, func(ls, le int) {
		i := ls
		for i < le && isSpace(data[i]) {
			i++
		}
		if i+3 > le {
			return
		}
		a, b, c := data[i], data[i+1], data[i+2]
		switch {
		case a == 'M' && b == 'S' && c == 'H' && i+4 <= le && delimiterChar(data[i+3]):
			if cur >= 0 {
				out = append(out, data[cur:ls])
			}
			cur = ls
		case isBatchID(a, b, c) && (i+3 == le || delimiterChar(data[i+3])):
			if cur >= 0 {
				out = append(out, data[cur:ls])
			}
			cur = -1
		}
	})
	if cur >= 0 {
		out = append(out, data[cur:])
	}
	return out
}

// isBatchID reports whether a, b, c spell FHS, BHS, BTS or FTS.
func isBatchID(a, b, c byte) bool {
	return (a == 'F' || a == 'B') && ((b == 'H' && c == 'S') || (b == 'T' && c == 'S'))
}

// forEachLine calls fn with the start and end of every line of data (a line
// ends at CR, LF or CR LF; the terminator is not part of it).
func forEachLine(data []byte, fn func(start, end int)) {
	nextCR, nextLF := -1, -1
	i := 0
	for i < len(data) {
		if nextCR < i {
			nextCR = len(data)
			if k := bytes.IndexByte(data[i:], '\r'); k >= 0 {
				nextCR = i + k
			}
		}
		if nextLF < i {
			nextLF = len(data)
			if k := bytes.IndexByte(data[i:], '\n'); k >= 0 {
				nextLF = i + k
			}
		}
		j := min(nextCR, nextLF)
		fn(i, j)
		if j < len(data) && data[j] == '\r' && j+1 < len(data) && data[j+1] == '\n' {
			j++
		}
		i = j + 1
	}
}

// ParseAll parses a file that holds one message, several messages back to
// back, or a batch or file (FHS/BHS ... BTS/FTS). The batch header and
// trailer segments are returned in b (nil when there are none). In lenient
// mode a message that cannot be read stops the parse: the messages before it
// are returned with the error. In strict mode every message is checked and
// every defect returned (Position.Message says which message), and so are
// batch count mismatches and missing trailers. Input with no MSH at all is
// an error in both modes.
func ParseAll(data []byte, opts ParseOptions) (msgs []*Message, b *Batch, err error) {
	raw := string(data)
	p := parser{raw: raw, strict: opts.Strict}
	var spans, batchLines []lineSpan
	cur, stray := -1, -1
	forEachLine(data, func(ls, le int) {
		i := ls
		if i == 0 && strings.HasPrefix(raw, "\xEF\xBB\xBF") {
			i = 3
		}
		for i < le && isSpace(raw[i]) {
			i++
		}
		if i >= le {
			return
		}
		switch {
		case isHeaderAt(raw, i, "MSH"):
			if cur >= 0 {
				spans = append(spans, lineSpan{cur, ls})
			}
			cur = ls
		case isBatchSegment(raw, i, le):
			if cur >= 0 {
				spans = append(spans, lineSpan{cur, ls})
				cur = -1
			}
			batchLines = append(batchLines, lineSpan{i, le})
		default:
			if cur < 0 && stray < 0 {
				stray = i
			}
		}
	})
	if cur >= 0 {
		spans = append(spans, lineSpan{cur, len(raw)})
	}
	if len(spans) == 0 {
		off := 0
		if stray >= 0 {
			off = stray
		}
		p.add(Position{Offset: off}, CodeMissingMSH, "no MSH segment in the input")
		return nil, nil, &ParseError{Defects: p.defects}
	}
	if stray >= 0 && opts.Strict {
		p.add(Position{Offset: stray}, CodeUnexpectedSegment, "a line outside any message (before MSH or after a batch trailer)")
	}
	for i, sp := range spans {
		p.msgNum = i + 1
		m := p.message(sp.start, sp.end, opts)
		if m == nil {
			if !opts.Strict {
				return msgs, nil, &ParseError{Defects: p.defects}
			}
			continue
		}
		msgs = append(msgs, m)
	}
	p.msgNum = 0
	if len(batchLines) > 0 {
		b = p.batch(raw, batchLines, msgs, spans)
	}
	if len(p.defects) > 0 {
		return msgs, b, p.err()
	}
	return msgs, b, nil
}

// isBatchSegment reports whether a batch header or trailer starts at raw[i].
func isBatchSegment(raw string, i, le int) bool {
	if i+3 > le {
		return false
	}
	switch raw[i : i+3] {
	case "FHS", "BHS", "BTS", "FTS":
		return i+3 == le || delimiterChar(raw[i+3])
	}
	return false
}

type lineSpan struct{ start, end int }

// batch builds the Batch of a file from its header and trailer lines and, in
// strict mode, checks the counts in BTS-1 and FTS-1.
func (p *parser) batch(raw string, lines []lineSpan, msgs []*Message, spans []lineSpan) *Batch {
	// delimiters: from the first FHS/BHS, else the first message, else defaults
	d := DefaultDelimiters
	if len(msgs) > 0 {
		d = msgs[0].d
	}
	for _, l := range lines {
		id := raw[l.start : l.start+3]
		if (id == "FHS" || id == "BHS") && l.end-l.start >= 4 {
			q := parser{raw: raw}
			if hd, ok := q.delimiters(raw, l.start, l.end); ok {
				d = hd
				break
			}
		}
	}
	bm := &Message{d: d, raw: raw, start: -1, csName: "ASCII"}
	if len(msgs) > 0 {
		bm.cs, bm.csName = msgs[0].cs, msgs[0].csName
	}
	b := &Batch{}
	var batches, bhsCount int
	var btsSeen, ftsSeen bool
	msgsInBatch := 0
	// count messages per batch by position
	mi := 0
	for _, l := range lines {
		for mi < len(spans) && spans[mi].start < l.start {
			msgsInBatch++
			mi++
		}
		s := &Segment{m: bm, raw: raw[l.start:l.end], off: l.start, index: len(bm.segs) + 1}
		s.id = raw[l.start : l.start+3]
		s.header = s.id == "FHS" || s.id == "BHS"
		bm.segs = append(bm.segs, s)
		pos := Position{Segment: s.index, SegmentID: s.id, Offset: l.start}
		switch s.id {
		case "FHS":
			if b.FHS == nil {
				b.FHS = s
			}
		case "BHS":
			if b.BHS == nil {
				b.BHS = s
			}
			bhsCount++
			msgsInBatch = 0
		case "BTS":
			b.BTS = s
			btsSeen = true
			batches++
			if p.strict {
				if v := s.rawValue(1, 1, 0, 0); v != "" && v != itoa(msgsInBatch) {
					pos.Field = 1
					pos.Offset += s.fieldOffset(1)
					p.add(pos, CodeBatchCount, "BTS-1 says "+printable(v)+" messages, the batch holds "+itoa(msgsInBatch))
				}
			}
		case "FTS":
			b.FTS = s
			ftsSeen = true
			if p.strict {
				if v := s.rawValue(1, 1, 0, 0); v != "" && v != itoa(batches) {
					pos.Field = 1
					pos.Offset += s.fieldOffset(1)
					p.add(pos, CodeBatchCount, "FTS-1 says "+printable(v)+" batches, the file holds "+itoa(batches))
				}
			}
		}
	}
	if p.strict {
		if b.BHS != nil && !btsSeen {
			p.add(Position{Segment: b.BHS.index, SegmentID: "BHS", Offset: b.BHS.off}, CodeMissingTrailer, "BHS without a BTS")
		}
		if b.FHS != nil && !ftsSeen {
			p.add(Position{Segment: b.FHS.index, SegmentID: "FHS", Offset: b.FHS.off}, CodeMissingTrailer, "FHS without an FTS")
		}
	}
	_ = bhsCount
	return b
}
