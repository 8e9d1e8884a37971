package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// crashPractice is the practice of the kill-and-restart test.
const crashPractice = "crash-clinic"

// listenerProc is one run of `mediflow hl7 listen` as a child process.
type listenerProc struct {
	cmd       *exec.Cmd
	processed *atomic.Int64 // "processed" lines seen, over all runs
	lastLine  *atomic.Int64 // unix nanos of the last processing line
	exited    chan struct{}
}

// The listener is killed (SIGKILL) at random moments while four senders
// stream 10,000 messages, each resending the same bytes until it gets an
// ACK, and restarted on the same store each time. Afterwards every message
// is stored exactly once and processed exactly once: each patient has one
// version per message about it, each from a different message, in order,
// and no message is left unprocessed.
func TestHL7KillAndRestartLosesAndDuplicatesNothing(t *testing.T) {
	total := 10_000
	if testing.Short() {
		total = 2_000
	}
	const senders = 4            // one sending facility each
	const patientsPerSender = 50 // each patient belongs to one facility
	dir := t.TempDir()
	bin := buildMediflow(t, dir)
	dbPath := filepath.Join(dir, "hl7.db")
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)

	var processed, lastLine atomic.Int64
	var logs logTail
	start := func() *listenerProc {
		t.Helper()
		cmd := exec.Command(bin, "hl7", "listen", "--db", dbPath, "--practice", crashPractice, "--addr", addr,
			"--name", "feed", "--verbose", "--log-level", "warn")
		cmd.Stderr = &logs
		ready := make(chan struct{})
		readyOnce := gosync.OnceFunc(func() { close(ready) })
		cmd.Stdout = &lineSink{line: func(line string) {
			switch {
			case strings.HasPrefix(line, "listening "):
				readyOnce()
			case strings.Contains(line, " processed #"):
				processed.Add(1)
				lastLine.Store(time.Now().UnixNano())
			case strings.Contains(line, " quarantined #"), strings.Contains(line, " failed #"), strings.Contains(line, " ignored #"):
				logs.Write([]byte("stdout: " + line + "\n"))
				lastLine.Store(time.Now().UnixNano())
			}
		}}
		lastLine.Store(time.Now().UnixNano())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &listenerProc{cmd: cmd, processed: &processed, lastLine: &lastLine, exited: make(chan struct{})}
		go func() {
			cmd.Wait()
			close(p.exited)
		}()
		select {
		case <-ready:
		case <-p.exited:
			t.Fatalf("mediflow hl7 listen exited before listening:\n%s", logs.String())
		case <-time.After(20 * time.Second):
			t.Fatalf("mediflow hl7 listen did not start listening:\n%s", logs.String())
		}
		return p
	}
	kill := func(p *listenerProc) {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener output (tail):\n%s", logs.String())
		}
	})

	var mu gosync.Mutex
	proc := start()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		kill(proc)
	})

	// Senders: each owns a facility and its patients, and sends its
	// messages one after the other, resending on a missing ACK.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var acked, attempts atomic.Int64
	perSender := total / senders
	errc := make(chan error, senders)
	for s := range senders {
		go func() {
			c := mllp.NewClient(mllp.ClientConfig{Addr: addr, DialTimeout: time.Second, AckTimeout: 2 * time.Second,
				MaxAttempts: 1000, Backoff: 20 * time.Millisecond})
			defer c.Close()
			for k := range perSender {
				msg, ctrl := crashMessage(s, k, patientsPerSender)
				for {
					attempts.Add(1)
					a, err := c.Send(ctx, msg)
					if err == nil {
						res, perr := ack.Parse(a)
						if perr != nil || res.Code != "AA" || res.ControlID != ctrl {
							errc <- fmt.Errorf("sender %d message %d: ACK %+v (%v)", s, k, res, perr)
							return
						}
						break
					}
					if ctx.Err() != nil {
						errc <- fmt.Errorf("sender %d message %d: %w", s, k, err)
						return
					}
					// All of the client's attempts failed (the listener was
					// down for long): the same bytes again.
					time.Sleep(50 * time.Millisecond)
				}
				acked.Add(1)
			}
			errc <- nil
		}()
	}

	// The killer: at random moments while messages flow, and once after
	// the last ACK while the backlog is being processed.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	thresholds := []float64{0.08, 0.22, 0.37, 0.51, 0.66, 0.8, 0.93}
	sendersDone := 0
	var sendErr error
	for _, th := range thresholds {
		for float64(acked.Load()) < th*float64(total) && sendersDone < senders {
			select {
			case err := <-errc:
				sendersDone++
				sendErr = errors.Join(sendErr, err)
			case <-time.After(2 * time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		mu.Lock()
		kill(proc)
		kills++
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond) // down for a while
		}
		proc = start()
		mu.Unlock()
	}
	for sendersDone < senders {
		sendErr = errors.Join(sendErr, <-errc)
		sendersDone++
	}
	if sendErr != nil {
		t.Fatalf("senders: %v", sendErr)
	}
	if n := acked.Load(); n != int64(perSender*senders) {
		t.Fatalf("%d messages acknowledged, want %d", n, perSender*senders)
	}
	// One more kill during processing, then let the last run finish the
	// backlog: it is done when no processing line came for 2 s.
	time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
	mu.Lock()
	kill(proc)
	kills++
	proc = start()
	mu.Unlock()
	for {
		last := time.Unix(0, lastLine.Load())
		if time.Since(last) > 2*time.Second {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("processing did not settle: %v", ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	proc.cmd.Process.Signal(os.Interrupt)
	select {
	case <-proc.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("mediflow hl7 listen did not stop on interrupt")
	}
	mu.Unlock()
	t.Logf("%d messages, %d send attempts, %d kills, %d processing lines", total, attempts.Load(), kills, processed.Load())

	// The store: every message once, every one processed, no double effects.
	st, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bg := context.Background()
	var msgs []store.HL7Message
	for after := int64(0); ; {
		page, err := st.ListHL7Messages(bg, crashPractice, store.HL7Filter{Ascending: true, AfterID: after, Limit: 5000})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, page...)
		if len(page) < 5000 {
			break
		}
		after = page[len(page)-1].ID
	}
	byCtrl := map[string]store.HL7Message{}
	statuses := map[string]int{}
	dups := 0
	for _, m := range msgs {
		if prev, ok := byCtrl[m.ControlID]; ok {
			t.Errorf("control id %s stored twice: messages %d and %d", m.ControlID, prev.ID, m.ID)
		}
		byCtrl[m.ControlID] = m
		statuses[m.Status]++
		dups += m.Duplicates
	}
	if len(msgs) != perSender*senders {
		t.Errorf("%d messages stored, want %d", len(msgs), perSender*senders)
	}
	if statuses[store.MsgProcessed] != len(msgs) {
		t.Errorf("statuses %v, want all %d processed", statuses, len(msgs))
	}
	t.Logf("statuses %v; %d duplicate deliveries recognised", statuses, dups)

	// Each patient: one version per message about it, from distinct
	// messages in id order, the last one's content current.
	checked := 0
	for s := range senders {
		for p := range patientsPerSender {
			mrn := crashMRN(s, p)
			var want []int64 // message ids about this patient, in order
			for k := p; k < perSender; k += patientsPerSender {
				_, ctrl := crashMessage(s, k, patientsPerSender)
				m, ok := byCtrl[ctrl]
				if !ok {
					t.Fatalf("message %s was acknowledged but is not stored", ctrl)
				}
				want = append(want, m.ID)
			}
			page, err := st.Search(bg, crashPractice, store.Query{ResourceType: "Patient", Count: 10,
				Params: []store.SearchParam{{Name: "identifier", Values: []string{mrn}}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Resources) != 1 {
				t.Fatalf("patient %s: %d Patient resources, want 1", mrn, len(page.Resources))
			}
			hist, err := st.History(bg, crashPractice, "Patient", page.Resources[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for i := len(hist) - 1; i >= 0; i-- { // History is newest first
				got = append(got, hist[i].RawID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("patient %s: versions come from messages %v, want %v", mrn, got, want)
			}
			var body struct {
				Address []struct{ Line []string } `json:"address"`
			}
			json.Unmarshal(hist[0].Body, &body)
			lastK := p + (len(want)-1)*patientsPerSender
			if len(body.Address) == 0 || len(body.Address[0].Line) == 0 || body.Address[0].Line[0] != crashStreet(s, lastK) {
				t.Errorf("patient %s: current address %+v, want the last message's %q", mrn, body.Address, crashStreet(s, lastK))
			}
			checked++
		}
	}
	counts, err := st.CountResources(bg, crashPractice)
	if err != nil {
		t.Fatal(err)
	}
	if counts["Patient"] != senders*patientsPerSender {
		t.Errorf("%d patients, want %d", counts["Patient"], senders*patientsPerSender)
	}
	t.Logf("%d patients checked; resources %v", checked, counts)
}

func crashMRN(sender, patient int) string { return fmt.Sprintf("MRN%d%03d", sender, patient) }

func crashStreet(sender, k int) string { return fmt.Sprintf("%d Crash Street %d", k, sender) }

// crashMessage is message k of a sender: an ADT^A08 for one of its
// patients whose address changes with every message.
func crashMessage(sender, k, patients int) ([]byte, string) {
	ctrl := fmt.Sprintf("S%dK%05d", sender, k)
	mrn := crashMRN(sender, k%patients)
	msg := "MSH|^~\\&|EHR|FAC" + strconv.Itoa(sender) + "|MEDIFLOW|CRASH|20240501120000||ADT^A08^ADT_A01|" + ctrl + "|P|2.5.1\r" +
		"EVN|A08|20240501120000\r" +
		"PID|1||" + mrn + "^^^HOSP^MR||Crashtest^Pat" + strconv.Itoa(k%patients) + "||19750101|F|||" +
		crashStreet(sender, k) + "^^Springfield^IL^62701\r"
	return []byte(msg), ctrl
}

// buildMediflow builds the mediflow binary into dir.
func buildMediflow(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "mediflow")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mediflow")
	cmd.Dir = repo.RootT(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort finds a loopback port that is free now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lineSink calls line for every complete line written to it.
type lineSink struct {
	mu   gosync.Mutex
	part []byte
	line func(string)
}

func (l *lineSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := slices.Index(l.part, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

// logTail keeps the last 16 KiB written to it.
type logTail struct {
	mu  gosync.Mutex
	buf []byte
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > 16<<10 {
		l.buf = append([]byte(nil), l.buf[len(l.buf)-16<<10:]...)
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
