package delivery

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// Webhook secrets are stored sealed: a version byte, a random 96-bit nonce
// and the AES-256-GCM ciphertext of the secret. The additional data binds a
// sealed secret to its practice and webhook id, so a sealed value copied to
// another webhook's row does not open.

const (
	sealVersion = 1
	// SecretKeySize is the size of Options.SecretKey (AES-256).
	SecretKeySize = 32
	// secretPrefix starts every generated webhook secret.
	secretPrefix = "whsec_"
)

// errUnseal is the stored and logged reason when a secret does not open:
// nearly always a SecretKey other than the one it was sealed with.
var errUnseal = errors.New("the webhook secret cannot be unsealed (was Options.SecretKey changed?)")

type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("delivery: the secret key must be %d bytes, not %d", SecretKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("delivery: secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("delivery: secret key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func sealAAD(practice, id string) []byte {
	b := []byte("mediflow webhook secret\x00")
	b = append(b, practice...)
	b = append(b, 0)
	return append(b, id...)
}

func (s *sealer) seal(practice, id string, secret []byte) []byte {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:]) // crypto/rand.Read never fails
	return s.aead.Seal(out, out[1:], secret, sealAAD(practice, id))
}

func (s *sealer) open(practice, id string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, errUnseal
	}
	secret, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], sealAAD(practice, id))
	if err != nil {
		return nil, errUnseal
	}
	return secret, nil
}

// newSecret returns a fresh webhook secret: "whsec_" and 32 random bytes in
// unpadded base64url. Its bytes, as a string, are the HMAC key.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return secretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// newID returns a random id with the prefix.
func newID(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}
