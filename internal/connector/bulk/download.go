package bulk

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mediflow/mediflow/internal/connector/fhirrest/scan"
	"github.com/mediflow/mediflow/internal/fhir"
)

var hdrFile = http.Header{"Accept": {"application/fhir+ndjson"}, "Accept-Encoding": {"gzip"}}

// errStalled is the cause given to a download cancelled by its watchdog.
var errStalled = errors.New("download stalled: no data within the stall timeout")

// download fetches every unfinished file with Config.Workers workers.
func (r *run) download(ctx context.Context) error {
	c := r.c
	r.mu.Lock()
	var todo []int
	for i, f := range r.job.Files {
		if f.Done {
			r.res.Skipped++
		} else {
			todo = append(todo, i)
		}
	}
	files := append([]FileState(nil), r.job.Files...)
	needToken := r.job.Manifest.RequiresAccessToken
	statusURL, _ := url.Parse(r.job.StatusURL)
	r.progressLocked()
	r.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan int)
	g.Go(func() error {
		defer close(work)
		for _, i := range todo {
			select {
			case work <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for w := 0; w < min(c.cfg.Workers, len(todo)); w++ {
		g.Go(func() error {
			wk := newWorker(c)
			for i := range work {
				fr := &fileRun{r: r, w: wk, idx: i, f: files[i], name: files[i].Name()}
				if err := fr.prepare(statusURL, needToken); err != nil {
					return err
				}
				if err := fr.fetch(gctx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// worker holds the buffers one download goroutine reuses from file to file.
type worker struct {
	c       *Client
	scanBuf []byte
	// arena holds the lines of the batch being built, each followed by
	// '\n' (whole, it is the batch's NDJSON); the bodies point into it, or
	// into the smaller array it grew from.
	arena []byte
	res   []Resource
	tombs []Tombstone
	types map[string]string // interned resource type names
}

func newWorker(c *Client) *worker {
	return &worker{
		c:       c,
		scanBuf: make([]byte, min(64<<10, c.cfg.MaxLineBytes)),
		arena:   make([]byte, 0, min(256<<10, c.cfg.BatchBytes+64<<10)), // grows up to a batch
		res:     make([]Resource, 0, c.cfg.BatchSize),
		types:   map[string]string{},
	}
}

// fileRun is the download of one file, across its attempts.
type fileRun struct {
	r     *run
	w     *worker
	idx   int
	f     FileState
	name  string
	u     *url.URL
	scope tokenScope

	done   int   // lines whose items the sink accepted (skipped on a retry)
	items  int64 // items delivered
	issues []Issue
	counts map[string]int
}

func (fr *fileRun) prepare(statusURL *url.URL, needToken bool) error {
	ref := statusURL
	if ref == nil {
		ref = fr.r.c.baseU
	}
	u, err := resolve(ref, fr.f.URL)
	if err != nil {
		return &Error{Op: "download", URL: fr.name, Err: fmt.Errorf("the manifest's file URL: %w", err)}
	}
	fr.u = u
	if needToken && fr.r.c.tokens != nil {
		if originOf(u) != fr.r.c.origin {
			return &Error{Op: "download", Method: http.MethodGet, URL: fr.name,
				Err: errors.New("the manifest requires the access token for a file outside the server's origin: refused")}
		}
		fr.scope = fileScope(u)
	}
	return nil
}

// fetch downloads the file, retrying transient failures, and commits it.
func (fr *fileRun) fetch(ctx context.Context) error {
	c := fr.r.c
	fails, unauth := 0, 0
	for {
		before := fr.done
		err := fr.attempt(ctx)
		if err == nil {
			return fr.r.commit(ctx, fr.idx, fr.items, fr.issues, fr.counts)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var e *Error
		if !errors.As(err, &e) || !e.transient {
			return err
		}
		e.transient = false
		if e.Status == http.StatusUnauthorized && unauth == 0 {
			unauth++
			continue
		}
		if fr.done > before {
			fails = 0 // progress was made: the budget is per stretch without progress
		}
		fails++
		e.Attempts = fails
		if fails > c.cfg.MaxRetries {
			return e
		}
		wait := c.backoff(fails - 1)
		if e.RetryAfter > 0 {
			wait = clamp(e.RetryAfter, 0, c.cfg.MaxPoll)
		}
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "bulk download failed, retrying",
			slog.String("url", fr.name), slog.Int("status", e.Status), slog.Int("failures", fails),
			slog.Int("resume_after_line", fr.done), slog.Duration("wait", wait))
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// attempt is one GET of the file, streamed to the sinks.
func (fr *fileRun) attempt(ctx context.Context) error {
	c := fr.r.c
	fail := func(e *Error, transient bool) error {
		e.Op, e.Method, e.URL, e.transient = "download", http.MethodGet, fr.name, transient
		return e
	}
	var tok string
	if fr.scope.origin != "" {
		t, err := c.token(ctx)
		if err != nil {
			return fail(&Error{Err: err}, tokenRetryable(err))
		}
		tok = t
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := c.cfg.StallTimeout
	watchdog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()

	resp, err := c.send(sctx, http.MethodGet, fr.u, hdrFile, tok, fr.scope)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if context.Cause(sctx) == errStalled {
			err = errStalled
		}
		return fail(&Error{Err: err}, true)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := readSmall(resp, 1<<20)
		e := &Error{Status: resp.StatusCode, Outcome: outcomeOf(body)}
		if d, ok := retryAfter(resp.Header, c.cfg.Now()); ok {
			e.RetryAfter = d
		}
		switch code := resp.StatusCode; {
		case code == http.StatusUnauthorized:
			if c.tokens != nil && tok != "" {
				c.tokens.Invalidate(tok)
				return fail(e, true)
			}
			return fail(e, false)
		case code == http.StatusNotFound || code == http.StatusGone:
			e.Err = ErrExpired
			return fail(e, false)
		case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
			return fail(e, true)
		default:
			return fail(e, false)
		}
	}
	var body io.Reader = &watchedReader{r: resp.Body, t: watchdog, d: stall}
	if strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fail(&Error{Status: resp.StatusCode, Err: fmt.Errorf("gzip: %w", readCause(err, sctx))}, true)
		}
		defer zr.Close()
		body = zr
	}
	err = fr.stream(ctx, &trackedReader{r: body})
	var re *readError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &re):
		return fail(&Error{Status: resp.StatusCode, Err: fmt.Errorf("reading the file: %w", readCause(re.err, sctx))}, true)
	default:
		return err
	}
}

func readCause(err error, sctx context.Context) error {
	if context.Cause(sctx) == errStalled {
		return errStalled
	}
	return err
}

// readError marks a failure to read the response body (retryable).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// watchedReader feeds the stall watchdog.
type watchedReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.t.Reset(w.d)
	}
	return n, err
}

// trackedReader remembers a failed read (anything but a clean EOF, gzip
// errors included) so the last, partial line is not taken for a line.
type trackedReader struct {
	r   io.Reader
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = &readError{err}
		return n, t.err
	}
	return n, err
}

// splitLines is bufio.ScanLines, except that the unterminated rest of a
// body whose reading failed is an error, not a line.
func (t *trackedReader) splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && t.err != nil && bytes.IndexByte(data, '\n') < 0 {
		return 0, nil, t.err
	}
	return bufio.ScanLines(data, atEOF)
}

// stream reads the file line by line in constant memory (one line at most
// MaxLineBytes, one batch at most BatchBytes) and delivers its items.
func (fr *fileRun) stream(ctx context.Context, rd *trackedReader) error {
	c := fr.r.c
	w := fr.w
	if fr.f.Kind == KindError {
		// Issues are kept until the file is committed: start over each attempt.
		fr.done, fr.items, fr.issues, fr.counts = 0, 0, nil, map[string]int{}
	}
	sc := bufio.NewScanner(rd)
	sc.Buffer(w.scanBuf, c.cfg.MaxLineBytes+1) // +1: room for the line's '\n'
	sc.Split(rd.splitLines)
	line := 0
	var batchBytes int64
	w.arena, w.res, w.tombs = w.arena[:0], w.res[:0], w.tombs[:0]
	flush := func() error {
		if err := ctx.Err(); err != nil {
			return err // nothing more reaches the sinks once the run is cancelled
		}
		switch {
		case len(w.res) > 0:
			var err error
			if bs := fr.r.opts.Batches; bs != nil {
				err = bs(ctx, Batch{Resources: w.res, NDJSON: w.arena[:len(w.arena):len(w.arena)]})
			} else {
				err = fr.r.opts.Resources(ctx, w.res)
			}
			if err != nil {
				return fmt.Errorf("bulk: %s: resource sink: %w", fr.name, err)
			}
			fr.items += int64(len(w.res))
			fr.r.delivered(int64(len(w.res)), 0, batchBytes)
		case len(w.tombs) > 0:
			if err := fr.r.opts.Deleted(ctx, w.tombs); err != nil {
				return fmt.Errorf("bulk: %s: tombstone sink: %w", fr.name, err)
			}
			fr.items += int64(len(w.tombs))
			fr.r.delivered(0, int64(len(w.tombs)), batchBytes)
		case batchBytes > 0:
			fr.r.delivered(0, 0, batchBytes)
		}
		fr.done = line
		clear(w.res)
		clear(w.tombs)
		w.res, w.tombs, batchBytes = w.res[:0], w.tombs[:0], 0
		if cap(w.arena) > 2*(c.cfg.BatchBytes+64<<10) {
			w.arena = make([]byte, 0, 256<<10) // drop a buffer grown by a huge line
		}
		w.arena = w.arena[:0]
		return nil
	}
	for sc.Scan() {
		line++
		if line <= fr.done {
			continue
		}
		b := bytes.TrimSpace(sc.Bytes())
		batchBytes += int64(len(sc.Bytes()) + 1)
		if len(b) == 0 {
			continue
		}
		switch fr.f.Kind {
		case KindOutput:
			if err := fr.resource(b, line); err != nil {
				return err
			}
		case KindDeleted:
			if err := fr.deleted(b, line); err != nil {
				return err
			}
		case KindError:
			if err := fr.outcome(b, line); err != nil {
				return err
			}
		}
		// BatchBytes bounds the bodies: the arena's newlines, one per
		// resource, do not count.
		if len(w.res)+len(w.tombs) >= c.cfg.BatchSize || len(w.arena)-len(w.res) >= c.cfg.BatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{File: fr.name, Line: line + 1, Err: fmt.Errorf("%w (%d bytes)", ErrLineTooLong, c.cfg.MaxLineBytes)}
		}
		return err
	}
	return flush()
}

func (fr *fileRun) badLine(line int, why string) error {
	return &LineError{File: fr.name, Line: line, Err: fmt.Errorf("%w: %s", ErrBadLine, why)}
}

// resource adds one output line to the batch.
func (fr *fileRun) resource(b []byte, line int) error {
	w := fr.w
	if !scan.Valid(b) {
		return fr.badLine(line, "not valid JSON")
	}
	typ, id, why := w.header(b)
	if why != "" {
		return fr.badLine(line, why)
	}
	start := len(w.arena)
	w.arena = append(w.arena, b...)
	end := len(w.arena)
	w.arena = append(w.arena, '\n')
	w.res = append(w.res, Resource{Type: typ, ID: id, Body: w.arena[start:end:end], File: fr.name, Line: line})
	return nil
}

// header reads resourceType and id, stopping as soon as both are seen.
func (w *worker) header(b []byte) (typ, id string, why string) {
	if typ, id, ok := w.compactHeader(b); ok {
		return typ, id, ""
	}
	return w.headerGeneral(b)
}

// compactHeader reads a line that starts {"resourceType":"<type>","id":"<id>"
// (compact, no escapes in either string: how servers write NDJSON) without
// walking it. ok is false for any other start, and for a type or id
// headerGeneral would refuse; where ok is true the result is
// headerGeneral's.
func (w *worker) compactHeader(b []byte) (typ, id string, ok bool) {
	const typKey, idKey = `{"resourceType":"`, `","id":"`
	if len(b) < len(typKey) || string(b[:len(typKey)]) != typKey {
		return "", "", false
	}
	rest := b[len(typKey):]
	q := bytes.IndexByte(rest, '"')
	if q <= 0 || bytes.IndexByte(rest[:q], '\\') >= 0 {
		return "", "", false
	}
	t := rest[:q]
	rest = rest[q:]
	if len(rest) < len(idKey) || string(rest[:len(idKey)]) != idKey {
		return "", "", false
	}
	rest = rest[len(idKey):]
	q = bytes.IndexByte(rest, '"')
	if q <= 0 || bytes.IndexByte(rest[:q], '\\') >= 0 {
		return "", "", false
	}
	if s, ok := w.types[string(t)]; ok {
		typ = s
	} else if s := string(t); validType(s) {
		if len(w.types) < 512 {
			w.types[s] = s
		}
		typ = s
	} else {
		return "", "", false
	}
	return typ, string(rest[:q]), true
}

// headerGeneral is header for a line of any form.
func (w *worker) headerGeneral(b []byte) (typ, id string, why string) {
	var bad string
	err := scan.Object(b, func(k, v []byte) bool {
		switch string(k) {
		case "resourceType":
			if len(v) < 2 || v[0] != '"' {
				bad = "resourceType is not a string"
				return false
			}
			inner := v[1 : len(v)-1]
			if s, ok := w.types[string(inner)]; ok {
				typ = s
			} else if s := string(inner); validType(s) {
				if len(w.types) < 512 {
					w.types[s] = s
				}
				typ = s
			} else {
				bad = "resourceType is not a resource type name"
				return false
			}
		case "id":
			s, err := scan.String(v)
			if err != nil || s == "" {
				bad = "id is not a non-empty string"
				return false
			}
			id = s
		}
		return typ == "" || id == ""
	})
	switch {
	case bad != "":
		return "", "", bad
	case err != nil:
		return "", "", "not a JSON object"
	case typ == "":
		return "", "", "no resourceType"
	case id == "":
		return "", "", "no id"
	}
	return typ, id, ""
}

// deleted reads one Bundle of a deleted file into tombstones.
func (fr *fileRun) deleted(b []byte, line int) error {
	var bun struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Request *struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bun); err != nil {
		return fr.badLine(line, "not a JSON Bundle")
	}
	if bun.ResourceType != "Bundle" {
		return fr.badLine(line, "not a Bundle")
	}
	for n, e := range bun.Entry {
		if e.Request == nil || !strings.EqualFold(e.Request.Method, http.MethodDelete) {
			continue
		}
		typ, id, ok := typeAndID(e.Request.URL)
		if !ok {
			return fr.badLine(line, fmt.Sprintf("entry %d: request.url is not Type/id", n))
		}
		fr.w.tombs = append(fr.w.tombs, Tombstone{Type: typ, ID: id, File: fr.name, Line: line})
	}
	return nil
}

// typeAndID reads "Type/id" from a relative or absolute resource URL.
func typeAndID(ref string) (string, string, bool) {
	ref = safeURL(ref)
	ref = strings.TrimRight(ref, "/")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return "", "", false
	}
	id := ref[j+1:]
	rest := ref[:j]
	typ := rest[strings.LastIndexByte(rest, '/')+1:]
	if !validType(typ) || id == "" {
		return "", "", false
	}
	return typ, id, true
}

// outcome reads one OperationOutcome of an error file.
func (fr *fileRun) outcome(b []byte, line int) error {
	oo, ok := fhir.ParseOutcome(b)
	if !ok {
		return fr.badLine(line, "not an OperationOutcome")
	}
	for _, is := range oo.Issue {
		fr.counts[is.Severity+"/"+is.Code]++
		fr.items++
		if len(fr.issues) >= fr.r.c.cfg.MaxIssues {
			continue
		}
		x := Issue{Severity: is.Severity, Code: is.Code, Diagnostics: is.Diagnostics, Expression: is.Expression, File: fr.name, Line: line}
		if is.Details != nil {
			x.Details = is.Details.Text
			if x.Details == "" && len(is.Details.Coding) > 0 {
				x.Details = is.Details.Coding[0].Code
			}
		}
		fr.issues = append(fr.issues, x)
	}
	return nil
}
