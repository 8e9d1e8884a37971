package hl7in

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

const testPractice = "clinic"

// openStore opens a fresh SQLite store that lives as long as the test.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	return openStoreAt(t, filepath.Join(t.TempDir(), "mediflow.db"))
}

func openStoreAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// adt builds an ADT message of a sending facility for patient mrn.
func adt(trigger, facility, control, mrn, family string) string {
	return "MSH|^~\\&|EHR|" + facility + "|MEDIFLOW|CLINIC|20240501120000||ADT^" + trigger + "^ADT_A01|" + control + "|P|2.5.1\r" +
		"EVN|" + trigger + "|20240501120000\r" +
		"PID|1||" + mrn + "^^^HOSP^MR||" + family + "^Pat||19800101|F\r"
}

// oru builds a result message with one observation for patient mrn.
func oru(facility, control, mrn, code, value string) string {
	return "MSH|^~\\&|LAB|" + facility + "|MEDIFLOW|CLINIC|20240501120000||ORU^R01^ORU_R01|" + control + "|P|2.5.1\r" +
		"PID|1||" + mrn + "^^^HOSP^MR||Doe^Pat\r" +
		"OBR|1|||" + code + "^Panel^LN\r" +
		"OBX|1|NM|" + code + "^Test^LN||" + value + "|mg/dL|||||F\r"
}

// a40 merges patient from into patient into.
func a40(facility, control, into, from string) string {
	return "MSH|^~\\&|EHR|" + facility + "|MEDIFLOW|CLINIC|20240501120000||ADT^A40^ADT_A39|" + control + "|P|2.5.1\r" +
		"EVN|A40|20240501120000\r" +
		"PID|1||" + into + "^^^HOSP^MR||Doe^Pat\r" +
		"MRG|" + from + "^^^HOSP^MR\r"
}

// fakeConverter is a tiny, deterministic stand-in for v2fhir: ADT gives a
// Patient, ORU an Observation of the patient, A40 a merge, message code
// ZZZ is unsupported, a PID-3 of "BAD" is a conversion error. It records
// the order in which it saw control ids per sending facility, and how
// many conversions ran at once.
type fakeConverter struct {
	mu        sync.Mutex
	order     map[string][]string // facility -> control ids
	running   int
	maxAtOnce int
	delay     time.Duration
	// fail, when set, decides an error for a message (nil: convert).
	fail func(h hl7.Header) error
}

func newFakeConverter() *fakeConverter { return &fakeConverter{order: map[string][]string{}} }

func (c *fakeConverter) Convert(m *hl7.Message) (*v2fhir.Result, error) {
	h := m.Header()
	c.mu.Lock()
	c.order[h.SendingFacility] = append(c.order[h.SendingFacility], h.ControlID)
	c.running++
	c.maxAtOnce = max(c.maxAtOnce, c.running)
	fail, delay := c.fail, c.delay
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running--
		c.mu.Unlock()
	}()
	if delay > 0 {
		time.Sleep(delay)
	}
	if fail != nil {
		if err := fail(h); err != nil {
			return nil, err
		}
	}
	if h.MessageCode == "ZZZ" {
		return nil, &v2fhir.UnsupportedError{MessageCode: h.MessageCode, TriggerEvent: h.TriggerEvent}
	}
	mrn, _ := m.Get("PID-3-1")
	if mrn == "" || mrn == "BAD" {
		return nil, errors.New("PID-3 has no usable identifier")
	}
	pid := "p-" + mrn
	family, _ := m.Get("PID-5-1")
	res := &v2fhir.Result{}
	switch {
	case h.MessageCode == "ADT" && h.TriggerEvent == "A40":
		from, _ := m.Get("MRG-1-1")
		res.Merges = append(res.Merges, v2fhir.Merge{Type: "Patient", From: "p-" + from, Into: pid})
	case h.MessageCode == "ADT":
		res.Resources = append(res.Resources, v2fhir.Resource{Type: "Patient", ID: pid,
			Body: mustJSON(map[string]any{"resourceType": "Patient", "id": pid, "name": []any{map[string]any{"family": family}}})})
	case h.MessageCode == "ORU":
		code, _ := m.Get("OBX-3-1")
		value, _ := m.Get("OBX-5")
		oid := "o-" + mrn + "-" + code
		res.Resources = append(res.Resources, v2fhir.Resource{Type: "Observation", ID: oid,
			Body: mustJSON(map[string]any{"resourceType": "Observation", "id": oid, "status": "final",
				"code":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": code}}},
				"subject": map[string]any{"reference": "Patient/" + pid}, "valueString": value})})
	default:
		return nil, &v2fhir.UnsupportedError{MessageCode: h.MessageCode, TriggerEvent: h.TriggerEvent}
	}
	return res, nil
}

