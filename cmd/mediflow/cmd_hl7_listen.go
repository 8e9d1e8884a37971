package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/engine"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/ingest/hl7in"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/store"
)

func hl7ListenCmd() *command {
	return &command{
		name:    "listen",
		summary: "receive HL7 v2 over MLLP into the store and convert it",
		usage:   "",
		long: `Runs HL7 v2 listeners without the rest of the engine (no EHR polling, no
API): each message is stored before it is acknowledged (commit-then-ACK),
then converted to FHIR resources in the store, in order per sending
facility. Stop it with Ctrl-C; what was stored but not yet converted is
converted at the next start.

Two ways to run it:

  --config FILE   the hl7_listeners of the configuration (all practices, or
                  --practice ID) on the configuration's store. mediflow serve
                  runs the same listeners together with everything else.
  --db FILE --practice ID [--addr HOST:PORT]
                  quick mode: one listener (named by --name) on an embedded
                  store, with the flags below instead of a configuration.

It prints "listening <practice>/<listener> <address>" once per listener, then
one line per message received, PHI-free: the store id, type, control id,
sender (MSH-3/MSH-4) and the ACK code (and "duplicate of" for a resend of a
stored message). Messages that end up quarantined, ignored or failed get a
second line with the reason; --verbose adds a line for every processed
message. --quiet prints only the listening lines.

ACKs: AA (CA in enhanced mode, when MSH-15/16 are valued) once the message
is durably stored; AE (CE) with an ERR segment for a message that cannot be
parsed (it is stored in quarantine); no ACK when the store fails (the
connection closes and the sender resends). See docs/hl7v2.md.

Examples:
  mediflow hl7 listen --db data/hl7.db --practice sunrise --addr 127.0.0.1:2575
  mediflow hl7 listen --config mediflow.yaml
  mediflow hl7 listen --config mediflow.yaml --practice sunrise --quiet`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			cfgPath := fs.String("config", "", "configuration `file`: run its HL7 listeners on its store")
			db := fs.String("db", "", "quick mode: SQLite store `file` (created if missing)")
			practice := fs.String("practice", "", "practice `id` (quick mode: required; with --config: only this practice's listeners)")
			addr := fs.String("addr", "127.0.0.1:2575", "quick mode: `host:port` to listen on (port 0 picks a free one)")
			name := fs.String("name", "mllp", "quick mode: listener `name` (the channel stored with each message)")
			dedup := fs.Duration("dedup-window", 24*time.Hour, "quick mode: duplicate window, `d` (0 turns de-duplication off)")
			ackMode := fs.String("ack-mode", hl7in.AckAuto, "quick mode: `mode` auto, original or enhanced")
			unsupported := fs.String("unsupported", hl7in.UnsupportedIgnore, "quick mode: what to do with types without conversion: `ignore` or quarantine")
			maxSize := fs.Int("max-message-size", 1<<20, "quick mode: largest message in `bytes`")
			workers := fs.Int("workers", 4, "messages converted at once per practice (different sending facilities)")
			quiet := fs.Bool("quiet", false, "print only the listening lines")
			verbose := fs.Bool("verbose", false, "also print a line for every processed message")
			logLevel := fs.String("log-level", "warn", "log `level` (logs go to stderr; --config uses the configured level unless this is set)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("listen takes no arguments")
				}
				levelSet := false
				fs.Visit(func(f *flag.Flag) {
					if f.Name == "log-level" {
						levelSet = true
					}
				})
				var (
					ls     []hl7in.Listener
					cfg    *config.Config
					dbPath string
				)
				switch {
				case *cfgPath != "" && *db != "":
					return usagef("give --config or --db, not both")
				case *cfgPath != "":
					var err error
					if cfg, err = config.Load(*cfgPath, env.getenv); err != nil {
						return err
					}
					for _, w := range cfg.Warnings {
						fmt.Fprintln(env.stderr, w.String())
					}
					if cfg.Store.Driver != "" && cfg.Store.Driver != "sqlite" {
						return fmt.Errorf("store driver %q: only the sqlite store is available in this build", cfg.Store.Driver)
					}
					all, err := engine.HL7Listeners(cfg, env.getenv)
					if err != nil {
						return err
					}
					for _, l := range all {
						if *practice == "" || l.Practice == *practice {
							ls = append(ls, l)
						}
					}
					if len(ls) == 0 {
						return usagef("%s configures no hl7_listeners%s", *cfgPath, forPractice(*practice))
					}
					dbPath = cfg.Abs(cfg.Store.Path)
					if !levelSet {
						*logLevel = cfg.Log.Level
					}
				case *db != "":
					if *practice == "" {
						return usagef("quick mode needs --practice ID")
					}
					if *ackMode != hl7in.AckAuto && *ackMode != hl7in.AckOriginal && *ackMode != hl7in.AckEnhanced {
						return usagef("--ack-mode must be auto, original or enhanced")
					}
					if *unsupported != hl7in.UnsupportedIgnore && *unsupported != hl7in.UnsupportedQuarantine {
						return usagef("--unsupported must be ignore or quarantine")
					}
					if *maxSize < 1024 || *dedup < 0 {
						return usagef("--max-message-size must be at least 1024 and --dedup-window not negative")
					}
					ls = []hl7in.Listener{{Practice: *practice, Name: *name, Addr: *addr, MaxMessageSize: *maxSize,
						DedupWindow: *dedup, AckMode: *ackMode, Unsupported: *unsupported}}
					dbPath = *db
				default:
					return usagef("give --config FILE, or --db FILE --practice ID for quick mode")
				}
				if *workers < 1 {
					return usagef("--workers must be at least 1")
				}
				st, err := openSQLite(ctx, dbPath)
				if err != nil {
					return err
				}
				defer st.Close()
				conv, err := v2fhir.New(v2fhir.Options{})
				if err != nil {
					return fmt.Errorf("HL7 v2 converter: %w", err)
				}
				// The converted resources go through the practice's mapping
				// profile, as in the engine (quick mode: the generic one).
				mcfg := cfg
				if mcfg == nil {
					mcfg = &config.Config{Practices: []config.Practice{{ID: *practice, Mapping: config.Mapping{Enabled: true}}}}
				}
				mapper, err := engine.NewMapper(mcfg, nil)
				if err != nil {
					return err
				}
				out := &lineWriter{w: env.stdout}
				p, err := hl7in.New(hl7in.Options{
					Store: st, Converter: conv, Mapper: mapper, Workers: *workers,
					Logger: obs.NewLogger(env.stderr, parseLevel(*logLevel), "text"),
					OnReceived: func(ev hl7in.Event) {
						if !*quiet {
							out.line(receivedLine(ev))
						}
					},
					OnProcessed: func(ev hl7in.Event) {
						if !*quiet && (*verbose || ev.Status != store.MsgProcessed) {
							out.line(processedLine(ev))
						}
					},
				}, ls)
				if err != nil {
					return err
				}
				if err := p.Listen(); err != nil {
					return err
				}
				for _, l := range ls {
					out.line(fmt.Sprintf("listening %s/%s %s", l.Practice, l.Name, p.Addr(l.Practice, l.Name)))
				}
				return p.Run(ctx)
			}
		},
	}
}

