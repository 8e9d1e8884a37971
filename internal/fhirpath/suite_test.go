package fhirpath

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// suiteFloor is the least number of cases of the official R4 FHIRPath suite
// (fhir-r4.yaml, 935 cases) that must pass. Raise it when the engine
// improves; it never goes down.
const suiteFloor = 921

// suiteCase is one case of fhir-r4.yaml.
type suiteCase struct {
	Name       string // desc without "** ", "#2" appended to a repeated desc
	Group      string
	InputFile  string
	Expression string
	Result     []*yaml.Node // scalars; nil when the case expects an error
	Error      bool
	Disabled   bool // "disable: true": fhirpath.js skips it; we run it anyway
	Model      string
}

func loadSuite(t *testing.T) (string, []suiteCase) {
	t.Helper()
	dir := repo.Shared(t, "testdata/fhirpath")
	data, err := os.ReadFile(filepath.Join(dir, "fhir-r4.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests []map[string]yaml.Node `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("fhir-r4.yaml: %v", err)
	}
	var cases []suiteCase
	seen := map[string]int{}
	for _, g := range doc.Tests {
		// a group is {"group: NAME": [cases], "disable": true?}
		groupDisabled := false
		if d, ok := g["disable"]; ok {
			groupDisabled = d.Value == "true"
		}
		for group, node := range g {
			if !strings.HasPrefix(group, "group: ") {
				continue
			}
			list := node.Content
			for i := range list {
				var raw struct {
					Desc       string    `yaml:"desc"`
					InputFile  string    `yaml:"inputfile"`
					Expression string    `yaml:"expression"`
					Result     yaml.Node `yaml:"result"`
					Error      bool      `yaml:"error"`
					Disable    bool      `yaml:"disable"`
					Model      string    `yaml:"model"`
				}
				if err := list[i].Decode(&raw); err != nil {
					t.Fatalf("%s: case %d: %v", group, i, err)
				}
				name := strings.TrimPrefix(raw.Desc, "** ")
				seen[name]++
				if n := seen[name]; n > 1 {
					name = fmt.Sprintf("%s#%d", name, n)
				}
				c := suiteCase{
					Name: name, Group: strings.TrimPrefix(group, "group: "), InputFile: raw.InputFile,
					Expression: raw.Expression, Error: raw.Error, Disabled: raw.Disable || groupDisabled, Model: raw.Model,
				}
				if raw.Result.Kind == yaml.SequenceNode {
					c.Result = raw.Result.Content
				}
				cases = append(cases, c)
			}
		}
	}
	return dir, cases
}

// runCase evaluates one case and returns "" when it passes, else why not.
func runCase(c suiteCase, inputs map[string]any) string {
	opts := []Option{WithLocation(time.UTC)}
	if c.Model == "" || c.Model == "none" {
		opts = append(opts, WithoutModel())
	}
	x, err := Compile(c.Expression, opts...)
	var got Collection
	if err == nil {
		var in any
		if c.InputFile != "" {
			in = inputs[c.InputFile]
		}
		got, err = x.Eval(context.Background(), in, nil)
	}
	if c.Error {
		if err == nil {
			return fmt.Sprintf("expected an error, got %s", got)
		}
		return ""
	}
	if err != nil {
		return "error: " + err.Error()
	}
	if len(got) != len(c.Result) {
		return fmt.Sprintf("got %s, want %s", got, showExpected(c.Result))
	}
	for i, want := range c.Result {
		if !matchesExpected(got[i], want) {
			return fmt.Sprintf("got %s, want %s (item %d)", got, showExpected(c.Result), i)
		}
	}
	return ""
}

func showExpected(r []*yaml.Node) string {
	parts := make([]string, len(r))
	for i, n := range r {
		parts[i] = n.Value
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// matchesExpected compares a result item with an expected YAML scalar.
func matchesExpected(v Value, want *yaml.Node) bool {
	mi := &modelInfo{}
	sv, ok := mi.sys(v)
	if v.k == kNode {
		// compare a primitive node by its JSON value
		if _, obj := v.data.(map[string]any); obj {
			return false
		}
		sv, ok = (&modelInfo{}).sys(Value{k: kNode, data: v.data})
	}
	if !ok {
		return false
	}
	switch want.Tag {
	case "!!bool":
		return sv.k == kBool && (sv.bool() == (want.Value == "true"))
	case "!!int", "!!float":
		if sv.k != kInt && sv.k != kDec {
			return false
		}
		d, err := ParseDecimal(want.Value)
		if err != nil {
			return false
		}
		return toDecimal(sv).Cmp(d) == 0
	default:
		s, ok := sv.Text()
		return ok && s == want.Value
	}
}

func loadInputs(t *testing.T, dir string, cases []suiteCase) map[string]any {
	t.Helper()
	inputs := map[string]any{}
	for _, c := range cases {
		if c.InputFile == "" || inputs[c.InputFile] != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "r4", c.InputFile))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		v, err := DecodeJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", c.InputFile, err)
		}
		inputs[c.InputFile] = v
	}
	return inputs
}

// readKnownFailures reads testdata/known-failures.txt: "name: reason" per
// line; # starts a comment.
func readKnownFailures(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "known-failures.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, ok := strings.Cut(line, ": ")
		if !ok || strings.TrimSpace(reason) == "" {
			t.Fatalf("known-failures.txt: %q has no reason", line)
		}
		known[name] = reason
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return known
}

// TestFHIRPathOfficialSuite runs the R4 FHIRPath test suite. Every case
// must pass except those listed in testdata/known-failures.txt, and every
// listed case must still fail, so the list stays true.
func TestFHIRPathOfficialSuite(t *testing.T) {
	dir, cases := loadSuite(t)
	inputs := loadInputs(t, dir, cases)
	known := readKnownFailures(t)
	passed := 0
	var failures []string
	names := map[string]bool{}
	for _, c := range cases {
		names[c.Name] = true
		why := runCase(c, inputs)
		_, listed := known[c.Name]
		switch {
		case why == "":
			passed++
			if listed {
				t.Errorf("%s [%s] now passes: remove it from testdata/known-failures.txt", c.Name, c.Expression)
			}
		case !listed:
			t.Errorf("%s [%s] (%s): %s", c.Name, c.Expression, c.Group, why)
		default:
			failures = append(failures, fmt.Sprintf("%s [%s]: %s", c.Name, c.Expression, why))
		}
	}
	for name := range known {
		if !names[name] {
			t.Errorf("known-failures.txt lists %q, which is not in the suite", name)
		}
	}
	sort.Strings(failures)
	if testing.Verbose() {
		for _, f := range failures {
			t.Logf("known failure: %s", f)
		}
	}
	t.Logf("FHIRPath R4 suite: %d/%d passed (floor %d)", passed, len(cases), suiteFloor)
	if passed < suiteFloor {
		t.Errorf("only %d of %d cases pass, below the floor of %d", passed, len(cases), suiteFloor)
	}
}
