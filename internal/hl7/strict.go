package hl7

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Strict-mode checks of a parsed message: segment ids, trailing delimiters,
// escape sequences, characters against the declared character set, and the
// MSH fields every message needs.

// requiredMSH are the MSH fields a message cannot do without (message type,
// control id, processing id, version).
var requiredMSH = [...]struct {
	field int
	name  string
}{{9, "message type"}, {10, "message control id"}, {11, "processing id"}, {12, "version id"}}

func (p *parser) checkMessage(m *Message) {
	for _, s := range m.segs {
		p.checkSegment(m, s)
	}
	msh := m.segs[0]
	for _, r := range requiredMSH {
		if msh.rawValue(r.field, 1, 0, 0) == "" {
			p.add(Position{Segment: 1, SegmentID: "MSH", Field: r.field, Offset: msh.off + msh.fieldOffset(r.field)},
				CodeMissingRequired, "MSH-"+strconv.Itoa(r.field)+" ("+r.name+") is empty")
		}
	}
	p.checkValues(m)
}

func validSegmentID(id string) bool {
	if len(id) != 3 {
		return false
	}
	if c := id[0]; c < 'A' || c > 'Z' {
		return false
	}
	for i := 1; i < 3; i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// part is one piece of a split with its offset in the segment.
type part struct {
	text string
	off  int
}

func splitParts(s string, off int, sep byte, dst []part) []part {
	dst = dst[:0]
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			dst = append(dst, part{s[start:i], off + start})
			start = i + 1
		}
	}
	return append(dst, part{s[start:], off + start})
}

// trailing returns the index of the first of the empty parts that end ps,
// or -1 when the last part is not empty (or there is only one part).
func trailing(ps []part) int {
	if len(ps) < 2 || ps[len(ps)-1].text != "" {
		return -1
	}
	i := len(ps) - 1
	for i > 0 && ps[i-1].text == "" {
		i--
	}
	if i == 0 {
		// every part is empty: the separators themselves are trailing
		return 1
	}
	return i
}

func (p *parser) checkSegment(m *Message, s *Segment) {
	d := &m.d
	base := Position{Segment: s.index, SegmentID: posID(s.id), Offset: s.off}
	if !validSegmentID(s.id) {
		p.add(base, CodeBadSegmentID, "segment id is not three upper-case letters or digits starting with a letter")
		if len(s.id) == len(s.raw) {
			// no field separator at all: nothing more to check
			return
		}
	}
	// fields
	var fbuf, rbuf, cbuf, sbuf []part
	fields := splitParts(s.raw, s.off, d.Field, fbuf)
	// fields[0] is the id; field number of fields[i] is i (i+1 for MSH-like)
	fieldNum := func(i int) int {
		if s.header {
			return i + 1
		}
		return i
	}
	if t := trailing(fields); t > 0 {
		pos := base
		pos.Field = fieldNum(t)
		pos.Offset = fields[t].off - 1
		p.add(pos, CodeTrailingDelimiter, "segment ends with empty fields (trailing field separators)")
	}
	for fi := 1; fi < len(fields); fi++ {
		fn := fieldNum(fi)
		if s.header && fn <= 2 {
			continue
		}
		f := fields[fi]
		if f.text == "" {
			continue
		}
		reps := splitParts(f.text, f.off, d.Repetition, rbuf)
		rbuf = reps
		if t := trailing(reps); t > 0 {
			p.add(Position{Segment: s.index, SegmentID: posID(s.id), Field: fn, Repetition: t + 1, Offset: reps[t].off - 1},
				CodeTrailingDelimiter, "field ends with empty repetitions (trailing repetition separators)")
		}
		for ri, r := range reps {
			if r.text == "" {
				continue
			}
			comps := splitParts(r.text, r.off, d.Component, cbuf)
			cbuf = comps
			if t := trailing(comps); t > 0 {
				p.add(Position{Segment: s.index, SegmentID: posID(s.id), Field: fn, Repetition: ri + 1, Component: t + 1, Offset: comps[t].off - 1},
					CodeTrailingDelimiter, "repetition ends with empty components (trailing component separators)")
			}
			for ci, c := range comps {
				if c.text == "" {
					continue
				}
				subs := splitParts(c.text, c.off, d.Subcomponent, sbuf)
				sbuf = subs
				if t := trailing(subs); t > 0 {
					p.add(Position{Segment: s.index, SegmentID: posID(s.id), Field: fn, Repetition: ri + 1, Component: ci + 1, Subcomponent: t + 1, Offset: subs[t].off - 1},
						CodeTrailingDelimiter, "component ends with empty subcomponents (trailing subcomponent separators)")
				}
				for si, sc := range subs {
					if sc.text == "" {
						continue
					}
					pos := Position{Segment: s.index, SegmentID: posID(s.id), Field: fn, Repetition: ri + 1, Component: ci + 1, Subcomponent: si + 1}
					p.checkLeaf(m, sc, pos)
				}
			}
		}
	}
	_ = fbuf
}

