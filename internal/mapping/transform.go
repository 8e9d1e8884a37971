package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// A transform turns the values a rule's source gave (JSON values: string,
// json.Number, bool, map[string]any, []any) into the values written to the
// target. Transforms run in the order a rule lists them; an error leaves the
// target unchanged and is reported for that element.

// TransformInfo documents a transform for the data-mapping document.
type TransformInfo struct {
	Name    string
	Summary string // one line
	Args    []ArgInfo
}

// ArgInfo documents one transform argument.
type ArgInfo struct {
	Name     string
	Summary  string
	Required bool
}

type transformFn func(tc *tctx, in []any) ([]any, error)

type transformDef struct {
	TransformInfo
	compile func(args map[string]any, cc *compileCtx) (transformFn, error)
}

// compileCtx is what a transform may know when its rule is loaded.
type compileCtx struct {
	set        *Set
	targetType *model.Type // type of the rule's target element
	params     map[string]string
}

// tctx is what a transform may use while a resource is mapped.
type tctx struct {
	ctx     context.Context
	loc     *time.Location
	inPlace bool // the values are the target's own: objects may be changed in place
	st      *runState
}

// transformError marks a failure; strict failures (an unmapped code under
// the error policy) fail the whole resource.
type transformError struct {
	msg    string
	strict bool
}

func (e *transformError) Error() string { return e.msg }

func failf(format string, a ...any) error {
	return &transformError{msg: fmt.Sprintf(format, a...)}
}

var registry = map[string]*transformDef{}

func register(d *transformDef) { registry[d.Name] = d }

