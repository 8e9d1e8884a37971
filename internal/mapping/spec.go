package mapping

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is where a definition sits in a spec file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// LoadError is one problem in a spec file: its position, what is wrong and,
// when there is one, a hint on how to fix it.
type LoadError struct {
	Pos  Pos
	Msg  string
	Hint string
}

func (e *LoadError) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("%s: %s (hint: %s)", e.Pos, e.Msg, e.Hint)
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// errList collects load errors so that one load reports all of them.
type errList []error

func (l *errList) add(p Pos, hint, format string, a ...any) {
	*l = append(*l, &LoadError{Pos: p, Msg: fmt.Sprintf(format, a...), Hint: hint})
}

// Step is one transform of a rule's pipeline with its arguments (JSON
// values: string, json.Number, bool, map[string]any, []any).
type Step struct {
	Name string
	Args map[string]any
	Pos  Pos
}

// Note says that an element cannot be filled from an EHR, and why.
type Note struct {
	Element  string // "Patient.maritalStatus"
	Text     string
	Versions string // vendor versions the note applies to ("" = all)
	Pos      Pos
}

// Release describes vendor releases a profile knows about.
type Release struct {
	Versions string
	Note     string
}

// Layer describes one layer of a Set: the canonical rules, a vendor profile
// or a practice's overrides.
type Layer struct {
	Kind        string // canonical, vendor, practice
	Name        string // canonical, epic, practice
	Version     string // profile revision, or a content hash for practice overrides
	Title       string
	Description string
	Releases    []Release
	WriteBack   map[string]string // resource type → how records are written back
}

// yDoc is one spec file. Profile keys (name, version, ...) describe the layer;
// resource, rules and notAvailable (or a resources list) carry rules.
type yDoc struct {
	pos       Pos
	name      string
	version   string
	title     string
	desc      string
	params    map[string]param
	releases  []Release
	writeBack map[string]string
	hasInfo   bool
	resources []yResource
}

type param struct {
	value string
	pos   Pos
}

type yResource struct {
	resource string
	pos      Pos
	rules    []yRule
	notes    []Note
}

// yRule is a rule as written; nil fields were not given (so an override
// changes only what it names).
type yRule struct {
	pos       Pos
	id        string
	target    *string
	each      *string
	source    *string
	condition *string
	transform *[]Step
	def       *any
	required  *bool
	rationale *string
	direction *string
	versions  *string
	enabled   *bool
	after     *string
	before    *string
	fieldPos  map[string]Pos
}

