package contract

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Check checks a resource (FHIR JSON, in the vendor's shape: after the
// canonical → vendor mapping, see Validate) against what the contract says
// about intent i. An intent the contract refuses gives its Support
// (Supported false, with the reason) and no field errors: the write is
// refused as a whole. For a supported intent every problem is reported at
// once, in a stable order: the resource type, then each required element
// that is missing, then each rule's violations. Messages name the element
// and say how to fix it; they never quote the resource's values.
func (c *Contract) Check(i Intent, resource []byte) (Support, []FieldError) {
	s := c.Support(i)
	if !s.Supported {
		return s, nil
	}
	res, fe := decodeObject(resource)
	if fe != nil {
		return s, []FieldError{*fe}
	}
	return s, s.check(res)
}

func decodeObject(b []byte) (map[string]any, *FieldError) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var res map[string]any
	if err := d.Decode(&res); err != nil || res == nil {
		return nil, &FieldError{Path: "", Rule: "json", Message: "the body must be one FHIR resource as a JSON object"}
	}
	if d.More() {
		return nil, &FieldError{Path: "", Rule: "json", Message: "the body must hold exactly one JSON object"}
	}
	return res, nil
}

func (s Support) check(res map[string]any) []FieldError {
	var out []FieldError
	seen := map[[2]string]bool{}
	add := func(errs ...FieldError) {
		for _, e := range errs {
			k := [2]string{e.Path, e.Rule}
			if !seen[k] {
				seen[k] = true
				out = append(out, e)
			}
		}
	}
	if s.ResourceType != "" {
		if rt := str(res["resourceType"]); rt != s.ResourceType {
			add(FieldError{Path: "resourceType", Rule: "resource-type", Message: string(s.Intent) + " writes a " + s.ResourceType + " resource: set resourceType to " + s.ResourceType})
			return out // nothing else can be judged on the wrong type
		}
	}
	for _, p := range s.Required {
		add(missing(res, p)...)
	}
	for _, r := range s.Rules {
		if r.Check != nil {
			add(r.Check(res)...)
		}
	}
	return out
}

// node is one element found by a path, with the path that leads to it
// ("content[0].attachment").
type node struct {
	path string
	v    any
}

// nodes returns the elements at a dotted path (a.b.c), going through every
// item of each list on the way.
func nodes(res map[string]any, path string) []node {
	cur := []node{{"", res}}
	for _, name := range strings.Split(path, ".") {
		var next []node
		for _, n := range cur {
			obj, ok := n.v.(map[string]any)
			if !ok {
				continue
			}
			v, ok := obj[name]
			if !ok {
				continue
			}
			p := join(n.path, name)
			if list, ok := v.([]any); ok {
				for i, it := range list {
					next = append(next, node{p + "[" + strconv.Itoa(i) + "]", it})
				}
				continue
			}
			next = append(next, node{p, v})
		}
		cur = next
	}
	return cur
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// missing reports where a required path is absent: at the first element on
// the way that is missing or empty, for every item of each list on the way
// ("content[1].attachment.contentType").
func missing(res map[string]any, path string) []FieldError {
	var out []FieldError
	var walk func(v any, at string, rest []string)
	walk = func(v any, at string, rest []string) {
		if len(rest) == 0 {
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		name := rest[0]
		p := join(at, name)
		child, ok := obj[name]
		if !ok || !present(child) {
			out = append(out, FieldError{Path: p, Rule: "required", Message: requiredMessage(p, join(at, strings.Join(rest, ".")))})
			return
		}
		if list, ok := child.([]any); ok {
			for i, it := range list {
				walk(it, p+"["+strconv.Itoa(i)+"]", rest[1:])
			}
			return
		}
		walk(child, p, rest[1:])
	}
	walk(res, "", strings.Split(path, "."))
	return out
}

func requiredMessage(at, full string) string {
	if at == full {
		return "required by the EHR: add " + at
	}
	return "required by the EHR: add " + at + " (the EHR needs " + full + ")"
}

// present reports whether a JSON value holds something: not null, not an
// empty string, list or object.
func present(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return strings.TrimSpace(x) != ""
	case []any:
		for _, it := range x {
			if present(it) {
				return true
			}
		}
		return false
	case map[string]any:
		for _, it := range x {
			if present(it) {
				return true
			}
		}
		return false
	}
	return true
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// list returns v as a list (a single value as a list of one).
func list(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	}
	return []any{v}
}

// refType is the resource type a Reference points to ("Patient" for
// "Patient/123" or "https://ehr/fhir/Patient/123/_history/2"), or its type
// element.
func refType(ref any) string {
	r, ok := ref.(map[string]any)
	if !ok {
		return ""
	}
	if t := str(r["type"]); t != "" {
		return t
	}
	s := str(r["reference"])
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

// refID is the id part of a relative or absolute reference.
func refID(ref any) string {
	r, ok := ref.(map[string]any)
	if !ok {
		return ""
	}
	s := str(r["reference"])
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}
