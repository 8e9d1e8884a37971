package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/connector/bulk"
	"github.com/mediflow/mediflow/internal/connector/fhirrest"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/smart"
)

// bulkCmd groups the FHIR Bulk Data tools.
func bulkCmd() *command {
	return &command{
		name:    "bulk",
		summary: "FHIR Bulk Data Access: export a connection's data as NDJSON",
		long:    `FHIR Bulk Data Access (v2) against a configured EHR connection. Each subcommand has its own --help.`,
		subs:    []*command{bulkExportCmd()},
	}
}

func bulkExportCmd() *command {
	return &command{
		name:    "export",
		summary: "run a Bulk Data $export and write one NDJSON file per resource type",
		long: `Runs a FHIR Bulk Data export ($export) against the EHR connection --connection
of practice --practice in the configuration file --config, with that
connection's base_url and auth (SMART Backend Services or none), waits for
it, and downloads its files into --out:

  DIR/<Type>.ndjson            the resources of each type, one per line, as sent
  DIR/deleted.ndjson           with --since: {"type":…,"id":…} per deleted resource
  DIR/OperationOutcome.ndjson  the issues of the server's error files, if any

Each file is written under a temporary name and renamed when every file of
its type is downloaded, so a file that exists is complete. A failed export
leaves no partial file behind (types already complete stay).

--level system exports everything the client may see ([base]/$export),
patient every patient's data ([base]/Patient/$export), group the members of
--group ([base]/Group/ID/$export). --type limits the export to some resource
types (_type); --since to what changed after an instant (_since): use the
transaction time the previous export printed.

Progress goes to standard error: a bar on a terminal, else one line per
status poll (with the server's X-Progress) and about one per second while
downloading (files done/total, resources, resources/s). Interrupting
(Ctrl-C) cancels the job on the server.

Exit status: 0 when the export completed (issues in error files are
reported, not fatal); 1 when it failed (the message says why; a server that
runs one export at a time answers "busy" with when to try again); 2 for a
usage error.

Examples:
  mediflow bulk export --config mediflow.yaml --practice valley --connection ehr --out export/
  mediflow bulk export --config mediflow.yaml --practice valley --level group --group all \
      --type Patient,Observation --since 2026-03-01T10:00:00Z --out delta/`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			cfgPath := fs.String("config", "", "configuration `file` (required)")
			practice := fs.String("practice", "", "practice `id` (required)")
			connection := fs.String("connection", "", "connection `name` (default: the practice's only connection)")
			level := fs.String("level", "system", "export `level`: system, patient or group")
			group := fs.String("group", "", "with --level group: the Group `id`")
			types := fs.String("type", "", "comma-separated resource `types` to export (default: all)")
			since := fs.String("since", "", "export only what changed after this `time` (a FHIR instant or date)")
			out := fs.String("out", "bulk-export", "output `directory` (created if missing)")
			workers := fs.Int("workers", 4, "download `n` files at once")
			pollMin := fs.Duration("poll-min", time.Second, "wait at least `d` between status requests")
			pollMax := fs.Duration("poll-max", 2*time.Minute, "wait at most `d` between status requests (caps the server's Retry-After)")
			return func(ctx context.Context, env *cliEnv, args []string) error {
				req := bulk.Request{Level: bulk.Level(*level), GroupID: *group}
				switch {
				case len(args) > 0:
					return usagef("bulk export takes no arguments (got %q)", args[0])
				case *cfgPath == "":
					return usagef("--config FILE is required")
				case *practice == "":
					return usagef("--practice ID is required")
				case *workers < 1:
					return usagef("--workers must be at least 1")
				case *pollMin <= 0 || *pollMax < *pollMin:
					return usagef("--poll-min must be positive and at most --poll-max")
				case *out == "":
					return usagef("--out must not be empty")
				}
				switch req.Level {
				case bulk.LevelSystem, bulk.LevelPatient:
					if *group != "" {
						return usagef("--group needs --level group")
					}
				case bulk.LevelGroup:
					if *group == "" {
						return usagef("--level group needs --group ID")
					}
				default:
					return usagef("--level must be system, patient or group, not %q", *level)
				}
				for _, t := range strings.Split(*types, ",") {
					if t = strings.TrimSpace(t); t != "" {
						req.Types = append(req.Types, t)
					}
				}
				if *since != "" {
					t, err := fhir.ParseInstant(*since)
					if err != nil {
						return usagef("--since: %q is not a FHIR instant or date (e.g. 2026-03-01T10:00:00Z)", *since)
					}
					req.Since = t
				}
				cfg, err := config.Load(*cfgPath, env.getenv)
				if err != nil {
					return err
				}
				for _, w := range cfg.Warnings {
					fmt.Fprintln(env.stderr, w.String())
				}
				conn, err := bulkConnection(cfg, *practice, *connection)
				if err != nil {
					return err
				}
				hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
				tokens, err := bulkTokens(cfg, conn, req.Types, hc, env.getenv)
				if err != nil {
					return fmt.Errorf("practice %s connection %s: %w", *practice, conn.Name, err)
				}
				client, err := bulk.New(bulk.Config{
					BaseURL: conn.BaseURL, HTTPClient: hc, Tokens: tokens, Workers: *workers,
					MinPoll: *pollMin, MaxPoll: *pollMax, MaxIssues: 100_000,
					RequestTimeout: conn.Timeout,
				})
				if err != nil {
					return err
				}
				return runBulkExport(ctx, env, client, req, *out)
			}
		},
	}
}

