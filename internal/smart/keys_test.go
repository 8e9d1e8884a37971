package smart

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"testing"
)

func TestGenerateEncodeDecode(t *testing.T) {
	for _, alg := range []string{AlgRS384, AlgES384} {
		k, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := AlgorithmFor(k); err != nil || got != alg {
			t.Fatalf("AlgorithmFor = %q, %v", got, err)
		}
		p, err := EncodePrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(p, []byte("-----BEGIN PRIVATE KEY-----")) {
			t.Fatalf("not PKCS#8 PEM: %.40s", p)
		}
		back, err := DecodePrivateKeyPEM(p)
		if err != nil {
			t.Fatal(err)
		}
		kid1, _ := KeyID(k)
		kid2, _ := KeyID(back)
		if kid1 == "" || kid1 != kid2 {
			t.Fatalf("kid changed through PEM: %q vs %q", kid1, kid2)
		}
	}
	if _, err := GenerateKey("HS256"); err == nil {
		t.Error("GenerateKey accepted HS256")
	}
}

func TestDecodeLegacyAndRejected(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	if _, err := DecodePrivateKeyPEM(append([]byte("junk\n"), pkcs1...)); err != nil {
		t.Errorf("PKCS#1: %v", err)
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(ek)
	if _, err := DecodePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		t.Errorf("SEC1: %v", err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.MarshalPKCS8PrivateKey(p256)
	if _, err := DecodePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err == nil {
		t.Error("accepted a P-256 key")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ = x509.MarshalPKCS8PrivateKey(small)
	if _, err := DecodePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err == nil {
		t.Error("accepted a 1024-bit RSA key")
	}
	if _, err := DecodePrivateKeyPEM([]byte("no pem here")); err == nil {
		t.Error("accepted garbage")
	}
}

// TestKeyIDIsRFC7638 recomputes the thumbprint by hand from the RFC 7638
// rules (required members, lexicographic order, no whitespace).
func TestKeyIDIsRFC7638(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	e := big.NewInt(int64(rk.E)).Bytes()
	in := `{"e":"` + b64(e) + `","kty":"RSA","n":"` + b64(rk.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(in))
	if got, _ := KeyID(rk); got != b64(sum[:]) {
		t.Errorf("RSA kid %q, want %q", got, b64(sum[:]))
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pad := func(b []byte) []byte { return append(make([]byte, 48-len(b)), b...) }
	in = `{"crv":"P-384","kty":"EC","x":"` + b64(pad(ek.X.Bytes())) + `","y":"` + b64(pad(ek.Y.Bytes())) + `"}`
	sum = sha256.Sum256([]byte(in))
	if got, _ := KeyID(ek); got != b64(sum[:]) {
		t.Errorf("EC kid %q, want %q", got, b64(sum[:]))
	}
}

func TestPublicJWKS(t *testing.T) {
	rk, _ := GenerateKey(AlgRS384)
	ek, _ := GenerateKey(AlgES384)
	raw, err := PublicJWKS(rk, ek, rk)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("want 2 keys (duplicate dropped), got %d", len(set.Keys))
	}
	for i, k := range []crypto.Signer{rk, ek} {
		j := set.Keys[i]
		kid, _ := KeyID(k)
		alg, _ := AlgorithmFor(k)
		if j["kid"] != kid || j["alg"] != alg || j["use"] != "sig" {
			t.Errorf("key %d: %v", i, j)
		}
		ops, _ := j["key_ops"].([]any)
		if !slices.Equal(ops, []any{"verify"}) {
			t.Errorf("key %d key_ops %v", i, j["key_ops"])
		}
		if _, hasD := j["d"]; hasD {
			t.Errorf("key %d leaks the private exponent", i)
		}
	}
	if set.Keys[0]["kty"] != "RSA" || set.Keys[1]["kty"] != "EC" || set.Keys[1]["crv"] != "P-384" {
		t.Errorf("kty/crv wrong: %v %v", set.Keys[0]["kty"], set.Keys[1])
	}
}
