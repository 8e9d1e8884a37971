package hl7

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// charset is how a message's bytes become Go (UTF-8) strings.
type charset uint8

const (
	csPassthrough charset = iota // ASCII or UTF-8: bytes are used as they are
	csLatin1                     // ISO-8859-1: every byte is one code point
	csLatin9                     // ISO-8859-15: Latin-1 with eight code points replaced
)

// charsetInfo is the result of reading an MSH-18 (or ParseOptions.Charset) value.
type charsetInfo struct {
	name      string // normalised name ("ASCII", "UTF-8", "ISO-8859-1", ...)
	cs        charset
	supported bool
}

// lookupCharset maps an HL7 table 0211 value (or a common alias) to how the
// bytes are decoded. Unknown and multi-byte sets other than UTF-8 are reported
// unsupported and decoded as pass-through.
func lookupCharset(v string) charsetInfo {
	v = strings.TrimSpace(v)
	if v == "" {
		return charsetInfo{"ASCII", csPassthrough, true}
	}
	u := strings.ToUpper(v)
	switch u {
	case "ASCII", "US-ASCII", "ISO IR6", "ISO-IR-6":
		return charsetInfo{"ASCII", csPassthrough, true}
	case "UNICODE UTF-8", "UTF-8", "UTF8":
		return charsetInfo{"UTF-8", csPassthrough, true}
	case "8859/1", "ISO-8859-1", "ISO8859-1", "ISO_8859-1", "LATIN1", "LATIN-1", "ISO IR100", "ISO-IR-100":
		return charsetInfo{"ISO-8859-1", csLatin1, true}
	case "8859/15", "ISO-8859-15", "ISO8859-15", "LATIN9", "LATIN-9":
		return charsetInfo{"ISO-8859-15", csLatin9, true}
	case "UNICODE", "UNICODE UTF-16", "UTF-16":
		return charsetInfo{"UTF-16", csPassthrough, false}
	case "UNICODE UTF-32", "UTF-32":
		return charsetInfo{"UTF-32", csPassthrough, false}
	}
	if strings.HasPrefix(u, "8859/") {
		return charsetInfo{"ISO-8859-" + u[len("8859/"):], csPassthrough, false}
	}
	return charsetInfo{u, csPassthrough, false}
}

// latin9High maps the ISO-8859-15 bytes that differ from ISO-8859-1.
func latin9Rune(b byte) rune {
	switch b {
	case 0xA4:
		return '\u20AC'
	case 0xA6:
		return '\u0160'
	case 0xA8:
		return '\u0161'
	case 0xB4:
		return '\u017D'
	case 0xB8:
		return '\u017E'
	case 0xBC:
		return '\u0152'
	case 0xBD:
		return '\u0153'
	case 0xBE:
		return '\u0178'
	}
	return rune(b)
}

func latin9Byte(r rune) (byte, bool) {
	switch r {
	case '\u20AC':
		return 0xA4, true
	case '\u0160':
		return 0xA6, true
	case '\u0161':
		return 0xA8, true
	case '\u017D':
		return 0xB4, true
	case '\u017E':
		return 0xB8, true
	case '\u0152':
		return 0xBC, true
	case '\u0153':
		return 0xBD, true
	case '\u0178':
		return 0xBE, true
	case 0xA4, 0xA6, 0xA8, 0xB4, 0xB8, 0xBC, 0xBD, 0xBE:
		return 0, false
	}
	if r < 0x100 {
		return byte(r), true
	}
	return 0, false
}

// appendDecoded appends the bytes b (in charset cs) to dst as UTF-8.
func appendDecoded(dst []byte, b string, cs charset) []byte {
	switch cs {
	case csLatin1:
		for i := 0; i < len(b); i++ {
			if c := b[i]; c < 0x80 {
				dst = append(dst, c)
			} else {
				dst = utf8.AppendRune(dst, rune(c))
			}
		}
		return dst
	case csLatin9:
		for i := 0; i < len(b); i++ {
			if c := b[i]; c < 0x80 {
				dst = append(dst, c)
			} else {
				dst = utf8.AppendRune(dst, latin9Rune(c))
			}
		}
		return dst
	}
	return append(dst, b...)
}

// appendHexDecoded appends bytes given by a \Xhh..\ escape: in a pass-through
// message they are taken as UTF-8 when they form valid UTF-8 and as Latin-1
// otherwise (a common habit of senders that declare nothing).
func appendHexDecoded(dst []byte, b []byte, cs charset) []byte {
	if cs == csPassthrough {
		if utf8.Valid(b) {
			return append(dst, b...)
		}
		cs = csLatin1
	}
	return appendDecoded(dst, string(b), cs)
}

// encodeCharset turns a UTF-8 value into the message's byte encoding.
func encodeCharset(s string, cs charset, name string) (string, error) {
	if cs == csPassthrough || isASCII(s) {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for _, r := range s {
		var b byte
		ok := false
		if cs == csLatin1 {
			if r < 0x100 {
				b, ok = byte(r), true
			}
		} else {
			b, ok = latin9Byte(r)
		}
		if !ok {
			return "", fmt.Errorf("hl7: character U+%04X cannot be written in %s", r, name)
		}
		out = append(out, b)
	}
	return string(out), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
