package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const hl7Only = `
practices:
  - id: p1
    name: Practice One
    hl7_listeners:
      - name: adt
apps:
  - name: a1
    key: {env: A1_KEY}
    practices: [p1]
`

func TestHL7ListenerDefaults(t *testing.T) {
	cfg, diags := parse(t, hl7Only)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("an HL7-only practice is valid: %v", diags)
	}
	pr := cfg.Practices[0]
	if len(pr.Connections) != 0 || len(pr.HL7Listeners) != 1 {
		t.Fatalf("practice %+v", pr)
	}
	l := pr.HL7Listeners[0]
	if l.Name != "adt" || l.Listen != "127.0.0.1:2575" || l.MaxMessageSize != 1<<20 || l.MaxConnections != 64 ||
		l.IdleTimeout != 5*time.Minute || l.DedupWindow != 24*time.Hour || l.AckMode != HL7AckAuto ||
		l.Unsupported != HL7UnsupportedIgnore || l.TLS.Enabled() {
		t.Errorf("defaults %+v", l)
	}
}

func TestHL7ListenerValues(t *testing.T) {
	src := strings.Replace(hl7Only, "      - name: adt\n", `      - name: adt
        listen: 127.0.0.1:0
        max_message_size: 2048
        max_connections: 3
        idle_timeout: 30s
        dedup_window: 0s
        ack_mode: enhanced
        unsupported: quarantine
        tls:
          cert: tls/c.pem
          key: {file: tls/k.pem}
          client_ca: tls/ca.pem
`, 1)
	cfg, diags := parse(t, src)
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	l := cfg.Practices[0].HL7Listeners[0]
	if l.Listen != "127.0.0.1:0" || l.MaxMessageSize != 2048 || l.MaxConnections != 3 || l.IdleTimeout != 30*time.Second ||
		l.DedupWindow != 0 || l.AckMode != HL7AckEnhanced || l.Unsupported != HL7UnsupportedQuarantine ||
		l.TLS.Cert != "tls/c.pem" || l.TLS.Key.File != "tls/k.pem" || l.TLS.ClientCA != "tls/ca.pem" || !l.TLS.Enabled() {
		t.Errorf("decoded %+v", l)
	}
}

func TestHL7ListenerFindings(t *testing.T) {
	const e, w = SeverityError, SeverityWarning
	edit := func(old, new string) string { return strings.Replace(hl7Only, old, new, 1) }
	cases := []struct {
		name  string
		src   string
		wants []want
	}{
		{"no connections and no listeners",
			edit("    hl7_listeners:\n      - name: adt\n", ""),
			[]want{{2, 5, e, "practice `p1` has no connections and no HL7 listeners", "hl7_listeners"}}},
		{"listener name taken",
			edit("      - name: adt\n", "      - name: adt\n        listen: 127.0.0.1:2600\n      - name: adt\n"),
			[]want{{7, 15, e, "duplicate connection or listener name `adt`", "must be unique within practice `p1`"}}},
		{"listener named like a connection",
			edit("    hl7_listeners:\n", `    connections:
      - name: adt
        vendor: generic
        base_url: http://127.0.0.1:9/fhir
        auth: {type: none}
        sync: [{class: demographics}]
    hl7_listeners:
`),
			[]want{{11, 15, e, "duplicate connection or listener name `adt`", "rename one"}}},
		{"same address twice",
			edit("      - name: adt\n", "      - name: adt\n      - name: siu\n"),
			[]want{{6, 9, e, "`listen` address 127.0.0.1:2575 is already used at line 5", "own port"}}},
		{"port 0 may repeat",
			edit("      - name: adt\n", "      - name: adt\n        listen: 127.0.0.1:0\n      - name: siu\n        listen: 127.0.0.1:0\n"),
			nil},
		{"the API's address",
			"server:\n  listen: 127.0.0.1:2575\n" + hl7Only[1:],
			[]want{{7, 9, e, "`listen` address 127.0.0.1:2575 is already used at line 2", "own port"}}},
		{"not on loopback without TLS",
			edit("      - name: adt\n", "      - name: adt\n        listen: 0.0.0.0:2575\n"),
			[]want{{6, 17, w, "listens on `0.0.0.0`, which is not a loopback address, without TLS", "tls"}}},
		{"every interface without TLS",
			edit("      - name: adt\n", "      - name: adt\n        listen: \":2575\"\n"),
			[]want{{6, 17, w, "listens on every network interface without TLS", "tls"}}},
		{"unknown ack mode",
			edit("      - name: adt\n", "      - name: adt\n        ack_mode: orginal\n"),
			[]want{{6, 19, e, "unknown ack_mode `orginal`; did you mean `original`?", "`auto`"}}},
		{"dedup window too long",
			edit("      - name: adt\n", "      - name: adt\n        dedup_window: 1000h\n"),
			[]want{{6, 23, e, "`dedup_window` must be at most 720h", "720h or less"}}},
		{"cert without key",
			edit("      - name: adt\n", "      - name: adt\n        tls:\n          cert: c.pem\n"),
			[]want{{7, 17, e, "has `cert` but no `key`", "add `key:`"}}},
		{"key without cert",
			edit("      - name: adt\n", "      - name: adt\n        tls:\n          key: {file: k.pem}\n"),
			[]want{{7, 16, e, "has `key` but no `cert`", "add `cert:`"}}},
		{"client CA alone",
			edit("      - name: adt\n", "      - name: adt\n        tls:\n          client_ca: ca.pem\n"),
			[]want{{7, 22, e, "has `client_ca` but no `cert` and `key`", "mutual TLS"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := parse(t, tc.src)
			checkDiags(t, diags, tc.wants)
		})
	}
}

// With secrets resolved, the certificate and key must be a pair and the
// client CA file must hold certificates.
func TestHL7ListenerTLSFiles(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	_, otherKey := selfSigned(t)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("c.pem", certPEM)
	write("k.pem", keyPEM)
	write("other.pem", otherKey)
	write("ca.pem", certPEM)
	write("junk.pem", []byte("not a certificate\n"))
	src := func(key, ca string) []byte {
		return []byte(strings.Replace(hl7Only[1:], "      - name: adt\n", "      - name: adt\n        tls:\n          cert: c.pem\n          key: {file: "+key+"}\n          client_ca: "+ca+"\n", 1))
	}
	getenv := env(map[string]string{"A1_KEY": strings.Repeat("k", 40)})
	parseIn := func(data []byte, check SecretCheck) error {
		_, err := Parse(filepath.Join(dir, "m.yaml"), data, WithEnv(getenv), WithSecretCheck(check))
		return err
	}
	if err := parseIn(src("k.pem", "ca.pem"), SecretsRequired); err != nil {
		t.Fatalf("good TLS files: %v", err)
	}
	if err := parseIn(src("other.pem", "ca.pem"), SecretsRequired); err == nil || !strings.Contains(err.Error(), "are not a usable TLS key pair") {
		t.Errorf("mismatched key: %v", err)
	}
	if err := parseIn(src("k.pem", "junk.pem"), SecretsRequired); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("junk CA: %v", err)
	}
	err := parseIn(src("k.pem", "missing.pem"), SecretsRequired)
	if err == nil || !strings.Contains(err.Error(), "`client_ca` of HL7 listener `adt`") {
		t.Errorf("missing CA file: %v", err)
	}
	if err := parseIn(src("k.pem", "missing.pem"), SecretsWarn); err != nil {
		t.Errorf("missing CA file with --no-secrets should warn only: %v", err)
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mediflow-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
