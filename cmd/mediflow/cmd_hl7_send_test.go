package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/ack"
	"github.com/mediflow/mediflow/internal/hl7/mllp"
	"github.com/mediflow/mediflow/internal/store"
)

// sendPeer is a loopback MLLP receiver for the send tests. It answers by
// MSH-10: "REJ..." gets AE, "SIL..." gets nothing (the sender times out),
// "OTHER..." gets an AA for another control id, anything else AA.
type sendPeer struct {
	addr string
	mu   gosync.Mutex
	got  [][]byte // every message received, in order (copies)
	subj []string // peer certificate subjects seen
}

func startSendPeer(t *testing.T, tlsCfg *tls.Config) *sendPeer {
	t.Helper()
	p := &sendPeer{}
	h := mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) ([]byte, error) {
		p.mu.Lock()
		p.got = append(p.got, bytes.Clone(req.Message))
		p.subj = append(p.subj, req.Conn.PeerCertSubject)
		p.mu.Unlock()
		m, err := hl7.Parse(req.Message, hl7.ParseOptions{})
		if err != nil {
			return ack.BuildRaw(req.Message, ack.Options{Code: ack.AR, Text: "unreadable"}), nil
		}
		id := m.Header().ControlID
		switch {
		case strings.HasPrefix(id, "REJ"):
			return ack.Build(m, ack.Options{Code: ack.AE, Text: "Unknown patient",
				Errors: []ack.Error{{Location: "PID-3", Code: 204, Text: "Unknown key identifier"}}}), nil
		case strings.HasPrefix(id, "SIL"):
			return nil, nil
		case strings.HasPrefix(id, "OTHER"):
			if err := m.Set("MSH-10", "SOMETHING-ELSE"); err != nil {
				return nil, err
			}
			return ack.Build(m, ack.Options{Code: ack.AA}), nil
		}
		return ack.Build(m, ack.Options{Code: ack.AA}), nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	srv := mllp.NewServer(mllp.ServerConfig{TLS: tlsCfg}, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

func (p *sendPeer) received() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.got...)
}

func sendMsg(id, family string) string {
	return "MSH|^~\\&|APP|FAC|RAPP|RFAC|20240101120000||ADT^A08^ADT_A01|" + id + "|P|2.5.1\r" +
		"EVN|A08|20240101120000\r" +
		"PID|1||111^^^H^MR||" + family + "^Jane\r"
}

func TestHL7SendAccepted(t *testing.T) {
	peer := startSendPeer(t, nil)
	// two messages with LF line ends, and a batch file
	two := strings.ReplaceAll(sendMsg("CTRL1", "Doe")+sendMsg("CTRL2", "Roe"), "\r", "\n")
	batch := "FHS|^~\\&|APP|FAC\rBHS|^~\\&|APP|FAC\r" + sendMsg("CTRL3", "Poe") + "BTS|1\rFTS|1\r"
	f1 := writeHL7(t, "two.hl7", two)
	f2 := writeHL7(t, "batch.hl7", batch)
	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, "--timeout", "5s", f1, f2)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if want := "CTRL1 AA\nCTRL2 AA\nCTRL3 AA\n"; out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	got := peer.received()
	if len(got) != 3 {
		t.Fatalf("peer received %d messages, want 3", len(got))
	}
	// segments arrive CR-ended, batch segments are not sent, content is unchanged
	if string(got[0]) != sendMsg("CTRL1", "Doe") || string(got[2]) != sendMsg("CTRL3", "Poe") {
		t.Errorf("peer received %q and %q", got[0], got[2])
	}
}

func TestHL7SendRejected(t *testing.T) {
	peer := startSendPeer(t, nil)
	f := writeHL7(t, "mixed.hl7", sendMsg("OK1", "Doe")+sendMsg("REJ1", "Roe")+sendMsg("OK2", "Poe")+sendMsg("OTHER1", "Moe"))
	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, f)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	want := "OK1 AA\nREJ1 AE Unknown patient\nOK2 AA\nOTHER1 AA ACK for another message (MSA-2 SOMETHING-ELSE)\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(stderr, "2 of 4 messages not accepted") {
		t.Errorf("stderr: %s", stderr)
	}
	if n := len(peer.received()); n != 4 {
		t.Errorf("peer received %d messages, want 4 (a rejection does not stop the others)", n)
	}

	// --stop-on-error: nothing after the rejected message is sent
	peer = startSendPeer(t, nil)
	code, out, _ = hl7Run(t, "hl7", "send", "--to", peer.addr, "--stop-on-error", f)
	if code != 1 || out != "OK1 AA\nREJ1 AE Unknown patient\n" {
		t.Errorf("--stop-on-error: exit %d, stdout:\n%s", code, out)
	}
	if n := len(peer.received()); n != 2 {
		t.Errorf("--stop-on-error: peer received %d messages, want 2", n)
	}
}

