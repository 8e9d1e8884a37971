package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/mediflow/mediflow/internal/config"
)

func lintCmd() *command {
	return &command{
		name:    "lint",
		summary: "check configuration files and print every problem with file:line:col and a hint",
		usage:   "FILE...",
		long: `Checks each configuration file completely: YAML syntax, unknown or missing keys,
value types, durations, URLs, duplicate ids and names, vendors, data classes,
sync policies, and the practices each app may read. Every problem is printed as
FILE:LINE:COL: error|warning: message (hint: how to fix it).

Sync policies: hourly or nightly sync of operational data (clinical, scheduling,
insurance, billing) is an error, and so is refreshing any class less often than
its maximum interval, because stale data leads to wrong decisions all day long.
A sync entry may accept that with waiver: {reason: "..."}; lint then prints the
reason as a warning. See docs/sync.md.

Secrets are resolved too: environment variables must be set and files readable,
private keys must match their algorithm, and app keys must be at least 32
characters. With --no-secrets a secret that cannot be read is only a warning,
so a file can be checked where its secrets are not available (CI, a laptop).

Exit status: 0 when no file has an error (warnings allowed unless --strict),
1 when any file has an error, 2 on wrong usage.
The reference of every key is docs/configuration.md.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			format := fs.String("format", "text", "output format: text or json")
			noSecrets := fs.Bool("no-secrets", false, "report secrets that cannot be read (missing variables or files) as warnings, not errors")
			strict := fs.Bool("strict", false, "treat warnings as errors")
			return func(_ context.Context, env *cliEnv, args []string) error {
				if len(args) == 0 {
					return usagef("lint needs at least one FILE")
				}
				if *format != "text" && *format != "json" {
					return usagef("--format must be text or json, not %q", *format)
				}
				mode := config.SecretsRequired
				if *noSecrets {
					mode = config.SecretsWarn
				}
				return lintFiles(env, args, *format, mode, *strict)
			}
		},
	}
}

// lintResult is the outcome for one file; its JSON form is the --format json output.
type lintResult struct {
	File        string             `json:"file"`
	OK          bool               `json:"ok"`
	Diagnostics config.Diagnostics `json:"diagnostics"`
}

func lintFiles(env *cliEnv, files []string, format string, mode config.SecretCheck, strict bool) error {
	results := make([]lintResult, 0, len(files))
	failed := 0
	for _, file := range files {
		diags := lintFile(env, file, mode)
		ok := !diags.HasErrors() && !(strict && len(diags) > 0)
		if !ok {
			failed++
		}
		results = append(results, lintResult{File: file, OK: ok, Diagnostics: diags})
	}
	if format == "json" {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	} else {
		for _, r := range results {
			for _, d := range r.Diagnostics {
				fmt.Fprintln(env.stdout, d.String())
			}
			if r.OK {
				if n := len(r.Diagnostics); n > 0 {
					fmt.Fprintf(env.stdout, "%s: ok (%d %s)\n", r.File, n, lintPlural(n, "warning"))
				} else {
					fmt.Fprintf(env.stdout, "%s: ok\n", r.File)
				}
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d %s failed", failed, len(files), lintPlural(len(files), "file"))
	}
	return nil
}

// lintFile returns every diagnostic for one file, sorted by position.
func lintFile(env *cliEnv, file string, mode config.SecretCheck) config.Diagnostics {
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return config.Diagnostics{{File: file, Severity: config.SeverityError,
			Message: fmt.Sprintf("cannot read the file: %v", err), Hint: "check the path and the file's permissions"}}
	}
	cfg, err := config.Parse(file, data, config.WithEnv(env.getenv), config.WithSecretCheck(mode), config.WithSecretKeyAdvice())
	if err != nil {
		var diags config.Diagnostics
		if errors.As(err, &diags) {
			return diags
		}
		return config.Diagnostics{{File: file, Severity: config.SeverityError, Message: err.Error()}}
	}
	if cfg.Warnings == nil {
		return config.Diagnostics{}
	}
	return cfg.Warnings
}

func lintPlural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