func (c *fakeConverter) setFail(f func(h hl7.Header) error) {
	c.mu.Lock()
	c.fail = f
	c.mu.Unlock()
}

func (c *fakeConverter) orderOf(facility string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order[facility]...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// putMessages stores inbound messages as a listener would (status received).
func putMessages(t *testing.T, st store.MessageStore, channel string, bodies ...string) []int64 {
	t.Helper()
	msgs := make([]store.HL7Message, len(bodies))
	for i, b := range bodies {
		m, err := hl7.Parse([]byte(b), hl7.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header()
		msgs[i] = store.HL7Message{Direction: store.DirectionInbound, Channel: channel, SendingApp: h.SendingApplication,
			SendingFacility: h.SendingFacility, MessageCode: h.MessageCode, TriggerEvent: h.TriggerEvent,
			ControlID: h.ControlID, Status: store.MsgReceived, AckCode: "AA", Body: []byte(b)}
	}
	res, err := st.PutHL7Messages(t.Context(), testPractice, msgs, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

// runPipeline runs p until the test ends (or stop is called) and returns stop.
func runPipeline(t *testing.T, p *Pipeline) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pipeline: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitStatus waits until message id has one of the statuses.
func waitStatus(t *testing.T, st store.MessageStore, id int64, statuses ...string) store.HL7Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := st.GetHL7Message(t.Context(), testPractice, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range statuses {
			if m.Status == s {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %d is %s (error %q), want %v", id, m.Status, m.Error, statuses)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNone waits until no inbound message of the practice is received or failed.
func waitNone(t *testing.T, st store.MessageStore) map[string]int {
	t.Helper()
	// Fails when processing stops making progress for 30 s (a slow,
	// loaded machine under the race detector is not a stall). Each poll
	// counts every message, so polls are spaced out.
	deadline := time.Now().Add(30 * time.Second)
	pending := -1
	for {
		c, err := st.CountHL7Messages(t.Context(), testPractice, store.DirectionInbound)
		if err != nil {
			t.Fatal(err)
		}
		n := c[store.MsgReceived] + c[store.MsgFailed]
		if n == 0 {
			return c
		}
		if n != pending {
			pending, deadline = n, time.Now().Add(30*time.Second)
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages still pending, no progress for 30 s: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func family(t *testing.T, st store.ResourceStore, id string) string {
	t.Helper()
	r, err := st.GetResource(t.Context(), testPractice, "Patient", id)
	if err != nil {
		t.Fatalf("Patient/%s: %v", id, err)
	}
	var p struct {
		Name []struct{ Family string } `json:"name"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || len(p.Name) == 0 {
		t.Fatalf("Patient/%s body: %s", id, r.Body)
	}
	return p.Name[0].Family
}

func versions(t *testing.T, st store.ResourceStore, rt, id string) int {
	t.Helper()
	h, err := st.History(t.Context(), testPractice, rt, id)
	if err != nil {
		t.Fatalf("%s/%s history: %v", rt, id, err)
	}
	return len(h)
}

func ctrl(i int) string { return fmt.Sprintf("C%05d", i) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
