package hl7

import (
	"strings"
)

// maxFormatRepeat caps \.sp n\ and \.sk n\ so a hostile value cannot make
// Unescape allocate without bound.
const maxFormatRepeat = 1000

// Unescape decodes the escape sequences of an HL7 v2 value written with the
// delimiters d. Separators that appear literally in s are kept as they are, so
// Unescape of a whole repetition returns its components, each decoded, joined
// by the component separator. \Xhh..\ bytes are taken as UTF-8 when valid and
// as ISO-8859-1 otherwise; a message's own character set is applied by Get.
// Malformed and unknown sequences are kept literally (strict parsing reports
// them).
func Unescape(s string, d Delimiters) string {
	return unescapeCS(s, &d, csPassthrough)
}

// unescapeCS is Unescape for a message whose bytes are in charset cs.
func unescapeCS(s string, d *Delimiters, cs charset) string {
	if d.Escape == 0 || strings.IndexByte(s, d.Escape) < 0 {
		if cs == csPassthrough || isASCII(s) {
			return s
		}
		return string(appendDecoded(make([]byte, 0, len(s)+8), s, cs))
	}
	return string(appendUnescaped(make([]byte, 0, len(s)), s, d, cs, nil))
}

// escapeReport receives a malformed escape sequence: the offset of its escape
// character in s and what is wrong.
type escapeReport func(off int, msg string)

// isDelim reports whether c is one of the structural separators (which end
// any escape sequence that is still open: escapes never span separators).
func (d *Delimiters) isSep(c byte) bool {
	return c == d.Field || c == d.Component || c == d.Repetition || c == d.Subcomponent
}

// appendUnescaped appends the decoded s to dst. bad, when not nil, is told
// about every malformed sequence.
func appendUnescaped(dst []byte, s string, d *Delimiters, cs charset, bad escapeReport) []byte {
	esc := d.Escape
	start := 0 // start of the pending literal run
	flush := func(end int) {
		if end > start {
			dst = appendDecoded(dst, s[start:end], cs)
		}
	}
	i := 0
	for i < len(s) {
		c := s[i]
		if c != esc {
			i++
			continue
		}
		// find the closing escape character before any separator
		j := i + 1
		for j < len(s) && s[j] != esc && !d.isSep(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != esc {
			if bad != nil {
				bad(i, "escape sequence is not closed")
			}
			i++ // keep the escape character literally
			continue
		}
		body := s[i+1 : j]
		flush(i)
		next := j + 1
		ok := true
		switch {
		case len(body) == 1:
			switch body[0] {
			case 'F':
				dst = append(dst, d.Field)
			case 'S':
				dst = append(dst, d.Component)
			case 'T':
				dst = append(dst, d.Subcomponent)
			case 'R':
				dst = append(dst, d.Repetition)
			case 'E':
				dst = append(dst, d.Escape)
			case 'P':
				if d.Truncation != 0 {
					dst = append(dst, d.Truncation)
				} else {
					dst = append(dst, '#')
				}
			case 'H', 'N':
				// highlighting on/off: dropped from text
			default:
				ok = false
			}
		case len(body) == 0:
			ok = false
		case body[0] == 'X':
			hx := body[1:]
			if len(hx) == 0 || len(hx)%2 != 0 {
				ok = false
				break
			}
			var buf [64]byte
			raw := buf[:0]
			for k := 0; k < len(hx); k += 2 {
				h, ok1 := unhex(hx[k])
				l, ok2 := unhex(hx[k+1])
				if !ok1 || !ok2 {
					ok = false
					break
				}
				raw = append(raw, h<<4|l)
			}
			if ok {
				dst = appendHexDecoded(dst, raw, cs)
			}
		case body[0] == 'C':
			// single-byte character set switch (ISO 2022): kept as written
			if len(body) != 5 || !allHex(body[1:]) {
				ok = false
				break
			}
			dst = append(dst, s[i:next]...)
		case body[0] == 'M':
			// multi-byte character set switch: kept as written
			if (len(body) != 5 && len(body) != 7) || !allHex(body[1:]) {
				ok = false
				break
			}
			dst = append(dst, s[i:next]...)
		case body[0] == 'Z':
			// locally defined escape: kept as written
			dst = append(dst, s[i:next]...)
		case body[0] == '.':
			dst, ok = appendFormatting(dst, body[1:])
		default:
			ok = false
		}
		if !ok {
			if bad != nil {
				bad(i, "unknown or malformed escape sequence")
			}
			// keep the whole sequence literally
			dst = appendDecoded(dst, s[i:next], cs)
		}
		i = next
		start = i
	}
	flush(len(s))
	return dst
}

// appendFormatting handles the formatted-text commands (FT data type): .br and
// .sp [n] become line breaks, .sk [n] becomes spaces, .ce starts a new line
// (text cannot be centred), .in, .ti, .fi and .nf change layout only and are
// dropped.
func appendFormatting(dst []byte, cmd string) ([]byte, bool) {
	if len(cmd) < 2 {
		return dst, false
	}
	name, arg := cmd[:2], strings.TrimSpace(cmd[2:])
	switch name {
	case "br", "ce", "fi", "nf":
		if arg != "" {
			return dst, false
		}
		if name == "br" || name == "ce" {
			dst = append(dst, '\n')
		}
		return dst, true
	case "sp", "sk":
		n := 1
		if arg != "" {
			v, ok := formatNumber(arg, false)
			if !ok {
				return dst, false
			}
			n = v
		}
		if n > maxFormatRepeat {
			n = maxFormatRepeat
		}
		c := byte('\n')
		if name == "sk" {
			c = ' '
		}
		for k := 0; k < n; k++ {
			dst = append(dst, c)
		}
		return dst, true
	case "in", "ti":
		if arg != "" {
			if _, ok := formatNumber(arg, true); !ok {
				return dst, false
			}
		}
		return dst, true
	}
	return dst, false
}

// formatNumber reads the numeric argument of a formatting command:
// digits with an optional '+' (or '-' when signed is allowed).
func formatNumber(s string, signed bool) (int, bool) {
	if s == "" {
		return 0, false
	}
	if s[0] == '+' || (signed && s[0] == '-') {
		s = s[1:]
	}
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if _, ok := unhex(s[i]); !ok {
			return false
		}
	}
	return true
}