func TestHL7SendNoAck(t *testing.T) {
	peer := startSendPeer(t, nil)
	f := writeHL7(t, "silent.hl7", sendMsg("SIL1", "Doe")+sendMsg("OK1", "Roe"))
	start := time.Now()
	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, "--timeout", "200ms", "--attempts", "2", f)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SIL1 - ") || !strings.Contains(lines[0], "no acknowledgment") || lines[1] != "OK1 AA" {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(stderr, "1 of 2 messages not accepted") {
		t.Errorf("stderr: %s", stderr)
	}
	got := peer.received()
	if len(got) != 3 {
		t.Fatalf("peer received %d messages, want the silent one twice and the next once", len(got))
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Errorf("the resend differs from the first attempt:\n%q\n%q", got[0], got[1])
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("two attempts of 200ms took only %v", d)
	}
}

func TestHL7SendBadInput(t *testing.T) {
	peer := startSendPeer(t, nil)
	junk := writeHL7(t, "junk.hl7", "this is not HL7\n")
	good := writeHL7(t, "good.hl7", sendMsg("OK1", "Doe"))
	code, out, _ := hl7Run(t, "hl7", "send", "--to", peer.addr, junk, good)
	if code != 1 || !strings.HasPrefix(out, "- ") || !strings.Contains(out, "junk.hl7") || !strings.HasSuffix(out, "OK1 AA\n") {
		t.Errorf("exit %d, stdout:\n%s", code, out)
	}
	// a missing file is found before anything is sent
	code, _, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, good, filepath.Join(t.TempDir(), "missing.hl7"))
	if code != 1 || !strings.Contains(stderr, "missing.hl7") {
		t.Errorf("missing file: exit %d, stderr %s", code, stderr)
	}
	if n := len(peer.received()); n != 1 {
		t.Errorf("peer received %d messages, want 1", n)
	}
}

