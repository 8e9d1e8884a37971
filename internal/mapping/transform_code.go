package mapping

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/mapping/conceptmap"
)

// The code transform translates codes through a ConceptMap. Its input may
// be a code (text), a Coding or a CodeableConcept; its output has the shape
// of the rule's target (code, Coding or CodeableConcept) unless "output"
// says otherwise. A CodeableConcept keeps its codings and gains the
// translated one (unless keep is false), so nothing the EHR sent is lost.

func init() {
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "code", Summary: "translates a code through a code table (FHIR ConceptMap); what happens to a code the table does not list is the rule's unmapped policy (error, pass-through or default), and every such code is counted",
			Args: []ArgInfo{
				{Name: "map", Summary: "the ConceptMap's url", Required: true},
				{Name: "unmapped", Summary: "error, pass-through (default) or default"},
				{Name: "default", Summary: "the code used for unmapped codes under the default policy"},
				{Name: "system", Summary: "code system of plain codes (text without a system); empty matches any of the table's source systems"},
				{Name: "output", Summary: "code, coding or concept; by default the shape of the target element"},
				{Name: "keep", Summary: "for a CodeableConcept: keep the EHR's codings beside the translation (default true)"},
				{Name: "reverse", Summary: "read the table backwards (canonical → EHR) for write-back"},
				{Name: "to", Summary: "with reverse: the EHR code system to translate into"},
			}},
		compile: compileCode,
	})
}

func compileCode(args map[string]any, cc *compileCtx) (transformFn, error) {
	url, err := argString(args, cc, "map", "")
	if err != nil {
		return nil, err
	}
	m, ok := cc.set.cmaps.Get(url)
	if !ok {
		return nil, fmt.Errorf("no ConceptMap with url %s (shipped maps are in profiles/conceptmaps)", url)
	}
	pol, err := argString(args, cc, "unmapped", string(conceptmap.PolicyPassThrough))
	if err != nil {
		return nil, err
	}
	policy, err := conceptmap.ParsePolicy(pol)
	if err != nil {
		return nil, err
	}
	def, err := argString(args, cc, "default", "")
	if err != nil {
		return nil, err
	}
	if policy == conceptmap.PolicyDefault && def == "" {
		return nil, fmt.Errorf("unmapped: default needs the argument default (the code to use)")
	}
	system, err := argString(args, cc, "system", "")
	if err != nil {
		return nil, err
	}
	keep, err := argBool(args, "keep", true)
	if err != nil {
		return nil, err
	}
	reverse, err := argBool(args, "reverse", false)
	if err != nil {
		return nil, err
	}
	to, err := argString(args, cc, "to", "")
	if err != nil {
		return nil, err
	}
	if to != "" && !reverse {
		return nil, fmt.Errorf("argument to is for reverse translation")
	}
	if reverse {
		m = m.Reverse()
	}
	output := ""
	if cc.targetType != nil {
		switch {
		case cc.targetType.Name() == "Coding":
			output = "coding"
		case cc.targetType.Name() == "CodeableConcept":
			output = "concept"
		case cc.targetType.Kind() == model.KindPrimitive:
			output = "code"
		}
	}
	output, err = argEnum(args, cc, "output", output, "", "code", "coding", "concept")
	if err != nil {
		return nil, err
	}
	ct := &codeTransform{m: m, url: url, policy: policy, def: def, system: system, keep: keep, to: to, output: output}
	return perItem(ct.apply), nil
}

type codeTransform struct {
	m      *conceptmap.Map
	url    string
	policy conceptmap.Policy
	def    string
	system string
	keep   bool
	to     string
	output string // "" = the input's own shape
}

// translate looks a code up without applying the policy.
func (c *codeTransform) translate(system, code string) (conceptmap.Target, bool) {
	if c.to != "" {
		return c.m.TranslateTo(system, code, c.to)
	}
	return c.m.Translate(system, code)
}

// resolve translates a code, applying the policy to an unmapped one and
// recording it on the element.
func (c *codeTransform) resolve(tc *tctx, system, code string) (conceptmap.Target, error) {
	if t, ok := c.translate(system, code); ok && !t.Fallback {
		return t, nil
	}
	// Unmapped: the codes are counted and reported, so they outlive the
	// call; the decoded resource's texts may share the caller's input.
	system, code = strings.Clone(system), strings.Clone(code)
	t, err := c.m.Resolve(system, code, c.policy, c.def, tc.st.opts.Unmapped)
	tc.st.noteUnmapped(c.url, system, code, string(c.policy))
	if err != nil {
		var ue *conceptmap.UnmappedError
		if errors.As(err, &ue) {
			return t, &transformError{msg: fmt.Sprintf("code %s|%s is not in %s", system, code, c.url), strict: true}
		}
		return t, failf("%v", err)
	}
	return t, nil
}

