package hl7

import (
	"strconv"
	"strings"
)

// Position locates a defect or a value in a message. Numbers are 1-based;
// 0 means "not applicable" (a defect of a whole segment has Field 0).
type Position struct {
	Message      int    // 1-based index of the message in a file (ParseAll); 0 for Parse
	Segment      int    // 1-based index of the segment in the message
	SegmentID    string // "PID"
	Field        int
	Repetition   int
	Component    int
	Subcomponent int
	Offset       int // byte offset in the input (counting a leading BOM)
}

// String renders p for people, e.g.
// "segment 3 (PID) field 5 component 2, byte 123".
func (p Position) String() string {
	var b strings.Builder
	if p.Message > 0 {
		b.WriteString("message ")
		b.WriteString(strconv.Itoa(p.Message))
	}
	if p.Segment > 0 {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString("segment ")
		b.WriteString(strconv.Itoa(p.Segment))
		if p.SegmentID != "" {
			b.WriteString(" (")
			b.WriteString(printable(p.SegmentID))
			b.WriteString(")")
		}
	}
	for _, part := range [...]struct {
		name string
		n    int
	}{{"field", p.Field}, {"repetition", p.Repetition}, {"component", p.Component}, {"subcomponent", p.Subcomponent}} {
		if part.n > 0 {
			if b.Len() > 0 {
				b.WriteString(" ")
			}
			b.WriteString(part.name)
			b.WriteString(" ")
			b.WriteString(strconv.Itoa(part.n))
		}
	}
	if b.Len() > 0 {
		b.WriteString(", ")
	}
	b.WriteString("byte ")
	b.WriteString(strconv.Itoa(p.Offset))
	return b.String()
}

// printable keeps a segment id safe to print: control and non-ASCII bytes
// become '?'. It never shows more than 8 bytes, so a garbage line that has
// no field separator (and may hold PHI) is not echoed into logs.
func printable(s string) string {
	if len(s) > 8 {
		s = s[:8] + "…"
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// Defect codes. They are short, stable identifiers meant for tests, metrics
// and ACK error mapping; the Message beside them is for people.
const (
	CodeMissingMSH          = "missing-msh"          // no MSH segment where a message must start
	CodeBadDelimiters       = "bad-delimiters"       // MSH-1/MSH-2 unusable or irregular
	CodeBOM                 = "bom"                  // a byte order mark before MSH
	CodeStrayWhitespace     = "stray-whitespace"     // whitespace before a segment or a whitespace-only line
	CodeBlankLine           = "blank-line"           // an empty line between segments
	CodeBadTerminator       = "bad-terminator"       // a segment ended by LF or CR LF instead of CR
	CodeMissingTerminator   = "missing-terminator"   // the last segment has no CR
	CodeBadSegmentID        = "bad-segment-id"       // not three characters [A-Z][A-Z0-9][A-Z0-9]
	CodeTrailingDelimiter   = "trailing-delimiter"   // a separator with nothing after it at the end of a segment, field, repetition or component
	CodeBadEscape           = "bad-escape"           // malformed or unknown escape sequence
	CodeBadCharset          = "bad-charset"          // MSH-18 names a character set this parser does not decode
	CodeBadCharacter        = "bad-character"        // a byte that the message's character set does not allow, or a control character
	CodeMissingRequired     = "missing-required"     // a required MSH field is empty
	CodeUnexpectedMSH       = "unexpected-msh"       // a second MSH inside what was parsed as one message
	CodeUnexpectedSegment   = "unexpected-segment"   // a line outside any message in a file
	CodeBatchCount          = "batch-count"          // BTS-1 / FTS-1 does not match what the batch or file holds
	CodeMissingTrailer      = "missing-trailer"      // BHS without BTS or FHS without FTS
	CodeBadValue            = "bad-value"            // a value that does not fit its declared data type (OBX-5 against OBX-2, MSH-7)
	CodeUnsupportedEncoding = "unsupported-encoding" // reserved: an encoding this parser cannot read (e.g. UTF-16)
)

// Defect is one problem found while parsing, with where it is.
// Message never contains field values (they may be PHI).
type Defect struct {
	Pos     Position
	Code    string
	Message string
}

func (d Defect) String() string {
	return d.Pos.String() + ": " + d.Code + ": " + d.Message
}

// ParseError is returned by Parse and ParseAll. In lenient mode it holds the
// one defect that made the input unusable; in strict mode every defect found.
type ParseError struct {
	Defects []Defect
}

// Error reports the first defect with its position, plus "(and N more)".
func (e *ParseError) Error() string {
	if e == nil || len(e.Defects) == 0 {
		return "hl7: parse error"
	}
	s := "hl7: " + e.Defects[0].String()
	if n := len(e.Defects) - 1; n > 0 {
		s += " (and " + strconv.Itoa(n) + " more)"
	}
	return s
}

// Has reports whether e holds a defect with the given code.
func (e *ParseError) Has(code string) bool {
	if e == nil {
		return false
	}
	for _, d := range e.Defects {
		if d.Code == code {
			return true
		}
	}
	return false
}
