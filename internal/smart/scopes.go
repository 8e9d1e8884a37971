package smart

import (
	"fmt"
	"slices"
	"strings"
)

// Operations a scope can permit, as the single letters SMART v2 uses.
const (
	OpCreate byte = 'c'
	OpRead   byte = 'r'
	OpUpdate byte = 'u'
	OpDelete byte = 'd'
	OpSearch byte = 's'
)

// Perms is a set of SMART v2 permissions (c, r, u, d, s).
type Perms uint8

// The individual permissions.
const (
	PermCreate Perms = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch
)

// Permission sets that SMART v1 suffixes stand for.
const (
	PermsV1Read  = PermRead | PermSearch                // ".read"
	PermsV1Write = PermCreate | PermUpdate | PermDelete // ".write"
	PermsAll     = PermsV1Read | PermsV1Write           // ".*" / ".cruds"
)

var permLetters = [...]struct {
	letter byte
	perm   Perms
}{{'c', PermCreate}, {'r', PermRead}, {'u', PermUpdate}, {'d', PermDelete}, {'s', PermSearch}}

// PermFor returns the permission for an operation letter (c, r, u, d or s),
// or 0 for any other byte.
func PermFor(op byte) Perms {
	for _, pl := range permLetters {
		if pl.letter == op {
			return pl.perm
		}
	}
	return 0
}

// String renders the set in v2 order ("cruds").
func (p Perms) String() string {
	var b strings.Builder
	for _, pl := range permLetters {
		if p&pl.perm != 0 {
			b.WriteByte(pl.letter)
		}
	}
	return b.String()
}

// Scope is one parsed SMART clinical scope, such as system/Patient.rs or
// system/Observation.read.
type Scope struct {
	Context  string // "system", "user" or "patient"
	Resource string // a FHIR resource type, or "*"
	Perms    Perms
	Query    string // v2 granular filter after '?', without the '?'
	V1       bool   // written in v1 syntax (.read, .write, .*)
}

// ParseScope parses a clinical scope in v1 (system/Patient.read) or v2
// (system/Patient.rs, optionally with a ?query filter) syntax.
func ParseScope(s string) (Scope, error) {
	var sc Scope
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return sc, fmt.Errorf("scope %q: not a clinical scope (want context/Resource.permissions)", s)
	}
	switch ctx {
	case "system", "user", "patient":
	default:
		return sc, fmt.Errorf("scope %q: context must be system, user or patient", s)
	}
	sc.Context = ctx
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		sc.Query = rest[i+1:]
		rest = rest[:i]
		if sc.Query == "" {
			return sc, fmt.Errorf("scope %q: empty query after '?'", s)
		}
	}
	res, perm, ok := strings.Cut(rest, ".")
	if !ok {
		return sc, fmt.Errorf("scope %q: missing '.' before the permissions", s)
	}
	if !validResource(res) {
		return sc, fmt.Errorf("scope %q: %q is not a resource type or *", s, res)
	}
	sc.Resource = res
	switch perm {
	case "read":
		sc.Perms, sc.V1 = PermsV1Read, true
	case "write":
		sc.Perms, sc.V1 = PermsV1Write, true
	case "*":
		sc.Perms, sc.V1 = PermsAll, true
	default:
		if perm == "" {
			return sc, fmt.Errorf("scope %q: no permissions", s)
		}
		for i := 0; i < len(perm); i++ {
			p := PermFor(perm[i])
			if p == 0 {
				return sc, fmt.Errorf("scope %q: %q is not a permission (want read, write, * or letters of cruds)", s, perm)
			}
			if sc.Perms&p != 0 {
				return sc, fmt.Errorf("scope %q: permission %q repeated", s, perm[i])
			}
			sc.Perms |= p
		}
	}
	if sc.V1 && sc.Query != "" {
		return sc, fmt.Errorf("scope %q: a query filter needs v2 permissions (e.g. .rs)", s)
	}
	return sc, nil
}

