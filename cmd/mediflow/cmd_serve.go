package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/obs"
)

func serveCmd() *command {
	return &command{
		name:    "serve",
		summary: "run the engine: sync every configured practice and serve the API",
		usage:   "",
		long: `Loads the configuration (see docs/configuration.md), opens the store, fetches each
connection's CapabilityStatement, syncs every data class on its interval and serves the
app-facing API, the status page, /healthz, /readyz and /metrics until interrupted.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			cfgPath := fs.String("config", "mediflow.yaml", "configuration `file`")
			once := fs.Bool("once", false, "sync every practice once, print the result and exit (no API)")
			listen := fs.String("listen", "", "override server.listen (`host:port`)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("serve takes no arguments (did you mean --config %s?)", args[0])
				}
				cfg, err := config.Load(*cfgPath, env.getenv)
				if err != nil {
					return err
				}
				if *listen != "" {
					cfg.Server.Listen = *listen
				}
				for _, w := range cfg.Warnings {
					fmt.Fprintln(env.stderr, w.String())
				}
				log := obs.NewLogger(env.stderr, parseLevel(cfg.Log.Level), cfg.Log.Format)
				eng, err := engine.New(ctx, cfg, engine.Options{Logger: log, Getenv: env.getenv})
				if err != nil {
					return err
				}
				defer eng.Close()
				if *once {
					_ = eng.FetchCapabilities(ctx)
					err := eng.SyncAll(ctx, "manual")
					printSummary(env.stdout, eng.Status(ctx))
					return err
				}
				return eng.Run(ctx, nil)
			}
		},
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
