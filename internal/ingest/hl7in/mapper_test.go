package hl7in

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

// testMapper stands in for the mapping engine: it adds a member to every
// resource and refuses bodies that contain "unmappable".
type testMapper struct {
	mu    sync.Mutex
	calls []string // practice/channel/type
}

func (m *testMapper) Map(_ context.Context, practice, channel, rt string, body []byte) ([]byte, error) {
	m.mu.Lock()
	m.calls = append(m.calls, practice+"/"+channel+"/"+rt)
	m.mu.Unlock()
	if bytes.Contains(body, []byte("unmappable")) {
		return nil, errors.New("mapping: Observation: obs.status (status): code not in the table")
	}
	return append(bytes.TrimSuffix(bytes.Clone(body), []byte("}")), []byte(`,"canonical":true}`)...), nil
}

func TestProcessorMapsResourcesAndQuarantinesUnmappable(t *testing.T) {
	st := openStore(t)
	m := &testMapper{}
	good := adt("A01", "F", "G1", "M1", "One")
	bad := oru("F", "B1", "M1", "1234-5", "unmappable")
	ids := putMessages(t, st, "feed", good, bad)
	runPipeline(t, newTestPipeline(t, st, newFakeConverter(), func(o *Options) { o.Mapper = m }))

	waitStatus(t, st, ids[0], store.MsgProcessed)
	r, err := st.GetResource(t.Context(), testPractice, "Patient", "p-M1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(r.Body, []byte(`"canonical":true`)) {
		t.Errorf("stored Patient is not the mapped one: %s", r.Body)
	}

	q := waitStatus(t, st, ids[1], store.MsgQuarantined)
	if !strings.Contains(q.Error, "code not in the table") || !strings.Contains(q.Error, "Observation") {
		t.Errorf("quarantine reason %q does not say why", q.Error)
	}
	if strings.Contains(q.Error, "o-M1") {
		t.Errorf("quarantine reason %q names the resource id", q.Error)
	}
	if _, err := st.GetResource(t.Context(), testPractice, "Observation", "o-M1-1234-5"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the unmappable message wrote its Observation: %v", err)
	}
	// The raw messages stay as received.
	for i, body := range []string{good, bad} {
		got, err := st.GetHL7Message(t.Context(), testPractice, ids[i])
		if err != nil || string(got.Body) != body {
			t.Errorf("message %d body changed: %v", ids[i], err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.calls) != 2 || m.calls[0] != testPractice+"/feed/Patient" || m.calls[1] != testPractice+"/feed/Observation" {
		t.Errorf("mapper calls %v", m.calls)
	}
}
