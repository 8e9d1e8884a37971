package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/ingest/hl7in"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

func hl7ReplayCmd() *command {
	return &command{
		name:    "replay",
		summary: "process stored HL7 v2 messages again (after a fix)",
		usage:   "",
		long: `Sets stored inbound messages back to "received" so they are converted
again: one or more messages by id (--id 17,18), or every message a filter
selects (--status is then required, e.g. --status quarantined; add --type,
--trigger, --control-id, --channel, --facility, --since, --until, --limit to
narrow it). Messages are replayed in id order.

Without --process the messages are converted when the engine (mediflow serve
or mediflow hl7 listen) next starts on this store. With --process this
command converts them now and waits until they are done (at most --timeout),
then prints how they ended.

Replaying is safe: content already stored produces no new version, and a
resource that a later message of the same listener wrote is not put back to
older data. A message that still cannot be converted returns to quarantine
with its new reason. Messages that never parsed cannot be repaired by a
replay; have the sender send a corrected message.

The store is used by one process at a time: stop the engine first.

Examples:
  mediflow hl7 replay --db data/mediflow.db --practice sunrise --id 17
  mediflow hl7 replay --config mediflow.yaml --status quarantined --process
  mediflow hl7 replay --db data/mediflow.db --practice sunrise --status ignored --type MDM --since 72h`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			var sf hl7StoreFlags
			sf.define(fs)
			var ff hl7FilterFlags
			ff.define(fs, 0)
			ids := fs.String("id", "", "message `ids` to replay, comma-separated")
			process := fs.Bool("process", false, "convert the replayed messages now, in this command")
			timeout := fs.Duration("timeout", 5*time.Minute, "with --process: give up waiting after `d`")
			logLevel := fs.String("log-level", "warn", "log level of --process (logs go to stderr)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("replay takes no arguments")
				}
				idList, err := parseIDs(*ids)
				if err != nil {
					return usagef("--id: %v", err)
				}
				f, err := ff.filter(time.Now())
				if err != nil {
					return err
				}
				if len(idList) == 0 && len(f.Status) == 0 {
					return usagef("say what to replay: --id N, or a filter with --status (e.g. --status quarantined)")
				}
				if len(idList) > 0 && (len(f.Status) > 0 || f.MessageCode != "" || f.TriggerEvent != "" || f.ControlID != "" ||
					f.Channel != "" || f.SendingFacility != "" || !f.Since.IsZero() || !f.Until.IsZero()) {
					return usagef("give --id or filter flags, not both")
				}
				if *process && *timeout <= 0 {
					return usagef("--timeout must be positive")
				}
				st, cfg, err := sf.open(ctx, env)
				if err != nil {
					return err
				}
				defer st.Close()
				res, err := hl7in.Replay(ctx, st, sf.practice, hl7in.Selection{IDs: idList, Filter: f})
				if err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("%w (nothing after it was replayed)", err)
					}
					return err
				}
				fmt.Fprintf(env.stdout, "replayed %d message(s)", res.Replayed)
				if res.Skipped > 0 {
					fmt.Fprintf(env.stdout, "; %d skipped (already waiting to be processed)", res.Skipped)
				}
				fmt.Fprintln(env.stdout)
				if res.Replayed == 0 {
					return nil
				}
				if !*process {
					fmt.Fprintln(env.stdout, "they are converted when the engine next starts on this store (or run again with --process)")
					return nil
				}
				return processReplayed(ctx, env, st, cfg, sf.practice, *timeout, *logLevel)
			}
		},
	}
}

// processReplayed runs the practice's processor (no listener) until no
// message is received or failed any more, then prints the outcomes.
func processReplayed(ctx context.Context, env *cliEnv, st *sqlite.Store, cfg *config.Config, practice string, timeout time.Duration, level string) error {
	conv, err := v2fhir.New(v2fhir.Options{})
	if err != nil {
		return fmt.Errorf("HL7 v2 converter: %w", err)
	}
	var channels []hl7in.Listener
	if cfg != nil {
		ls, err := engine.HL7Listeners(cfg, env.getenv)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.Practice == practice {
				channels = append(channels, l)
			}
		}
	}
	// Replayed messages go through the practice's mapping profile, as in
	// the engine (without a configuration: the generic one).
	mcfg := cfg
	if mcfg == nil {
		mcfg = &config.Config{Practices: []config.Practice{{ID: practice, Mapping: config.Mapping{Enabled: true}}}}
	}
	mapper, err := engine.NewMapper(mcfg, nil)
	if err != nil {
		return err
	}
	var mu gosync.Mutex
	outcomes := map[string]int{}
	p, err := hl7in.New(hl7in.Options{
		Store: st, Converter: conv, Mapper: mapper, Practices: []string{practice}, Channels: channels,
		Logger: obs.NewLogger(env.stderr, parseLevel(level), "text"),
		OnProcessed: func(ev hl7in.Event) {
			mu.Lock()
			outcomes[ev.Status]++
			mu.Unlock()
		},
	}, nil)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	deadline := time.Now().Add(timeout)
	var waitErr error
	for {
		counts, err := st.CountHL7Messages(ctx, practice, store.DirectionInbound)
		if err != nil {
			waitErr = err
			break
		}
		if counts[store.MsgReceived] == 0 && counts[store.MsgFailed] == 0 {
			break
		}
		if time.Now().After(deadline) {
			waitErr = fmt.Errorf("gave up after %s: %d message(s) still received, %d failed", timeout, counts[store.MsgReceived], counts[store.MsgFailed])
			break
		}
		select {
		case <-ctx.Done():
			waitErr = ctx.Err()
		case err := <-done:
			done <- err
			waitErr = fmt.Errorf("processing stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	cancel()
	if err := <-done; err != nil && waitErr == nil {
		waitErr = err
	}
	mu.Lock()
	printOutcomes(env.stdout, outcomes)
	mu.Unlock()
	return waitErr
}

func printOutcomes(w io.Writer, outcomes map[string]int) {
	if len(outcomes) == 0 {
		fmt.Fprintln(w, "processed nothing")
		return
	}
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, outcomes[k])
	}
	fmt.Fprintln(w, "outcomes: "+strings.Join(parts, ", "))
}
