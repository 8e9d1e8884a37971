package hl7in

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/store"
)

func newTestPipeline(t *testing.T, st Store, conv Converter, mod func(*Options), ls ...Listener) *Pipeline {
	t.Helper()
	o := Options{Store: st, Converter: conv, Practices: []string{testPractice}, RetryBackoff: 10 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	p, err := New(o, ls)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Messages of one sending facility are converted in the order they were
// stored; different facilities run at the same time.
func TestProcessorKeepsOrderPerFacility(t *testing.T) {
	st := openStore(t)
	conv := newFakeConverter()
	conv.delay = 2 * time.Millisecond
	var bodies []string
	want := map[string][]string{}
	for i := range 60 {
		fac := fmt.Sprintf("FAC%d", i%3)
		c := ctrl(i)
		want[fac] = append(want[fac], c)
		bodies = append(bodies, adt("A08", fac, c, fmt.Sprintf("M%d", i%7), fmt.Sprintf("Fam%d", i)))
	}
	putMessages(t, st, "feed", bodies...)
	runPipeline(t, newTestPipeline(t, st, conv, func(o *Options) { o.Workers = 3 }))
	counts := waitNone(t, st)
	if counts[store.MsgProcessed] != 60 {
		t.Fatalf("counts %v, want 60 processed", counts)
	}
	for fac, w := range want {
		if got := conv.orderOf(fac); !slices.Equal(got, w) {
			t.Errorf("facility %s converted in order %v, want %v", fac, got, w)
		}
	}
	if conv.maxAtOnce < 2 {
		t.Errorf("at most %d conversion ran at once; facilities should run in parallel", conv.maxAtOnce)
	}
	// The last ADT of each patient wins: M0 was last written by message 56 (Fam56).
	if f := family(t, st, "p-M0"); f != "Fam56" {
		t.Errorf("Patient/p-M0 family %q, want Fam56", f)
	}
}

// What a stopped processor left unprocessed is processed by the next one.
func TestProcessorPicksUpStoredMessagesAfterRestart(t *testing.T) {
	path := t.TempDir() + "/m.db"
	st := openStoreAt(t, path)
	ids := putMessages(t, st, "feed", adt("A01", "F", "A1", "M1", "One"), adt("A01", "F", "A2", "M2", "Two"))
	// Nobody processed them: they wait as received.
	for _, id := range ids {
		if m, _ := st.GetHL7Message(t.Context(), testPractice, id); m.Status != store.MsgReceived {
			t.Fatalf("message %d is %s before any processor ran", id, m.Status)
		}
	}
	st.Close()
	st = openStoreAt(t, path)
	runPipeline(t, newTestPipeline(t, st, newFakeConverter(), nil))
	for _, id := range ids {
		m := waitStatus(t, st, id, store.MsgProcessed)
		if m.ProcessedAt.IsZero() || m.Attempts != 1 || m.Error != "" {
			t.Errorf("message %d: %+v", id, m)
		}
	}
	if f := family(t, st, "p-M2"); f != "Two" {
		t.Errorf("family %q", f)
	}
}

// crashingStore fails the first UpdateHL7Message to processed and cancels
// the pipeline, as a kill between the resource write and the status update
// would.
type crashingStore struct {
	Store
	crash  context.CancelFunc
	once   sync.Once
	writes atomic.Int64
}

func (s *crashingStore) WriteResources(ctx context.Context, practice string, ws []store.ResourceWrite) ([]store.WriteResult, error) {
	s.writes.Add(1)
	return s.Store.WriteResources(ctx, practice, ws)
}

func (s *crashingStore) UpdateHL7Message(ctx context.Context, practice string, id int64, u store.HL7Update) error {
	crashed := false
	if u.Status == store.MsgProcessed {
		s.once.Do(func() { crashed = true })
	}
	if crashed {
		s.crash()
		return errors.New("killed")
	}
	return s.Store.UpdateHL7Message(ctx, practice, id, u)
}

// A crash after the resources were written but before the message was
// marked processed: the message is processed again on restart, and the
// rewrite is Unchanged, so the resource still has exactly one version.
func TestCrashBetweenWriteAndMark(t *testing.T) {
	st := openStore(t)
	ids := putMessages(t, st, "feed", oru("LAB", "R1", "M9", "2345-7", "105"))

	ctx, cancel := context.WithCancel(t.Context())
	cs := &crashingStore{Store: st, crash: cancel}
	p := newTestPipeline(t, cs, newFakeConverter(), nil)
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if cs.writes.Load() != 1 {
		t.Fatalf("first run wrote %d times, want 1", cs.writes.Load())
	}
	m, _ := st.GetHL7Message(t.Context(), testPractice, ids[0])
	if m.Status != store.MsgReceived {
		t.Fatalf("after the crash the message is %s, want still received", m.Status)
	}
	if n := versions(t, st, "Observation", "o-M9-2345-7"); n != 1 {
		t.Fatalf("%d versions after the first run", n)
	}

	// Restart: processed once more, nothing new written.
	var events []Event
	var mu sync.Mutex
	p2 := newTestPipeline(t, st, newFakeConverter(), func(o *Options) {
		o.OnProcessed = func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
	})
	runPipeline(t, p2)
	waitStatus(t, st, ids[0], store.MsgProcessed)
	if n := versions(t, st, "Observation", "o-M9-2345-7"); n != 1 {
		t.Errorf("%d versions after reprocessing, want 1", n)
	}
	// The event is reported after the status is stored: wait for it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n > 0 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 1 || events[0].Written != 0 || events[0].Unchanged != 1 {
		t.Errorf("reprocessing events %+v, want one with 0 written and 1 unchanged", events)
	}
}

// failingWrites fails every WriteResources.
type failingWrites struct {
	Store
	calls atomic.Int64
}

func (s *failingWrites) WriteResources(context.Context, string, []store.ResourceWrite) ([]store.WriteResult, error) {
	s.calls.Add(1)
	return nil, errors.New("disk full")
}

// A store error is retried with backoff, the message waits as failed, and
// after MaxAttempts it is quarantined; later messages of the facility wait
// for it meanwhile.
func TestRetryThenQuarantine(t *testing.T) {
	st := openStore(t)
	ids := putMessages(t, st, "feed", adt("A01", "F", "X1", "M1", "One"), adt("A08", "F", "X2", "M1", "Two"))
	fw := &failingWrites{Store: st}
	runPipeline(t, newTestPipeline(t, fw, newFakeConverter(), func(o *Options) { o.MaxAttempts = 3 }))
	m := waitStatus(t, st, ids[0], store.MsgQuarantined)
	if m.Attempts != 3 || !contains(m.Error, "gave up after 3 attempts") || !contains(m.Error, "disk full") {
		t.Errorf("quarantined message: attempts %d error %q", m.Attempts, m.Error)
	}
	waitStatus(t, st, ids[1], store.MsgQuarantined)
	if fw.calls.Load() != 6 {
		t.Errorf("%d writes, want 3 per message", fw.calls.Load())
	}
}

// A transient store error: failed once, then processed.
func TestRetryRecovers(t *testing.T) {
	st := openStore(t)
	ids := putMessages(t, st, "feed", adt("A01", "F", "Y1", "M1", "One"))
	fs := &flakyWrites{Store: st}
	fs.left.Store(2)
	var mu sync.Mutex
	var statuses []string
	runPipeline(t, newTestPipeline(t, fs, newFakeConverter(), func(o *Options) {
		o.OnProcessed = func(ev Event) { mu.Lock(); statuses = append(statuses, ev.Status); mu.Unlock() }
	}))
	m := waitStatus(t, st, ids[0], store.MsgProcessed)
	if m.Attempts != 3 || m.Error != "" {
		t.Errorf("attempts %d error %q, want 3 and none", m.Attempts, m.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(statuses, []string{store.MsgFailed, store.MsgFailed, store.MsgProcessed}) {
		t.Errorf("events %v", statuses)
	}
}

type flakyWrites struct {
	Store
	left atomic.Int64
}

func (s *flakyWrites) WriteResources(ctx context.Context, practice string, ws []store.ResourceWrite) ([]store.WriteResult, error) {
	if s.left.Add(-1) >= 0 {
		return nil, errors.New("database is locked")
	}
	return s.Store.WriteResources(ctx, practice, ws)
}

// Types without conversion are ignored, or quarantined by policy; a
// conversion error is quarantined with its reason.
func TestUnsupportedAndConversionErrors(t *testing.T) {
	st := openStore(t)
	zzz := "MSH|^~\\&|EHR|F|MF|C|20240501||ZZZ^Z01|Z1|P|2.5.1\rPID|1||M1^^^H^MR\r"
	zzz2 := "MSH|^~\\&|EHR|F|MF|C|20240501||ZZZ^Z01|Z2|P|2.5.1\rPID|1||M1^^^H^MR\r"
	bad := adt("A01", "F", "B1", "BAD", "Doe")
	ids := putMessages(t, st, "lenient", zzz)
	ids = append(ids, putMessages(t, st, "strict", zzz2)...)
	ids = append(ids, putMessages(t, st, "lenient", bad)...)
	p := newTestPipeline(t, st, newFakeConverter(), func(o *Options) {
		o.Channels = []Listener{{Practice: testPractice, Name: "strict", Unsupported: UnsupportedQuarantine}}
	})
	runPipeline(t, p)
	m := waitStatus(t, st, ids[0], store.MsgIgnored, store.MsgQuarantined)
	if m.Status != store.MsgIgnored || m.Error != "no conversion for ZZZ^Z01" || m.ProcessedAt.IsZero() {
		t.Errorf("unsupported on an ignore channel: %+v", m)
	}
	m = waitStatus(t, st, ids[1], store.MsgIgnored, store.MsgQuarantined)
	if m.Status != store.MsgQuarantined || m.Error != "no conversion for ZZZ^Z01" {
		t.Errorf("unsupported on a quarantine channel: %+v", m)
	}
	m = waitStatus(t, st, ids[2], store.MsgQuarantined, store.MsgProcessed)
	if m.Status != store.MsgQuarantined || m.Error != "conversion: PID-3 has no usable identifier" {
		t.Errorf("conversion error: %+v", m)
	}
}

// A quarantined message is processed after the cause is fixed and it is
// replayed; replay needs a status for filters and skips what waits already.
func TestReplayAfterFix(t *testing.T) {
	st := openStore(t)
	conv := newFakeConverter()
	conv.setFail(func(h hl7.Header) error {
		if h.TriggerEvent == "A04" {
			return errors.New("no spec for A04 yet")
		}
		return nil
	})
	ids := putMessages(t, st, "feed", adt("A04", "F", "R1", "M1", "Registered"), adt("A01", "F", "R2", "M2", "Admitted"))
	p := newTestPipeline(t, st, conv, nil)
	runPipeline(t, p)
	m := waitStatus(t, st, ids[0], store.MsgQuarantined)
	if m.Error != "conversion: no spec for A04 yet" {
		t.Errorf("error %q", m.Error)
	}
	waitStatus(t, st, ids[1], store.MsgProcessed)

	if _, err := p.Replay(t.Context(), testPractice, Selection{Filter: store.HL7Filter{MessageCode: "ADT"}}); !errors.Is(err, ErrNoStatus) {
		t.Errorf("replay without status: %v", err)
	}
	if _, err := p.Replay(t.Context(), testPractice, Selection{Filter: store.HL7Filter{Status: []string{store.MsgReceived}}}); err == nil {
		t.Errorf("replay from received should be refused")
	}

	conv.setFail(nil) // the fix
	res, err := p.Replay(t.Context(), testPractice, Selection{Filter: store.HL7Filter{Status: []string{store.MsgQuarantined}}})
	if err != nil || res.Replayed != 1 || res.FirstID != ids[0] {
		t.Fatalf("replay: %+v %v", res, err)
	}
	m = waitStatus(t, st, ids[0], store.MsgProcessed)
	if m.Error != "" || m.Attempts != 2 {
		t.Errorf("after replay: attempts %d error %q", m.Attempts, m.Error)
	}
	if f := family(t, st, "p-M1"); f != "Registered" {
		t.Errorf("family %q", f)
	}
	if got := conv.orderOf("F"); !slices.Equal(got, []string{"R1", "R2", "R1"}) {
		t.Errorf("conversions %v", got)
	}

	// Replay by id of a processed message: content unchanged, no new version.
	res, err = p.Replay(t.Context(), testPractice, Selection{IDs: []int64{ids[1]}})
	if err != nil || res.Replayed != 1 {
		t.Fatalf("replay by id: %+v %v", res, err)
	}
	waitStatus(t, st, ids[1], store.MsgProcessed)
	waitNone(t, st)
	if n := versions(t, st, "Patient", "p-M2"); n != 1 {
		t.Errorf("%d versions of p-M2 after replaying its message", n)
	}
}

// Replaying an old message does not put back data a later message of the
// channel wrote.
func TestReplayDoesNotRevertNewerData(t *testing.T) {
	st := openStore(t)
	ids := putMessages(t, st, "feed", adt("A01", "F", "S1", "M1", "Old"), adt("A08", "F", "S2", "M1", "New"))
	var mu sync.Mutex
	var last Event
	p := newTestPipeline(t, st, newFakeConverter(), func(o *Options) {
		o.OnProcessed = func(ev Event) { mu.Lock(); last = ev; mu.Unlock() }
	})
	runPipeline(t, p)
	waitStatus(t, st, ids[1], store.MsgProcessed)
	if _, err := p.Replay(t.Context(), testPractice, Selection{IDs: []int64{ids[0]}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, ids[0], store.MsgProcessed)
	waitNone(t, st)
	if f := family(t, st, "p-M1"); f != "New" {
		t.Errorf("family %q after replaying the older message, want New", f)
	}
	if n := versions(t, st, "Patient", "p-M1"); n != 2 {
		t.Errorf("%d versions, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if last.ID != ids[0] || last.Stale != 1 || last.Written != 0 {
		t.Errorf("replay event %+v, want 1 stale", last)
	}
}

// The processor holds a bounded number of messages in memory and still
// gets through a backlog larger than that.
func TestProcessorBacklogLargerThanQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 5,000 messages")
	}
	st := openStore(t)
	n := maxQueued + 1000
	bodies := make([]string, 0, 500)
	for i := range n {
		bodies = append(bodies, adt("A08", fmt.Sprintf("F%d", i%5), ctrl(i), fmt.Sprintf("M%d", i%50), fmt.Sprintf("F%d", i)))
		if len(bodies) == cap(bodies) {
			putMessages(t, st, "feed", bodies...)
			bodies = bodies[:0]
		}
	}
	putMessages(t, st, "feed", bodies...)
	conv := newFakeConverter()
	runPipeline(t, newTestPipeline(t, st, conv, func(o *Options) { o.Workers = 8 }))
	counts := waitNone(t, st)
	if counts[store.MsgProcessed] != n {
		t.Fatalf("counts %v, want %d processed", counts, n)
	}
	for f := range 5 {
		got := conv.orderOf(fmt.Sprintf("F%d", f))
		if want := (n - f + 4) / 5; len(got) != want || !slices.IsSorted(got) {
			t.Errorf("facility F%d: %d conversions, sorted %v", f, len(got), slices.IsSorted(got))
		}
	}
}
