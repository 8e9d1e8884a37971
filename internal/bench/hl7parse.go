package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// hl7ParseScript is the Medplum parser peer inside the peers folder.
const hl7ParseScript = "hl7-parse.mjs"

// HL7ParseOptions shape the HL7 v2 parse benchmark.
type HL7ParseOptions struct {
	// Messages is about how many messages each parser parses in each
	// measured loop: the message set is parsed ceil(Messages/len(set))
	// times, len(set) counting the messages Medplum refuses (0: 100,000).
	Messages int
	// Corpus is the CDC trusted-intermediary sample set ("": the shared
	// test data beside the repository, ../shared/testdata/hl7v2/
	// cdc-trusted-intermediary). Its messages and those of the
	// repository's internal/hl7/testdata/*.hl7 make the set.
	Corpus string
	// Peer also measures Medplum's parser (peers/hl7-parse.mjs, one
	// Node.js process) on the same messages; PeersDir overrides where the
	// peers are ("": the repository's peers/).
	Peer     bool
	PeersDir string
	// Progress, when set, receives one line per phase.
	Progress io.Writer
}

// HL7ParseSpeed is one measured loop.
type HL7ParseSpeed struct {
	Duration          time.Duration
	MessagesPerSecond float64
	MBPerSecond       float64 // 10^6 bytes of message text per second
}

// HL7ParseResult is what the parse benchmark measured. "Parse" is the
// parser's entry point alone: ours indexes segments and splits fields only
// when they are read, Medplum's splits every field at once, so the two do
// different work. "Parse + read" also reads MSH-9, MSH-10, PID-3, PID-5 and
// OBX-3/OBX-5 of every OBX (every repetition and component, as the
// differential test compares them) and is the like-for-like number; ours
// unescapes what it reads, Medplum's does not unescape.
type HL7ParseResult struct {
	Files    int      // files the messages came from
	Messages int      // distinct messages in the set
	Bytes    int64    // their total size
	Refused  []string // messages Medplum refuses, left out of the set for both parsers ("file #n")
	Rounds   int      // times the set was parsed in each measured loop

	Ours, OursRead HL7ParseSpeed  // mediflow, one goroutine
	Peer, PeerRead *HL7ParseSpeed // Medplum, one Node.js process; nil when not measured
	PeerNote       string         // why the peer was not measured, when it was not
	NodeVersion    string

	// checksum of the values read, so the work cannot be optimised away.
	checksum int
}

// corpusMessage is one message of the benchmark set.
type corpusMessage struct {
	name string
	data []byte
}

// RunHL7Parse parses the CDC sample set and internal/hl7/testdata/*.hl7
// repeatedly with mediflow's lenient parser on one goroutine and, with
// o.Peer, with Medplum's parser in one Node.js process, and reports both
// speeds. The peer runs first, alone, so the two never share the CPU.
func RunHL7Parse(ctx context.Context, o HL7ParseOptions) (*HL7ParseResult, error) {
	if o.Messages == 0 {
		o.Messages = 100_000
	}
	if o.Messages < 0 {
		return nil, errors.New("bench: the number of messages must be positive")
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	set, files, err := loadHL7Set(o.Corpus)
	if err != nil {
		return nil, err
	}
	res := &HL7ParseResult{Files: files}

	if o.Peer {
		progress("Medplum parser (peers/%s): %d messages", hl7ParseScript, len(set))
		kept, note, err := runHL7ParsePeer(ctx, o, set, res)
		if err != nil {
			return nil, err
		}
		if note != "" {
			res.PeerNote = note
		} else {
			set = kept
		}
	}
	if len(set) == 0 {
		return nil, errors.New("bench: no messages to parse")
	}
	res.Messages = len(set)
	for _, m := range set {
		res.Bytes += int64(len(m.data))
	}
	if res.Rounds == 0 {
		res.Rounds = (o.Messages + len(set) - 1) / len(set)
	}

	progress("mediflow parser: %d messages × %d rounds", len(set), res.Rounds)
	msgs := make([][]byte, len(set))
	for i, m := range set {
		msgs[i] = m.data
		if _, err := hl7.Parse(m.data, hl7.ParseOptions{}); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", m.name, err)
		}
	}
	parseOnly := func() int {
		n := 0
		for _, b := range msgs {
			m, _ := hl7.Parse(b, hl7.ParseOptions{})
			n += len(m.Segments())
		}
		return n
	}
	parseRead := func() int {
		n := 0
		for _, b := range msgs {
			m, _ := hl7.Parse(b, hl7.ParseOptions{})
			n += readFields(m)
		}
		return n
	}
	if res.Ours, err = timeRounds(ctx, parseOnly, res.Rounds, len(msgs), res.Bytes, &res.checksum); err != nil {
		return nil, err
	}
	if res.OursRead, err = timeRounds(ctx, parseRead, res.Rounds, len(msgs), res.Bytes, &res.checksum); err != nil {
		return nil, err
	}
	return res, nil
}

