package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/writeback/hl7out"
)

func hl7SendCmd() *command {
	return &command{
		name:    "send",
		summary: "send HL7 v2 files to an MLLP receiver and show each ACK (optionally through the message store)",
		usage:   "FILE... (or - for standard input)",
		long: `Sends every message of every FILE, in order, to the MLLP receiver at --to
over one kept-open connection, and prints one line per message:

  CONTROL-ID ACK-CODE [TEXT]

(MSH-10 of the message, MSA-1 of its acknowledgment, MSA-3 when there is
one). A FILE may hold one message, several back to back, or a batch
(FHS/BHS ... BTS/FTS; the batch segments themselves are not sent). Segments
are sent ended by CR whatever the file uses; nothing else is changed.

When no ACK arrives within --timeout, the connection is closed and the very
same bytes are sent again on a new one (same MSH-10, so the receiver can
recognise the repeat), up to --attempts times, with a short growing pause
in between. A message that gets no ACK prints "-" as its code and the
reason. A message that does not parse prints "-" and the parse error.

Exit status: 0 when every message was accepted (AA or CA); 1 when any was
not (AE, AR, CE, CR, an ACK for another message, no ACK, or a message that
does not parse); 2 for a usage error. --stop-on-error stops at the first
message that was not accepted (the ones after it are not sent).

TLS: --tls speaks TLS, verifying the receiver against the system roots or
--ca FILE (PEM); --cert FILE --key FILE present a client certificate
(mutual TLS).

Through the store: with --db FILE --practice P, every message is first
stored in that SQLite store as an outbound message (status queued, channel
--name, default "cli"), then delivered from the store the way mediflow's
outbound HL7 channels deliver (internal/writeback/hl7out): in order, each
message only after the previous one has its answer, the same bytes on every
attempt. Each line then starts with the stored message id:

  #ID CONTROL-ID ACK-CODE [TEXT]

and the outcome is recorded with the message (status acked, rejected or
timed-out, ACK code, attempts, times): see mediflow hl7 messages --direction
out. Messages of an earlier run still queued under the same --name are
sent first. With --stop-on-error the messages after the first that was not
accepted stay queued in the store (messages after one that does not parse
are not stored). The store is used by one process at a time.

Examples:
  mediflow hl7 send --to 127.0.0.1:2575 adt_a01.hl7
  mediflow hl7 send --to ehr.example.org:2575 --tls --ca ca.pem --cert me.pem --key me.key batch.hl7
  cat msg.hl7 | mediflow hl7 send --to 127.0.0.1:2575 --timeout 5s --attempts 1 -
  mediflow hl7 send --to 127.0.0.1:2575 --db data/mediflow.db --practice sunrise --name lab-out results.hl7`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			to := fs.String("to", "", "receiver `host:port` (required)")
			useTLS := fs.Bool("tls", false, "speak TLS")
			caFile := fs.String("ca", "", "with --tls: PEM `file` of the CA certificates to trust instead of the system roots")
			certFile := fs.String("cert", "", "with --tls: PEM client certificate `file` (mutual TLS; needs --key)")
			keyFile := fs.String("key", "", "with --tls: PEM private key `file` of --cert")
			timeout := fs.Duration("timeout", 30*time.Second, "wait at most `d` for each ACK (per attempt)")
			attempts := fs.Int("attempts", 3, "send a message at most `n` times when no ACK arrives")
			stop := fs.Bool("stop-on-error", false, "stop at the first message that is not accepted")
			dbPath := fs.String("db", "", "SQLite store `file`: store each message (outbound, queued) and deliver it from there")
			practice := fs.String("practice", "", "with --db: practice `id` the messages are stored under")
			destName := fs.String("name", "cli", "with --db: destination `name` stored as the messages' channel")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				set := map[string]bool{}
				fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
				switch {
				case *dbPath == "" && (set["practice"] || set["name"]):
					return usagef("--practice and --name need --db")
				case *dbPath != "" && *practice == "":
					return usagef("--db needs --practice ID")
				case *dbPath != "" && *destName == "":
					return usagef("--name must not be empty")
				case *to == "":
					return usagef("--to HOST:PORT is required")
				case len(args) == 0:
					return usagef("give at least one FILE (or - for standard input)")
				case *timeout <= 0:
					return usagef("--timeout must be positive")
				case *attempts < 1:
					return usagef("--attempts must be at least 1")
				case !*useTLS && (*caFile != "" || *certFile != "" || *keyFile != ""):
					return usagef("--ca, --cert and --key need --tls")
				case (*certFile == "") != (*keyFile == ""):
					return usagef("give --cert and --key together")
				}
				stdin := 0
				for _, a := range args {
					if a == "-" {
						stdin++
					}
				}
				if stdin > 1 {
					return usagef("standard input (-) can be given once")
				}
				cfg := mllp.ClientConfig{Addr: *to, AckTimeout: *timeout, MaxAttempts: *attempts}
				if *useTLS {
					tc, err := hl7ClientTLS(*caFile, *certFile, *keyFile)
					if err != nil {
						return err
					}
					cfg.TLS = tc
				}
				// read every file first: a missing file is found before anything is sent
				files := make([][]byte, len(args))
				for i, a := range args {
					data, err := readHL7Input(a)
					if err != nil {
						return err
					}
					files[i] = data
				}
				if *dbPath != "" {
					q := queuedSend{db: *dbPath, practice: *practice, name: *destName, stop: *stop, out: env.stdout, errOut: env.stderr}
					return q.run(ctx, cfg, args, files)
				}
				client := mllp.NewClient(cfg)
				defer client.Close()
				s := hl7Sender{client: client, out: env.stdout, stop: *stop}
				for i, data := range files {
					if err := s.sendFile(ctx, args[i], data); err != nil {
						return err
					}
					if s.stopped {
						break
					}
				}
				if s.failed > 0 {
					msg := fmt.Sprintf("%d of %d messages not accepted", s.failed, s.sent)
					if s.stopped {
						msg += " (stopped at the first)"
					}
					return errors.New(msg)
				}
				if s.sent == 0 {
					return errors.New("the files hold no message")
				}
				return nil
			}
		},
	}
}

