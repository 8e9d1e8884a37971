package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/fhirpath"
	"gopkg.in/yaml.v3"
)

// A practice tests its overrides like code: a folder with overrides.yaml
// (the practice's rules, optional), conceptmaps/ (its own code tables,
// optional) and cases/*.yaml, each case one resource as its EHR sends it
// and what the canonical result must hold:
//
//	name: mobile numbers are stored in E.164      # optional
//	vendor: epic
//	version: May 2026                             # optional
//	direction: in                                 # optional (in, out)
//	input: patient.json                           # a file beside the case (or in the folder), or the resource inline (YAML or JSON)
//	expect:                                       # FHIRPath assertions, each must give true
//	  - Patient.telecom.where(system = 'phone').value.first() = '+14695550100'
//	# or expect: expected.json                    # the whole canonical resource (the profile tag is ignored)
//	# or expectError: not in http://...          # the mapping must fail with this text

// CaseResult is the outcome of one test case.
type CaseResult struct {
	Name     string
	File     string
	Failures []string // "file:line: message"; none when the case passed
}

// Passed reports whether the case passed.
func (c CaseResult) Passed() bool { return len(c.Failures) == 0 }

type testCase struct {
	file        string
	name        string
	vendor      string
	version     string
	direction   string
	input       []byte
	inputLine   int
	asserts     []assertion
	expectFile  string
	expectLine  int
	expectError string
}

type assertion struct {
	expr string
	line int
}

