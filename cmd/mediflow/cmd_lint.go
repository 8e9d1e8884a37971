package main

import (
	"context"
	"errors"
	"flag"
)

// TODO(owner of cmd_lint.go): replace this placeholder with the real command.
func lintCmd() *command {
	return &command{
		name:    "lint",
		summary: "(not built yet)",
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			return func(context.Context, *cliEnv, []string) error { return errors.New("not built yet") }
		},
	}
}