// hl7Sender sends messages one at a time and prints the outcome of each.
type hl7Sender struct {
	client  *mllp.Client
	out     io.Writer
	stop    bool
	sent    int // messages tried
	failed  int // messages not accepted
	stopped bool
}

// sendFile sends the messages of one file. It returns an error only when
// sending cannot go on (the context ended).
func (s *hl7Sender) sendFile(ctx context.Context, name string, data []byte) error {
	parts := hl7.Split(data)
	if len(parts) == 0 {
		s.sent++
		s.fail("-", fmt.Sprintf("%s: no MSH segment", name))
		return nil
	}
	for i, raw := range parts {
		if s.stopped {
			return nil
		}
		s.sent++
		m, err := hl7.Parse(raw, hl7.ParseOptions{})
		if err != nil {
			s.fail("-", fmt.Sprintf("%s: message %d: %v", name, i+1, err))
			continue
		}
		id := m.Header().ControlID
		reply, err := s.client.Send(ctx, m.Encode())
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", ctx.Err())
			}
			s.fail(id, "- "+err.Error())
			continue
		}
		res, err := ack.Parse(reply)
		switch {
		case err != nil:
			s.fail(id, "- unreadable ACK: "+err.Error())
		case res.ControlID != id:
			s.fail(id, fmt.Sprintf("%s ACK for another message (MSA-2 %s)", res.Code, showValue(res.ControlID)))
		case !res.Accepted():
			s.fail(id, hl7AckText(string(res.Code), res.Text))
		default:
			s.line(id, hl7AckText(string(res.Code), res.Text))
		}
	}
	return nil
}

func hl7AckText(code, text string) string {
	if text == "" {
		return code
	}
	return code + " " + text
}

func (s *hl7Sender) line(id, rest string) {
	if id == "" {
		id = "-"
	}
	// one message, one line: values with line breaks are quoted
	fmt.Fprintf(s.out, "%s %s\n", showValue(id), showValue(rest))
}

func (s *hl7Sender) fail(id, rest string) {
	s.failed++
	s.line(id, rest)
	if s.stop {
		s.stopped = true
	}
}

// hl7ClientTLS builds the client TLS configuration: the CA file's roots (else
// the system's) and an optional client certificate.
func hl7ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// queuedSend stores messages in the message store and delivers them from
// there with an hl7out sender (mediflow hl7 send --db).
type queuedSend struct {
	db, practice, name string
	stop               bool
	out, errOut        io.Writer
}

// queuedItem is one message of the input: parsed, or why it is not.
type queuedItem struct {
	msg *hl7.Message
	bad string
	id  int64 // store id once queued
}

