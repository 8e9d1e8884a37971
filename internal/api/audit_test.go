package api

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

func TestAuditBatcherWritesEveryEventOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var writes atomic.Int32
	b := newAuditBatcher(func(_ context.Context, evs []store.AuditEvent) error {
		writes.Add(1)
		time.Sleep(2 * time.Millisecond) // a slow disk, so callers pile up
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			seen[e.Entity]++
		}
		return nil
	})
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.record(context.Background(), store.AuditEvent{Entity: "Patient/" + string(rune('a'+i%26)) + string(rune('0'+i/26))})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s written %d times", k, c)
		}
		total += c
	}
	if total != n {
		t.Errorf("%d events written, want %d", total, n)
	}
	if w := writes.Load(); w >= n/2 {
		t.Errorf("%d writes for %d concurrent events: no batching", w, n)
	}
	if b.leading || len(b.queue) != 0 {
		t.Errorf("batcher not idle after the burst: leading=%v queue=%d", b.leading, len(b.queue))
	}
}

func TestAuditBatcherReportsFailureToEveryCaller(t *testing.T) {
	boom := errors.New("disk full")
	b := newAuditBatcher(func(context.Context, []store.AuditEvent) error { time.Sleep(time.Millisecond); return boom })
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errors.Is(b.record(context.Background(), store.AuditEvent{}), boom) {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 50 {
		t.Errorf("%d of 50 callers saw the failure", failed.Load())
	}
}

func TestAuditWritesAreSpacedUnderLoadOnly(t *testing.T) {
	var writes atomic.Int32
	b := newAuditBatcher(func(context.Context, []store.AuditEvent) error { writes.Add(1); return nil })
	// A long interval keeps the timing checks far from scheduler noise.
	const interval = 200 * time.Millisecond
	b.interval = interval
	timed := func() time.Duration {
		start := time.Now()
		if err := b.record(context.Background(), store.AuditEvent{}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	if d := timed(); d >= interval/2 {
		t.Errorf("idle write took %v, want no wait", d)
	}
	if d := timed(); d < interval/2 {
		t.Errorf("back-to-back write took %v, want about %v", d, interval)
	}
	time.Sleep(interval + 50*time.Millisecond)
	if d := timed(); d >= interval/2 {
		t.Errorf("write after a pause took %v, want no wait", d)
	}
	if writes.Load() != 3 {
		t.Errorf("%d writes, want 3", writes.Load())
	}
}
