package hl7out

import (
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// TestNodeHL7Server delivers to node-hl7-server, a receiver nobody on this
// project wrote, and records its ACKs: AA, and AE for a control id starting
// with NAK. node-hl7-server 2.5 cannot take a second message on one
// connection (see peers/README.md), so each message goes through its own
// Sender, that is its own connection.
func TestNodeHL7Server(t *testing.T) {
	srv := peers.StartHL7NodeServer(t)
	st := openStore(t)
	d := fastDest("node", srv.Addr)
	d.AckTimeout = 10 * time.Second

	deliver := func(control string) store.HL7Message {
		t.Helper()
		s, _ := newSender(t, st, d)
		stop := run(t, s)
		defer stop()
		id := enqueue(t, s, "node", mdm(control, "Doe"))
		waitFinal(t, st, 30*time.Second, id)
		return get(t, st, id)
	}

	first := deliver("NODE1")
	m := first
	if m.Status != store.MsgAcked || m.AckCode != "AA" || m.Attempts != 1 {
		t.Errorf("NODE1: status %s ack %s attempts %d error %q", m.Status, m.AckCode, m.Attempts, m.Error)
	}
	m = deliver("NAK1")
	if m.Status != store.MsgRejected || m.AckCode != "AE" || !strings.HasPrefix(m.Error, "AE") || m.Attempts != 1 {
		t.Errorf("NAK1: status %s ack %s attempts %d error %q", m.Status, m.AckCode, m.Attempts, m.Error)
	}

	got := srv.WaitReceived(t, 2)
	if len(got) != 2 || got[0].ControlID != "NODE1" || got[0].Type != "MDM^T02" || got[0].Ack != "AA" ||
		got[1].ControlID != "NAK1" || got[1].Ack != "AE" {
		t.Errorf("node-hl7-server received %+v", got)
	}
	// what the library parsed is what was stored and sent, segment for segment
	if want := strings.TrimRight(string(first.Body), "\r"); strings.TrimRight(got[0].Message, "\r") != want {
		t.Errorf("node-hl7-server read\n%q\nwe sent\n%q", got[0].Message, want)
	}
}
