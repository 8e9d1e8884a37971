package fhirpath

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// CheckError is a path that names an element its type does not have.
type CheckError struct {
	Line, Col int
	Path      string // the expression text up to and including the bad name
	Type      string // the type(s) searched, "Patient" or "Quantity or Period"
	Name      string
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("%s: %s has no element %s", e.Path, e.Type, e.Name)
}

// Check compiles expr and checks its paths statically against the FHIR R4
// model, with rootType ("Patient") as the type of the context: every
// element a path names must exist on the type it is read from
// ("Patient.nmae: Patient has no element nmae"). Parts whose type cannot be
// known statically (resolve(), descendants(), environment variables...) are
// not checked.
func Check(expr, rootType string) error {
	x, err := Compile(expr)
	if err != nil {
		return err
	}
	return x.Check(rootType)
}

// Check checks x statically against its model (see the function Check).
// It does nothing for an expression compiled WithoutModel.
func (x *Expr) Check(rootType string) error {
	m := x.cfg.mi.m
	if m == nil {
		return nil
	}
	if !m.Known(rootType) {
		return fmt.Errorf("fhirpath: unknown type %q", rootType)
	}
	c := &checker{x: x, m: m, root: []string{rootType}}
	_, err := c.walk(x.root, c.root)
	return err
}

type checker struct {
	x    *Expr
	m    *model.Model
	root []string
}

// A type set of nil means "unknown": anything goes from there on.

// lambdaFuncs evaluate their arguments with each input item as $this.
var lambdaFuncs = map[string]bool{
	"where": true, "select": true, "exists": true, "all": true, "repeat": true,
	"aggregate": true, "sort": true, "trace": true,
}

// sameTypeFuncs return (part of) their input.
var sameTypeFuncs = map[string]bool{
	"where": true, "first": true, "last": true, "tail": true, "skip": true, "take": true,
	"single": true, "distinct": true, "intersect": true, "exclude": true, "trace": true,
	"sort": true,
}

func (c *checker) walk(n node, this []string) ([]string, error) {
	switch n := n.(type) {
	case *literal, *envNode:
		if e, ok := n.(*envNode); ok {
			switch e.name {
			case "resource", "rootResource", "context":
				return c.root, nil
			}
		}
		return nil, nil
	case *varNode:
		if n.name == "this" {
			return this, nil
		}
		return nil, nil
	case *identNode:
		if isUpper(n.name[0]) {
			var same []string
			for _, t := range this {
				if c.m.IsA(t, n.name) {
					same = append(same, t)
				}
			}
			if len(same) > 0 {
				return same, nil
			}
		}
		return c.child(n, this, n.name)
	case *memberNode:
		t, err := c.walk(n.target, this)
		if err != nil {
			return nil, err
		}
		return c.child(n, t, n.name)
	case *indexNode:
		t, err := c.walk(n.target, this)
		if err != nil {
			return nil, err
		}
		if _, err := c.walk(n.index, this); err != nil {
			return nil, err
		}
		return t, nil
	case *unaryNode:
		_, err := c.walk(n.x, this)
		return nil, err
	case *binaryNode:
		l, err := c.walk(n.l, this)
		if err != nil {
			return nil, err
		}
		r, err := c.walk(n.r, this)
		if err != nil {
			return nil, err
		}
		if n.op == "|" && l != nil && r != nil {
			return union(l, r), nil
		}
		return nil, nil
	case *typeOpNode:
		if _, err := c.walk(n.x, this); err != nil {
			return nil, err
		}
		if n.op == "as" {
			return c.typeSet(n.typ), nil
		}
		return nil, nil
	case *callNode:
		return c.call(n, this)
	}
	return nil, nil
}

func (c *checker) typeSet(ts *typeSpec) []string {
	if ts.namespace == "System" || (ts.namespace == "" && !c.m.Known(ts.name)) {
		return nil
	}
	return []string{ts.name}
}

func (c *checker) call(n *callNode, this []string) ([]string, error) {
	in := this
	if n.target != nil {
		var err error
		if in, err = c.walk(n.target, this); err != nil {
			return nil, err
		}
	}
	var argTypes []string
	for i, a := range n.args {
		if n.fn.typeArg {
			break
		}
		scope := this
		if lambdaFuncs[n.name] && !(n.name == "aggregate" && i == 1) && !(n.name == "trace" && i == 0) {
			scope = in
		}
		if n.name == "iif" && n.target != nil {
			scope = in
		}
		t, err := c.walk(a, scope)
		if err != nil {
			return nil, err
		}
		if i > 0 && n.name == "iif" {
			argTypes = union(argTypes, t)
		} else if i == 0 {
			argTypes = t
		}
	}
	switch {
	case sameTypeFuncs[n.name]:
		return in, nil
	case n.name == "select":
		return argTypes, nil
	case n.name == "union" || n.name == "combine":
		if in == nil || argTypes == nil {
			return nil, nil
		}
		return union(in, argTypes), nil
	case n.name == "ofType" || n.name == "as":
		return c.typeSet(n.typ), nil
	case n.name == "extension":
		return []string{"Extension"}, nil
	case n.name == "iif":
		return argTypes, nil
	}
	return nil, nil
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, t := range b {
		found := false
		for _, u := range out {
			if u == t {
				found = true
				break
			}
		}
		if !found {
			out = append(out, t)
		}
	}
	return out
}

// child returns the types of element name on the types in, or an error
// when none of them has it.
func (c *checker) child(at node, in []string, name string) ([]string, error) {
	if in == nil {
		return nil, nil
	}
	var out []string
	for _, t := range in {
		typ := c.m.Type(t)
		if typ == nil {
			return nil, nil
		}
		// An abstract resource may be any resource at run time.
		if typ.Kind() == model.KindResource && typ.Abstract() {
			if ch, ok := c.m.Child(t, name); ok {
				out = union(out, ch.Types)
				continue
			}
			return nil, nil
		}
		if ch, ok := c.m.Child(t, name); ok {
			out = union(out, ch.Types)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	s, e := at.span()
	start := s
	if id, ok := at.(*identNode); ok {
		start = id.start
	}
	line, col := position(c.x.src, e-len(name))
	sorted := append([]string(nil), in...)
	sort.Strings(sorted)
	return nil, &CheckError{
		Line: line, Col: col,
		Path: strings.TrimSpace(c.x.src[start:e]),
		Type: strings.Join(sorted, " or "), Name: name,
	}
}
