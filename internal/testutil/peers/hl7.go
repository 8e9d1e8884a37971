package peers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hl7Timeout bounds one run of hl7-parse.mjs or hl7-client.mjs, and the wait
// for hl7-server.mjs to listen or to report messages.
const hl7Timeout = 2 * time.Minute

// hl7Packages are the npm packages the HL7 v2 peers need.
var hl7Packages = []string{"@medplum/hl7", "@medplum/core", "node-hl7-client", "node-hl7-server"}

// HL7Dir returns the peers/ folder after checking that the HL7 v2 peers are
// installed; it skips (or, under CI, fails) the test when they are not.
func HL7Dir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "peers")
	for _, pkg := range hl7Packages {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(pkg), "package.json")); err != nil {
			unavailable(t, "peers/node_modules lacks %s", pkg)
		}
	}
	return dir
}

// HL7Field is one field as Medplum's HL7 v2 parser reads it: its
// repetitions, each a list of components exactly as Hl7Field.getComponent
// returns them. Medplum does not unescape, and it leaves subcomponent
// separators inside a component. nil means the segment or field is absent.
type HL7Field [][]string

// MedplumHL7 is what peers/hl7-parse.mjs read from one message with
// Medplum's parser (Hl7Message.parse from @medplum/core, which @medplum/hl7
// uses for every message it receives). When Medplum refused the message,
// Error says why and the other fields are empty.
type MedplumHL7 struct {
	Index int      `json:"i"`
	Error string   `json:"error"`
	MSH9  HL7Field `json:"msh9"`
	MSH10 HL7Field `json:"msh10"`
	PID3  HL7Field `json:"pid3"` // first PID segment
	PID5  HL7Field `json:"pid5"`
	OBX   []struct {
		OBX3 HL7Field `json:"obx3"`
		OBX5 HL7Field `json:"obx5"`
	} `json:"obx"` // every OBX segment, in order
}

// ParseHL7Medplum parses every message with Medplum's HL7 v2 parser and
// returns what it read, one entry per message in order. It fails the test
// when the script cannot run; a message Medplum refuses is reported in its
// entry's Error.
func ParseHL7Medplum(t testing.TB, msgs [][]byte) []MedplumHL7 {
	t.Helper()
	out := runHL7Script(t, "hl7-parse.mjs", msgs)
	var res []MedplumHL7
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r MedplumHL7
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("peers: hl7-parse.mjs printed a line that is not a result: %v", err)
		}
		if r.Index != len(res) {
			t.Fatalf("peers: hl7-parse.mjs result %d is for message %d", len(res), r.Index)
		}
		res = append(res, r)
	}
	if len(res) != len(msgs) {
		t.Fatalf("peers: hl7-parse.mjs returned %d results for %d messages", len(res), len(msgs))
	}
	return res
}

// HL7Ack is one reply node-hl7-client received, read with its own parser
// (see peers/hl7-client.mjs). Error is set, and the program stopped, when
// no reply came or the connection failed.
type HL7Ack struct {
	Index         int    `json:"i"`
	SentControlID string `json:"sentControlId"` // MSH-10 of the sent message as the library read it
	MSA1          string `json:"msa1"`
	MSA2          string `json:"msa2"`
	MSA3          string `json:"msa3"`
	AckType       string `json:"ackType"` // MSH-9-1^MSH-9-2 of the reply
	Error         string `json:"error"`
}

// SendHL7NodeClient sends msgs one at a time over one MLLP connection to
// addr (host:port) with node-hl7-client and returns one HL7Ack per reply it
// got, in order. When a reply did not come, the last entry holds the error
// and fewer entries than messages are returned. The test fails when the
// script cannot run.
func SendHL7NodeClient(t testing.TB, addr string, msgs [][]byte) []HL7Ack {
	t.Helper()
	host, port, ok := strings.Cut(addr, ":")
	if _, err := strconv.Atoi(port); !ok || err != nil || host == "" {
		t.Fatalf("peers: node-hl7-client: address %q is not host:port", addr)
	}
	out := runHL7Script(t, "hl7-client.mjs", msgs, "--host", host, "--port", port)
	var acks []HL7Ack
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var a HL7Ack
		if err := dec.Decode(&a); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("peers: hl7-client.mjs printed a line that is not a reply: %v", err)
		}
		acks = append(acks, a)
	}
	return acks
}