// RunCases runs the test cases in dir (see above) against the profiles in
// fsys. It returns an error only when the practice's overrides or code
// tables do not load, or dir has no cases; a case that cannot be read fails
// on its own.
func RunCases(ctx context.Context, fsys fs.FS, dir string) ([]CaseResult, error) {
	var overrides []Source
	ovPath := filepath.Join(dir, "overrides.yaml")
	if data, err := os.ReadFile(ovPath); err == nil {
		src := Source{Name: ovPath, Data: data}
		cmDir := filepath.Join(dir, "conceptmaps")
		if st, err := os.Stat(cmDir); err == nil && st.IsDir() {
			src.ConceptMaps = os.DirFS(cmDir)
		}
		overrides = append(overrides, src)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "cases", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no test cases (add cases/*.yaml)", dir)
	}
	sets := map[string]*Set{}
	var results []CaseResult
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		tc, perr := readCase(f, dir)
		res := CaseResult{Name: strings.TrimSuffix(filepath.Base(f), ".yaml"), File: f}
		if tc != nil && tc.name != "" {
			res.Name = tc.name
		}
		if perr != nil {
			res.Failures = append(res.Failures, strings.Split(perr.Error(), "\n")...)
			results = append(results, res)
			continue
		}
		key := tc.vendor + "\x00" + tc.version
		set := sets[key]
		if set == nil {
			s, err := Load(fsys, tc.vendor, tc.version, overrides...)
			if err != nil {
				if !errors.Is(err, ErrUnknownVendor) && !errors.Is(err, ErrBadVersion) {
					return nil, err // the overrides (or the profiles) do not load
				}
				res.Failures = append(res.Failures, fmt.Sprintf("%s:1: %v", f, err))
				results = append(results, res)
				continue
			}
			set, sets[key] = s, s
		}
		res.Failures = tc.run(ctx, set)
		results = append(results, res)
	}
	return results, nil
}

var caseKeys = []string{"name", "vendor", "version", "direction", "input", "expect", "expectError"}

// readCase reads a case file; errors name file:line. Files it names are
// looked for beside it, then in dir.
func readCase(file, dir string) (*testCase, error) {
	find := func(name string) string {
		p := filepath.Join(filepath.Dir(file), name)
		if _, err := os.Stat(p); err != nil {
			if q := filepath.Join(dir, name); fileExists(q) {
				return q
			}
		}
		return p
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var el errList
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line, msg := 0, err.Error()
		if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
			fmt.Sscan(m[1], &line)
			msg = m[2]
		}
		return nil, &LoadError{Pos: Pos{file, line}, Msg: "invalid YAML: " + msg}
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, &LoadError{Pos: Pos{file, 1}, Msg: "a case is a mapping with vendor, input and expect"}
	}
	tc := &testCase{file: file, direction: DirectionIn}
	n := root.Content[0]
	hasExpect := false
	forEachKey(file, n, caseKeys, "a test case", &el, func(k string, v *yaml.Node) {
		switch k {
		case "name", "vendor", "version", "direction", "expectError":
			s, _ := scalar(file, k, v, &el)
			switch k {
			case "name":
				tc.name = s
			case "vendor":
				tc.vendor = s
			case "version":
				tc.version = s
			case "direction":
				if s != DirectionIn && s != DirectionOut {
					el.add(Pos{file, v.Line}, "in or out", "unknown direction %q", s)
				}
				tc.direction = s
			case "expectError":
				tc.expectError, hasExpect = s, true
			}
		case "input":
			tc.inputLine = v.Line
			switch {
			case v.Kind == yaml.ScalarNode && strings.HasPrefix(strings.TrimSpace(v.Value), "{"):
				tc.input = []byte(v.Value)
			case v.Kind == yaml.ScalarNode:
				b, err := os.ReadFile(find(v.Value))
				if err != nil {
					el.add(Pos{file, v.Line}, "input names a JSON file beside the case, or holds the resource", "input: %v", err)
					return
				}
				tc.input = b
			case v.Kind == yaml.MappingNode:
				j, err := yamlToJSON(v)
				if err == nil {
					tc.input, err = json.Marshal(j)
				}
				if err != nil {
					el.add(Pos{file, v.Line}, "", "input: %v", err)
				}
			default:
				el.add(Pos{file, v.Line}, "", "input must be a file name or a resource")
			}
		case "expect":
			hasExpect = true
			tc.expectLine = v.Line
			switch v.Kind {
			case yaml.ScalarNode:
				if strings.HasSuffix(v.Value, ".json") {
					tc.expectFile = find(v.Value)
				} else {
					tc.asserts = append(tc.asserts, assertion{expr: v.Value, line: v.Line})
				}
			case yaml.SequenceNode:
				for _, it := range v.Content {
					if it.Kind != yaml.ScalarNode {
						el.add(Pos{file, it.Line}, "quote the expression", "an assertion must be one FHIRPath expression")
						continue
					}
					tc.asserts = append(tc.asserts, assertion{expr: it.Value, line: it.Line})
				}
			default:
				el.add(Pos{file, v.Line}, "", "expect is a list of FHIRPath assertions or a .json file")
			}
		}
	})
	if tc.vendor == "" {
		el.add(Pos{file, n.Line}, "vendor: epic (or generic, oracle-health, ...)", "the case names no vendor")
	}
	if tc.input == nil && tc.inputLine == 0 {
		el.add(Pos{file, n.Line}, "input: patient.json, or the resource inline", "the case has no input")
	}
	if !hasExpect {
		el.add(Pos{file, n.Line}, "expect: [FHIRPath assertions] or expect: expected.json", "the case expects nothing")
	}
	for _, a := range tc.asserts {
		if _, err := fhirpath.Compile(a.expr); err != nil {
			el.add(Pos{file, a.line}, "", "assertion %q: %v", a.expr, err)
		}
	}
	if len(el) > 0 {
		return tc, errors.Join(el...)
	}
	return tc, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func (tc *testCase) run(ctx context.Context, set *Set) []string {
	at := func(line int, format string, a ...any) string {
		return fmt.Sprintf("%s:%d: %s", tc.file, line, fmt.Sprintf(format, a...))
	}
	out, _, err := set.Map(ctx, tc.input, MapOptions{Direction: tc.direction})
	if tc.expectError != "" {
		switch {
		case err == nil:
			return []string{at(tc.expectLine, "the mapping succeeded; expected an error containing %q", tc.expectError)}
		case !strings.Contains(err.Error(), tc.expectError):
			return []string{at(tc.expectLine, "the mapping failed with %q; expected %q", err.Error(), tc.expectError)}
		}
		return nil
	}
	if err != nil {
		return []string{at(tc.inputLine, "mapping failed: %v", err)}
	}
	var fails []string
	if tc.expectFile != "" {
		want, err := os.ReadFile(tc.expectFile)
		if err != nil {
			return []string{at(tc.expectLine, "%v", err)}
		}
		if d := jsonDifference(want, out); d != "" {
			fails = append(fails, at(tc.expectLine, "the result differs from %s: %s", filepath.Base(tc.expectFile), d))
		}
	}
	for _, a := range tc.asserts {
		x, err := fhirpath.Compile(a.expr)
		if err != nil {
			fails = append(fails, at(a.line, "%v", err))
			continue
		}
		c, err := x.Eval(ctx, out, nil)
		if err != nil {
			fails = append(fails, at(a.line, "%s: %v", a.expr, err))
			continue
		}
		if isTrue(c) {
			continue
		}
		msg := fmt.Sprintf("%s is %s", a.expr, describe(c))
		if left, ok := leftOperand(a.expr); ok {
			if lx, err := fhirpath.Compile(left); err == nil {
				if lc, err := lx.Eval(ctx, out, nil); err == nil {
					msg += fmt.Sprintf("; %s gives %s", left, lc.String())
				}
			}
		}
		fails = append(fails, at(a.line, "%s", msg))
	}
	return fails
}

func describe(c fhirpath.Collection) string {
	if len(c) == 0 {
		return "empty"
	}
	return c.String()
}

// leftOperand returns the left side of a top-level "=" or "!=" comparison.
func leftOperand(expr string) (string, bool) {
	depth, inStr := 0, false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '\'' {
				inStr = false
			}
		case c == '\'':
			inStr = true
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '=' && depth == 0:
			l := expr[:i]
			l = strings.TrimSuffix(strings.TrimSuffix(l, "!"), "~")
			return strings.TrimSpace(l), strings.TrimSpace(l) != ""
		}
	}
	return "", false
}

// jsonDifference compares two resources, ignoring the mapping-profile tag,
// and describes the first difference ("" when equal).
func jsonDifference(want, got []byte) string {
	w, err := decodeJSON(want)
	if err != nil {
		return "expected file: " + err.Error()
	}
	g, err := decodeJSON(got)
	if err != nil {
		return err.Error()
	}
	for _, v := range []any{w, g} {
		if m, ok := v.(map[string]any); ok {
			setProfileTag(m, nil)
		}
	}
	return firstJSONDiff("", w, g)
}

func firstJSONDiff(path string, w, g any) string {
	name := path
	if name == "" {
		name = "the resource"
	}
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: expected an object", name)
		}
		keys := map[string]bool{}
		for k := range wv {
			keys[k] = true
		}
		for k := range gv {
			keys[k] = true
		}
		for _, k := range sortedStrings(keys) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			a, inW := wv[k]
			b, inG := gv[k]
			switch {
			case !inG:
				return fmt.Sprintf("%s is missing", p)
			case !inW:
				return fmt.Sprintf("%s is not expected", p)
			}
			if d := firstJSONDiff(p, a, b); d != "" {
				return d
			}
		}
		return ""
	case []any:
		gv, ok := g.([]any)
		if !ok {
			return fmt.Sprintf("%s: expected a list", name)
		}
		if len(wv) != len(gv) {
			return fmt.Sprintf("%s: expected %d items, got %d", name, len(wv), len(gv))
		}
		for i := range wv {
			if d := firstJSONDiff(fmt.Sprintf("%s[%d]", path, i), wv[i], gv[i]); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(w, g) {
		wb, _ := json.Marshal(w)
		gb, _ := json.Marshal(g)
		return fmt.Sprintf("%s: expected %s, got %s", name, wb, gb)
	}
	return ""
}
