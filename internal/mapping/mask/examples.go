package mask

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/mediflow/mediflow/internal/fhirpath"
	"github.com/mediflow/mediflow/internal/mapping"
)

// MaxExample is how many characters of an example a Picker keeps.
const MaxExample = 160

// Example is the masked value one rule left at one element of a mapped
// resource.
type Example struct {
	Rule   string // rule id
	Target string // the element, as mapping.ElementResult names it
	Value  string // masked, as text or compact JSON, at most MaxExample characters
}

// Picker finds, in resources a Set mapped, the masked values the rules
// left. It is safe for concurrent use.
type Picker struct {
	params map[string]string

	mu    sync.Mutex
	exprs map[string]*fhirpath.Expr // compiled element expressions; nil: does not compile
}

// NewPicker returns a Picker for the resources set maps.
func NewPicker(set *mapping.Set) *Picker {
	return &Picker{params: set.Params(), exprs: map[string]*fhirpath.Expr{}}
}

// Pick returns the masked value of every element of rep, the report of
// mapping a resource to out, that is populated or kept and that want accepts
// (nil accepts every element), in report order. Elements whose rule works on
// the whole resource have no example. out is masked first: an example holds
// no PHI, whatever the rule wrote.
func (p *Picker) Pick(ctx context.Context, out []byte, rep *mapping.Report, want func(mapping.ElementResult) bool) ([]Example, error) {
	if rep == nil {
		return nil, nil
	}
	var todo []mapping.ElementResult
	for _, e := range rep.Elements {
		if (e.Status == mapping.StatusPopulated || e.Status == mapping.StatusKept) && (want == nil || want(e)) {
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	v, err := fhirpath.DecodeJSON(out)
	if err != nil {
		return nil, fmt.Errorf("mask: mapped resource: %w", err)
	}
	res, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("mask: mapped resource is not a JSON object")
	}
	Resource(res)
	env := map[string]any{"res": res}
	for k, v := range p.params {
		env[k] = v
	}
	var exs []Example
	for _, e := range todo {
		x := p.expr(e)
		if x == nil {
			continue
		}
		c, err := x.Eval(ctx, res, env)
		if err != nil {
			if ctx.Err() != nil {
				return exs, ctx.Err()
			}
			continue
		}
		if len(c) == 0 {
			continue
		}
		vals := make([]any, 0, len(c))
		for _, item := range c {
			if item.IsNode() {
				vals = append(vals, item.JSON())
				continue
			}
			if s, ok := item.Text(); ok {
				vals = append(vals, s)
				continue
			}
			vals = append(vals, item.String())
		}
		var val any = vals
		if len(vals) == 1 {
			val = vals[0]
		}
		exs = append(exs, Example{Rule: e.Rule, Target: e.Element(), Value: Short(val, MaxExample)})
	}
	return exs, nil
}

// HasExample reports whether an element can have an example: rules on the
// whole resource have none.
func HasExample(e mapping.ElementResult) bool { return elementExpr(e) != "" }

// expr returns the compiled FHIRPath expression that selects the element of
// e in the mapped resource, or nil when there is none.
func (p *Picker) expr(e mapping.ElementResult) *fhirpath.Expr {
	src := elementExpr(e)
	if src == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if x, ok := p.exprs[src]; ok {
		return x
	}
	x, err := fhirpath.Compile(src)
	if err != nil {
		x = nil
	}
	p.exprs[src] = x
	return x
}

// elementExpr is a FHIRPath expression for the element of a result: its
// target, or for a rule with each, "(each)[index].target". It is "" for a
// rule on the whole resource.
func elementExpr(e mapping.ElementResult) string {
	this := e.Target == "$this" || e.Target == ""
	if e.Each == "" {
		if this {
			return ""
		}
		return e.Target
	}
	if e.Index < 0 {
		return ""
	}
	src := "(" + e.Each + ")[" + strconv.Itoa(e.Index) + "]"
	if !this {
		src += "." + e.Target
	}
	return src
}
