package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func versionCmd() *command {
	return &command{
		name:    "version",
		summary: "print the mediflow version",
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			return func(_ context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("version takes no arguments")
				}
				rev := ""
				if bi, ok := debug.ReadBuildInfo(); ok {
					for _, s := range bi.Settings {
						if s.Key == "vcs.revision" && len(s.Value) >= 12 {
							rev = " (" + s.Value[:12] + ")"
						}
					}
				}
				fmt.Fprintf(env.stdout, "mediflow %s%s %s\n", version, rev, runtime.Version())
				return nil
			}
		},
	}
}