// bulkConnection finds the practice's connection (its only one when name is empty).
func bulkConnection(cfg *config.Config, practice, name string) (config.Connection, error) {
	p, ok := cfg.Practice(practice)
	if !ok {
		return config.Connection{}, usagef("%s has no practice %q", cfg.File, practice)
	}
	if name == "" {
		if len(p.Connections) != 1 {
			names := make([]string, len(p.Connections))
			for i, c := range p.Connections {
				names[i] = c.Name
			}
			return config.Connection{}, usagef("practice %s has %d connections (%s): choose one with --connection", practice, len(p.Connections), strings.Join(names, ", "))
		}
		return p.Connections[0], nil
	}
	for _, c := range p.Connections {
		if c.Name == name {
			return c, nil
		}
	}
	return config.Connection{}, usagef("practice %s has no connection %q", practice, name)
}

// bulkTokens builds the SMART token source of a connection (nil for auth none).
// Without configured scopes it asks for read access to the exported types.
func bulkTokens(cfg *config.Config, cc config.Connection, types []string, hc *http.Client, getenv func(string) string) (fhirrest.TokenSource, error) {
	if cc.Auth.Type != config.AuthSMARTBackend {
		return nil, nil
	}
	pem, err := cc.Auth.PrivateKey.Resolve(cfg.BaseDir, getenv)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	key, err := smart.DecodePrivateKeyPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("private key (%s): %w", cc.Auth.PrivateKey.Source(), err)
	}
	scopes := cc.Auth.Scopes
	if len(scopes) == 0 {
		for _, t := range types {
			scopes = append(scopes, "system/"+t+".rs")
		}
		if len(scopes) == 0 {
			scopes = []string{"system/*.rs"}
		}
	}
	tc, err := smart.NewClient(smart.ClientConfig{
		ClientID: cc.Auth.ClientID, FHIRBaseURL: cc.BaseURL, TokenURL: cc.Auth.TokenURL,
		Key: key, KeyID: cc.Auth.KeyID, Algorithm: cc.Auth.Algorithm, JKU: cc.Auth.JKU,
		Scopes: scopes, HTTPClient: hc,
	})
	if err != nil {
		return nil, fmt.Errorf("smart client: %w", err)
	}
	return tc, nil
}

func runBulkExport(ctx context.Context, env *cliEnv, client *bulk.Client, req bulk.Request, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	w := &bulkWriter{dir: dir, open: map[string]*partFile{}, left: map[string]int{}}
	defer w.abort()
	pr := newBulkProgress(env.stderr, isTerminal(env.stderr))
	kick, _ := client.KickoffURL(req)
	fmt.Fprintf(env.stderr, "kick-off: %s\n", strings.SplitN(kick, "?", 2)[0])
	res, err := client.Export(ctx, req, bulk.Options{
		Resources:     w.resources,
		Deleted:       w.deleted,
		FileDone:      w.fileDone,
		Checkpoint:    w.plan,
		Progress:      pr.report,
		CancelOnAbort: true,
	})
	pr.finish()
	if err != nil {
		return bulkFailure(env, err, res)
	}
	if err := w.finishAll(); err != nil {
		return err
	}
	if err := w.writeIssues(res.Issues); err != nil {
		return err
	}
	bulkSummary(env.stdout, w, res, dir)
	return nil
}

// bulkFailure explains a failed export.
func bulkFailure(env *cliEnv, err error, res *bulk.Result) error {
	var be *bulk.Error
	if errors.As(err, &be) {
		for _, d := range be.Diagnostics() {
			fmt.Fprintf(env.stderr, "server said: %s\n", d)
		}
	}
	switch {
	case errors.Is(err, bulk.ErrBusy):
		wait := "later"
		if be != nil && be.RetryAfter > 0 {
			wait = "in " + be.RetryAfter.String()
		}
		return fmt.Errorf("the server is busy with another export (it runs one at a time): try again %s (%w)", wait, err)
	case errors.Is(err, context.Canceled) && res != nil && res.Canceled:
		return fmt.Errorf("interrupted: the export job was cancelled on the server")
	case errors.Is(err, bulk.ErrExpired):
		return fmt.Errorf("the export's files expired before they were downloaded: run the export again (%w)", err)
	}
	return err
}