func (c *codeTransform) apply(tc *tctx, v any) (any, error) {
	switch x := v.(type) {
	case string:
		t, err := c.resolve(tc, c.system, x)
		if err != nil {
			return nil, err
		}
		return c.shape(t, nil, "code"), nil
	case map[string]any:
		if _, isCC := x["coding"]; isCC || (x["text"] != nil && x["code"] == nil) {
			return c.concept(tc, x)
		}
		sys, _ := x["system"].(string)
		code, _ := x["code"].(string)
		if code == "" {
			return x, nil // nothing to translate
		}
		t, err := c.resolve(tc, sys, code)
		if err != nil {
			return nil, err
		}
		if t.Fallback && c.policy == conceptmap.PolicyPassThrough {
			return c.shape(t, x, "coding"), nil
		}
		return c.shape(t, nil, "coding"), nil
	}
	return nil, failf("not a code, Coding or CodeableConcept")
}

// concept translates a CodeableConcept: the first coding the table lists
// gives the translation; when none does, the policy decides on the first
// coding. A concept with text only is left as it is.
func (c *codeTransform) concept(tc *tctx, cc map[string]any) (any, error) {
	codings, _ := cc["coding"].([]any)
	var (
		found bool
		t     conceptmap.Target
	)
	for _, x := range codings {
		cm, ok := x.(map[string]any)
		if !ok {
			continue
		}
		sys, _ := cm["system"].(string)
		code, _ := cm["code"].(string)
		if code == "" {
			continue
		}
		if tt, ok := c.translate(sys, code); ok && !tt.Fallback {
			t, found = tt, true
			break
		}
	}
	if !found {
		var first map[string]any
		for _, x := range codings {
			if cm, ok := x.(map[string]any); ok {
				if code, _ := cm["code"].(string); code != "" {
					first = cm
					break
				}
			}
		}
		if first == nil {
			if c.output == "code" || c.output == "coding" {
				return nil, nil // text only: no code to give
			}
			return cc, nil
		}
		sys, _ := first["system"].(string)
		code, _ := first["code"].(string)
		var err error
		if t, err = c.resolve(tc, sys, code); err != nil {
			return nil, err
		}
		if t.Fallback && c.policy == conceptmap.PolicyPassThrough {
			switch c.output {
			case "code":
				return code, nil
			case "coding":
				return deepCopy(first), nil
			}
			return cc, nil
		}
	}
	switch c.output {
	case "code", "coding":
		return c.shape(t, nil, c.output), nil
	}
	if c.keep {
		// The system the translation's coding has (none when empty).
		var sys any
		if t.System != "" {
			sys = t.System
		}
		for _, x := range codings {
			if cm, ok := x.(map[string]any); ok && cm["system"] == sys && cm["code"] == t.Code {
				// Already there: the concept as it is (write copies it
				// when it is not the target's own).
				return cc, nil
			}
		}
	}
	coding := codingOf(t, nil)
	out := map[string]any{}
	if c.keep {
		out = deepCopy(cc).(map[string]any)
		list, _ := out["coding"].([]any)
		out["coding"] = append(list, coding)
	} else {
		if text, ok := cc["text"]; ok {
			out["text"] = text
		}
		out["coding"] = []any{coding}
	}
	return out, nil
}

// shape renders a translation as the output asks (or as inShape when the
// output follows the input). orig, when set, is the coding passed through.
func (c *codeTransform) shape(t conceptmap.Target, orig map[string]any, inShape string) any {
	out := c.output
	if out == "" {
		out = inShape
	}
	switch out {
	case "code":
		return t.Code
	case "concept":
		return map[string]any{"coding": []any{codingOf(t, orig)}}
	}
	return codingOf(t, orig)
}

func codingOf(t conceptmap.Target, orig map[string]any) map[string]any {
	if orig != nil {
		return deepCopy(orig).(map[string]any)
	}
	m := map[string]any{"code": t.Code}
	if t.System != "" {
		m["system"] = t.System
	}
	if t.Display != "" {
		m["display"] = t.Display
	}
	return m
}
