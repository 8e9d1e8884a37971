// Package repo finds the mediflow source tree (the folder holding go.mod) and
// the shared/ folder beside it, where CI keeps third-party test data. Tests,
// benchmarks and the peers harness use it instead of walking up themselves.
package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var rootOnce = sync.OnceValues(findRoot)

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo: working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo: not inside the mediflow repository (no go.mod above the working directory)")
		}
		dir = parent
	}
}

// Root returns the repository root, looking upward from the working directory.
func Root() (string, error) { return rootOnce() }

// RootT is Root for tests: it fails the test when there is no repository.
func RootT(t testing.TB) string {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Shared returns ../shared/<rel> beside the repository, skipping the test
// with a clear message when it is absent (CI always has it).
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(RootT(t), "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared test data %s not present (needs ../shared beside the repository): %v", rel, err)
	}
	return p
}