var docKeys = []string{"name", "version", "title", "description", "params", "releases", "writeBack", "resource", "rules", "notAvailable", "resources"}
var resourceKeys = []string{"resource", "rules", "notAvailable"}
var ruleKeys = []string{"id", "target", "each", "source", "condition", "transform", "default", "required", "rationale", "direction", "versions", "enabled", "after", "before"}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDoc reads one spec file.
func parseDoc(file string, data []byte, el *errList) *yDoc {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line, msg := 0, err.Error()
		if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		el.add(Pos{file, line}, "check the indentation and quoting; quote FHIRPath that holds ': ' or starts with '%'", "invalid YAML: %s", msg)
		return nil
	}
	doc := &yDoc{pos: Pos{file, 1}}
	if root.Kind == 0 || len(root.Content) == 0 {
		return doc // empty file
	}
	n := root.Content[0]
	if n.Kind != yaml.MappingNode {
		el.add(Pos{file, n.Line}, "a spec file is a mapping with keys such as resource and rules", "expected a mapping at the top level")
		return nil
	}
	var top yResource
	hasTop := false
	forEachKey(file, n, docKeys, "a spec file", el, func(k string, v *yaml.Node) {
		p := Pos{file, v.Line}
		switch k {
		case "name", "version", "title", "description":
			s, ok := scalar(file, k, v, el)
			if !ok {
				return
			}
			doc.hasInfo = true
			switch k {
			case "name":
				doc.name = s
			case "version":
				doc.version = s
			case "title":
				doc.title = s
			case "description":
				doc.desc = strings.TrimSpace(s)
			}
		case "params":
			if v.Kind != yaml.MappingNode {
				el.add(p, "params: {mrnSystem: urn:oid:..., timeZone: America/Chicago}", "params must be a mapping of names to values")
				return
			}
			doc.params = map[string]param{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				kn, vn := v.Content[i], v.Content[i+1]
				s, ok := scalar(file, "params."+kn.Value, vn, el)
				if ok {
					doc.params[kn.Value] = param{value: s, pos: Pos{file, kn.Line}}
				}
			}
		case "releases":
			doc.hasInfo = true
			if v.Kind != yaml.SequenceNode {
				el.add(p, "", "releases must be a list of {versions, note}")
				return
			}
			for _, item := range v.Content {
				var r Release
				forEachKey(file, item, []string{"versions", "note"}, "a release", el, func(k string, v *yaml.Node) {
					s, _ := scalar(file, k, v, el)
					if k == "versions" {
						r.Versions = s
						if _, err := parseRange(s); err != nil {
							el.add(Pos{file, v.Line}, `write ranges like ">= May 2024" or ">= 5.0, < 6"`, "releases: %v", err)
						}
					} else {
						r.Note = strings.TrimSpace(s)
					}
				})
				doc.releases = append(doc.releases, r)
			}
		case "writeBack":
			doc.hasInfo = true
			if v.Kind != yaml.MappingNode {
				el.add(p, "writeBack: {Patient: \"create over FHIR\"}", "writeBack must map resource types to a sentence")
				return
			}
			doc.writeBack = map[string]string{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				s, ok := scalar(file, "writeBack."+v.Content[i].Value, v.Content[i+1], el)
				if ok {
					doc.writeBack[v.Content[i].Value] = strings.TrimSpace(s)
				}
			}
		case "resource", "rules", "notAvailable":
			hasTop = true
			parseResourceKey(file, k, v, &top, el)
			if k == "resource" {
				top.pos = p
			}
		case "resources":
			if v.Kind != yaml.SequenceNode {
				el.add(p, "resources: [{resource: Patient, rules: [...]}]", "resources must be a list")
				return
			}
			for _, item := range v.Content {
				r := yResource{pos: Pos{file, item.Line}}
				forEachKey(file, item, resourceKeys, "a resources entry", el, func(k string, v *yaml.Node) {
					parseResourceKey(file, k, v, &r, el)
				})
				if r.resource == "" {
					el.add(r.pos, "add resource: Patient (or Resource for rules on every type)", "resources entry without resource")
					continue
				}
				doc.resources = append(doc.resources, r)
			}
		}
	})
	if hasTop {
		if top.resource == "" {
			el.add(Pos{file, n.Line}, "add resource: Patient (or Resource for rules on every type)", "rules without resource")
		} else {
			doc.resources = append([]yResource{top}, doc.resources...)
		}
	}
	return doc
}

func parseResourceKey(file, k string, v *yaml.Node, r *yResource, el *errList) {
	switch k {
	case "resource":
		s, _ := scalar(file, k, v, el)
		r.resource = s
		r.pos = Pos{file, v.Line}
	case "rules":
		if v.Kind != yaml.SequenceNode {
			el.add(Pos{file, v.Line}, "rules: [{id: ..., target: ..., source: ..., rationale: ...}]", "rules must be a list")
			return
		}
		for _, item := range v.Content {
			if rl, ok := parseRule(file, item, el); ok {
				r.rules = append(r.rules, rl)
			}
		}
	case "notAvailable":
		if v.Kind != yaml.SequenceNode {
			el.add(Pos{file, v.Line}, "notAvailable: [{element: Patient.maritalStatus, note: ...}]", "notAvailable must be a list")
			return
		}
		for _, item := range v.Content {
			nt := Note{Pos: Pos{file, item.Line}}
			forEachKey(file, item, []string{"element", "note", "versions"}, "a notAvailable entry", el, func(k string, v *yaml.Node) {
				s, _ := scalar(file, k, v, el)
				switch k {
				case "element":
					nt.Element = s
				case "note":
					nt.Text = strings.TrimSpace(s)
				case "versions":
					nt.Versions = s
					if _, err := parseRange(s); err != nil {
						el.add(Pos{file, v.Line}, `write ranges like ">= May 2024" or ">= 5.0, < 6"`, "%v", err)
					}
				}
			})
			if nt.Element == "" || nt.Text == "" {
				el.add(nt.Pos, "each entry needs element and note", "incomplete notAvailable entry")
				continue
			}
			r.notes = append(r.notes, nt)
		}
	}
}

