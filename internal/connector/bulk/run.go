package bulk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// run is one Export or Resume: the job state and the counters, guarded by
// mu; commits (FileDone, marking a file, Checkpoint) are serialised by
// commitMu.
type run struct {
	c     *Client
	opts  Options
	start time.Time

	commitMu sync.Mutex

	mu        sync.Mutex
	job       Job
	phase     Phase
	polls     int
	xprogress string
	nextPoll  time.Duration
	res       Result
}

// Export kicks off an export, waits for it and downloads its files to the
// sinks. On failure the returned Result (non-nil once the kick-off
// succeeded) holds the job state to Resume from.
func (c *Client) Export(ctx context.Context, req Request, opts Options) (*Result, error) {
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	r := c.newRun(opts, Job{})
	r.setPhase(PhaseKickoff)
	job, err := c.Kickoff(ctx, req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.job = job
	r.mu.Unlock()
	if err := r.checkpoint(ctx); err != nil {
		return r.finish(ctx, err)
	}
	return r.finish(ctx, r.rest(ctx))
}

// Resume continues a job from a saved state: it polls when the manifest had
// not arrived yet, then downloads only the files not marked finished.
func (c *Client) Resume(ctx context.Context, job Job, opts Options) (*Result, error) {
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	if job.StatusURL == "" {
		return nil, errors.New("bulk: resume: the job has no status URL")
	}
	if job.Manifest != nil && len(job.Files) == 0 && len(filesOf(job.Manifest)) > 0 {
		job.Files = filesOf(job.Manifest)
	}
	r := c.newRun(opts, job.clone())
	return r.finish(ctx, r.rest(ctx))
}

func checkOptions(opts Options) error {
	if opts.Resources == nil && opts.Batches == nil {
		return errors.New("bulk: Options.Resources or Options.Batches (the resource sink) is required")
	}
	return nil
}

func (c *Client) newRun(opts Options, job Job) *run {
	return &run{c: c, opts: opts, start: c.cfg.Now(), job: job, res: Result{IssueCounts: map[string]int{}}}
}

// rest polls (when needed) and downloads.
func (r *run) rest(ctx context.Context) error {
	if r.job.Manifest == nil {
		r.setPhase(PhasePolling)
		if err := r.poll(ctx); err != nil {
			return err
		}
		if err := r.checkpoint(ctx); err != nil {
			return err
		}
	}
	if len(r.job.Manifest.Deleted) > 0 && r.opts.Deleted == nil {
		return errors.New("bulk: the manifest lists deleted files but Options.Deleted (the tombstone sink) is nil")
	}
	r.setPhase(PhaseDownloading)
	return r.download(ctx)
}

// finish settles the result: cancel or delete the job as asked.
func (r *run) finish(ctx context.Context, err error) (*Result, error) {
	c := r.c
	if err != nil && ctx.Err() != nil && r.opts.CancelOnAbort && r.job.StatusURL != "" && !r.job.Complete() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if cerr := c.Cancel(cctx, r.job.StatusURL); cerr == nil || errors.Is(cerr, ErrExpired) {
			r.res.Canceled = true
		} else {
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "bulk: cancelling the aborted job failed", slog.String("error", cerr.Error()))
		}
		cancel()
	}
	if err == nil && r.opts.DeleteWhenDone {
		if derr := c.Cancel(ctx, r.job.StatusURL); derr != nil && !errors.Is(derr, ErrExpired) {
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "bulk: deleting the finished job failed", slog.String("error", derr.Error()))
		}
	}
	if err == nil {
		r.setPhase(PhaseDone)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.res
	res.Job = r.job.clone()
	res.Duration = c.cfg.Now().Sub(r.start)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return &res, err
}

func (r *run) setPhase(p Phase) {
	r.mu.Lock()
	r.phase = p
	r.progressLocked()
	r.mu.Unlock()
}

// progressLocked reports a snapshot; r.mu is held.
func (r *run) progressLocked() {
	if r.opts.Progress == nil {
		return
	}
	p := Progress{
		Phase: r.phase, Polls: r.polls, XProgress: r.xprogress, RetryAfter: r.nextPoll,
		Resources: r.res.Resources, Deleted: r.res.Deleted, Issues: int64(sumCounts(r.res.IssueCounts)),
		Bytes: r.res.Bytes, FilesTotal: len(r.job.Files), Elapsed: r.c.cfg.Now().Sub(r.start),
	}
	for _, f := range r.job.Files {
		if f.Done {
			p.FilesDone++
		}
	}
	r.opts.Progress(p)
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// checkpoint hands a copy of the job to Options.Checkpoint.
func (r *run) checkpoint(ctx context.Context) error {
	if r.opts.Checkpoint == nil {
		return nil
	}
	r.mu.Lock()
	j := r.job.clone()
	r.mu.Unlock()
	if err := r.opts.Checkpoint(ctx, j); err != nil {
		return fmt.Errorf("bulk: checkpoint: %w", err)
	}
	return nil
}

// commit marks file i finished: FileDone, the mark, Checkpoint, serialised.
func (r *run) commit(ctx context.Context, i int, items int64, issues []Issue, counts map[string]int) error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err // a cancelled run commits nothing more
	}
	r.mu.Lock()
	f := r.job.Files[i]
	r.mu.Unlock()
	f.Done, f.Items = true, items
	if r.opts.FileDone != nil {
		if err := r.opts.FileDone(ctx, f); err != nil {
			return fmt.Errorf("bulk: %s: %w", f.Name(), err)
		}
	}
	r.mu.Lock()
	r.job.Files[i] = f
	r.res.Files++
	for _, is := range issues {
		if len(r.res.Issues) < r.c.cfg.MaxIssues {
			r.res.Issues = append(r.res.Issues, is)
		}
	}
	for k, v := range counts {
		r.res.IssueCounts[k] += v
	}
	r.progressLocked()
	r.mu.Unlock()
	return r.checkpoint(ctx)
}

// delivered adds to the counters after a sink accepted a batch.
func (r *run) delivered(resources, deleted, bytes int64) {
	r.mu.Lock()
	r.res.Resources += resources
	r.res.Deleted += deleted
	r.res.Bytes += bytes
	r.progressLocked()
	r.mu.Unlock()
}