func forPractice(p string) string {
	if p == "" {
		return ""
	}
	return " for practice " + p
}

// lineWriter writes whole lines from many goroutines.
type lineWriter struct {
	mu gosync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, s)
}

// receivedLine describes a received message, PHI-free.
func receivedLine(ev hl7in.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s received", time.Now().UTC().Format("15:04:05.000"))
	if ev.ID > 0 {
		fmt.Fprintf(&b, " #%d", ev.ID)
	}
	fmt.Fprintf(&b, " %s/%s %s", ev.Practice, ev.Channel, msgType(ev.MessageCode, ev.TriggerEvent))
	if ev.ControlID != "" {
		fmt.Fprintf(&b, " control=%s", ev.ControlID)
	}
	if s := sender(ev.SendingApp, ev.SendingFacility); s != "" {
		fmt.Fprintf(&b, " from=%s", s)
	}
	fmt.Fprintf(&b, " ack=%s", dash(ev.AckCode))
	switch {
	case ev.Duplicate:
		fmt.Fprintf(&b, " duplicate-of=#%d", ev.ID)
	case ev.Status == store.MsgQuarantined:
		b.WriteString(" quarantined: " + oneLine(ev.Error))
	case ev.ID == 0:
		b.WriteString(" not stored")
	}
	return b.String()
}

// processedLine describes a processing outcome, PHI-free.
func processedLine(ev hl7in.Event) string {
	s := fmt.Sprintf("%s %s #%d %s/%s %s", time.Now().UTC().Format("15:04:05.000"), ev.Status, ev.ID, ev.Practice, ev.Channel,
		msgType(ev.MessageCode, ev.TriggerEvent))
	if ev.Status == store.MsgProcessed {
		s += fmt.Sprintf(" written=%d unchanged=%d", ev.Written, ev.Unchanged)
		if ev.Stale > 0 {
			s += fmt.Sprintf(" stale=%d", ev.Stale)
		}
	}
	if ev.Error != "" {
		s += ": " + oneLine(ev.Error)
	}
	return s
}
