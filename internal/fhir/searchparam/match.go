package searchparam

import (
	"fmt"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// Modifiers that may follow a parameter name ("family:exact"). Because
// store.SearchParam has no modifier field, the modifier travels in its Name.
const (
	ModExact    = "exact"    // string: whole value, case- and accent-sensitive
	ModContains = "contains" // string: substring anywhere, case-insensitive
	ModMissing  = "missing"  // any type: value "true" (no entries) or "false" (some)
)

// Date comparison prefixes (FHIR R4 search, section "Prefixes").
var datePrefixes = [...]string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func isDatePrefix(s string) bool {
	for _, p := range datePrefixes {
		if p == s {
			return true
		}
	}
	return false
}

// SplitPrefix splits a leading comparison prefix off a date value:
// "ge2020-01-01" -> ("ge", "2020-01-01"). Without a prefix it returns ("", v).
func SplitPrefix(v string) (prefix, rest string) {
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' && isDatePrefix(v[:2]) {
		return v[:2], v[2:]
	}
	return "", v
}

// SplitName splits "name:modifier" into its parts.
func SplitName(n string) (name, modifier string) {
	name, modifier, _ = strings.Cut(n, ":")
	return name, modifier
}

// Criterion is a compiled SearchParam: one parameter, with its alternatives
// (ORed) normalized for comparison with index entries. Stores evaluate
// Criterion values (Match on a resource's entries, or MatchString,
// MatchToken, MatchReference and DateMatches on one indexed entry), so
// their results agree with Match.
type Criterion struct {
	Def      Def
	Modifier string // "", ModExact, ModContains or ModMissing
	Missing  bool   // with ModMissing: true selects resources with no entry
	Alts     []Alt
}

// Alt is one alternative value of a criterion; which fields are set depends
// on the parameter type.
type Alt struct {
	// String: Text is Fold(value) (default and :contains) or the value as
	// given (:exact).
	Text string
	// Token: with SystemSet false any system matches Code; with SystemSet and
	// empty Code any code of System matches; otherwise both must be equal
	// ("|code" is SystemSet with an empty System).
	System    string
	Code      string
	SystemSet bool
	// Reference: RefType may be empty (any type); RefID is the id.
	RefType string
	RefID   string
	// Date: Prefix is one of eq ne gt lt ge le sa eb ap; Low/High the range
	// the search value covers.
	Prefix string
	Low    time.Time
	High   time.Time
}

// Compile checks p against the definitions of resourceType and normalizes it.
// Errors name the parameter but never echo the value (values may be PHI).
func Compile(resourceType string, p store.SearchParam) (Criterion, error) {
	name, _ := SplitName(p.Name)
	def, ok := Lookup(resourceType, name)
	if !ok {
		return Criterion{}, unknownParam(resourceType, name)
	}
	return compileDef(def, p)
}

func compileDef(def Def, p store.SearchParam) (Criterion, error) {
	_, mod := SplitName(p.Name)
	c := Criterion{Def: def, Modifier: mod}
	switch mod {
	case "":
	case ModExact, ModContains:
		if def.Type != String {
			return c, &Error{Param: p.Name, Msg: fmt.Sprintf("modifier :%s applies only to string parameters", mod)}
		}
	case ModMissing:
		if len(p.Values) != 1 || (p.Values[0] != "true" && p.Values[0] != "false") {
			return c, &Error{Param: p.Name, Msg: ":missing takes exactly one value, true or false"}
		}
		c.Missing = p.Values[0] == "true"
		return c, nil
	default:
		if def.Type == Reference && mod != "" && mod[0] >= 'A' && mod[0] <= 'Z' {
			break // type modifier, applied below
		}
		return c, &Error{Param: p.Name, Msg: fmt.Sprintf("unsupported modifier :%s", mod)}
	}
	if len(p.Values) == 0 {
		return c, &Error{Param: p.Name, Msg: "no value"}
	}
	for _, v := range p.Values {
		a, err := compileValue(def, mod, p.Prefix, v)
		if err != nil {
			return c, &Error{Param: p.Name, Msg: err.Error()}
		}
		c.Alts = append(c.Alts, a)
	}
	return c, nil
}