// Transforms lists the transforms rules may name, sorted by name.
func Transforms() []TransformInfo {
	out := make([]TransformInfo, 0, len(registry))
	for _, d := range registry {
		out = append(out, d.TransformInfo)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// checkArgs rejects arguments a transform does not know and reports missing
// required ones.
func checkArgs(d *transformDef, args map[string]any) error {
	for k := range args {
		known := false
		for _, a := range d.Args {
			if a.Name == k {
				known = true
			}
		}
		if !known {
			names := make([]string, len(d.Args))
			for i, a := range d.Args {
				names[i] = a.Name
			}
			if len(names) == 0 {
				return fmt.Errorf("transform %s takes no arguments, got %q", d.Name, k)
			}
			return fmt.Errorf("transform %s has no argument %q (it takes %s)", d.Name, k, strings.Join(names, ", "))
		}
	}
	for _, a := range d.Args {
		if _, ok := args[a.Name]; a.Required && !ok {
			return fmt.Errorf("transform %s needs the argument %q (%s)", d.Name, a.Name, a.Summary)
		}
	}
	return nil
}

// argString reads a string argument; "%name" refers to a profile parameter.
func argString(args map[string]any, cc *compileCtx, name, def string) (string, error) {
	v, ok := args[name]
	if !ok || v == nil {
		return def, nil
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = string(x)
	case bool:
		s = fmt.Sprint(x)
	default:
		return "", fmt.Errorf("argument %s must be a single value", name)
	}
	if p, ok := strings.CutPrefix(s, "%"); ok {
		val, ok := cc.params[p]
		if !ok {
			return "", fmt.Errorf("argument %s: unknown parameter %%%s (declare it under params)", name, p)
		}
		return val, nil
	}
	return s, nil
}

func argBool(args map[string]any, name string, def bool) (bool, error) {
	v, ok := args[name]
	if !ok {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("argument %s must be true or false", name)
	}
	return b, nil
}

func argEnum(args map[string]any, cc *compileCtx, name, def string, allowed ...string) (string, error) {
	s, err := argString(args, cc, name, def)
	if err != nil {
		return "", err
	}
	if !contains(allowed, s) {
		return "", fmt.Errorf("argument %s must be one of %s, not %q", name, strings.Join(allowed, ", "), s)
	}
	return s, nil
}

// perItem applies f to every value; a nil result drops the value. It
// writes its results over in (the rule owns the slice).
func perItem(f func(tc *tctx, v any) (any, error)) transformFn {
	return func(tc *tctx, in []any) ([]any, error) {
		out := in[:0]
		for _, v := range in {
			r, err := f(tc, v)
			if err != nil {
				return nil, err
			}
			if r != nil {
				out = append(out, r)
			}
		}
		return out, nil
	}
}

// ownObject returns obj itself when the transform may change it in place,
// otherwise a shallow copy.
func ownObject(tc *tctx, obj map[string]any) map[string]any {
	if tc.inPlace {
		return obj
	}
	c := make(map[string]any, len(obj))
	for k, v := range obj {
		c[k] = v
	}
	return c
}

// deepCopy copies JSON objects and arrays (scalars are immutable).
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
}

func init() {
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "trim", Summary: "removes spaces at both ends of text; with collapse, runs of spaces inside become one",
			Args: []ArgInfo{{Name: "collapse", Summary: "also collapse inner whitespace (default false)"}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			collapse, err := argBool(args, "collapse", false)
			if err != nil {
				return nil, err
			}
			return perItem(func(_ *tctx, v any) (any, error) {
				s, ok := v.(string)
				if !ok {
					return v, nil
				}
				var t string
				if collapse {
					t = collapseSpaces(s)
				} else {
					t = strings.TrimSpace(s)
				}
				switch t {
				case "":
					return nil, nil
				case s:
					return v, nil // unchanged: no new value to box
				}
				return t, nil
			}), nil
		},
	})
	for _, c := range []struct {
		name, summary string
		f             func(string) string
	}{
		{"lowercase", "turns text into lower case", strings.ToLower},
		{"uppercase", "turns text into upper case", strings.ToUpper},
	} {
		f := c.f
		register(&transformDef{
			TransformInfo: TransformInfo{Name: c.name, Summary: c.summary},
			compile: func(map[string]any, *compileCtx) (transformFn, error) {
				return perItem(func(_ *tctx, v any) (any, error) {
					if s, ok := v.(string); ok {
						return f(s), nil
					}
					return v, nil
				}), nil
			},
		})
	}
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "constant", Summary: "always gives the same value, whatever the source holds",
			Args: []ArgInfo{{Name: "value", Summary: "the value (text, number, or a FHIR element written as YAML)", Required: true}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			v, err := paramValue(args["value"], cc)
			if err != nil {
				return nil, err
			}
			return func(*tctx, []any) ([]any, error) { return []any{deepCopy(v)}, nil }, nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "default", Summary: "gives a fixed value when the source is empty",
			Args: []ArgInfo{{Name: "value", Summary: "the value used when nothing came from the EHR", Required: true}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			v, err := paramValue(args["value"], cc)
			if err != nil {
				return nil, err
			}
			return func(_ *tctx, in []any) ([]any, error) {
				if len(in) == 0 {
					return []any{deepCopy(v)}, nil
				}
				return in, nil
			}, nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "first", Summary: "keeps only the first value"},
		compile: func(map[string]any, *compileCtx) (transformFn, error) {
			return func(_ *tctx, in []any) ([]any, error) {
				if len(in) > 1 {
					return in[:1], nil
				}
				return in, nil
			}, nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "integer", Summary: "turns a whole number sent as text (\"1\") into a number"},
		compile: func(map[string]any, *compileCtx) (transformFn, error) {
			return perItem(func(_ *tctx, v any) (any, error) {
				var s string
				switch x := v.(type) {
				case string:
					s = strings.TrimSpace(x)
				case json.Number:
					s = string(x)
				default:
					return nil, failf("not a whole number")
				}
				if s == "" || strings.ContainsAny(s, ".eE") || !validNumber(s) {
					return nil, failf("not a whole number")
				}
				s = strings.TrimLeft(s, "+")
				return json.Number(s), nil
			}), nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "prune", Summary: "removes empty text, lists and elements, and extensions left without a value (FHIR forbids them)"},
		compile: func(map[string]any, *compileCtx) (transformFn, error) {
			return perItem(func(tc *tctx, v any) (any, error) {
				obj, ok := v.(map[string]any)
				if !ok {
					return v, nil
				}
				if !tc.inPlace {
					obj = deepCopy(obj).(map[string]any)
				}
				pruneObject(obj)
				return obj, nil
			}), nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "drop-codings", Summary: "removes codings of the named code systems from a coded element (for EHRs that refuse mixed codings on write)",
			Args: []ArgInfo{{Name: "prefix", Summary: "code systems starting with this text are removed", Required: true}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			prefix, err := argString(args, cc, "prefix", "")
			if err != nil {
				return nil, err
			}
			if prefix == "" {
				return nil, fmt.Errorf("argument prefix must not be empty")
			}
			return perItem(func(tc *tctx, v any) (any, error) {
				cc, ok := v.(map[string]any)
				if !ok {
					return v, nil
				}
				codings, _ := cc["coding"].([]any)
				var kept []any
				for _, c := range codings {
					if cm, ok := c.(map[string]any); ok {
						if s, _ := cm["system"].(string); strings.HasPrefix(s, prefix) {
							continue
						}
					}
					kept = append(kept, c)
				}
				if len(kept) == len(codings) {
					return v, nil
				}
				cc = ownObject(tc, cc)
				if len(kept) == 0 {
					delete(cc, "coding")
				} else {
					cc["coding"] = kept
				}
				return cc, nil
			}), nil
		},
	})
}

