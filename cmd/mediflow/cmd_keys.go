package main

import (
	"context"
	"errors"
	"flag"
)

// TODO(owner of cmd_keys.go): replace this placeholder with the real command.
func keysCmd() *command {
	return &command{
		name:    "keys",
		summary: "(not built yet)",
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			return func(context.Context, *cliEnv, []string) error { return errors.New("not built yet") }
		},
	}
}
