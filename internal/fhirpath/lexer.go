package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind classifies a token.
type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tDelimIdent // `...`
	tString     // '...'
	tNumber     // 12 or 1.5
	tLongNumber // 12L
	tDate       // @2014-01-02 (without the '@' in text)
	tDateTime   // @2014-01-02T10:00
	tTime       // @T10:00 (text without "@T")
	tSpecial    // $this, $index, $total (text without '$')
	tExtConst   // %name, %`name`, %'name' (text is the name)
	tOp         // punctuation and symbolic operators
)

func (k tokKind) String() string {
	switch k {
	case tEOF:
		return "end of expression"
	case tIdent, tDelimIdent:
		return "identifier"
	case tString:
		return "string"
	case tNumber, tLongNumber:
		return "number"
	case tDate, tDateTime, tTime:
		return "date/time literal"
	case tSpecial:
		return "variable"
	case tExtConst:
		return "environment variable"
	default:
		return "operator"
	}
}

// token is one lexical unit. pos is the byte offset of its first character.
type token struct {
	kind tokKind
	text string // decoded text: identifier name, string value, literal text, operator
	pos  int
	end  int // byte offset just past the token
}

// SyntaxError is a compile error with its position in the expression.
type SyntaxError struct {
	Line, Col int // 1-based; Col counts characters (not bytes)
	Msg       string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// position converts a byte offset in src to a 1-based line and column.
func position(src string, off int) (line, col int) {
	line, col = 1, 1
	if off > len(src) {
		off = len(src)
	}
	for i := 0; i < off; {
		r, n := utf8.DecodeRuneInString(src[i:])
		i += n
		switch {
		case r == '\n':
			line++
			col = 1
		case r == '\r':
			// \r\n counts as one line break; a lone \r too.
			if i < len(src) && src[i] == '\n' {
				continue
			}
			line++
			col = 1
		default:
			col++
		}
	}
	return line, col
}

func errAt(src string, off int, format string, args ...any) *SyntaxError {
	l, c := position(src, off)
	return &SyntaxError{Line: l, Col: c, Msg: fmt.Sprintf(format, args...)}
}

// lex splits src into tokens, skipping white space and comments.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		// white space and comments
		for i < len(src) {
			c := src[i]
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' {
				i++
				continue
			}
			if c == '/' && i+1 < len(src) && src[i+1] == '/' {
				for i < len(src) && src[i] != '\n' && src[i] != '\r' {
					i++
				}
				continue
			}
			if c == '/' && i+1 < len(src) && src[i+1] == '*' {
				end := strings.Index(src[i+2:], "*/")
				if end < 0 {
					return nil, errAt(src, i, "unterminated comment")
				}
				i += 2 + end + 2
				continue
			}
			break
		}
		if i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: i, end: i})
			return toks, nil
		}
		start := i
		c := src[i]
		switch {
		case isIdentStart(c):
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, text: src[start:i], pos: start, end: i})
		case c >= '0' && c <= '9':
			for i < len(src) && isDigit(src[i]) {
				i++
			}
			if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
				i++
				for i < len(src) && isDigit(src[i]) {
					i++
				}
			}
			kind := tNumber
			text := src[start:i]
			if i < len(src) && src[i] == 'L' && (i+1 >= len(src) || !isIdentPart(src[i+1])) && !strings.Contains(text, ".") {
				kind = tLongNumber
				i++
			}
			toks = append(toks, token{kind: kind, text: text, pos: start, end: i})
		case c == '\'' || c == '`':
			s, n, err := lexQuoted(src, i, c)
			if err != nil {
				return nil, err
			}
			i = n
			kind := tString
			if c == '`' {
				kind = tDelimIdent
			}
			toks = append(toks, token{kind: kind, text: s, pos: start, end: i})
		case c == '@':
			tok, err := lexDateTime(src, i)
			if err != nil {
				return nil, err
			}
			i = tok.end
			toks = append(toks, tok)
		case c == '$':
			i++
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			name := src[start+1 : i]
			if name != "this" && name != "index" && name != "total" {
				return nil, errAt(src, start, "unknown variable $%s", name)
			}
			toks = append(toks, token{kind: tSpecial, text: name, pos: start, end: i})
		case c == '%':
			i++
			if i >= len(src) {
				return nil, errAt(src, start, "missing name after %%")
			}
			var name string
			switch {
			case src[i] == '`' || src[i] == '\'':
				s, n, err := lexQuoted(src, i, src[i])
				if err != nil {
					return nil, err
				}
				name, i = s, n
			case isIdentStart(src[i]):
				j := i
				for i < len(src) && (isIdentPart(src[i]) || src[i] == '-') {
					i++
				}
				name = src[j:i]
			default:
				return nil, errAt(src, start, "missing name after %%")
			}
			toks = append(toks, token{kind: tExtConst, text: name, pos: start, end: i})
		default:
			op := ""
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "<=", ">=", "!=", "!~":
				op = two
			default:
				switch c {
				case '.', '[', ']', '(', ')', '{', '}', ',', '+', '-', '*', '/', '&', '|', '=', '~', '<', '>':
					op = string(c)
				}
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(src[i:])
				return nil, errAt(src, i, "unexpected character %q", r)
			}
			i += len(op)
			toks = append(toks, token{kind: tOp, text: op, pos: start, end: i})
		}
	}
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// lexQuoted reads a '...' or `...` literal starting at src[i] (the quote)
// and returns its unescaped text and the offset just past it.
func lexQuoted(src string, i int, q byte) (string, int, error) {
	start := i
	i++
	var b strings.Builder
	escaped := false
	plain := i
	for {
		if i >= len(src) {
			return "", 0, errAt(src, start, "unterminated %s", quoteName(q))
		}
		c := src[i]
		if c == q {
			if !escaped {
				return src[plain:i], i + 1, nil
			}
			b.WriteString(src[plain:i])
			return b.String(), i + 1, nil
		}
		if c != '\\' {
			i++
			continue
		}
		escaped = true
		b.WriteString(src[plain:i])
		if i+1 >= len(src) {
			return "", 0, errAt(src, start, "unterminated %s", quoteName(q))
		}
		e := src[i+1]
		switch e {
		case '\'', '"', '`', '\\', '/':
			b.WriteByte(e)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+6 > len(src) {
				return "", 0, errAt(src, i, "bad unicode escape")
			}
			v, err := strconv.ParseUint(src[i+2:i+6], 16, 32)
			if err != nil {
				return "", 0, errAt(src, i, "bad unicode escape %q", src[i:i+6])
			}
			b.WriteRune(rune(v))
			i += 4
		default:
			return "", 0, errAt(src, i, "unknown escape \\%c", e)
		}
		i += 2
		plain = i
	}
}

