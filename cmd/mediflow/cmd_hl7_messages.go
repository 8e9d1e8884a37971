package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

// hl7StoreFlags locate the store and the practice for the hl7 commands that
// read or change stored messages.
type hl7StoreFlags struct {
	db       string
	cfgPath  string
	practice string
}

func (f *hl7StoreFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.db, "db", "", "SQLite store `file` (or give --config)")
	fs.StringVar(&f.cfgPath, "config", "", "configuration `file`: its store, practices and listeners")
	fs.StringVar(&f.practice, "practice", "", "practice `id` (may be left out when the configuration has one practice)")
}

// open opens the store and settles the practice. The configuration is nil
// with --db.
func (f *hl7StoreFlags) open(ctx context.Context, env *cliEnv) (*sqlite.Store, *config.Config, error) {
	var cfg *config.Config
	path := f.db
	switch {
	case f.db != "" && f.cfgPath != "":
		return nil, nil, usagef("give --db or --config, not both")
	case f.cfgPath != "":
		var err error
		if cfg, err = config.Load(f.cfgPath, env.getenv); err != nil {
			return nil, nil, err
		}
		if cfg.Store.Driver != "" && cfg.Store.Driver != "sqlite" {
			return nil, nil, fmt.Errorf("store driver %q: only the sqlite store is available in this build", cfg.Store.Driver)
		}
		path = cfg.Abs(cfg.Store.Path)
		if f.practice == "" {
			if len(cfg.Practices) != 1 {
				return nil, nil, usagef("the configuration has %d practices: say which with --practice", len(cfg.Practices))
			}
			f.practice = cfg.Practices[0].ID
		} else if _, ok := cfg.Practice(f.practice); !ok {
			return nil, nil, usagef("practice %q is not in %s", f.practice, f.cfgPath)
		}
	case f.db == "":
		return nil, nil, usagef("give the store with --db FILE or --config FILE")
	}
	if f.practice == "" {
		return nil, nil, usagef("give the practice with --practice ID")
	}
	st, err := openSQLite(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	return st, cfg, nil
}

// openSQLite opens (creating and migrating) an embedded store.
func openSQLite(ctx context.Context, path string) (*sqlite.Store, error) {
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "lock") {
			return nil, fmt.Errorf("open store %s: %w (is mediflow running on it? a store is used by one process at a time: stop it first)", path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate store %s: %w", path, err)
	}
	return st, nil
}

// hl7FilterFlags select stored messages.
type hl7FilterFlags struct {
	msgType, trigger, status, controlID, channel, facility, since, until string
	limit                                                                int
	// direction is in (also when empty), out or all; only hl7 messages
	// has a flag for it.
	direction string
}

func (f *hl7FilterFlags) define(fs *flag.FlagSet, defLimit int) {
	fs.StringVar(&f.msgType, "type", "", "message code (MSH-9-1), e.g. `ADT`")
	fs.StringVar(&f.trigger, "trigger", "", "trigger event (MSH-9-2), e.g. `A01`")
	fs.StringVar(&f.status, "status", "", "processing `status`es, comma-separated: received, processed, failed, quarantined, ignored")
	fs.StringVar(&f.controlID, "control-id", "", "message control `id` (MSH-10)")
	fs.StringVar(&f.channel, "channel", "", "listener `name` the message came in on")
	fs.StringVar(&f.facility, "facility", "", "sending `facility` (MSH-4-1)")
	fs.StringVar(&f.since, "since", "", "received at or after `T`: an RFC 3339 time, a date (2024-05-01) or a duration before now (24h)")
	fs.StringVar(&f.until, "until", "", "received before `T` (same forms as --since)")
	fs.IntVar(&f.limit, "limit", defLimit, "at most `N` messages (0: no limit where allowed)")
}

func (f *hl7FilterFlags) filter(now time.Time) (store.HL7Filter, error) {
	hf := store.HL7Filter{Direction: store.DirectionInbound, MessageCode: f.msgType, TriggerEvent: f.trigger,
		ControlID: f.controlID, Channel: f.channel, SendingFacility: f.facility, Limit: f.limit}
	in := []string{store.MsgReceived, store.MsgProcessed, store.MsgFailed, store.MsgQuarantined, store.MsgIgnored}
	out := []string{store.MsgQueued, store.MsgSent, store.MsgAcked, store.MsgRejected, store.MsgTimedOut}
	statuses := in
	switch f.direction {
	case "", store.DirectionInbound:
	case store.DirectionOutbound:
		hf.Direction, statuses = store.DirectionOutbound, out
	case "all":
		hf.Direction, statuses = "", append(in, out...)
	default:
		return hf, usagef("unknown --direction %q (want in, out or all)", f.direction)
	}
	if f.status != "" {
		for _, s := range strings.Split(f.status, ",") {
			s = strings.TrimSpace(s)
			switch {
			case s == "":
			case slices.Contains(statuses, s):
				hf.Status = append(hf.Status, s)
			default:
				return hf, usagef("unknown --status %q (want %s)", s, strings.Join(statuses, ", "))
			}
		}
	}
	var err error
	if hf.Since, err = parseWhen(f.since, now); err != nil {
		return hf, usagef("--since: %v", err)
	}
	if hf.Until, err = parseWhen(f.until, now); err != nil {
		return hf, usagef("--until: %v", err)
	}
	if f.limit < 0 {
		return hf, usagef("--limit must not be negative")
	}
	return hf, nil
}

// parseWhen reads an RFC 3339 time, a date, or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2024-05-01T08:00:00Z), a date (2024-05-01) or a duration (24h)", s)
}

