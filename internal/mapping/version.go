package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

// A vendor version is what the EHR's CapabilityStatement reports as
// software.version: a named release ("May 2026", Epic's quarterly releases)
// or a dotted number ("5.0.1.698", "1.6"). Both compare as numbers: a named
// release as year then month.

var months = map[string]int{
	"jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
	"may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8,
	"sep": 9, "sept": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11,
	"dec": 12, "december": 12,
}

// parseVersion turns a vendor version into comparable numbers.
func parseVersion(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if f := strings.Fields(s); len(f) == 2 {
		if m, ok := months[strings.ToLower(f[0])]; ok {
			y, err := strconv.Atoi(f[1])
			if err == nil && y >= 1900 && y < 10000 {
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
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// versionRange is a conjunction of comparisons: ">= May 2024, < May 2026".
type versionRange struct {
	text  string
	conds []versionCond
}

type versionCond struct {
	op  string // >=, >, <=, <, =
	ver []int
}

// parseRange parses a range; "" and "*" match every version.
func parseRange(s string) (versionRange, error) {
	r := versionRange{text: strings.TrimSpace(s)}
	if r.text == "" || r.text == "*" {
		return r, nil
	}
	for _, part := range strings.Split(r.text, ",") {
		part = strings.TrimSpace(part)
		op := "="
		for _, o := range []string{">=", "<=", "==", ">", "<", "="} {
			if strings.HasPrefix(part, o) {
				op = o
				part = strings.TrimSpace(part[len(o):])
				break
			}
		}
		if op == "==" {
			op = "="
		}
		v, err := parseVersion(part)
		if err != nil {
			return r, err
		}
		r.conds = append(r.conds, versionCond{op: op, ver: v})
	}
	return r, nil
}

// matches reports whether version v is in the range. An unknown version
// (nil) is taken as the newest release: it matches a range without an upper
// bound.
func (r versionRange) matches(v []int) bool {
	for _, c := range r.conds {
		if v == nil {
			if c.op == "<" || c.op == "<=" || c.op == "=" {
				return false
			}
			continue
		}
		cmp := compareVersions(v, c.ver)
		ok := false
		switch c.op {
		case ">=":
			ok = cmp >= 0
		case ">":
			ok = cmp > 0
		case "<=":
			ok = cmp <= 0
		case "<":
			ok = cmp < 0
		case "=":
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
// (">= 5.0, < 5.1"; "" or "*" = every version), read the way profile
// rules' versions are. A range or version that cannot be read is an error.
// Other version-ranged specs (write contracts) use it too.
func MatchVersion(rng, version string) (bool, error) {
	r, err := parseRange(rng)
	if err != nil {
		return false, fmt.Errorf("version range %q: %w", rng, err)
	}
	var v []int
	if strings.TrimSpace(version) != "" {
		if v, err = parseVersion(version); err != nil {
			return false, err
		}
	}
	return r.matches(v), nil
}
