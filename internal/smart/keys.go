package smart

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// Signing algorithms SMART backend clients must support.
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
)

// MinRSABits is the smallest RSA modulus accepted for signing.
const MinRSABits = 2048

// GenerateKey creates a new private key for alg: RSA 2048 for RS384, P-384
// for ES384.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgRS384:
		k, err := rsa.GenerateKey(rand.Reader, MinRSABits)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		return k, nil
	case AlgES384:
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate P-384 key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported algorithm %q (want %s or %s)", alg, AlgRS384, AlgES384)
	}
}

// publicKey returns the public half of a private key, public key or signer.
func publicKey(k any) (crypto.PublicKey, error) {
	switch v := k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return v, nil
	case crypto.Signer:
		return v.Public(), nil
	case nil:
		return nil, errors.New("no key")
	default:
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
}

// AlgorithmFor returns the signing algorithm a key is used with (RS384 for
// RSA of at least 2048 bits, ES384 for P-384), accepting a private key,
// signer or public key.
func AlgorithmFor(key any) (string, error) {
	pub, err := publicKey(key)
	if err != nil {
		return "", err
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("RSA key has %d bits; at least %d are required", p.N.BitLen(), MinRSABits)
		}
		return AlgRS384, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P384() {
			return "", fmt.Errorf("EC key on curve %s; ES384 needs P-384", p.Curve.Params().Name)
		}
		return AlgES384, nil
	default:
		return "", fmt.Errorf("unsupported public key type %T (want RSA or EC P-384)", pub)
	}
}

// KeyID returns the RFC 7638 JWK thumbprint (SHA-256, base64url) of a key's
// public half; mediflow uses it as the key's kid.
func KeyID(key any) (string, error) {
	pub, err := publicKey(key)
	if err != nil {
		return "", err
	}
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// EncodePrivateKeyPEM encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodePrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	if _, err := AlgorithmFor(key); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// DecodePrivateKeyPEM decodes the first private key PEM block in data:
// PKCS#8 ("PRIVATE KEY"), and for keys made with openssl also PKCS#1
// ("RSA PRIVATE KEY") and SEC 1 ("EC PRIVATE KEY"). The key must be usable
// with RS384 or ES384.
func DecodePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; decrypt it first (openssl pkcs8 -topk8 -nocrypt)")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s PEM block: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		if _, err := AlgorithmFor(signer); err != nil {
			return nil, err
		}
		return signer, nil
	}
}

// LoadPrivateKey reads a PEM private key file (see DecodePrivateKeyPEM).
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	k, err := DecodePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return k, nil
}

// PublicJWK returns the public JWK of a key as a JSON object with kty, kid
// (the RFC 7638 thumbprint), alg, use "sig" and key_ops ["verify"].
func PublicJWK(key any) (map[string]any, error) {
	pub, err := publicKey(key)
	if err != nil {
		return nil, err
	}
	alg, err := AlgorithmFor(pub)
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	raw, err := jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode JWK: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("encode JWK: %w", err)
	}
	m["key_ops"] = []string{"verify"}
	return m, nil
}

// PublicJWKS returns the JSON Web Key Set (indented JSON) of the public
// halves of keys, to register with an EHR. Duplicate keys appear once.
func PublicJWKS(keys ...crypto.Signer) ([]byte, error) {
	set := struct {
		Keys []map[string]any `json:"keys"`
	}{Keys: []map[string]any{}}
	seen := map[any]bool{}
	for _, k := range keys {
		jwk, err := PublicJWK(k)
		if err != nil {
			return nil, err
		}
		if seen[jwk["kid"]] {
			continue
		}
		seen[jwk["kid"]] = true
		set.Keys = append(set.Keys, jwk)
	}
	out, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return append(out, '\n'), nil
}