func validResource(s string) bool {
	if s == "*" {
		return true
	}
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// String renders the scope in the syntax it was written in.
func (s Scope) String() string {
	if s.V1 {
		if v1, ok := s.V1String(); ok {
			return v1
		}
	}
	return s.V2String()
}

// V2String renders the scope in v2 syntax (system/Patient.rs).
func (s Scope) V2String() string {
	out := s.Context + "/" + s.Resource + "." + s.Perms.String()
	if s.Query != "" {
		out += "?" + s.Query
	}
	return out
}

// V1String renders the scope in v1 syntax; ok is false when v1 cannot say
// exactly the same thing (e.g. ".r" alone, or a query filter).
func (s Scope) V1String() (string, bool) {
	if s.Query != "" {
		return "", false
	}
	var suffix string
	switch s.Perms {
	case PermsV1Read:
		suffix = "read"
	case PermsV1Write:
		suffix = "write"
	case PermsAll:
		suffix = "*"
	default:
		return "", false
	}
	return s.Context + "/" + s.Resource + "." + suffix, true
}

// V1Ceiling renders the narrowest v1 scope that includes everything this
// scope permits: ".r" becomes ".read", ".ru" becomes ".*". A query filter,
// which v1 cannot express, is dropped.
func (s Scope) V1Ceiling() string {
	if v1, ok := s.V1String(); ok {
		return v1
	}
	var suffix string
	hasRead, hasWrite := s.Perms&PermsV1Read != 0, s.Perms&PermsV1Write != 0
	switch {
	case hasRead && hasWrite:
		suffix = "*"
	case hasWrite:
		suffix = "write"
	default:
		suffix = "read"
	}
	return s.Context + "/" + s.Resource + "." + suffix
}

// V1Floor returns the broadest v1-expressible scope contained in this one;
// ok is false when v1 can express no part of it (e.g. ".r" alone).
func (s Scope) V1Floor() (Scope, bool) {
	if s.Query != "" {
		return Scope{}, false
	}
	var p Perms
	if s.Perms&PermsV1Read == PermsV1Read {
		p |= PermsV1Read
	}
	if s.Perms&PermsV1Write == PermsV1Write {
		p |= PermsV1Write
	}
	if p == 0 {
		return Scope{}, false
	}
	return Scope{Context: s.Context, Resource: s.Resource, Perms: p, V1: true}, true
}

// Allows reports whether the scope permits op (c, r, u, d or s) on
// resourceType. Scopes with a query filter grant only filtered access, which
// a caller that cannot evaluate the filter must not assume, so they never
// allow anything here.
func (s Scope) Allows(resourceType string, op byte) bool {
	if s.Query != "" {
		return false
	}
	if s.Resource != "*" && s.Resource != resourceType {
		return false
	}
	p := PermFor(op)
	return p != 0 && s.Perms&p == p
}

// Intersect returns the scope that both s and o permit, or ok=false when
// they share nothing. Contexts must match; a wildcard resource narrows to
// the other's resource; query filters must be equal or one side unfiltered.
func (s Scope) Intersect(o Scope) (Scope, bool) {
	if s.Context != o.Context {
		return Scope{}, false
	}
	out := Scope{Context: s.Context, V1: s.V1}
	switch {
	case s.Resource == o.Resource:
		out.Resource = s.Resource
	case s.Resource == "*":
		out.Resource = o.Resource
	case o.Resource == "*":
		out.Resource = s.Resource
	default:
		return Scope{}, false
	}
	switch {
	case s.Query == o.Query:
		out.Query = s.Query
	case s.Query == "":
		out.Query = o.Query
	case o.Query == "":
		out.Query = s.Query
	default:
		return Scope{}, false
	}
	out.Perms = s.Perms & o.Perms
	if out.Perms == 0 {
		return Scope{}, false
	}
	if out.V1 {
		if _, ok := out.V1String(); !ok {
			out.V1 = false
		}
	}
	return out, true
}

// SplitScopes splits an OAuth scope string on spaces.
func SplitScopes(s string) []string { return strings.Fields(s) }

// IsClinicalScope reports whether s looks like a context/Resource.perms
// scope (as opposed to e.g. "openid" or "launch").
func IsClinicalScope(s string) bool {
	ctx, _, ok := strings.Cut(s, "/")
	return ok && (ctx == "system" || ctx == "user" || ctx == "patient") && strings.Contains(s, ".")
}

// ToV2 rewrites clinical scopes into v2 syntax; other scopes and scopes that
// do not parse pass through unchanged.
func ToV2(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if sc, err := ParseScope(s); err == nil {
			s = sc.V2String()
		}
		out = appendUnique(out, s)
	}
	return out
}

// ToV1 rewrites clinical scopes into v1 syntax, widening where v1 cannot say
// exactly the same thing (see Scope.V1Ceiling); other scopes pass through.
func ToV1(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if sc, err := ParseScope(s); err == nil {
			s = sc.V1Ceiling()
		}
		out = appendUnique(out, s)
	}
	return out
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// ScopesAllow reports whether any of the granted scopes permits op on
// resourceType. Unparseable scopes are ignored.
func ScopesAllow(granted []string, resourceType string, op byte) bool {
	for _, g := range granted {
		sc, err := ParseScope(g)
		if err == nil && sc.Allows(resourceType, op) {
			return true
		}
	}
	return false
}

// ScopesFor returns scopes in the syntax the discovered server understands:
// servers that advertise permission-v2 without permission-v1 get v2 syntax;
// servers that advertise permission-v1 only, or neither (a SMART v1 server,
// or discovery through a CapabilityStatement), get v1 syntax; servers that
// advertise both get the scopes unchanged. A nil discovery changes nothing.
func ScopesFor(d *Discovery, scopes []string) []string {
	if d == nil {
		return slices.Clone(scopes)
	}
	v1, v2 := d.Has("permission-v1"), d.Has("permission-v2")
	switch {
	case v1 && v2:
		return slices.Clone(scopes)
	case v2:
		return ToV2(scopes)
	default:
		return ToV1(scopes)
	}
}
