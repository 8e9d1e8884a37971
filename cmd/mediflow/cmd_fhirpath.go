package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mediflow/mediflow/internal/fhirpath"
)

// varList is the repeatable --var name=json flag.
type varList map[string]any

func (v varList) String() string {
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func (v varList) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimPrefix(strings.TrimSpace(name), "%")
	if !ok || name == "" {
		return fmt.Errorf("want name=json, got %q", s)
	}
	d, err := fhirpath.DecodeJSON([]byte(value))
	if err != nil {
		return fmt.Errorf("variable %s: %w", name, err)
	}
	v[name] = d
	return nil
}

func fhirpathCmd() *command {
	return &command{
		name:    "fhirpath",
		summary: "evaluate a FHIRPath expression over a FHIR JSON resource",
		usage:   "EXPR FILE (or - for standard input)",
		long: `Evaluates the FHIRPath expression EXPR (FHIRPath 2.0 with FHIR R4's
additions) with the JSON resource in FILE as its context (%resource,
%context), and prints the result collection as one JSON array: Booleans,
numbers and strings as themselves (decimals keep their digits), dates and
times in FHIRPath form without '@' ("2020-01-31", "2020-01-31T10:00:00Z",
"10:30:00"), quantities as {"value":…,"unit":…}, and FHIR elements as
their JSON.

--model r4 (the default) types every element with the FHIR R4 model, so
Observation.value finds valueQuantity, primitives carry the id and
extensions of their "_name" properties, and is/as/ofType know FHIR types.
--model none evaluates over plain JSON.

--var name=json defines %name (repeatable): --var 'cutoff="2020-01-01"'
--var 'codes=["a","b"]'. A FILE bundle makes resolve() follow references
between its entries (fullUrl, or Type/id); #id references find contained
resources.

Put -- before an expression that starts with '-'. A syntax or evaluation
error exits 1 with its position in the expression: "1:14: unexpected ')'".`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			modelName := fs.String("model", "r4", "type model: r4 or none")
			vars := varList{}
			fs.Var(vars, "var", "define %`name=json` (repeatable)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) != 2 {
					return usagef("fhirpath takes EXPR and FILE (or - for standard input)")
				}
				var opts []fhirpath.Option
				switch *modelName {
				case "r4":
				case "none":
					opts = append(opts, fhirpath.WithoutModel())
				default:
					return usagef("--model must be r4 or none, not %q", *modelName)
				}
				x, err := fhirpath.Compile(args[0], opts...)
				if err != nil {
					return err
				}
				data, err := readFHIRPathInput(args[1])
				if err != nil {
					return err
				}
				input, err := fhirpath.DecodeJSON(data)
				if err != nil {
					return fmt.Errorf("%s: %w", args[1], err)
				}
				res, err := x.Eval(ctx, input, vars)
				if err != nil {
					return err
				}
				out, err := res.MarshalJSON()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(env.stdout, "%s\n", out)
				return err
			}
		},
	}
}

func readFHIRPathInput(name string) ([]byte, error) {
	if name == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	return data, nil
}