// timeRounds runs round max(1, rounds/5) times to warm up, then rounds
// times under the clock.
func timeRounds(ctx context.Context, round func() int, rounds, msgs int, size int64, sink *int) (HL7ParseSpeed, error) {
	for range max(1, rounds/5) {
		*sink += round()
	}
	start := time.Now()
	for i := range rounds {
		if i%64 == 0 && ctx.Err() != nil {
			return HL7ParseSpeed{}, ctx.Err()
		}
		*sink += round()
	}
	d := time.Since(start)
	return speed(d, rounds*msgs, int64(rounds)*size), nil
}

func speed(d time.Duration, msgs int, size int64) HL7ParseSpeed {
	s := max(d.Seconds(), 1e-9)
	return HL7ParseSpeed{Duration: d, MessagesPerSecond: float64(msgs) / s, MBPerSecond: float64(size) / s / 1e6}
}

// readFields reads the values the differential test compares and returns
// their total length.
func readFields(m *hl7.Message) int {
	msh := m.Segment("MSH", 1)
	n := fieldLength(msh, 9) + fieldLength(msh, 10)
	pid := m.Segment("PID", 1)
	n += fieldLength(pid, 3) + fieldLength(pid, 5)
	for _, obx := range m.SegmentsByID("OBX") {
		n += fieldLength(obx, 3) + fieldLength(obx, 5)
	}
	return n
}

func fieldLength(seg *hl7.Segment, i int) int {
	if seg == nil {
		return 0
	}
	f := seg.Field(i)
	n := 0
	for r := 1; r <= f.NumRepetitions(); r++ {
		rep := f.Rep(r)
		for c := 1; c <= rep.NumComponents(); c++ {
			n += len(rep.Component(c))
		}
	}
	return n
}

// loadHL7Set reads the messages of the benchmark: every message of every
// *.hl7 file of the corpus and of internal/hl7/testdata, in path order.
func loadHL7Set(corpus string) ([]corpusMessage, int, error) {
	root, err := repo.Root()
	if err != nil {
		return nil, 0, fmt.Errorf("bench: %w", err)
	}
	if corpus == "" {
		corpus = filepath.Join(root, "..", "shared", "testdata", "hl7v2", "cdc-trusted-intermediary")
	}
	if _, err := os.Stat(corpus); err != nil {
		return nil, 0, fmt.Errorf("bench: the CDC HL7 v2 sample set is not there (%w); it is shared test data beside the repository", err)
	}
	var paths []string
	for _, dir := range []string{corpus, filepath.Join(root, "internal", "hl7", "testdata")} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "fuzz" {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(p, ".hl7") {
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("bench: %w", err)
		}
	}
	slices.Sort(paths)
	var set []corpusMessage
	files := 0
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, 0, fmt.Errorf("bench: %w", err)
		}
		name, _ := filepath.Rel(filepath.Dir(root), p)
		parts := hl7.Split(data)
		if len(parts) > 0 {
			files++
		}
		for i, part := range parts {
			set = append(set, corpusMessage{name: fmt.Sprintf("%s #%d", filepath.ToSlash(name), i+1), data: part})
		}
	}
	return set, files, nil
}

