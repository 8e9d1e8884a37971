package mllp_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// siuS12 is a scheduling message with the things that get lost in careless
// transports: escape sequences, a repeated field, subcomponents and UTF-8.
const siuS12 = "MSH|^~\\&|SCHED|CLINIC^1.2.3^ISO|MEDIFLOW|VALLEYFAM|20240401090000||SIU^S12^SIU_S12|SIU-0001|P|2.5.1|||AL|NE||UNICODE UTF-8\r" +
	"SCH|APT-77^SCHED|APT-77^SCHED||||ROUTINE^Routine visit^HL70276|||30|min|^^30^20240402100000^20240402103000|||||DRJ^Jensen^Åsa\r" +
	"NTE|1||Bring lab results \\T\\ medication list\\.br\\Fasting: 8 h\r" +
	"PID|1||PAT-4711^^^CLINIC&1.2.3&ISO^MR~555-44-3333^^^SSA^SS||Müller^Zoë^Q||19800101|F\r" +
	"RGS|1|A\r" +
	"AIL|1|A|ROOM-3^^^CLINIC\r"

// interopMessages are an ADT^A01, an SIU^S12 and an ORU^R01, segments ended by CR.
func interopMessages(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, name := range []string{"adt_a01.hl7", "", "oru_r01.hl7"} {
		if name == "" {
			out = append(out, []byte(siuS12))
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for i, m := range out {
		if bytes.Contains(m, []byte("\n")) || !bytes.HasSuffix(m, []byte("\r")) {
			t.Fatalf("message %d: want segments ended by CR only", i)
		}
	}
	return out
}

func header(t *testing.T, msg []byte) hl7.Header {
	t.Helper()
	m, err := hl7.Parse(msg, hl7.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Header()
}

// sameSegments compares two messages segment by segment, ignoring how
// segments are ended (CR, LF, CR LF, a final terminator or none).
func sameSegments(a, b []byte) bool {
	split := func(m []byte) []string {
		return strings.FieldsFunc(string(m), func(r rune) bool { return r == '\r' || r == '\n' })
	}
	return slices.Equal(split(a), split(b))
}

// node-hl7-client sends to our server, which parses each message and
// answers with our ACK; the library reads AA and the right MSA-2 from it.
func TestInteropNodeClientToServer(t *testing.T) {
	msgs := interopMessages(t)

	var mu sync.Mutex
	var got [][]byte
	var parseErrs []error
	h := mllp.HandlerFunc(func(ctx context.Context, req *mllp.Request) ([]byte, error) {
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{})
		mu.Lock()
		defer mu.Unlock()
		got = append(got, bytes.Clone(req.Message))
		if err != nil {
			parseErrs = append(parseErrs, err)
			return ack.BuildRaw(req.Message, ack.Options{Code: ack.AR, Text: "unreadable"}), nil
		}
		return ack.Build(m, ack.Options{Code: ack.AA}), nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := mllp.NewServer(mllp.ServerConfig{}, h)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	acks := peers.SendHL7NodeClient(t, ln.Addr().String(), msgs)
	if len(acks) != len(msgs) {
		t.Fatalf("node-hl7-client got %d replies for %d messages: %+v", len(acks), len(msgs), acks)
	}
	for i, a := range acks {
		h := header(t, msgs[i])
		if a.Error != "" || a.MSA1 != "AA" || a.MSA2 != h.ControlID || a.SentControlID != h.ControlID || a.AckType != "ACK^"+h.TriggerEvent {
			t.Errorf("reply %d to %s^%s %s: %+v; want AA with MSA-2 %s, type ACK^%s", i, h.MessageCode, h.TriggerEvent, h.ControlID, a, h.ControlID, h.TriggerEvent)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(parseErrs) > 0 {
		t.Errorf("our parser refused what node-hl7-client sent: %v", parseErrs)
	}
	if len(got) != len(msgs) {
		t.Fatalf("our server handled %d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !sameSegments(got[i], msgs[i]) {
			t.Errorf("message %d arrived changed:\n got  %q\n sent %q", i, got[i], msgs[i])
		}
	}
	if st := srv.Stats(); st.Messages != int64(len(msgs)) || st.Accepted != 1 {
		t.Errorf("server stats %+v: want %d messages on 1 connection", st, len(msgs))
	}
}

// Our client sends to node-hl7-server and reads its ACKs with package ack:
// AA with MSA-2 = our MSH-10, and AE for the message it is told to refuse.
// The server reports the messages exactly as we sent them.
func TestInteropClientToNodeServer(t *testing.T) {
	srv := peers.StartHL7NodeServer(t)
	msgs := interopMessages(t)
	nak := bytes.Replace(msgs[0], []byte("|ADT000987654|"), []byte("|NAK000987655|"), 1)
	if bytes.Equal(nak, msgs[0]) {
		t.Fatal("could not make the NAK message")
	}
	msgs = append(msgs, nak)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, msg := range msgs {
		h := header(t, msg)
		// node-hl7-server 2.5 mixes a second message on one connection into
		// the first (see peers.HL7NodeServer): one client, one connection, per message.
		c := mllp.NewClient(mllp.ClientConfig{Addr: srv.Addr, MaxAttempts: 1, AckTimeout: 30 * time.Second})
		reply, err := c.Send(ctx, msg)
		if cerr := c.Close(); cerr != nil {
			t.Errorf("close client: %v", cerr)
		}
		if err != nil {
			t.Fatalf("message %d (%s): %v", i, h.ControlID, err)
		}
		res, err := ack.Parse(reply)
		if err != nil {
			t.Fatalf("message %d: ack.Parse of %q: %v", i, reply, err)
		}
		want := ack.AA
		if strings.HasPrefix(h.ControlID, "NAK") {
			want = ack.AE
		}
		if res.Code != want || res.ControlID != h.ControlID || res.Accepted() != (want == ack.AA) {
			t.Errorf("message %d (%s): ACK %+v, want %s for %s", i, h.ControlID, res, want, h.ControlID)
		}
		if ah := header(t, reply); ah.MessageCode != "ACK" || ah.TriggerEvent != h.TriggerEvent || ah.SendingApplication != h.ReceivingApplication {
			t.Errorf("message %d: ACK header %+v", i, ah)
		}
	}

	got := srv.WaitReceived(t, len(msgs))
	if len(got) != len(msgs) {
		t.Fatalf("node-hl7-server reported %d messages, want %d", len(got), len(msgs))
	}
	for i, r := range got {
		h := header(t, msgs[i])
		if r.ControlID != h.ControlID || r.Type != h.MessageCode+"^"+h.TriggerEvent {
			t.Errorf("received %d: control id %q type %q, want %q %s^%s", i, r.ControlID, r.Type, h.ControlID, h.MessageCode, h.TriggerEvent)
		}
		if !sameSegments([]byte(r.Message), msgs[i]) {
			t.Errorf("received %d differs from what we sent:\n got  %q\n sent %q", i, r.Message, msgs[i])
		}
	}
}
