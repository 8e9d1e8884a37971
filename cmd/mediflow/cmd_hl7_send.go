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
)

func hl7SendCmd() *command {
	return &command{
		name:    "send",
		summary: "send HL7 v2 files to an MLLP receiver and show each ACK",
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

Examples:
  mediflow hl7 send --to 127.0.0.1:2575 adt_a01.hl7
  mediflow hl7 send --to ehr.example.org:2575 --tls --ca ca.pem --cert me.pem --key me.key batch.hl7
  cat msg.hl7 | mediflow hl7 send --to 127.0.0.1:2575 --timeout 5s --attempts 1 -`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			to := fs.String("to", "", "receiver `host:port` (required)")
			useTLS := fs.Bool("tls", false, "speak TLS")
			caFile := fs.String("ca", "", "with --tls: PEM `file` of the CA certificates to trust instead of the system roots")
			certFile := fs.String("cert", "", "with --tls: PEM client certificate `file` (mutual TLS; needs --key)")
			keyFile := fs.String("key", "", "with --tls: PEM private key `file` of --cert")
			timeout := fs.Duration("timeout", 30*time.Second, "wait at most `d` for each ACK (per attempt)")
			attempts := fs.Int("attempts", 3, "send a message at most `n` times when no ACK arrives")
			stop := fs.Bool("stop-on-error", false, "stop at the first message that is not accepted")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				switch {
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