// checkLeaf checks one subcomponent's text: escape sequences and characters.
func (p *parser) checkLeaf(m *Message, leaf part, pos Position) {
	d := &m.d
	if d.Escape != 0 {
		for i := 0; i < len(leaf.text); i++ {
			if leaf.text[i] == d.Escape {
				appendUnescaped(nil, leaf.text, d, m.cs, func(off int, msg string) {
					q := pos
					q.Offset = leaf.off + off
					p.add(q, CodeBadEscape, msg)
				})
				break
			}
		}
	}
	t := leaf.text
	for i := 0; i < len(t); {
		c := t[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		q := pos
		q.Offset = leaf.off + i
		switch {
		case c < 0x20 || c == 0x7f:
			p.add(q, CodeBadCharacter, "control character 0x"+hex2(c))
			i++
		case m.cs == csLatin1 || m.cs == csLatin9:
			if c < 0xA0 {
				p.add(q, CodeBadCharacter, "byte 0x"+hex2(c)+" is a C1 control in "+m.csName)
			}
			i++
		case m.csName == "UTF-8":
			r, n := utf8.DecodeRuneInString(t[i:])
			if r == utf8.RuneError && n <= 1 {
				p.add(q, CodeBadCharacter, "byte 0x"+hex2(c)+" is not valid UTF-8")
				i++
				continue
			}
			i += n
		case m.csName == "ASCII":
			p.add(q, CodeBadCharacter, "byte 0x"+hex2(c)+" is not ASCII (MSH-18 is empty or ASCII)")
			// skip the rest of a UTF-8 sequence so one character is one defect
			_, n := utf8.DecodeRuneInString(t[i:])
			i += n
		default:
			i++
		}
	}
}

func hex2(c byte) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// posID is a segment id as far as a Position shows it: a garbage "segment"
// without a field separator is a whole line of text (maybe PHI), so at most
// four bytes of it are kept.
func posID(id string) string {
	if len(id) > 4 {
		return id[:4]
	}
	return id
}

// Data-type checks of strict mode. They cover what can be judged from the
// text alone: OBX-5 against the type OBX-2 names, OBX-2 itself, and the
// timestamp fields of common segments. Code systems, value sets and
// profile-specific requirements are not checked.

// dataTypes are the HL7 v2 data type codes (table 0125 and the composite
// types that appear in OBX-2 across versions 2.1 to 2.8).
var dataTypes = map[string]bool{
	"AD": true, "AUI": true, "CCD": true, "CCP": true, "CD": true, "CE": true, "CF": true, "CK": true, "CM": true,
	"CN": true, "CNE": true, "CNN": true, "CP": true, "CQ": true, "CSU": true, "CWE": true, "CX": true, "DIN": true,
	"DLD": true, "DLN": true, "DLT": true, "DR": true, "DT": true, "DTM": true, "DTN": true, "ED": true, "EI": true,
	"EIP": true, "ELD": true, "ERL": true, "FC": true, "FN": true, "FT": true, "GTS": true, "HD": true, "ICD": true,
	"ID": true, "IS": true, "JCC": true, "LA1": true, "LA2": true, "MA": true, "MO": true, "MOC": true, "MOP": true,
	"MSG": true, "NA": true, "NDL": true, "NM": true, "NR": true, "OCD": true, "OSD": true, "OSP": true, "PIP": true,
	"PL": true, "PLN": true, "PN": true, "PPN": true, "PRL": true, "PT": true, "PTA": true, "QIP": true, "QSC": true,
	"RCD": true, "RFR": true, "RI": true, "RMC": true, "RP": true, "RPT": true, "SAD": true, "SCV": true, "SI": true,
	"SN": true, "SNM": true, "SPD": true, "SPS": true, "SRT": true, "ST": true, "TM": true, "TN": true, "TQ": true,
	"TS": true, "TX": true, "UVC": true, "VH": true, "VID": true, "VR": true, "WVI": true, "WVS": true, "XAD": true,
	"XCN": true, "XON": true, "XPN": true, "XTN": true,
}

// primitiveTypes have no components: a component separator in their value
// means the value is of another type.
var primitiveTypes = map[string]bool{
	"DT": true, "DTM": true, "FT": true, "ID": true, "IS": true, "NM": true, "SI": true, "ST": true, "TM": true, "TX": true,
}

// timestampFields are fields of type TS or DTM (first component checked).
var timestampFields = map[string][]int{
	"MSH": {7},
	"EVN": {2, 3, 6},
	"PID": {7, 29},
	"NK1": {8, 9, 16},
	"PV1": {44, 45},
	"ORC": {9, 15},
	"OBR": {6, 7, 8, 14, 22},
	"OBX": {12, 14, 19},
	"SPM": {18, 19},
	"TXA": {4, 6, 7, 8},
	"DG1": {5},
	"AL1": {6},
}

func (p *parser) checkValues(m *Message) {
	for _, s := range m.segs {
		if !validSegmentID(s.id) {
			continue
		}
		for _, f := range timestampFields[s.id] {
			p.checkRepeated(m, s, f, func(rep string) (int, string) {
				ts, _ := nthPart(rep, m.d.Component, 0)
				if ts != "" && ts != `""` && !validDTM(ts) {
					return 1, "not a date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])"
				}
				return 0, ""
			})
		}
		if s.id != "OBX" {
			continue
		}
		typ := s.rawValue(2, 1, 1, 0)
		if typ == "" {
			continue
		}
		if !dataTypes[typ] {
			p.add(p.valuePos(s, 2, 1, 0), CodeBadValue, "OBX-2 is not an HL7 data type")
			continue
		}
		p.checkRepeated(m, s, 5, func(rep string) (int, string) {
			if rep == `""` {
				return 0, ""
			}
			if primitiveTypes[typ] && strings.IndexByte(rep, m.d.Component) >= 0 {
				return 0, "value has components but OBX-2 is " + typ + ", a type without components"
			}
			switch typ {
			case "NM":
				if !validNM(rep) {
					return 0, "not a number but OBX-2 is NM"
				}
			case "DT":
				if !validDT(rep) {
					return 0, "not a date (YYYY[MM[DD]]) but OBX-2 is DT"
				}
			case "DTM":
				if !validDTM(rep) {
					return 0, "not a date/time but OBX-2 is DTM"
				}
			case "TS":
				if ts, _ := nthPart(rep, m.d.Component, 0); !validDTM(ts) {
					return 1, "not a date/time but OBX-2 is TS"
				}
			case "TM":
				if !validTM(rep) {
					return 0, "not a time (HH[MM[SS[.S]]][+/-ZZZZ]) but OBX-2 is TM"
				}
			case "SN":
				for _, c := range []int{2, 4} {
					if v, _ := nthPart(rep, m.d.Component, c-1); v != "" && !validNM(v) {
						return c, "structured numeric component is not a number"
					}
				}
			}
			return 0, ""
		})
	}
}

// checkRepeated runs check on every repetition of field f; check returns the
// component at fault (0 = the whole repetition) and a message, or "".
func (p *parser) checkRepeated(m *Message, s *Segment, f int, check func(rep string) (int, string)) {
	fv := s.rawField(f)
	if fv == "" {
		return
	}
	for r := 1; ; r++ {
		rep, ok := nthPart(fv, m.d.Repetition, r-1)
		if !ok {
			return
		}
		if rep == "" {
			continue
		}
		if c, msg := check(rep); msg != "" {
			p.add(p.valuePos(s, f, r, c), CodeBadValue, s.id+"-"+strconv.Itoa(f)+": "+msg)
		}
	}
}

// valuePos returns the position (with byte offset) of field f, repetition r,
// component c (0 = not applicable) of s.
func (p *parser) valuePos(s *Segment, f, r, c int) Position {
	pos := Position{Segment: s.index, SegmentID: posID(s.id), Field: f, Repetition: r, Component: c}
	off := s.fieldOffset(f)
	d := &s.m.d
	raw := s.raw
	skip := func(sep byte, n int) {
		for ; n > 0; n-- {
			for off < len(raw) && raw[off] != sep && raw[off] != d.Field {
				off++
			}
			if off < len(raw) && raw[off] == sep {
				off++
			}
		}
	}
	if r > 1 {
		skip(d.Repetition, r-1)
	}
	if c > 1 {
		skip(d.Component, c-1)
	}
	pos.Offset = s.off + off
	return pos
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validNM: optional sign, digits, optional decimal point (HL7 NM; no exponent).
func validNM(s string) bool {
	s = strings.TrimSpace(s)
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" || s == "." {
		return false
	}
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' && !dot:
			dot = true
		case c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return true
}

// validDT: YYYY, YYYYMM or YYYYMMDD.
func validDT(s string) bool {
	if !allDigits(s) || (len(s) != 4 && len(s) != 6 && len(s) != 8) {
		return false
	}
	return datePartsOK(s)
}

func datePartsOK(s string) bool {
	if len(s) >= 6 {
		if mo := atoi2(s[4:6]); mo < 1 || mo > 12 {
			return false
		}
	}
	if len(s) >= 8 {
		if d := atoi2(s[6:8]); d < 1 || d > daysIn(atoi2(s[:2])*100+atoi2(s[2:4]), atoi2(s[4:6])) {
			return false
		}
	}
	return true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func atoi2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

// splitZone separates a +ZZZZ / -ZZZZ offset; ok is false for a malformed one.
func splitZone(s string) (string, bool) {
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		z := s[i+1:]
		if len(z) != 4 || !allDigits(z) || atoi2(z[:2]) > 14 || atoi2(z[2:]) > 59 {
			return s, false
		}
		return s[:i], true
	}
	return s, true
}

// validTM: HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ].
func validTM(s string) bool {
	s, ok := splitZone(s)
	if !ok {
		return false
	}
	return timePartsOK(s)
}

func timePartsOK(s string) bool {
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i+1:]
		if len(s) != 6 || len(frac) < 1 || len(frac) > 4 || !allDigits(frac) {
			return false
		}
	}
	if !allDigits(s) || (len(s) != 2 && len(s) != 4 && len(s) != 6) {
		return false
	}
	if atoi2(s[:2]) > 23 {
		return false
	}
	if len(s) >= 4 && atoi2(s[2:4]) > 59 {
		return false
	}
	if len(s) >= 6 && atoi2(s[4:6]) > 60 {
		return false
	}
	return true
}

// validDTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ].
func validDTM(s string) bool {
	s, ok := splitZone(s)
	if !ok || len(s) < 4 {
		return false
	}
	date := s
	if len(s) > 8 {
		date = s[:8]
	}
	if !validDT(date) {
		return false
	}
	if len(s) > 8 {
		return timePartsOK(s[8:])
	}
	return true
}
