package hl7

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits on path numbers: high enough for any real message, low enough that
// Set on a hostile path cannot allocate without bound.
const (
	maxOccurrence = 1 << 20
	maxPathNumber = 9999
)

// Path addresses a value: "PID-5", "PID-5-1", "PID-3(2)-4-2", "OBX(3)-5",
// "MSH-9-2", "PID-5-1-1" (subcomponent). Occurrence and Repetition are
// 1-based; 0 means "not given" (the first for Get and Set, all for GetAll).
// Component 0 means the whole repetition, Subcomponent 0 the whole component.
type Path struct {
	Segment                                                string
	Occurrence, Field, Repetition, Component, Subcomponent int
}

// ParsePath reads a path. Segment ids are three letters or digits and are
// upper-cased; '.' is accepted in place of '-' ("PID.5.1"). Whitespace around
// the path is ignored.
func ParsePath(s string) (Path, error) {
	var p Path
	t := strings.TrimSpace(s)
	if len(t) < 3 {
		return p, pathError(s, "want SEG-FIELD, e.g. PID-5")
	}
	id := t[:3]
	for i := 0; i < 3; i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return p, pathError(s, "segment id must be three letters or digits")
		}
	}
	if c := id[0]; c >= '0' && c <= '9' {
		return p, pathError(s, "segment id must start with a letter")
	}
	if strings.ToUpper(id) != id {
		id = strings.ToUpper(id)
	}
	p.Segment = id
	rest := t[3:]
	if strings.HasPrefix(rest, "(") {
		n, r, err := parseParen(rest, s, maxOccurrence)
		if err != nil {
			return p, err
		}
		p.Occurrence, rest = n, r
	}
	if rest == "" {
		return p, pathError(s, "missing field number")
	}
	if rest[0] != '-' && rest[0] != '.' {
		return p, pathError(s, "expected '-' after the segment")
	}
	if err := parseFieldPath(rest[1:], s, &p); err != nil {
		return p, err
	}
	return p, nil
}

// parseFieldPath reads "FIELD[(REP)][-COMP[-SUB]]" into p.
func parseFieldPath(rest, orig string, p *Path) error {
	n, r, err := parseNumber(rest, orig, "field")
	if err != nil {
		return err
	}
	p.Field, rest = n, r
	if strings.HasPrefix(rest, "(") {
		n, r, err := parseParen(rest, orig, maxPathNumber)
		if err != nil {
			return err
		}
		p.Repetition, rest = n, r
	}
	for _, dst := range []*int{&p.Component, &p.Subcomponent} {
		if rest == "" {
			return nil
		}
		if rest[0] != '-' && rest[0] != '.' {
			return pathError(orig, "expected '-' before a component or subcomponent number")
		}
		n, r, err := parseNumber(rest[1:], orig, "component")
		if err != nil {
			return err
		}
		*dst, rest = n, r
	}
	if rest != "" {
		return pathError(orig, "unexpected text after the subcomponent")
	}
	return nil
}

func parseNumber(s, orig, what string) (int, string, error) {
	i := 0
	n := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + int(s[i]-'0')
		if n > maxPathNumber {
			return 0, "", pathError(orig, what+" number too large")
		}
		i++
	}
	if i == 0 {
		return 0, "", pathError(orig, "missing "+what+" number")
	}
	if n == 0 {
		return 0, "", pathError(orig, what+" numbers start at 1")
	}
	return n, s[i:], nil
}

func parseParen(s, orig string, limit int) (int, string, error) {
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return 0, "", pathError(orig, "missing ')'")
	}
	num := s[1:end]
	if num == "" || len(num) > 9 {
		return 0, "", pathError(orig, "bad number in parentheses")
	}
	n := 0
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return 0, "", pathError(orig, "bad number in parentheses")
		}
		n = n*10 + int(num[i]-'0')
	}
	if n == 0 {
		return 0, "", pathError(orig, "numbers in parentheses start at 1")
	}
	if n > limit {
		return 0, "", pathError(orig, "number in parentheses too large")
	}
	return n, s[end+1:], nil
}

// ErrBadPath is wrapped by every path syntax error.
var ErrBadPath = errors.New("bad HL7 path")

func pathError(path, why string) error {
	if len(path) > 40 {
		path = path[:40] + "…"
	}
	return fmt.Errorf("hl7: %w %q: %s", ErrBadPath, path, why)
}

// String writes p back in the canonical form, e.g. "PID-3(2)-4-2".
func (p Path) String() string {
	var b strings.Builder
	b.WriteString(p.Segment)
	if p.Occurrence > 0 {
		b.WriteString("(" + strconv.Itoa(p.Occurrence) + ")")
	}
	b.WriteString("-" + strconv.Itoa(p.Field))
	if p.Repetition > 0 {
		b.WriteString("(" + strconv.Itoa(p.Repetition) + ")")
	}
	if p.Component > 0 {
		b.WriteString("-" + strconv.Itoa(p.Component))
		if p.Subcomponent > 0 {
			b.WriteString("-" + strconv.Itoa(p.Subcomponent))
		}
	}
	return b.String()
}

// parseRelPath reads a path relative to a segment ("5-1", "3(2)-4-2").
func parseRelPath(s string) (Path, error) {
	var p Path
	t := strings.TrimSpace(s)
	if t == "" {
		return p, pathError(s, "missing field number")
	}
	if err := parseFieldPath(t, s, &p); err != nil {
		return p, err
	}
	return p, nil
}
