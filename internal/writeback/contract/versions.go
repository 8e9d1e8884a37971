package contract

import "github.com/mediflow/mediflow/internal/mapping"

// MatchVersion reports whether an EHR version ("May 2026", "5.0.1.698";
// "" = unknown, taken as the newest release) is in a contract's version
// range (">= 5.0, < 5.1"; "" or "*" = every version). Contracts read
// versions exactly as the mapping profiles do (mapping.MatchVersion).
func MatchVersion(rng, version string) (bool, error) {
	return mapping.MatchVersion(rng, version)
}