func hl7MessagesCmd() *command {
	return &command{
		name:    "messages",
		summary: "search the stored HL7 v2 messages",
		usage:   "",
		long: `Lists the inbound HL7 v2 messages of a practice stored by mediflow's HL7
listeners, newest first: id, time received (UTC), listener (channel), message
type, control id (MSH-10), sender (MSH-3/MSH-4), the ACK code we answered,
processing status, attempts, duplicates received and the PHI-free reason of
a failure or quarantine. Nothing from the message body is shown unless you
ask for one message's raw text with --id N --raw.

--direction out lists the outbound messages instead (sent by mediflow's
outbound HL7 channels or mediflow hl7 send --db): the time is when the
message was queued, the channel the destination, ACK the code the receiver
answered, and the statuses queued, sent (waiting for an answer or a retry),
acked, rejected and timed-out. --direction all lists both.

The store is the SQLite file (--db) or the one a configuration names
(--config). A store is used by one process at a time: stop the engine (or
mediflow hl7 listen) first.

Statuses: received (stored and ACKed, not yet converted), processed,
failed (will be retried), quarantined (could not be parsed or converted;
fix and replay with mediflow hl7 replay), ignored (no conversion for the
type). See docs/hl7v2.md.

Examples:
  mediflow hl7 messages --db data/mediflow.db --practice sunrise --status quarantined
  mediflow hl7 messages --config mediflow.yaml --type ADT --trigger A08 --since 24h
  mediflow hl7 messages --db data/mediflow.db --practice sunrise --control-id MSG0042 --json
  mediflow hl7 messages --db data/mediflow.db --practice sunrise --id 17 --raw`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			var sf hl7StoreFlags
			sf.define(fs)
			var ff hl7FilterFlags
			ff.define(fs, 50)
			asJSON := fs.Bool("json", false, "print a JSON list (metadata only, no bodies)")
			id := fs.Int64("id", 0, "show only message `N`")
			raw := fs.Bool("raw", false, "with --id: print the message exactly as received, one segment per line (it holds PHI)")
			afterID := fs.Int64("before-id", 0, "page back: only messages with an id below `N`")
			asc := fs.Bool("oldest-first", false, "list oldest first")
			fs.StringVar(&ff.direction, "direction", "in", "`in` (received), out (sent) or all")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				if len(args) > 0 {
					return usagef("messages takes no arguments")
				}
				if *raw && *id == 0 {
					return usagef("--raw needs --id N")
				}
				f, err := ff.filter(time.Now())
				if err != nil {
					return err
				}
				if f.Limit == 0 {
					f.Limit = 10000
				}
				f.AfterID, f.Ascending = *afterID, *asc
				st, _, err := sf.open(ctx, env)
				if err != nil {
					return err
				}
				defer st.Close()
				var msgs []store.HL7Message
				if *id != 0 {
					m, err := st.GetHL7Message(ctx, sf.practice, *id)
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("practice %s has no message %d", sf.practice, *id)
					}
					if err != nil {
						return err
					}
					if *raw {
						body := strings.ReplaceAll(strings.ReplaceAll(string(m.Body), "\r\n", "\n"), "\r", "\n")
						_, err := io.WriteString(env.stdout, strings.TrimRight(body, "\n")+"\n")
						return err
					}
					m.Body = nil
					msgs = []store.HL7Message{m}
				} else if msgs, err = st.ListHL7Messages(ctx, sf.practice, f); err != nil {
					return err
				}
				if *asJSON {
					return writeMessagesJSON(env.stdout, msgs)
				}
				writeMessagesTable(env.stdout, msgs)
				return nil
			}
		},
	}
}