// paramValue resolves "%name" texts in a constant (at any depth) to the
// parameter's value.
func paramValue(v any, cc *compileCtx) (any, error) {
	switch x := v.(type) {
	case string:
		if p, ok := strings.CutPrefix(x, "%"); ok {
			val, ok := cc.params[p]
			if !ok {
				return nil, fmt.Errorf("unknown parameter %s (declare it under params)", x)
			}
			return val, nil
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := paramValue(e, cc)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := paramValue(e, cc)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

func collapseSpaces(s string) string {
	clean := len(s) > 0 && s[0] != ' ' && s[len(s)-1] != ' '
	for i := 0; clean && i < len(s); i++ {
		c := s[i]
		if c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c >= 0x80 || (c == ' ' && s[i+1] == ' ') {
			clean = false
		}
	}
	if clean {
		return s
	}
	f := strings.Fields(s)
	if len(f) == 1 {
		return f[0]
	}
	return strings.Join(f, " ")
}

// pruneObject removes, recursively, empty strings, nulls, empty arrays and
// objects, and extensions that hold neither a value nor extensions; it
// reports whether obj is empty afterwards. Arrays that align with a
// "_name" sibling keep their positions (an emptied item becomes null).
func pruneObject(obj map[string]any) bool {
	underscore := false
	for k := range obj {
		if len(k) > 1 && k[0] == '_' {
			underscore = true
			break
		}
	}
	for k, v := range obj {
		aligned := false
		if underscore {
			if k[0] == '_' {
				_, aligned = obj[k[1:]].([]any)
			} else {
				_, aligned = obj["_"+k].([]any)
			}
		}
		ext := k == "extension" || k == "modifierExtension"
		nv, changed, empty := pruneValue(v, aligned, ext)
		switch {
		case empty:
			delete(obj, k)
		case changed:
			obj[k] = nv
		}
	}
	return len(obj) == 0
}

// pruneValue prunes inside v and reports whether v must be replaced by nv
// and whether it is empty afterwards. ext says v sits in an extension
// list, where an item with nothing but its url (and id) is empty.
func pruneValue(v any, aligned, ext bool) (nv any, changed, empty bool) {
	switch x := v.(type) {
	case nil:
		return nil, false, true
	case string:
		return v, false, x == ""
	case map[string]any:
		if pruneObject(x) {
			return v, false, true
		}
		if ext {
			for k := range x {
				if k != "url" && k != "id" {
					return v, false, false
				}
			}
			return v, false, true
		}
		return v, false, false
	case []any:
		if aligned {
			allNull := true
			for i, e := range x {
				ne, ch, empty := pruneValue(e, false, ext)
				if empty {
					x[i] = nil
				} else {
					if ch {
						x[i] = ne
					}
					allNull = false
				}
			}
			return v, false, allNull
		}
		n := 0
		for _, e := range x {
			if ne, _, empty := pruneValue(e, false, ext); !empty {
				x[n] = ne
				n++
			}
		}
		if n == len(x) {
			return v, false, n == 0
		}
		clear(x[n:])
		return x[:n], true, n == 0
	}
	return v, false, false
}