// runHL7ParsePeer runs peers/hl7-parse.mjs --bench on set, records its
// speeds in res and returns the messages Medplum accepted. A peer that is
// not installed is a note, not an error; a peer that fails is an error.
func runHL7ParsePeer(ctx context.Context, o HL7ParseOptions, set []corpusMessage, res *HL7ParseResult) ([]corpusMessage, string, error) {
	dir := o.PeersDir
	if dir == "" {
		root, err := repo.Root()
		if err != nil {
			return nil, "Medplum parser not measured: " + err.Error(), nil
		}
		dir = filepath.Join(root, "peers")
	}
	for _, need := range []string{hl7ParseScript, filepath.Join("node_modules", "@medplum", "core", "package.json")} {
		if _, err := os.Stat(filepath.Join(dir, need)); err != nil {
			return nil, fmt.Sprintf("Medplum parser not measured: %s is missing (install the peers: npm ci --prefix peers)", filepath.Join(dir, need)), nil
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "Medplum parser not measured: node is not on PATH", nil
	}
	if v, err := exec.CommandContext(ctx, node, "--version").Output(); err == nil {
		res.NodeVersion = strings.TrimSpace(string(v))
	}
	rounds := (o.Messages + len(set) - 1) / len(set)
	var in bytes.Buffer
	for _, m := range set {
		in.WriteByte('"')
		in.WriteString(base64.StdEncoding.EncodeToString(m.data))
		in.WriteString("\"\n")
	}
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, hl7ParseScript), "--ndjson", "-", "--bench", fmt.Sprint(rounds))
	cmd.Dir = dir
	cmd.Stdin = &in
	var stdout bytes.Buffer
	stderr := &limitedWriter{n: 16 << 10}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return nil, "", fmt.Errorf("bench: %s: %w: %s", hl7ParseScript, err, stderr.String())
	}
	var out struct {
		Refused                  []int   `json:"refused"`
		Messages                 int     `json:"messages"`
		Bytes                    int64   `json:"bytes"`
		Seconds                  float64 `json:"seconds"`
		ExtractSeconds           float64 `json:"extractSeconds"`
		MessagesPerSecond        float64 `json:"messagesPerSecond"`
		ExtractMessagesPerSecond float64 `json:"extractMessagesPerSecond"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || out.Messages == 0 || out.Seconds <= 0 || out.ExtractSeconds <= 0 {
		return nil, "", fmt.Errorf("bench: %s printed no result (%v): %q", hl7ParseScript, err, stdout.String())
	}
	refused := map[int]bool{}
	for _, i := range out.Refused {
		if i < 0 || i >= len(set) {
			return nil, "", fmt.Errorf("bench: %s refused message %d of %d", hl7ParseScript, i, len(set))
		}
		refused[i] = true
		res.Refused = append(res.Refused, set[i].name)
	}
	var kept []corpusMessage
	var size int64
	for i, m := range set {
		if !refused[i] {
			kept = append(kept, m)
			size += int64(len(m.data))
		}
	}
	if want := rounds * len(kept); out.Messages != want || out.Bytes != int64(rounds)*size {
		return nil, "", fmt.Errorf("bench: %s parsed %d messages (%d bytes), want %d (%d bytes)", hl7ParseScript, out.Messages, out.Bytes, want, int64(rounds)*size)
	}
	p := speed(time.Duration(out.Seconds*float64(time.Second)), out.Messages, out.Bytes)
	pr := speed(time.Duration(out.ExtractSeconds*float64(time.Second)), out.Messages, out.Bytes)
	res.Peer, res.PeerRead = &p, &pr
	res.Rounds = rounds
	return kept, "", nil
}

// Print writes the result as a short report.
func (r *HL7ParseResult) Print(w io.Writer) {
	fmt.Fprintf(w, "message set    %d messages from %d files, %.2f MB; each loop parses it %d times (%d messages)\n",
		r.Messages, r.Files, float64(r.Bytes)/1e6, r.Rounds, r.Messages*r.Rounds)
	if len(r.Refused) > 0 {
		fmt.Fprintf(w, "left out       %d message(s) Medplum refuses: %s\n", len(r.Refused), strings.Join(r.Refused, ", "))
	}
	line := func(name string, s HL7ParseSpeed, vs *HL7ParseSpeed) {
		fmt.Fprintf(w, "%-28s %12.0f messages/s %8.1f MB/s", name, s.MessagesPerSecond, s.MBPerSecond)
		if vs != nil && vs.MessagesPerSecond > 0 {
			fmt.Fprintf(w, "   mediflow/Medplum %.2fx", s.MessagesPerSecond/vs.MessagesPerSecond)
		}
		fmt.Fprintln(w)
	}
	line("mediflow parse", r.Ours, r.Peer)
	line("mediflow parse + read", r.OursRead, r.PeerRead)
	if r.Peer != nil {
		node := r.NodeVersion
		if node == "" {
			node = "Node.js"
		}
		line("Medplum parse ("+node+")", *r.Peer, nil)
		line("Medplum parse + read", *r.PeerRead, nil)
	}
	if r.PeerNote != "" {
		fmt.Fprintln(w, r.PeerNote)
	}
	fmt.Fprintln(w, "one goroutine / one Node.js process each, run one after the other. \"parse\" is each parser's entry point:")
	fmt.Fprintln(w, "mediflow's is lazy (indexes segments; fields are split when read), Medplum's splits every field.")
	fmt.Fprintln(w, "\"parse + read\" also reads MSH-9, MSH-10, PID-3, PID-5, OBX-3 and OBX-5 (all repetitions and components);")
	fmt.Fprintln(w, "mediflow unescapes what it reads, Medplum does not. Medplum's time includes decoding the bytes as UTF-8.")
}