func quoteName(q byte) string {
	if q == '`' {
		return "delimited identifier"
	}
	return "string"
}

// lexDateTime reads a date, date-time or time literal starting at src[i] ('@').
func lexDateTime(src string, i int) (token, error) {
	start := i
	i++
	digits := func(n int) bool {
		if i+n > len(src) {
			return false
		}
		for k := 0; k < n; k++ {
			if !isDigit(src[i+k]) {
				return false
			}
		}
		i += n
		return true
	}
	timePart := func() bool {
		if !digits(2) {
			return false
		}
		if i < len(src) && src[i] == ':' {
			i++
			if !digits(2) {
				return false
			}
			if i < len(src) && src[i] == ':' {
				i++
				if !digits(2) {
					return false
				}
				if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
					i++
					for i < len(src) && isDigit(src[i]) {
						i++
					}
				}
			}
		}
		return true
	}
	if i < len(src) && src[i] == 'T' {
		i++
		if !timePart() {
			return token{}, errAt(src, start, "malformed time literal")
		}
		return token{kind: tTime, text: src[start+2 : i], pos: start, end: i}, nil
	}
	if !digits(4) {
		return token{}, errAt(src, start, "malformed date literal")
	}
	if i+2 < len(src) && src[i] == '-' && isDigit(src[i+1]) {
		i++
		if !digits(2) {
			return token{}, errAt(src, start, "malformed date literal")
		}
		if i+2 < len(src) && src[i] == '-' && isDigit(src[i+1]) {
			i++
			if !digits(2) {
				return token{}, errAt(src, start, "malformed date literal")
			}
		}
	}
	if i >= len(src) || src[i] != 'T' {
		return token{kind: tDate, text: src[start+1 : i], pos: start, end: i}, nil
	}
	i++ // 'T'
	if i < len(src) && isDigit(src[i]) {
		if !timePart() {
			return token{}, errAt(src, start, "malformed date/time literal")
		}
		if i < len(src) && src[i] == 'Z' {
			i++
		} else if i+6 <= len(src) && (src[i] == '+' || src[i] == '-') &&
			isDigit(src[i+1]) && isDigit(src[i+2]) && src[i+3] == ':' && isDigit(src[i+4]) && isDigit(src[i+5]) {
			i += 6
		}
	}
	return token{kind: tDateTime, text: src[start+1 : i], pos: start, end: i}, nil
}
