package main

import (
	"context"
	"errors"
	"flag"
)

// TODO(owner of cmd_serve.go): replace this placeholder with the real command.
func serveCmd() *command {
	return &command{
		name:    "serve",
		summary: "(not built yet)",
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			return func(context.Context, *cliEnv, []string) error { return errors.New("not built yet") }
		},
	}
}
