package mapping

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransformsDocUpToDate keeps the transform reference in
// docs/mapping.md equal to Transforms(), the list the engine runs; -update
// rewrites it.
func TestTransformsDocUpToDate(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "mapping.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- transforms:begin", "<!-- transforms:end -->"
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no transforms:begin … transforms:end markers", path)
	}
	i += strings.Index(s[i:], "-->") + len("-->\n")
	var b strings.Builder
	b.WriteString("| transform | what it does | arguments |\n|---|---|---|\n")
	for _, x := range Transforms() {
		var args []string
		for _, a := range x.Args {
			req := ""
			if a.Required {
				req = " (required)"
			}
			args = append(args, "`"+a.Name+"`"+req+": "+a.Summary)
		}
		b.WriteString("| `" + x.Name + "` | " + x.Summary + " | " + strings.Join(args, "<br>") + " |\n")
	}
	want := b.String()
	if s[i:j] == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(s[:i]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the transform table in %s is out of date: run go test ./internal/mapping -run TestTransformsDocUpToDate -update", path)
}