// runHL7Script runs one of the HL7 peer scripts with msgs as NDJSON on stdin
// and returns its stdout. A non-zero exit is not a failure here (the scripts
// report failures in their output); not being able to run is.
func runHL7Script(t testing.TB, script string, msgs [][]byte, args ...string) []byte {
	t.Helper()
	node := Node(t)
	dir := HL7Dir(t)
	ctx, cancel := context.WithTimeout(context.Background(), hl7Timeout)
	defer cancel()

	var in bytes.Buffer
	for _, m := range msgs {
		in.WriteByte('"')
		in.WriteString(base64.StdEncoding.EncodeToString(m))
		in.WriteString("\"\n")
	}
	argv := append([]string{filepath.Join(dir, script), "--ndjson", "-"}, args...)
	cmd := exec.CommandContext(ctx, node, argv...)
	cmd.Dir = dir
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("peers: %s did not finish within %s; stderr:\n%s", script, hl7Timeout, stderr.String())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("peers: run %s: %v", script, err)
	}
	if err != nil && stdout.Len() == 0 {
		t.Fatalf("peers: %s failed (%v) without output; stderr:\n%s", script, err, stderr.String())
	}
	return stdout.Bytes()
}

// HL7Received is one message node-hl7-server handed to its handler (see
// peers/hl7-server.mjs), read with node-hl7-client's parser.
type HL7Received struct {
	ControlID string `json:"controlId"` // MSH-10
	Type      string `json:"type"`      // MSH-9-1^MSH-9-2
	Ack       string `json:"ack"`       // the code it answered: AA, or AE for MSH-10 starting with "NAK"
	Message   string `json:"message"`   // the message as its parser gives it back, segments joined by CR
}

// HL7NodeServer is a running node-hl7-server listening on 127.0.0.1.
//
// node-hl7-server 2.5 does not clear its receive buffer after a message, so
// a second message on one connection is parsed together with the first:
// send each message on a fresh connection.
type HL7NodeServer struct {
	Addr string // "127.0.0.1:port"

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever received grows or the reader ends
	received []HL7Received
	readErr  error // why the reader stopped (io.EOF when the server exited)
	stderr   *tailBuffer
}

// StartHL7NodeServer starts node-hl7-server (peers/hl7-server.mjs) on
// 127.0.0.1 with a free port. It answers every message with the library's
// own ACK: AA, or AE when MSH-10 starts with "NAK". It is stopped when the
// test ends.
func StartHL7NodeServer(t testing.TB) *HL7NodeServer {
	t.Helper()
	node := Node(t)
	dir := HL7Dir(t)

	s := &HL7NodeServer{changed: make(chan struct{}), stderr: &tailBuffer{max: 16 << 10}}
	var ready struct {
		Port int `json:"port"`
	}
	startServerPeer(t, "hl7 server", node, dir, "hl7-server.mjs", hl7Timeout, s.stderr,
		func(stdout io.Reader, first chan<- string) {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
			waiting := true // for the first line (the port)
			for sc.Scan() {
				if waiting {
					waiting = false
					first <- sc.Text()
					continue
				}
				var r HL7Received
				err := json.Unmarshal(sc.Bytes(), &r)
				s.mu.Lock()
				if err != nil {
					s.readErr = fmt.Errorf("hl7-server.mjs printed a line that is not a message: %w", err)
				} else {
					s.received = append(s.received, r)
				}
				s.notifyLocked()
				s.mu.Unlock()
				if err != nil {
					break
				}
			}
			if waiting {
				close(first)
			}
			s.mu.Lock()
			if s.readErr == nil {
				s.readErr = sc.Err()
				if s.readErr == nil {
					s.readErr = io.EOF
				}
			}
			s.notifyLocked()
			s.mu.Unlock()
			_, _ = io.Copy(io.Discard, stdout)
		}, &ready)
	s.Addr = fmt.Sprintf("127.0.0.1:%d", ready.Port)
	return s
}

func (s *HL7NodeServer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Received returns the messages the server has reported so far.
func (s *HL7NodeServer) Received() []HL7Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HL7Received(nil), s.received...)
}

// WaitReceived waits until the server has reported at least n messages and
// returns all it reported. It fails the test when that does not happen
// within two minutes or the server stops.
func (s *HL7NodeServer) WaitReceived(t testing.TB, n int) []HL7Received {
	t.Helper()
	deadline := time.NewTimer(hl7Timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got := append([]HL7Received(nil), s.received...)
		readErr, changed := s.readErr, s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if readErr != nil {
			t.Fatalf("peers: hl7 server stopped after %d of %d messages (%v); stderr:\n%s", len(got), n, readErr, s.stderr)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("peers: hl7 server reported %d of %d messages within %s; stderr:\n%s", len(got), n, hl7Timeout, s.stderr)
		}
	}
}
