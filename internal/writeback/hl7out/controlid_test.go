package hl7out

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/store"
)

func TestControlID(t *testing.T) {
	// Known values, computed apart from this code (Python's hashlib: the
	// first 100 bits of SHA-256 in Crockford base32).
	for key, want := range map[string]string{
		"01J9ZQ4X7M3K8TB2N6RVCWDYEH": "GH4E56MGMD196K4HJBCT",
		"":                           "WERC8GMRZGE196QVYK49",
		"NAK":                        "666PQ96XRXF0ZXTN79TK",
	} {
		if got := ControlID(key); got != want {
			t.Errorf("ControlID(%q) = %s, want %s", key, got, want)
		}
	}
	// 26-character intent ids that differ in one place, many of them: each
	// gets its own 20-character id of the base32 digits, the same every time.
	seen := map[string]string{}
	for i := range 200000 {
		key := fmt.Sprintf("01J9ZQ4X7M3K8T%012d", i)
		id := ControlID(key)
		if len(id) != MaxControlID || strings.Trim(id, crockford) != "" {
			t.Fatalf("ControlID(%q) = %q: not %d base32 digits", key, id, MaxControlID)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("ControlID(%q) = ControlID(%q) = %s", key, other, id)
		}
		seen[id] = key
		if i%1000 == 0 && ControlID(key) != id {
			t.Fatalf("ControlID(%q) changed between calls", key)
		}
	}
}

// TestControlIDAckMatching: a message whose MSH-10 is a derived control id
// is acknowledged only by an ACK whose MSA-2 is that id. An answer naming
// the key it was derived from (the intent id) is for another message.
func TestControlIDAckMatching(t *testing.T) {
	const intent = "01J9ZQ4X7M3K8TB2N6RVCWDYEH"
	cid := ControlID(intent)
	p, _ := startPeer(t, "", func(m *hl7.Message, n int) []byte {
		if n == 1 {
			a, err := hl7.Parse(ack.Build(m, ack.Options{Code: ack.AA}), hl7.ParseOptions{})
			if err != nil {
				t.Error(err)
				return nil
			}
			if err := a.Set("MSA-2", intent); err != nil {
				t.Error(err)
			}
			return a.Encode()
		}
		return ack.Build(m, ack.Options{Code: ack.AA})
	})
	st := openStore(t)
	s, _ := newSender(t, st, fastDest("ehr", p.addr))
	run(t, s)
	id := enqueue(t, s, "ehr", mdm(cid, "Doe"))
	waitFinal(t, st, 10*time.Second, id)
	m := get(t, st, id)
	if m.Status != store.MsgAcked || m.Attempts != 2 || m.ControlID != cid {
		t.Errorf("status %s attempts %d control id %s, want acked at the second attempt with %s", m.Status, m.Attempts, m.ControlID, cid)
	}
	got := p.received()
	if len(got) != 2 {
		t.Fatalf("the peer received %d messages, want 2", len(got))
	}
	for i, b := range got {
		pm, err := hl7.Parse(b, hl7.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h := pm.Header(); h.ControlID != cid || len(h.ControlID) > MaxControlID {
			t.Errorf("send %d: MSH-10 %q, want %s", i+1, h.ControlID, cid)
		}
	}
}
