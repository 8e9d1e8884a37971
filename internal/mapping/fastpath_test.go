package mapping

import (
	"context"
	"reflect"
	"testing"

	"github.com/mediflow/mediflow/internal/fhirpath"
	"github.com/mediflow/mediflow/profiles"
)

// fastInputs are the golden inputs: Oracle Health's examples and the
// simulator's Epic and generic resources.
func fastInputs(t *testing.T) [][]byte {
	var out [][]byte
	for _, in := range oracleInputs(t) {
		out = append(out, in.resources...)
	}
	for _, flavor := range []string{"epic", "generic"} {
		for _, in := range simInputs(t, flavor, 3) {
			out = append(out, in.resources...)
		}
	}
	return out
}

// TestFastPathMatchesFHIRPath evaluates every each, source and condition of
// the shipped rules that the fast subset compiles both ways, on every golden
// input, and requires the same results.
func TestFastPathMatchesFHIRPath(t *testing.T) {
	inputs := fastInputs(t)
	ctx := context.Background()
	checked := 0
	vendors, _ := Vendors(profiles.FS)
	for _, v := range vendors {
		set := loadSet(t, v)
		for _, rules := range append([][]*crule{set.common}, values(set.rules)...) {
			for _, r := range rules {
				for _, raw := range inputs {
					doc, _ := decodeJSON(raw)
					res := doc.(map[string]any)
					if rt := res["resourceType"]; r.rule.Resource != "Resource" && rt != r.rule.Resource {
						continue
					}
					env := map[string]any{"res": res}
					for k, p := range set.params {
						env[k] = p
					}
					// The elements the rule works on, typed by the engine.
					nodes := fhirpath.Collection(nil)
					if r.eachExpr != nil {
						c, err := r.eachExpr.Eval(ctx, res, env)
						if err != nil {
							t.Fatalf("%s: each: %v", r.rule.ID, err)
						}
						nodes = c
						if fx, ok := compileFast(set.m, set.m.Type(r.rule.Resource), set.m.Type(r.rule.Resource), r.rule.Each); ok {
							checked++
							got := fx.eval(nil, res, res)
							if want := collectionJSON(nil, c); !sameValues(got, want) {
								t.Errorf("%s: each %s: fast %v, engine %v", r.rule.ID, r.rule.Each, got, want)
							}
						}
					}
					inputsOf := []any{res}
					if r.eachExpr != nil {
						inputsOf = nil
						for _, n := range nodes {
							inputsOf = append(inputsOf, fhirpath.Collection{n})
						}
					}
					for i, in := range inputsOf {
						obj := res
						if r.eachExpr != nil {
							obj, _ = nodes[i].JSON().(map[string]any)
						}
						if r.condFast != nil {
							checked++
							c, err := r.cond.Eval(ctx, in, env)
							if err != nil {
								t.Fatalf("%s: %v", r.rule.ID, err)
							}
							if got, want := r.condFast.holds(obj, res), isTrue(c); got != want {
								t.Errorf("%s: condition %s: fast %v, engine %v", r.rule.ID, r.rule.Condition, got, want)
							}
						}
						if r.srcFast != nil {
							checked++
							c, err := r.srcExpr.Eval(ctx, in, env)
							if err != nil {
								t.Fatalf("%s: %v", r.rule.ID, err)
							}
							if got, want := r.srcFast.eval(nil, obj, res), collectionJSON(nil, c); !sameValues(got, want) {
								t.Errorf("%s: source %s: fast %v, engine %v", r.rule.ID, r.rule.Source, got, want)
							}
						}
					}
				}
			}
		}
	}
	if checked < 500 {
		t.Errorf("only %d comparisons", checked)
	}
	t.Logf("%d comparisons", checked)
}

// sameValues compares two value lists (nil and empty are the same).
func sameValues(a, b []any) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return reflect.DeepEqual(a, b)
}

func values[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestFastPathEdges compares the fast subset with the engine on
// expressions whose FHIRPath semantics are easy to get wrong.
func TestFastPathEdges(t *testing.T) {
	set := loadSet(t, "generic")
	patient := `{"resourceType":"Patient","name":[{"use":"official","given":["A","B"],"family":"F"},{"given":["C"]}],
		"identifier":[{"type":{"coding":[{"system":"s","code":"MR"},{"system":"t","code":"X"}]},"value":"1"},{"type":{"coding":[{"code":"MR"}]},"value":"2"},{"value":"3"}],
		"telecom":[{"system":"phone","value":"1"},{"system":"email"},{"value":"x"}],
		"extension":[{"url":"u1","valueString":"v"},{"url":"u2","extension":[{"url":"in","valueCode":"c"}]}]}`
	exprs := []string{
		"name.given",
		"name.where(given = 'A')",        // two givens: = compares collections, false
		"name.where(given = 'C').family", // none
		"name.where(use = 'official' or given = 'C')",
		"identifier.where(type.coding.code = 'MR')", // the first has two codes: false
		"identifier.where(type.coding.where(system = 's' and code = 'MR').exists()).value",
		"identifier.where(type.coding.where(code = 'MR').exists() and value = '2')",
		"identifier.where(type.empty()).value",
		"identifier.where((value = '1' or value = '3') and type.exists()).value",
		"telecom.where(system = 'email').value",
		"telecom.where(value.exists()).first().value",
		"telecom.where(system = 'phone').value.first()",
		"extension('u2').extension('in').valueCode",
		"extension.where(url = 'u1').valueString",
		"Patient.name.first().family",
		"name.where(%res.gender.empty())",
		"$this.name.family",
		"descendants().ofType(Coding)",
		"descendants().ofType(Extension).where(url = 'in')",
		"identifier.where(type.coding.where(system.startsWith('s')).exists()).value",
		"telecom.where(system.startsWith('ph').not())",
	}
	ctx := context.Background()
	pt := set.m.Type("Patient")
	for _, e := range exprs {
		fx, ok := compileFast(set.m, pt, pt, e)
		if !ok {
			t.Errorf("%s is not in the fast subset", e)
			continue
		}
		doc, _ := decodeJSON([]byte(patient))
		res := doc.(map[string]any)
		c, err := fhirpath.MustCompile(e).Eval(ctx, res, map[string]any{"res": res})
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		if got, want := fx.eval(nil, res, res), collectionJSON(nil, c); !sameValues(got, want) {
			t.Errorf("%s: fast %v, engine %v", e, got, want)
		}
	}
	// Outside the subset: the engine runs them.
	for _, e := range []string{"name.given.first() + 'x'", "name.where(given.count() > 1)", "name.where(use != 'old')", "identifier.where(value = 1)",
		"birthDate = '2000'", "name.where(given = 'a\\'b')", "%mrnSystem", "name.where(not(use = 'old'))", "deceased",
		"name.where(given.startsWith('A'))", "descendants()", "descendants().ofType(string)"} {
		if _, ok := compileFast(set.m, pt, pt, e); ok {
			t.Errorf("%s compiled to the fast subset", e)
		}
	}
	if _, ok := compileFastPred(set.m, pt, pt, "gender = 'male' and name.exists()"); !ok {
		t.Error("a simple condition is not in the fast subset")
	}
}