// Escape writes s as an HL7 v2 value: the separators, the escape character and
// the truncation character (when d has one) become \F\ \S\ \T\ \R\ \E\ \P\,
// a line feed becomes \.br\ (\X0A\ when '.' is a delimiter) and a carriage
// return \X0D\ (neither may appear raw inside a segment). Unescape(Escape(s, d), d) == s.
func Escape(s string, d Delimiters) string {
	need := false
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i], &d) {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	return string(appendEscaped(make([]byte, 0, len(s)+16), s, &d))
}

func needsEscape(c byte, d *Delimiters) bool {
	return c == d.Field || c == d.Component || c == d.Repetition || c == d.Subcomponent ||
		(c == d.Escape && d.Escape != 0) || (c == d.Truncation && d.Truncation != 0) || c == '\n' || c == '\r'
}

func appendEscaped(dst []byte, s string, d *Delimiters) []byte {
	e := d.Escape
	if e == 0 {
		e = '\\'
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		var code string
		switch {
		case c == d.Escape && d.Escape != 0:
			code = "E"
		case c == d.Field:
			code = "F"
		case c == d.Component:
			code = "S"
		case c == d.Subcomponent:
			code = "T"
		case c == d.Repetition:
			code = "R"
		case c == d.Truncation && d.Truncation != 0:
			code = "P"
		case c == '\n':
			code = ".br"
			if d.isSep('.') || d.Escape == '.' || d.Truncation == '.' {
				// '.' is a delimiter here and cannot start a command: use hex
				code = "X0A"
			}
		case c == '\r':
			code = "X0D"
		default:
			dst = append(dst, c)
			continue
		}
		dst = append(dst, e)
		dst = append(dst, code...)
		dst = append(dst, e)
	}
	return dst
}
