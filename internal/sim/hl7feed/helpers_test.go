package hl7feed

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

var (
	simOnce sync.Once
	testSim *sim.Sim
	simErr  error
)

// sharedSim is a simulator with a generic tenant "north" and an Epic tenant
// "south", 25 patients each, built once for the package's tests.
func sharedSim(t testing.TB) *sim.Sim {
	t.Helper()
	simOnce.Do(func() {
		testSim, simErr = sim.New(sim.Config{Tenants: []sim.TenantConfig{
			{ID: "north", Seed: 7, Data: &gen.Options{Patients: 25}},
			{ID: "south", Flavor: "epic", Seed: 8, Data: &gen.Options{Patients: 25}},
		}})
	})
	if simErr != nil {
		t.Fatal(simErr)
	}
	return testSim
}

// truth is a tenant's data as the tests read it, independently of the
// feed's own decoding.
type truth struct {
	mrnOwner     map[string]string // MRN value → patient id
	mrnSystem    map[string]string // MRN value → identifier system
	family       map[string]string // patient id → family name
	birth        map[string]string // patient id → birthDate
	appointments map[string]map[string]any
	encounters   map[string]map[string]any
	observations map[string]map[string]any
	documents    map[string]bool
}

func decodeMap(t testing.TB, m map[string][]byte) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, b := range m {
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		out[id] = v
	}
	return out
}

func str(v any, path ...any) string {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return ""
			}
			v = a[k]
		}
	}
	switch x := v.(type) {
	case string:
		return x
	case float64:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return ""
}

func readTruth(t testing.TB, src Source) *truth {
	tr := &truth{mrnOwner: map[string]string{}, mrnSystem: map[string]string{}, family: map[string]string{}, birth: map[string]string{}, documents: map[string]bool{}}
	for id, p := range decodeMap(t, src.Resources("Patient")) {
		ids, _ := p["identifier"].([]any)
		for _, x := range ids {
			// Generic flavour: system ...:mrn; Epic: type text "EPI".
			if strings.HasSuffix(str(x, "system"), ":mrn") || str(x, "type", "text") == "EPI" {
				tr.mrnOwner[str(x, "value")] = id
				tr.mrnSystem[str(x, "value")] = str(x, "system")
			}
		}
		tr.family[id] = str(p, "name", 0, "family")
		tr.birth[id] = str(p, "birthDate")
	}
	tr.appointments = decodeMap(t, src.Resources("Appointment"))
	tr.encounters = decodeMap(t, src.Resources("Encounter"))
	tr.observations = decodeMap(t, src.Resources("Observation"))
	for id := range src.Resources("DocumentReference") {
		tr.documents[id] = true
	}
	return tr
}

func get(t testing.TB, m *hl7.Message, path string) string {
	t.Helper()
	v, err := m.Get(path)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	return v
}

// ackServer is a plain MLLP server that answers AA to every message and
// keeps what it received.
type ackServer struct {
	addr string
	mu   sync.Mutex
	msgs [][]byte
	done chan struct{}
}

func startAckServer(t *testing.T) *ackServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ackServer{addr: ln.Addr().String(), done: make(chan struct{})}
	srv := mllp.NewServer(mllp.ServerConfig{}, mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) ([]byte, error) {
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{})
		if err != nil {
			return ack.BuildRaw(req.Message, ack.Options{Code: ack.AE}), nil
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, append([]byte(nil), req.Message...))
		s.mu.Unlock()
		return ack.Build(m, ack.Options{Code: ack.AA}), nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("ack server: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

func (s *ackServer) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.msgs...)
}

// startReceiver serves r on a loopback port until the test ends.
func startReceiver(t *testing.T, r *Receiver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Serve(ctx, ln); err != nil {
			t.Errorf("receiver: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("receiver did not stop")
		}
	})
	return ln.Addr().String()
}