func bulkSummary(out io.Writer, w *bulkWriter, res *bulk.Result, dir string) {
	types := make([]string, 0, len(w.counts))
	for t := range w.counts {
		types = append(types, t)
	}
	sort.Strings(types)
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", t, w.counts[t])
	}
	rate := 0.0
	if s := res.Duration.Seconds(); s > 0 {
		rate = float64(res.Resources) / s
	}
	fmt.Fprintf(out, "exported %d resources (%s) from %d files to %s in %s (%.0f resources/s)\n",
		res.Resources, strings.Join(parts, ", "), res.Files, dir, res.Duration.Round(time.Millisecond), rate)
	if res.Deleted > 0 {
		fmt.Fprintf(out, "deleted: %d resources listed in %s\n", res.Deleted, filepath.Join(dir, "deleted.ndjson"))
	}
	if n := len(res.Issues); n > 0 || len(res.IssueCounts) > 0 {
		keys := make([]string, 0, len(res.IssueCounts))
		total := 0
		for k, v := range res.IssueCounts {
			keys = append(keys, fmt.Sprintf("%s %d", k, v))
			total += v
		}
		sort.Strings(keys)
		fmt.Fprintf(out, "issues: %d in the server's error files (%s), written to %s\n", total, strings.Join(keys, ", "), filepath.Join(dir, "OperationOutcome.ndjson"))
	}
	if m := res.Job.Manifest; m != nil && !m.TransactionTime.IsZero() {
		fmt.Fprintf(out, "transaction time: %s (pass it as --since to export what changes next)\n", fhir.FormatInstant(m.TransactionTime))
	}
}

// bulkWriter writes each type's resources to DIR/.<Type>.ndjson.part and
// renames it to DIR/<Type>.ndjson once every file of that type is done.
type bulkWriter struct {
	dir string

	mu      sync.Mutex
	planned bool
	fileTyp map[string]string // file name (no query) → the manifest's type
	left    map[string]int    // type → files not done yet
	open    map[string]*partFile
	counts  map[string]int64 // type → resources written
}

type partFile struct {
	f    *os.File
	bw   *bufio.Writer
	part string
	dst  string
}

// Keys of the files that are not a resource type's.
const (
	deletedKey = "\x00deleted"
	issuesKey  = "\x00issues"
)

// plan learns the manifest's files from the first checkpoint that has them.
func (w *bulkWriter) plan(_ context.Context, job bulk.Job) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.planned || job.Manifest == nil {
		return nil
	}
	w.planned = true
	w.fileTyp = map[string]string{}
	w.counts = map[string]int64{}
	for _, f := range job.Files {
		key := f.Type
		switch f.Kind {
		case bulk.KindError:
			continue
		case bulk.KindDeleted:
			key = deletedKey
		}
		if key != deletedKey && !typeName(key) {
			key = "unknown" // the type names a file in DIR: never a path
		}
		w.fileTyp[f.Name()] = key
		w.left[key]++
	}
	return nil
}

// typeName reports whether s looks like a FHIR resource type (letters only).
func typeName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// fileFor returns the part file of key, opening it on first use; w.mu is held.
func (w *bulkWriter) fileFor(key string) (*partFile, error) {
	if p, ok := w.open[key]; ok {
		return p, nil
	}
	name := key + ".ndjson"
	switch key {
	case deletedKey:
		name = "deleted.ndjson"
	case issuesKey:
		name = "OperationOutcome.ndjson"
	}
	part := filepath.Join(w.dir, "."+name+".part")
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	p := &partFile{f: f, bw: bufio.NewWriterSize(f, 256<<10), part: part, dst: filepath.Join(w.dir, name)}
	w.open[key] = p
	return p, nil
}

func (w *bulkWriter) resources(_ context.Context, batch []bulk.Resource) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := w.fileTyp[batch[0].File]
	if key == "" {
		key = batch[0].Type
	}
	p, err := w.fileFor(key)
	if err != nil {
		return err
	}
	for _, r := range batch {
		_, _ = p.bw.Write(r.Body)
		_ = p.bw.WriteByte('\n')
	}
	if err := p.bw.Flush(); err != nil { // bufio errors are sticky: one check per batch
		return fmt.Errorf("writing %s: %w", p.part, err)
	}
	w.counts[key] += int64(len(batch))
	return nil
}

func (w *bulkWriter) deleted(_ context.Context, batch []bulk.Tombstone) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, err := w.fileFor(deletedKey)
	if err != nil {
		return err
	}
	var line []byte
	for _, t := range batch {
		line = append(line[:0], `{"type":`...)
		line = fhir.AppendJSONString(line, t.Type)
		line = append(line, `,"id":`...)
		line = fhir.AppendJSONString(line, t.ID)
		line = append(line, "}\n"...)
		if _, err := p.bw.Write(line); err != nil {
			return fmt.Errorf("writing %s: %w", p.part, err)
		}
	}
	return nil
}

