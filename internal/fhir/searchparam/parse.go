package searchparam

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/store"
)

// Error is a search request the server cannot honour. Its message names the
// parameter but never the value, so it is safe to log and to return to
// clients in an OperationOutcome.
type Error struct {
	Param string
	Msg   string
}

func (e *Error) Error() string {
	if e.Param == "" {
		return "search: " + e.Msg
	}
	return fmt.Sprintf("search parameter %q: %s", e.Param, e.Msg)
}

func unknownParam(resourceType, name string) *Error {
	return &Error{Param: name, Msg: fmt.Sprintf("not supported for %s; supported: %s", resourceType, strings.Join(Names(resourceType), ", "))}
}

// Controls are the result-control parameters of a search request: they shape
// the response rather than select resources.
type Controls struct {
	Count      int  // _count
	CountSet   bool // _count was given (it may be 0: total only)
	Sort       []string
	Format     string
	Elements   []string
	Include    []string
	RevInclude []string
	Total      string // none | estimate | accurate
	Summary    string // true | false | text | data | count
	Cursor     string // page token: _cursor, cursor, _page or page
	Pretty     bool
}

// isControl reports whether a query key is a result-control parameter.
func isControl(k string) bool {
	switch k {
	case "_count", "_sort", "_format", "_elements", "_include", "_revinclude", "_total", "_summary",
		"_pretty", "_cursor", "cursor", "_page", "page":
		return true
	}
	return false
}

// Parse turns URL query values into search criteria for one resource type,
// validated against Defs: repeated parameters are ANDed (one SearchParam
// each), comma-separated values ORed. Modifiers stay in SearchParam.Name
// ("family:exact"); a reference type modifier ("subject:Patient=123") is
// folded into the value ("Patient/123"). A date prefix shared by all values
// goes to SearchParam.Prefix; mixed prefixes stay on the values. Empty values
// are ignored. Result-control parameters are returned in Controls.
func Parse(resourceType string, q url.Values) ([]store.SearchParam, Controls, error) {
	var ctl Controls
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []store.SearchParam
	for _, k := range keys {
		vals := q[k]
		if isControl(k) {
			if err := parseControl(resourceType, k, vals, &ctl); err != nil {
				return nil, ctl, err
			}
			continue
		}
		name, mod := SplitName(k)
		if strings.Contains(name, ".") {
			return nil, ctl, &Error{Param: k, Msg: "chained parameters are not supported"}
		}
		def, ok := Lookup(resourceType, name)
		if !ok {
			return nil, ctl, unknownParam(resourceType, name)
		}
		for _, raw := range vals {
			if raw == "" {
				continue
			}
			p := store.SearchParam{Name: k, Values: splitValues(raw)}
			if def.Type == Reference && mod != "" && mod[0] >= 'A' && mod[0] <= 'Z' {
				p.Name = name
				for i, v := range p.Values {
					if !strings.Contains(v, "/") {
						p.Values[i] = mod + "/" + v
					}
				}
				if len(def.Targets) > 0 && !contains(def.Targets, mod) {
					return nil, ctl, &Error{Param: k, Msg: fmt.Sprintf("reference type %s not allowed (allowed: %s)", mod, strings.Join(def.Targets, ", "))}
				}
			}
			if def.Type == Date && mod != ModMissing {
				hoistPrefix(&p)
			}
			if _, err := compileDef(def, p); err != nil {
				return nil, ctl, err
			}
			out = append(out, p)
		}
	}
	return out, ctl, nil
}

// splitValues splits on commas not escaped as "\,"; "\," and "\\" are unescaped.
func splitValues(s string) []string {
	if !strings.Contains(s, `\`) {
		return strings.Split(s, ",")
	}
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == ',' || s[i+1] == '\\') {
			cur.WriteByte(s[i+1])
			i++
			continue
		}
		if c == ',' {
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(out, cur.String())
}

// hoistPrefix moves a prefix shared by every value to p.Prefix.
func hoistPrefix(p *store.SearchParam) {
	first := ""
	for i, v := range p.Values {
		pre, _ := SplitPrefix(v)
		if pre == "" {
			pre = "eq"
		}
		if i == 0 {
			first = pre
		} else if pre != first {
			return
		}
	}
	for i, v := range p.Values {
		_, p.Values[i] = SplitPrefix(v)
	}
	p.Prefix = first
}

func parseControl(resourceType, k string, vals []string, ctl *Controls) error {
	last := ""
	if len(vals) > 0 {
		last = vals[len(vals)-1]
	}
	switch k {
	case "_count":
		n, err := strconv.Atoi(last)
		if err != nil || n < 0 {
			return &Error{Param: k, Msg: "must be a non-negative integer"}
		}
		ctl.Count, ctl.CountSet = n, true
	case "_sort":
		for _, v := range vals {
			for _, s := range strings.Split(v, ",") {
				if s == "" {
					continue
				}
				if _, ok := Lookup(resourceType, strings.TrimPrefix(s, "-")); !ok {
					return &Error{Param: k, Msg: fmt.Sprintf("cannot sort by %q: not a parameter of %s", s, resourceType)}
				}
				ctl.Sort = append(ctl.Sort, s)
			}
		}
	case "_format":
		ctl.Format = last
	case "_elements":
		for _, v := range vals {
			for _, s := range strings.Split(v, ",") {
				if s != "" {
					ctl.Elements = append(ctl.Elements, s)
				}
			}
		}
	case "_include":
		ctl.Include = append(ctl.Include, vals...)
	case "_revinclude":
		ctl.RevInclude = append(ctl.RevInclude, vals...)
	case "_total":
		switch last {
		case "none", "estimate", "accurate":
			ctl.Total = last
		default:
			return &Error{Param: k, Msg: "must be none, estimate or accurate"}
		}
	case "_summary":
		switch last {
		case "true", "false", "text", "data", "count":
			ctl.Summary = last
		default:
			return &Error{Param: k, Msg: "must be true, false, text, data or count"}
		}
	case "_pretty":
		ctl.Pretty = last == "true"
	default: // page tokens
		ctl.Cursor = last
	}
	return nil
}
