package conceptmap

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Policy says what a mapping rule does with a code its table does not map.
type Policy string

// Policies.
const (
	PolicyError       Policy = "error"        // the element fails, with an *UnmappedError
	PolicyPassThrough Policy = "pass-through" // the source code is kept as it came
	PolicyDefault     Policy = "default"      // the rule's default code is used
)

// Valid reports whether p is one of the three policies.
func (p Policy) Valid() bool {
	return p == PolicyError || p == PolicyPassThrough || p == PolicyDefault
}

// ParsePolicy returns the policy named s, or an error listing the valid ones.
func ParsePolicy(s string) (Policy, error) {
	if p := Policy(s); p.Valid() {
		return p, nil
	}
	return "", fmt.Errorf("unknown unmapped-code policy %q (want %s, %s or %s)", s, PolicyError, PolicyPassThrough, PolicyDefault)
}

// UnmappedError is the error of PolicyError: the map has no translation for
// a code.
type UnmappedError struct {
	MapURL, System, Code string
}

func (e *UnmappedError) Error() string {
	sys := e.System
	if sys == "" {
		sys = "(no system)"
	}
	return fmt.Sprintf("conceptmap %s: no translation for code %q of %s", e.MapURL, e.Code, sys)
}

// Resolve translates a code as a mapping rule does: a listed code gives
// Translate's target. Any other code is counted in counter (when not nil)
// under the map's url, and then: the map's own unmapped rule, when a
// matching group has one, gives its target (the table decides before the
// rule's policy); otherwise PolicyError returns an *UnmappedError,
// PolicyPassThrough returns the source system and code unchanged
// (Fallback true), and PolicyDefault returns defaultCode in the target
// system of the first group (Fallback true).
func (m *Map) Resolve(system, code string, policy Policy, defaultCode string, counter *Unmapped) (Target, error) {
	t, ok := m.Translate(system, code)
	if ok && !t.Fallback {
		return t, nil
	}
	if counter != nil {
		counter.Add(m.url, system, code)
	}
	if ok {
		return t, nil
	}
	switch policy {
	case PolicyPassThrough:
		return Target{System: system, Code: code, Fallback: true}, nil
	case PolicyDefault:
		sys := ""
		if len(m.groups) > 0 {
			sys = m.groups[0].Target
		}
		return Target{System: sys, Code: defaultCode, Fallback: true}, nil
	case PolicyError:
		return Target{}, &UnmappedError{MapURL: m.url, System: system, Code: code}
	}
	return Target{}, fmt.Errorf("conceptmap %s: %w", m.url, errPolicy(policy))
}

func errPolicy(p Policy) error {
	_, err := ParsePolicy(string(p))
	return err
}

// Unmapped counts unmapped codes per map, system and code. The zero value is
// ready to use; it is safe for concurrent use.
type Unmapped struct {
	mu     sync.Mutex
	counts map[unmappedKey]int
	total  int
}

type unmappedKey struct{ mapURL, system, code string }

// UnmappedCount is one counted (map, system, code).
type UnmappedCount struct {
	MapURL, System, Code string
	Count                int
}

// Key is how Counts names a (map, system, code): "mapURL|system|code".
func Key(mapURL, system, code string) string {
	return mapURL + "|" + system + "|" + code
}

// Add counts one occurrence of an unmapped code.
func (u *Unmapped) Add(mapURL, system, code string) {
	u.mu.Lock()
	if u.counts == nil {
		u.counts = make(map[unmappedKey]int)
	}
	u.counts[unmappedKey{mapURL, system, code}]++
	u.total++
	u.mu.Unlock()
}

// Counts returns a copy of the counts, keyed by Key.
func (u *Unmapped) Counts() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int, len(u.counts))
	for k, v := range u.counts {
		out[Key(k.mapURL, k.system, k.code)] += v
	}
	return out
}

// Entries returns the counts as records, most frequent first, then by map,
// system and code.
func (u *Unmapped) Entries() []UnmappedCount {
	u.mu.Lock()
	out := make([]UnmappedCount, 0, len(u.counts))
	for k, v := range u.counts {
		out = append(out, UnmappedCount{MapURL: k.mapURL, System: k.system, Code: k.code, Count: v})
	}
	u.mu.Unlock()
	slices.SortFunc(out, func(a, b UnmappedCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if c := strings.Compare(a.MapURL, b.MapURL); c != 0 {
			return c
		}
		if c := strings.Compare(a.System, b.System); c != 0 {
			return c
		}
		return strings.Compare(a.Code, b.Code)
	})
	return out
}

// Total returns how many unmapped codes were counted.
func (u *Unmapped) Total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.total
}
