package v2fhir

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/hl7"
)

// This file reads values out of a parsed message: message paths such as
// "PID-3-4" and component paths such as ".4.1" within a value.

// val is one v2 value: a repetition of a field, a component of one, or a
// subcomponent (c, s select; 0 = the whole). picks, when set, make a
// synthetic value whose components are the picked parts of the base (EI.2-4
// read as an HD).
type val struct {
	rep   hl7.Rep
	c, s  int
	picks []cpath
}

// cpath is a component path: component c, subcomponent s (0 = whole).
type cpath struct{ c, s int }

func (p cpath) String() string {
	if p.s == 0 {
		return "." + strconv.Itoa(p.c)
	}
	return "." + strconv.Itoa(p.c) + "." + strconv.Itoa(p.s)
}

// parseCPath reads "4", "4.1", ".4" or ".4.1".
func parseCPath(s string) (cpath, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), ".")
	parts := strings.Split(t, ".")
	if len(parts) > 2 {
		return cpath{}, fmt.Errorf("component path %q: at most component.subcomponent", s)
	}
	var p cpath
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 || n > 99 {
			return cpath{}, fmt.Errorf("component path %q: %q is not a number from 1", s, part)
		}
		if i == 0 {
			p.c = n
		} else {
			p.s = n
		}
	}
	return p, nil
}

// comp returns component i of v (a subcomponent when v is a component).
func (v val) comp(i int) val {
	if v.picks != nil {
		if i < 1 || i > len(v.picks) {
			return val{}
		}
		base := val{rep: v.rep, c: v.c, s: v.s}
		return base.at(v.picks[i-1])
	}
	switch {
	case v.c == 0:
		return val{rep: v.rep, c: i}
	case v.s == 0:
		return val{rep: v.rep, c: v.c, s: i}
	case i == 1:
		return v
	}
	return val{}
}

// at returns the part of v at a component path.
func (v val) at(p cpath) val {
	w := v.comp(p.c)
	if p.s > 0 {
		w = w.comp(p.s)
	}
	return w
}

// pick makes the synthetic value whose components are the parts at ps.
func (v val) pick(ps []cpath) val {
	return val{rep: v.rep, c: v.c, s: v.s, picks: ps}
}

// atom returns the first primitive part of v: a repetition's first
// component's first subcomponent, a component's first subcomponent. The
// explicit null `""` reads as empty.
func (v val) atom() string {
	var s string
	switch {
	case v.picks != nil:
		return v.comp(1).atom()
	case v.c == 0:
		s = v.rep.Subcomponent(1, 1)
	case v.s == 0:
		s = v.rep.Subcomponent(v.c, 1)
	default:
		s = v.rep.Subcomponent(v.c, v.s)
	}
	if s == `""` {
		return ""
	}
	return s
}

// text returns all of v, its parts joined by their separators.
func (v val) text() string {
	var s string
	switch {
	case v.picks != nil:
		parts := make([]string, len(v.picks))
		for i := range v.picks {
			parts[i] = v.comp(i + 1).text()
		}
		s = strings.TrimRight(strings.Join(parts, "^"), "^")
	case v.c == 0:
		s = v.rep.String()
	case v.s == 0:
		s = v.rep.Component(v.c)
	default:
		s = v.rep.Subcomponent(v.c, v.s)
	}
	if s == `""` {
		return ""
	}
	return s
}

// empty reports whether v has no text.
func (v val) empty() bool {
	if v.picks != nil {
		for i := range v.picks {
			if !v.comp(i + 1).empty() {
				return false
			}
		}
		return true
	}
	if v.c == 0 {
		raw := v.rep.Raw()
		return raw == "" || raw == `""` || strings.Trim(raw, "^&~") == ""
	}
	return strings.TrimSpace(strings.Trim(v.text(), "^&")) == ""
}

// mpath is a message path: a field of a segment, optionally a component
// and subcomponent of its repetitions. "PID-3", "PID-3-4", "PID-3-4-2".
type mpath struct {
	seg   string
	field int
	cp    cpath
}

func (p mpath) String() string {
	s := p.seg + "-" + strconv.Itoa(p.field)
	if p.cp.c > 0 {
		s += "-" + strconv.Itoa(p.cp.c)
		if p.cp.s > 0 {
			s += "-" + strconv.Itoa(p.cp.s)
		}
	}
	return s
}

// parseMPath reads a message path.
func parseMPath(s string) (mpath, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) < 2 || len(parts) > 4 {
		return mpath{}, fmt.Errorf("message path %q: want SEG-field[-component[-subcomponent]]", s)
	}
	p := mpath{seg: parts[0]}
	if len(p.seg) != 3 || strings.ToUpper(p.seg) != p.seg {
		return mpath{}, fmt.Errorf("message path %q: bad segment id %q", s, p.seg)
	}
	nums := make([]int, len(parts)-1)
	for i, part := range parts[1:] {
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 || n > 999 {
			return mpath{}, fmt.Errorf("message path %q: %q is not a number from 1", s, part)
		}
		nums[i] = n
	}
	p.field = nums[0]
	if len(nums) > 1 {
		p.cp.c = nums[1]
	}
	if len(nums) > 2 {
		p.cp.s = nums[2]
	}
	return p, nil
}

// appendValues appends the non-empty values of p in seg to out: every
// repetition when all is set, else the first non-empty one.
func (p mpath) appendValues(out []val, seg *hl7.Segment, all bool) []val {
	if seg == nil {
		return out
	}
	f := seg.Field(p.field)
	if f.IsEmpty() {
		return out
	}
	n := f.NumRepetitions()
	for i := 1; i <= n; i++ {
		v := val{rep: *f.Rep(i)}
		if p.cp.c > 0 {
			v = v.at(p.cp)
		}
		if v.empty() {
			continue
		}
		out = append(out, v)
		if !all {
			break
		}
	}
	return out
}

// first returns the first repetition's value of p (possibly empty).
func (p mpath) first(seg *hl7.Segment) val {
	if seg == nil {
		return val{}
	}
	f := seg.Field(p.field)
	if f.IsEmpty() {
		return val{}
	}
	v := val{rep: *f.Rep(1)}
	if p.cp.c > 0 {
		v = v.at(p.cp)
	}
	return v
}

func itoa(n int) string { return strconv.Itoa(n) }
