package profiles_test

import (
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/profiles"
)

// TestPracticeOverrideExample runs the practice override example that
// docs/mapping.md shows (examples/mapping/sunrise) against the shipped
// profiles, as `mediflow mapping test examples/mapping/sunrise` does.
func TestPracticeOverrideExample(t *testing.T) {
	res, err := mapping.RunCases(t.Context(), profiles.FS, filepath.Join("..", "examples", "mapping", "sunrise"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 {
		t.Fatal("the example has no cases")
	}
	for _, r := range res {
		if !r.Passed() {
			t.Errorf("%s: %v", r.Name, r.Failures)
		}
	}
}