func parseRule(file string, n *yaml.Node, el *errList) (yRule, bool) {
	r := yRule{pos: Pos{file, n.Line}, fieldPos: map[string]Pos{}}
	if n.Kind != yaml.MappingNode {
		el.add(r.pos, "a rule is a mapping: {id: ..., target: ..., rationale: ...}", "expected a rule")
		return r, false
	}
	str := func(k string, v *yaml.Node) *string {
		s, ok := scalar(file, k, v, el)
		if !ok {
			return nil
		}
		return &s
	}
	boolean := func(k string, v *yaml.Node) *bool {
		var b bool
		if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
			el.add(Pos{file, v.Line}, "use true or false", "%s must be a boolean", k)
			return nil
		}
		return &b
	}
	forEachKey(file, n, ruleKeys, "a rule", el, func(k string, v *yaml.Node) {
		r.fieldPos[k] = Pos{file, v.Line}
		switch k {
		case "id":
			if s := str(k, v); s != nil {
				r.id = *s
			}
		case "target":
			r.target = str(k, v)
		case "each":
			r.each = str(k, v)
		case "source":
			r.source = str(k, v)
		case "condition":
			r.condition = str(k, v)
		case "rationale":
			r.rationale = str(k, v)
		case "direction":
			r.direction = str(k, v)
		case "versions":
			r.versions = str(k, v)
		case "after":
			r.after = str(k, v)
		case "before":
			r.before = str(k, v)
		case "required":
			r.required = boolean(k, v)
		case "enabled":
			r.enabled = boolean(k, v)
		case "default":
			d, err := yamlToJSON(v)
			if err != nil {
				el.add(Pos{file, v.Line}, "", "default: %v", err)
				return
			}
			r.def = &d
		case "transform":
			steps, ok := parseSteps(file, v, el)
			if ok {
				r.transform = &steps
			}
		}
	})
	if r.id == "" {
		el.add(r.pos, "give every rule a stable id such as patient.gender; overrides refer to it", "rule without id")
		return r, false
	}
	return r, true
}

// parseSteps reads a transform pipeline: a list whose items are a name
// ("trim") or a one-key mapping from the name to its arguments (a mapping,
// or a scalar that becomes the argument "value"). A single step may be
// written without the list.
func parseSteps(file string, v *yaml.Node, el *errList) ([]Step, bool) {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	var out []Step
	ok := true
	for _, it := range items {
		switch it.Kind {
		case yaml.ScalarNode:
			out = append(out, Step{Name: it.Value, Pos: Pos{file, it.Line}})
		case yaml.MappingNode:
			if len(it.Content) != 2 {
				el.add(Pos{file, it.Line}, "write one transform per list item: - code: {map: ...}", "a transform step must have exactly one name")
				ok = false
				continue
			}
			name, av := it.Content[0].Value, it.Content[1]
			st := Step{Name: name, Pos: Pos{file, it.Line}}
			switch av.Kind {
			case yaml.MappingNode:
				a, err := yamlToJSON(av)
				if err != nil {
					el.add(Pos{file, av.Line}, "", "transform %s: %v", name, err)
					ok = false
					continue
				}
				st.Args = a.(map[string]any)
			default:
				a, err := yamlToJSON(av)
				if err != nil {
					el.add(Pos{file, av.Line}, "", "transform %s: %v", name, err)
					ok = false
					continue
				}
				if a != nil {
					st.Args = map[string]any{"value": a}
				}
			}
			out = append(out, st)
		default:
			el.add(Pos{file, it.Line}, "transform: [trim, phone-e164] or transform: [{code: {map: ...}}]", "invalid transform step")
			ok = false
		}
	}
	return out, ok
}

// forEachKey calls f for every key of mapping n, reporting unknown keys
// (with the closest known one as a hint) and duplicates.
func forEachKey(file string, n *yaml.Node, known []string, what string, el *errList, f func(k string, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		el.add(Pos{file, n.Line}, "", "expected a mapping for %s", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		k := kn.Value
		if seen[k] {
			el.add(Pos{file, kn.Line}, "remove one of them", "duplicate key %q in %s", k, what)
			continue
		}
		seen[k] = true
		if !contains(known, k) {
			hint := "known keys: " + strings.Join(known, ", ")
			if s := closest(k, known); s != "" {
				hint = "did you mean " + s + "?"
			}
			el.add(Pos{file, kn.Line}, hint, "unknown key %q in %s", k, what)
			continue
		}
		f(k, vn)
	}
}

func scalar(file, key string, v *yaml.Node, el *errList) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		el.add(Pos{file, v.Line}, "", "%s must be a single value", key)
		return "", false
	}
	if v.Tag == "!!null" {
		return "", true
	}
	return v.Value, true
}

// yamlToJSON converts a YAML node to the JSON values the engine works with.
func yamlToJSON(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return yamlToJSON(n.Alias)
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, err
			}
			return b, nil
		case "!!int", "!!float":
			if validNumber(n.Value) {
				return json.Number(n.Value), nil
			}
			return n.Value, nil
		default:
			return n.Value, nil
		}
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlToJSON(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := yamlToJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[n.Content[i].Value] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// closest returns the known word nearest to s by edit distance, if near.
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedStrings[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