func compileValue(def Def, mod, prefix, v string) (Alt, error) {
	if v == "" {
		return Alt{}, fmt.Errorf("empty value")
	}
	switch def.Type {
	case String:
		if mod == ModExact {
			return Alt{Text: v}, nil
		}
		return Alt{Text: Fold(v)}, nil
	case Token:
		sys, code, bar := strings.Cut(v, "|")
		if !bar {
			return Alt{Code: v}, nil
		}
		if sys == "" && code == "" {
			return Alt{}, fmt.Errorf("token value has neither system nor code")
		}
		return Alt{System: sys, Code: code, SystemSet: true}, nil
	case Reference:
		typ, id, ok := SplitReference(v)
		if !ok {
			return Alt{}, fmt.Errorf("not a reference (want Type/id or id)")
		}
		if mod != "" {
			if typ != "" && typ != mod {
				return Alt{}, fmt.Errorf("reference type contradicts modifier :%s", mod)
			}
			typ = mod
		}
		if typ != "" && len(def.Targets) > 0 && !contains(def.Targets, typ) {
			return Alt{}, fmt.Errorf("reference type %s not allowed (allowed: %s)", typ, strings.Join(def.Targets, ", "))
		}
		return Alt{RefType: typ, RefID: id}, nil
	case Date:
		pre, rest := SplitPrefix(v)
		if pre == "" {
			pre = prefix
		}
		if pre == "" {
			pre = "eq"
		}
		if !isDatePrefix(pre) {
			return Alt{}, fmt.Errorf("unknown prefix %q", pre)
		}
		lo, hi, ok := DateRange(rest)
		if !ok {
			return Alt{}, fmt.Errorf("invalid date (want YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)")
		}
		return Alt{Prefix: pre, Low: lo, High: hi}, nil
	}
	return Alt{}, fmt.Errorf("parameter type %s is not searchable", def.Type)
}

// Match reports whether entries (from Extract) satisfy p. The parameter's
// type is taken from the entries, so a resource without any entry for p
// matches only p.Name:missing=true. Invalid values never match.
func Match(entries []Entry, p store.SearchParam) bool {
	name, _ := SplitName(p.Name)
	var typ Type
	for i := range entries {
		if entries[i].Name == name {
			typ = entries[i].Type
			break
		}
	}
	if typ == 0 {
		_, mod := SplitName(p.Name)
		return mod == ModMissing && len(p.Values) == 1 && p.Values[0] == "true"
	}
	c, err := compileDef(Def{Name: name, Type: typ}, p)
	if err != nil {
		return false
	}
	return c.Match(entries)
}

// Match reports whether entries satisfy the criterion: some entry of the
// parameter matches some alternative.
func (c *Criterion) Match(entries []Entry) bool {
	if c.Modifier == ModMissing {
		has := false
		for i := range entries {
			if entries[i].Name == c.Def.Name {
				has = true
				break
			}
		}
		return has != c.Missing
	}
	for i := range entries {
		e := &entries[i]
		if e.Name != c.Def.Name {
			continue
		}
		for k := range c.Alts {
			if c.matchOne(e, &c.Alts[k]) {
				return true
			}
		}
	}
	return false
}

func (c *Criterion) matchOne(e *Entry, a *Alt) bool {
	switch c.Def.Type {
	case String:
		return MatchString(c.Modifier, a, e.Value, e.Exact)
	case Token:
		sys, code, _ := strings.Cut(e.Value, "|")
		return MatchToken(a, sys, code)
	case Reference:
		typ, id, _ := strings.Cut(e.Value, "/")
		return MatchReference(a, typ, id)
	case Date:
		return DateMatches(a.Prefix, a.Low, a.High, e.Low, e.High)
	}
	return false
}

// MatchString reports whether a string entry (value: its folded text, exact:
// the text as written) matches alternative a under modifier mod ("",
// ModExact or ModContains). Stores that index entries in parts use it and
// the other Match* functions so they agree with Criterion.Match exactly.
func MatchString(mod string, a *Alt, value, exact string) bool {
	switch mod {
	case ModExact:
		return exact == a.Text
	case ModContains:
		return strings.Contains(value, a.Text)
	}
	return strings.HasPrefix(value, a.Text)
}

// MatchToken reports whether a token entry "system|code" matches a.
func MatchToken(a *Alt, system, code string) bool {
	switch {
	case !a.SystemSet:
		return code == a.Code
	case a.Code == "":
		return system == a.System
	default:
		return system == a.System && code == a.Code
	}
}

// MatchReference reports whether a reference entry "typ/id" matches a.
func MatchReference(a *Alt, typ, id string) bool {
	return id == a.RefID && (a.RefType == "" || typ == "" || typ == a.RefType)
}

// DateMatches applies a FHIR date prefix: the search range [qlo, qhi] against
// the resource range [rlo, rhi] (all bounds inclusive).
func DateMatches(prefix string, qlo, qhi, rlo, rhi time.Time) bool {
	within := !rlo.Before(qlo) && !rhi.After(qhi)
	switch prefix {
	case "", "eq":
		return within
	case "ne":
		return !within
	case "gt":
		return rhi.After(qhi)
	case "lt":
		return rlo.Before(qlo)
	case "ge":
		return rhi.After(qhi) || within
	case "le":
		return rlo.Before(qlo) || within
	case "sa":
		return rlo.After(qhi)
	case "eb":
		return rhi.Before(qlo)
	case "ap":
		return !rlo.After(qhi) && !rhi.Before(qlo)
	}
	return false
}