// fileDone renames a type's file once its last manifest file is done.
func (w *bulkWriter) fileDone(_ context.Context, f bulk.FileState) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	key, ok := w.fileTyp[f.Name()]
	if !ok {
		return nil
	}
	if w.left[key]--; w.left[key] > 0 {
		return nil
	}
	return w.finishLocked(key)
}

func (w *bulkWriter) finishLocked(key string) error {
	p, ok := w.open[key]
	if !ok {
		return nil // no line in any file of this type
	}
	delete(w.open, key)
	err := p.bw.Flush()
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.part, p.dst)
	}
	if err != nil {
		os.Remove(p.part)
		return fmt.Errorf("finishing %s: %w", p.dst, err)
	}
	return nil
}

// finishAll renames what is still open (resources whose type was not in
// the manifest).
func (w *bulkWriter) finishAll() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.open))
	for k := range w.open {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := w.finishLocked(k); err != nil {
			return err
		}
	}
	return nil
}

// abort removes the part files left open by a failed export.
func (w *bulkWriter) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, p := range w.open {
		p.f.Close()
		os.Remove(p.part)
		delete(w.open, k)
	}
}

// writeIssues writes each issue of the error files as a one-issue OperationOutcome.
func (w *bulkWriter) writeIssues(issues []bulk.Issue) error {
	if len(issues) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	p, err := w.fileFor(issuesKey)
	if err != nil {
		return err
	}
	var line []byte
	for _, is := range issues {
		line = append(line[:0], `{"resourceType":"OperationOutcome","issue":[{"severity":`...)
		line = fhir.AppendJSONString(line, is.Severity)
		line = append(line, `,"code":`...)
		line = fhir.AppendJSONString(line, is.Code)
		if is.Details != "" {
			line = append(line, `,"details":{"text":`...)
			line = fhir.AppendJSONString(line, is.Details)
			line = append(line, '}')
		}
		if is.Diagnostics != "" {
			line = append(line, `,"diagnostics":`...)
			line = fhir.AppendJSONString(line, is.Diagnostics)
		}
		line = append(line, "}]}\n"...)
		if _, err := p.bw.Write(line); err != nil {
			return err
		}
	}
	return w.finishLocked(issuesKey)
}

// bulkProgress renders progress: a bar redrawn in place on a terminal,
// else plain lines (every status poll, about one a second while downloading).
type bulkProgress struct {
	out io.Writer
	tty bool

	mu        sync.Mutex
	last      time.Time
	lastFiles int
	lastPoll  int
	drawn     bool
	dlStart   time.Duration // Elapsed when downloading started
	dlSeen    bool
}

func newBulkProgress(out io.Writer, tty bool) *bulkProgress {
	return &bulkProgress{out: out, tty: tty, lastFiles: -1}
}

func (p *bulkProgress) report(pg bulk.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	switch pg.Phase {
	case bulk.PhasePolling:
		if pg.Polls == p.lastPoll {
			return
		}
		p.lastPoll = pg.Polls
		line := fmt.Sprintf("status: in progress (poll %d", pg.Polls)
		if pg.XProgress != "" {
			line += ", X-Progress: " + pg.XProgress
		}
		line += fmt.Sprintf("), next poll in %s", pg.RetryAfter.Round(time.Millisecond))
		p.emit(line)
	case bulk.PhaseDownloading:
		if !p.dlSeen {
			p.dlSeen, p.dlStart = true, pg.Elapsed
		}
		if pg.FilesDone == p.lastFiles && now.Sub(p.last) < time.Second {
			return
		}
		p.lastFiles, p.last = pg.FilesDone, now
		rate := 0.0
		if s := (pg.Elapsed - p.dlStart).Seconds(); s > 0 {
			rate = float64(pg.Resources) / s
		}
		line := fmt.Sprintf("downloading: files %d/%d, %d resources, %.0f resources/s", pg.FilesDone, pg.FilesTotal, pg.Resources, rate)
		if pg.Deleted > 0 {
			line += fmt.Sprintf(", %d deleted", pg.Deleted)
		}
		if p.tty {
			line = bar(pg.FilesDone, pg.FilesTotal) + " " + line
		}
		p.emit(line)
	}
}

func (p *bulkProgress) emit(line string) {
	if p.tty {
		fmt.Fprintf(p.out, "\r\x1b[K%s", line)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.out, line)
}

// finish ends a bar's line.
func (p *bulkProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprintln(p.out)
		p.drawn = false
	}
}

// bar draws [#####.....] for done of total.
func bar(done, total int) string {
	const width = 24
	n := 0
	if total > 0 {
		n = done * width / total
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