// messageJSON is the --json form of a stored message (no body).
type messageJSON struct {
	ID                int64      `json:"id"`
	Direction         string     `json:"direction"`
	Channel           string     `json:"channel"`
	Peer              string     `json:"peer,omitempty"`
	SendingApp        string     `json:"sendingApplication"`
	SendingFacility   string     `json:"sendingFacility"`
	ReceivingApp      string     `json:"receivingApplication"`
	ReceivingFacility string     `json:"receivingFacility"`
	MessageCode       string     `json:"messageCode"`
	TriggerEvent      string     `json:"triggerEvent"`
	ControlID         string     `json:"controlId"`
	ReceivedAt        time.Time  `json:"receivedAt"`
	SentAt            *time.Time `json:"sentAt,omitempty"`
	ProcessedAt       *time.Time `json:"processedAt,omitempty"`
	AckCode           string     `json:"ackCode"`
	Status            string     `json:"status"`
	Attempts          int        `json:"attempts"`
	Duplicates        int        `json:"duplicates"`
	Error             string     `json:"error,omitempty"`
}

func writeMessagesJSON(w io.Writer, msgs []store.HL7Message) error {
	out := make([]messageJSON, 0, len(msgs))
	for _, m := range msgs {
		j := messageJSON{ID: m.ID, Direction: m.Direction, Channel: m.Channel, Peer: m.Peer, SendingApp: m.SendingApp, SendingFacility: m.SendingFacility,
			ReceivingApp: m.ReceivingApp, ReceivingFacility: m.ReceivingFacility, MessageCode: m.MessageCode,
			TriggerEvent: m.TriggerEvent, ControlID: m.ControlID, ReceivedAt: m.ReceivedAt.UTC(), AckCode: m.AckCode,
			Status: m.Status, Attempts: m.Attempts, Duplicates: m.Duplicates, Error: m.Error}
		if !m.ProcessedAt.IsZero() {
			t := m.ProcessedAt.UTC()
			j.ProcessedAt = &t
		}
		if !m.SentAt.IsZero() {
			t := m.SentAt.UTC()
			j.SentAt = &t
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeMessagesTable(w io.Writer, msgs []store.HL7Message) {
	if len(msgs) == 0 {
		fmt.Fprintln(w, "no messages")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED (UTC)\tCHANNEL\tTYPE\tCONTROL ID\tSENDER\tACK\tSTATUS\tATTEMPTS\tDUPS\tERROR")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.ID, m.ReceivedAt.UTC().Format("2006-01-02 15:04:05.000"),
			m.Channel, msgType(m.MessageCode, m.TriggerEvent), dash(m.ControlID), dash(sender(m.SendingApp, m.SendingFacility)),
			dash(m.AckCode), m.Status, m.Attempts, m.Duplicates, oneLine(m.Error))
	}
	tw.Flush()
}

func msgType(code, trigger string) string {
	switch {
	case code == "" && trigger == "":
		return "-"
	case trigger == "":
		return code
	}
	return code + "^" + trigger
}

func sender(app, facility string) string {
	if app == "" && facility == "" {
		return ""
	}
	return app + "/" + facility
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// parseIDs reads a comma-separated list of message ids.
func parseIDs(s string) ([]int64, error) {
	var out []int64
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("%q is not a message id", p)
		}
		out = append(out, id)
	}
	return out, nil
}
