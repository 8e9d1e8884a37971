package mllp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testPKI is a throw-away CA with a server and a client certificate.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
	rogue  tls.Certificate // a client certificate from another CA
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, caKey := newCA(t, "Test CA")
	other, otherKey := newCA(t, "Other CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		pool: pool,
		server: newLeaf(t, ca, caKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "mediflow"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}),
		client: newLeaf(t, ca, caKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "sender-1", Organization: []string{"Clinic"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}),
		rogue: newLeaf(t, other, otherKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "sender-1", Organization: []string{"Clinic"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}),
	}
}

var serial struct {
	mu sync.Mutex
	n  int64
}

func nextSerial() *big.Int {
	serial.mu.Lock()
	defer serial.mu.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
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

func newLeaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = nextSerial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// connRecorder answers every message and keeps the ConnInfo it saw.
type connRecorder struct {
	mu    sync.Mutex
	infos []ConnInfo
}

func (r *connRecorder) HandleMLLP(_ context.Context, req *Request) ([]byte, error) {
	r.mu.Lock()
	r.infos = append(r.infos, req.Conn)
	r.mu.Unlock()
	return append([]byte("ACK:"), req.Message...), nil
}

func (r *connRecorder) got() []ConnInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ConnInfo(nil), r.infos...)
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	rec := &connRecorder{}
	ts := startServer(t, ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}}}, rec)

	c := NewClient(ClientConfig{Addr: ts.addr, TLS: &tls.Config{RootCAs: pki.pool}})
	defer c.Close()
	ack, err := c.Send(t.Context(), hl7msg("TLS1"))
	if err != nil {
		t.Fatalf("Send over TLS: %v", err)
	}
	if !contains(ack, "TLS1") {
		t.Fatalf("ACK %q", ack)
	}
	infos := rec.got()
	if len(infos) != 1 || !infos[0].TLS || infos[0].PeerCertSubject != "" {
		t.Fatalf("ConnInfo %+v, want TLS without a peer certificate", infos)
	}

	// A client speaking plain MLLP to the TLS port gets nothing.
	plain := NewClient(ClientConfig{Addr: ts.addr, MaxAttempts: 1, AckTimeout: 2 * time.Second})
	defer plain.Close()
	if _, err := plain.Send(t.Context(), hl7msg("PLAIN")); err == nil {
		t.Fatal("plain client got an answer from the TLS server")
	}
	// A client that does not trust the server's CA refuses it.
	untrusting := NewClient(ClientConfig{Addr: ts.addr, MaxAttempts: 1, TLS: &tls.Config{}})
	defer untrusting.Close()
	if _, err := untrusting.Send(t.Context(), hl7msg("NOTRUST")); err == nil {
		t.Fatal("client accepted a server certificate from an unknown CA")
	}
	if n := len(rec.got()); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	rec := &connRecorder{}
	ts := startServer(t, ServerConfig{TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}}, rec)

	good := NewClient(ClientConfig{Addr: ts.addr, TLS: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}})
	defer good.Close()
	if _, err := good.Send(t.Context(), hl7msg("MTLS1")); err != nil {
		t.Fatalf("Send with a client certificate: %v", err)
	}
	infos := rec.got()
	if len(infos) != 1 || !infos[0].TLS || infos[0].PeerCertSubject != "CN=sender-1,O=Clinic" {
		t.Fatalf("ConnInfo %+v, want the client certificate's subject", infos)
	}

	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "certificate of another CA": {pki.rogue}} {
		c := NewClient(ClientConfig{Addr: ts.addr, MaxAttempts: 1, AckTimeout: 2 * time.Second,
			TLS: &tls.Config{RootCAs: pki.pool, Certificates: certs}})
		if _, err := c.Send(t.Context(), hl7msg("REFUSED")); err == nil {
			t.Fatalf("client with %s was served", name)
		}
		c.Close()
	}
	if n := len(rec.got()); n != 1 {
		t.Fatalf("handler called %d times, want 1 (refused clients never reach it)", n)
	}
	eventually(t, "failed handshakes counted", func() bool { return ts.srv.Stats().Errors >= 2 })
}