func TestHL7SendUsage(t *testing.T) {
	f := writeHL7(t, "m.hl7", sendMsg("OK1", "Doe"))
	for _, args := range [][]string{
		{f},
		{"--to", "127.0.0.1:1"},
		{"--to", "127.0.0.1:1", "--attempts", "0", f},
		{"--to", "127.0.0.1:1", "--timeout", "0s", f},
		{"--to", "127.0.0.1:1", "--ca", "ca.pem", f},
		{"--to", "127.0.0.1:1", "--tls", "--cert", "c.pem", f},
		{"--to", "127.0.0.1:1", "-", "-"},
	} {
		code, _, stderr := hl7Run(t, append([]string{"hl7", "send"}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}

func TestHL7SendMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := sendTestCA(t)
	serverCert := sendTestLeaf(t, ca, caKey, "receiver", true)
	clientCert := sendTestLeaf(t, ca, caKey, "sender", false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	peer := startSendPeer(t, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	caFile := filepath.Join(dir, "ca.pem")
	sendWritePEM(t, caFile, "CERTIFICATE", ca.Raw)
	certFile := filepath.Join(dir, "client.pem")
	sendWritePEM(t, certFile, "CERTIFICATE", clientCert.Certificate[0])
	keyFile := filepath.Join(dir, "client.key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	sendWritePEM(t, keyFile, "PRIVATE KEY", keyDER)
	f := writeHL7(t, "m.hl7", sendMsg("TLS1", "Doe"))

	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, "--tls", "--ca", caFile,
		"--cert", certFile, "--key", keyFile, "--timeout", "5s", f)
	if code != 0 || out != "TLS1 AA\n" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	peer.mu.Lock()
	subj := append([]string(nil), peer.subj...)
	peer.mu.Unlock()
	if len(subj) != 1 || !strings.Contains(subj[0], "sender") {
		t.Errorf("peer saw client certificate subjects %q", subj)
	}

	// without the client certificate the receiver refuses the connection
	code, out, _ = hl7Run(t, "hl7", "send", "--to", peer.addr, "--tls", "--ca", caFile,
		"--timeout", "1s", "--attempts", "1", f)
	if code != 1 || !strings.HasPrefix(out, "TLS1 - ") {
		t.Errorf("no client certificate: exit %d, stdout:\n%s", code, out)
	}
}

func sendTestCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func sendTestLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func sendWritePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// outboundRows reads the outbound messages of a store, oldest first.
func outboundRows(t *testing.T, db, practice string) []store.HL7Message {
	t.Helper()
	st, err := openSQLite(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.ListHL7Messages(t.Context(), practice, store.HL7Filter{Direction: store.DirectionOutbound, Ascending: true, WithBody: true})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestHL7SendThroughStore(t *testing.T) {
	peer := startSendPeer(t, nil)
	db := filepath.Join(t.TempDir(), "mediflow.db")
	f := writeHL7(t, "mixed.hl7", strings.ReplaceAll(sendMsg("OK1", "Doe")+sendMsg("REJ1", "Roe")+sendMsg("OK2", "Poe"), "\r", "\n"))
	junk := writeHL7(t, "junk.hl7", "this is not HL7\n")
	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, "--timeout", "5s", "--db", db, "--practice", "sunrise", f, junk)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	rows := outboundRows(t, db, "sunrise")
	if len(rows) != 3 {
		t.Fatalf("%d outbound messages stored, want 3 (the junk is not stored)", len(rows))
	}
	want := fmt.Sprintf("#%d OK1 AA\n#%d REJ1 AE Unknown patient\n#%d OK2 AA\n", rows[0].ID, rows[1].ID, rows[2].ID)
	if !strings.HasPrefix(out, want) || !strings.HasPrefix(strings.TrimPrefix(out, want), "- - ") || !strings.Contains(out, "junk.hl7") {
		t.Errorf("stdout:\n%s\nwant it to start with:\n%s- - junk.hl7: …", out, want)
	}
	if !strings.Contains(stderr, "2 of 4 messages not accepted") {
		t.Errorf("stderr: %s", stderr)
	}
	got := peer.received()
	if len(got) != 3 {
		t.Fatalf("peer received %d messages, want 3", len(got))
	}
	for i, r := range rows {
		// stored CR-ended, as sent
		if !bytes.Equal(r.Body, got[i]) || r.Channel != "cli" || r.Peer != peer.addr || r.Direction != store.DirectionOutbound {
			t.Errorf("row %d: channel %s peer %s, body sent as stored: %v", r.ID, r.Channel, r.Peer, bytes.Equal(r.Body, got[i]))
		}
		if r.Attempts != 1 || r.SentAt.IsZero() || r.MessageCode != "ADT" || r.TriggerEvent != "A08" {
			t.Errorf("row %d: %+v", r.ID, r)
		}
	}
	if rows[0].Status != store.MsgAcked || rows[0].AckCode != "AA" || rows[2].Status != store.MsgAcked {
		t.Errorf("accepted rows: %s %s, %s", rows[0].Status, rows[0].AckCode, rows[2].Status)
	}
	if rows[1].Status != store.MsgRejected || rows[1].AckCode != "AE" ||
		rows[1].Error != "AE Unknown patient; ERR PID-3 code 204: Unknown key identifier" {
		t.Errorf("rejected row: %s %s %q", rows[1].Status, rows[1].AckCode, rows[1].Error)
	}

	// hl7 messages shows them with --direction out, and only then
	code, out, stderr = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "sunrise", "--direction", "out", "--json")
	if code != 0 {
		t.Fatalf("messages --direction out: exit %d: %s", code, stderr)
	}
	var listed []messageJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 || listed[0].ID != rows[2].ID || listed[0].Direction != "out" || listed[0].SentAt == nil ||
		listed[1].Status != store.MsgRejected || listed[1].AckCode != "AE" {
		t.Errorf("messages --direction out --json:\n%s", out)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "sunrise", "--direction", "out", "--status", "rejected")
	if code != 0 || !strings.Contains(out, "REJ1") || strings.Contains(out, "OK1") {
		t.Errorf("messages --direction out --status rejected: exit %d\n%s", code, out)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "sunrise")
	if code != 0 || strings.TrimSpace(out) != "no messages" {
		t.Errorf("messages (inbound by default): exit %d\n%s", code, out)
	}
}

func TestHL7SendThroughStoreNoAck(t *testing.T) {
	peer := startSendPeer(t, nil)
	db := filepath.Join(t.TempDir(), "mediflow.db")
	f := writeHL7(t, "silent.hl7", sendMsg("SIL1", "Doe")+sendMsg("OK1", "Roe"))
	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, "--timeout", "200ms", "--attempts", "2",
		"--db", db, "--practice", "sunrise", "--name", "lab", f)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	rows := outboundRows(t, db, "sunrise")
	if len(rows) != 2 {
		t.Fatalf("%d rows stored", len(rows))
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], fmt.Sprintf("#%d SIL1 - ", rows[0].ID)) ||
		!strings.Contains(lines[0], "no acknowledgment after 2 attempts") || lines[1] != fmt.Sprintf("#%d OK1 AA", rows[1].ID) {
		t.Errorf("stdout:\n%s", out)
	}
	if rows[0].Status != store.MsgTimedOut || rows[0].Attempts != 2 || rows[0].Channel != "lab" || rows[1].Status != store.MsgAcked {
		t.Errorf("rows: %s attempts %d channel %s; %s", rows[0].Status, rows[0].Attempts, rows[0].Channel, rows[1].Status)
	}
	got := peer.received()
	if len(got) != 3 || !bytes.Equal(got[0], got[1]) || !bytes.Equal(got[0], rows[0].Body) {
		t.Errorf("peer received %d messages; want the silent one twice with the same bytes, then the next", len(got))
	}
}

func TestHL7SendThroughStoreStopAndResume(t *testing.T) {
	peer := startSendPeer(t, nil)
	db := filepath.Join(t.TempDir(), "mediflow.db")
	f := writeHL7(t, "two.hl7", sendMsg("REJ1", "Doe")+sendMsg("OK1", "Roe"))
	code, out, stderr := hl7Run(t, "hl7", "send", "--to", peer.addr, "--stop-on-error", "--db", db, "--practice", "sunrise", f)
	rows := outboundRows(t, db, "sunrise")
	if code != 1 || len(rows) != 2 || out != fmt.Sprintf("#%d REJ1 AE Unknown patient\n", rows[0].ID) {
		t.Fatalf("exit %d, %d rows\nstdout:\n%s\nstderr:\n%s", code, len(rows), out, stderr)
	}
	if !strings.Contains(stderr, "1 of 1 messages not accepted (stopped at the first; 1 left queued in the store)") {
		t.Errorf("stderr: %s", stderr)
	}
	if rows[1].Status != store.MsgQueued || rows[1].Attempts != 0 || len(peer.received()) != 1 {
		t.Errorf("after the stop: OK1 %s attempts %d; peer received %d", rows[1].Status, rows[1].Attempts, len(peer.received()))
	}

	// the next run sends what was left first, then its own message
	g := writeHL7(t, "one.hl7", sendMsg("OK2", "Poe"))
	code, out, stderr = hl7Run(t, "hl7", "send", "--to", peer.addr, "--db", db, "--practice", "sunrise", g)
	rows = outboundRows(t, db, "sunrise")
	if code != 0 || len(rows) != 3 || out != fmt.Sprintf("#%d OK2 AA\n", rows[2].ID) {
		t.Fatalf("second run: exit %d, %d rows\nstdout:\n%s\nstderr:\n%s", code, len(rows), out, stderr)
	}
	if !strings.Contains(stderr, "1 earlier message(s) still queued for cli are sent first") {
		t.Errorf("stderr: %s", stderr)
	}
	if rows[1].Status != store.MsgAcked || rows[2].Status != store.MsgAcked {
		t.Errorf("rows: %s %s", rows[1].Status, rows[2].Status)
	}
	got := peer.received()
	if len(got) != 3 || !bytes.Equal(got[1], rows[1].Body) || !bytes.Equal(got[2], rows[2].Body) {
		t.Errorf("peer received %d messages, want REJ1, OK1, OK2 in that order", len(got))
	}
}

func TestHL7SendThroughStoreUsage(t *testing.T) {
	f := writeHL7(t, "m.hl7", sendMsg("OK1", "Doe"))
	db := filepath.Join(t.TempDir(), "mediflow.db")
	for _, args := range [][]string{
		{"send", "--to", "127.0.0.1:1", "--practice", "p", f},
		{"send", "--to", "127.0.0.1:1", "--name", "x", f},
		{"send", "--to", "127.0.0.1:1", "--db", db, f},
		{"send", "--to", "127.0.0.1:1", "--db", db, "--practice", "p", "--name", "", f},
		{"messages", "--db", db, "--practice", "p", "--direction", "sideways"},
		{"messages", "--db", db, "--practice", "p", "--direction", "out", "--status", "received"},
		{"messages", "--db", db, "--practice", "p", "--status", "acked"},
	} {
		code, _, stderr := hl7Run(t, append([]string{"hl7"}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}
