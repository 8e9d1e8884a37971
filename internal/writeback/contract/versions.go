package contract

import (
	"fmt"
	"strconv"
	"strings"
)

// Versions are what an EHR's CapabilityStatement reports as
// software.version, written the way the mapping profiles write them: a
// named release ("May 2026", Epic's quarterly releases) or a dotted number
// ("5.0.1.698"). A named release compares as year then month. Package
// mapping reads the versions ranges of its rules the same way (its
// implementation is unexported); a contract's range and a profile's
// releases are written alike.

var monthNumbers = map[string]int{
	"jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
	"may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8,
	"sep": 9, "sept": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11,
	"dec": 12, "december": 12,
}

// parseVersion turns a version into comparable numbers.
func parseVersion(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if f := strings.Fields(s); len(f) == 2 {
		if m, ok := monthNumbers[strings.ToLower(f[0])]; ok {
			if y, err := strconv.Atoi(f[1]); err == nil && y >= 1900 && y < 10000 {
				return []int{y, m}, nil
			}
		}
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	if s == "" {
		return nil, fmt.Errorf("empty version")
	}
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("version %q is neither a dotted number (5.0.1) nor a named release (May 2026)", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func compareVersions(a, b []int) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
	}
	return 0
}

// versionRange is a conjunction of comparisons: ">= May 2024, < May 2026".
// "" and "*" match every version.
type versionRange struct {
	conds []versionCond
}

type versionCond struct {
	op  string // >=, >, <=, <, =
	ver []int
}

func parseRange(s string) (versionRange, error) {
	var r versionRange
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return r, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		op := "="
		for _, o := range []string{">=", "<=", "==", ">", "<", "="} {
			if strings.HasPrefix(part, o) {
				op, part = o, strings.TrimSpace(part[len(o):])
				break
			}
		}
		if op == "==" {
			op = "="
		}
		v, err := parseVersion(part)
		if err != nil {
			return r, fmt.Errorf("version range %q: %w", s, err)
		}
		r.conds = append(r.conds, versionCond{op: op, ver: v})
	}
	return r, nil
}

// bounded reports whether the range has an upper bound (or is one version).
func (r versionRange) bounded() bool {
	for _, c := range r.conds {
		if c.op == "<" || c.op == "<=" || c.op == "=" {
			return true
		}
	}
	return false
}

// matches reports whether v is in the range. An unknown version (nil) is
// taken as the newest release: it matches a range without an upper bound.
func (r versionRange) matches(v []int) bool {
	if v == nil {
		return !r.bounded()
	}
	for _, c := range r.conds {
		cmp := compareVersions(v, c.ver)
		var ok bool
		switch c.op {
		case ">=":
			ok = cmp >= 0
		case ">":
			ok = cmp > 0
		case "<=":
			ok = cmp <= 0
		case "<":
			ok = cmp < 0
		default:
			ok = cmp == 0
		}
		if !ok {
			return false
		}
	}
	return true
}

// MatchVersion reports whether an EHR version ("May 2026", "5.0.1.698";
// "" = unknown, taken as the newest release) is in a version range
// (">= 5.0, < 5.1"; "" or "*" = every version). A range or version that
// cannot be read is an error.
func MatchVersion(rng, version string) (bool, error) {
	r, err := parseRange(rng)
	if err != nil {
		return false, err
	}
	var v []int
	if strings.TrimSpace(version) != "" {
		if v, err = parseVersion(version); err != nil {
			return false, err
		}
	}
	return r.matches(v), nil
}