func (q *queuedSend) run(ctx context.Context, cfg mllp.ClientConfig, names []string, files [][]byte) error {
	var items []queuedItem
	for i, data := range files {
		parts := hl7.Split(data)
		if len(parts) == 0 {
			items = append(items, queuedItem{bad: names[i] + ": no MSH segment"})
		}
		for j, raw := range parts {
			m, err := hl7.Parse(raw, hl7.ParseOptions{})
			switch {
			case err != nil:
				items = append(items, queuedItem{bad: fmt.Sprintf("%s: message %d: %v", names[i], j+1, err)})
			case m.Header().ControlID == "":
				items = append(items, queuedItem{bad: fmt.Sprintf("%s: message %d: no control id (MSH-10): it cannot be queued", names[i], j+1)})
			default:
				items = append(items, queuedItem{msg: m})
			}
		}
	}
	if q.stop {
		// nothing after the first message that cannot be sent is stored
		for i, it := range items {
			if it.bad != "" {
				items = items[:i+1]
				break
			}
		}
	}

	st, err := openSQLite(ctx, q.db)
	if err != nil {
		return err
	}
	defer st.Close()
	earlier, err := st.ListHL7Messages(ctx, q.practice, store.HL7Filter{Direction: store.DirectionOutbound, Channel: q.name,
		Status: []string{store.MsgQueued, store.MsgSent}, Limit: 10000})
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	mine := map[int64]bool{}                        // filled before Run starts, read-only after
	outcomes := make(chan hl7out.Event, len(items)) // one final event per own message: never blocks
	sender, err := hl7out.New(hl7out.Options{
		Store: st,
		Destinations: []hl7out.Destination{{Practice: q.practice, Name: q.name, Addr: cfg.Addr, TLS: cfg.TLS,
			AckTimeout: cfg.AckTimeout, MaxAttempts: cfg.MaxAttempts, MaxRounds: 1}},
		OnEvent: func(ev hl7out.Event) {
			if !ev.Final() || !mine[ev.ID] {
				return
			}
			outcomes <- ev
			if q.stop && ev.Status != store.MsgAcked {
				cancel() // called before the sender takes the next message: it is not sent
			}
		},
	})
	if err != nil {
		return err
	}
	for i := range items {
		if items[i].msg == nil {
			continue
		}
		id, err := sender.EnqueueMessage(ctx, q.practice, q.name, items[i].msg)
		if err != nil {
			return fmt.Errorf("store message: %w", err)
		}
		items[i].id = id
		mine[id] = true
	}
	if len(mine) > 0 && len(earlier) > 0 {
		fmt.Fprintf(q.errOut, "%d earlier message(s) still queued for %s are sent first\n", len(earlier), q.name)
	}
	runDone := make(chan error, 1)
	if len(mine) > 0 {
		go func() { runDone <- sender.Run(runCtx) }()
	} else {
		runDone <- nil
	}

	sent, failed, stopped := 0, 0, false
	got := map[int64]hl7out.Event{}
	var waitErr error
	for _, it := range items {
		if stopped {
			break
		}
		sent++
		if it.bad != "" {
			failed++
			fmt.Fprintf(q.out, "- - %s\n", showValue(it.bad))
			stopped = q.stop
			continue
		}
		ev, err := waitOutcome(runCtx, outcomes, got, it.id)
		if err != nil {
			sent--
			waitErr = err
			break
		}
		rest := hl7AckText(ev.AckCode, ev.AckText)
		if ev.Status == store.MsgTimedOut {
			rest = "- " + ev.Error
		}
		fmt.Fprintf(q.out, "#%d %s %s\n", ev.ID, showValue(dash(ev.ControlID)), showValue(rest))
		if ev.Status != store.MsgAcked {
			failed++
			stopped = q.stop
		}
	}
	cancel()
	if err := <-runDone; err != nil {
		return err
	}
	if waitErr != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w (undelivered messages stay queued in %s)", ctx.Err(), q.db)
	}
	if waitErr != nil {
		return waitErr
	}
	left := 0
	for _, it := range items {
		if it.id != 0 {
			if _, done := got[it.id]; !done {
				left++
			}
		}
	}
	if failed > 0 {
		msg := fmt.Sprintf("%d of %d messages not accepted", failed, sent)
		if stopped {
			msg += " (stopped at the first"
			if left > 0 {
				msg += fmt.Sprintf("; %d left queued in the store", left)
			}
			msg += ")"
		}
		return errors.New(msg)
	}
	if sent == 0 {
		return errors.New("the files hold no message")
	}
	return nil
}

// waitOutcome returns the final event of message id, keeping the others it
// reads in got. It fails when ctx ends before the outcome was reported.
func waitOutcome(ctx context.Context, outcomes <-chan hl7out.Event, got map[int64]hl7out.Event, id int64) (hl7out.Event, error) {
	for {
		if ev, ok := got[id]; ok {
			return ev, nil
		}
		select {
		case ev := <-outcomes:
			got[ev.ID] = ev
		case <-ctx.Done():
			// an outcome reported just before the end still counts
		drain:
			for {
				select {
				case ev := <-outcomes:
					got[ev.ID] = ev
				default:
					break drain
				}
			}
			if ev, ok := got[id]; ok {
				return ev, nil
			}
			return hl7out.Event{}, ctx.Err()
		}
	}
}
