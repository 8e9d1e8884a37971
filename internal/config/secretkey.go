package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// SecretKeySize is the size in bytes of store.secret_key (an AES-256 key).
const SecretKeySize = 32

// secretKeyForms says which spellings of store.secret_key are accepted, for
// messages.
const secretKeyForms = "64 hex characters, or base64 (standard or URL-safe, padded or not) of 32 bytes"

// secretKeyHint is the fix offered when store.secret_key is unusable.
const secretKeyHint = "generate a key with `openssl rand -hex 32` (or `openssl rand -base64 32`) and keep it out of the file: `secret_key: {file: PATH}` or `{env: VARIABLE}`"

// DecodeSecretKey turns the text of store.secret_key into its 32 bytes. It
// accepts 64 hex characters (either case) or base64 of 32 bytes: standard
// or URL-safe alphabet, with or without padding. Surrounding white space is
// ignored. Errors describe the shape of the value, never its characters.
func DecodeSecretKey(text []byte) ([]byte, error) {
	s := string(bytes.TrimSpace(text))
	if len(s) == 2*SecretKeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) == SecretKeySize {
				return k, nil
			}
			return nil, fmt.Errorf("it decodes as base64 to %d bytes, not %d; write %s", len(k), SecretKeySize, secretKeyForms)
		}
	}
	return nil, fmt.Errorf("it is %d characters of neither form; write %s", len(s), secretKeyForms)
}

// ResolveSecretKey reads and decodes store.secret_key: nil and no error
// when it is not set. baseDir and getenv are as for Secret.Resolve.
func (s Store) ResolveSecretKey(baseDir string, getenv func(string) string) ([]byte, error) {
	if !s.SecretKey.IsSet() {
		return nil, nil
	}
	b, err := s.SecretKey.Resolve(baseDir, getenv)
	if err != nil {
		return nil, fmt.Errorf("store.secret_key: %w", err)
	}
	k, err := DecodeSecretKey(b)
	if err != nil {
		return nil, fmt.Errorf("store.secret_key (%s) is not a %d-byte key: %w", s.SecretKey.Source(), SecretKeySize, err)
	}
	return k, nil
}

// checkSecretKey reports an unusable store.secret_key at its line. Inline
// values are checked always (in validate); files and environment variables
// when secrets are resolved (checkSecrets).
func (p *parser) checkSecretKey(c *Config, text []byte) {
	if _, err := DecodeSecretKey(text); err != nil {
		at := p.at("store.secret_key")
		switch {
		case c.Store.SecretKey.File != "":
			at = p.at("store.secret_key.file")
		case c.Store.SecretKey.Env != "":
			at = p.at("store.secret_key.env")
		case c.Store.SecretKey.Value != "":
			at = p.at("store.secret_key.value")
		}
		p.errorf(at, secretKeyHint, "`secret_key` (%s) is not a %d-byte key: %v", c.Store.SecretKey.Source(), SecretKeySize, err)
	}
}

// WithSecretKeyAdvice makes Parse warn when apps are configured without
// store.secret_key: they cannot register webhooks. `mediflow lint` asks for
// it; a bare Parse or Load does not, so a configuration without webhooks
// stays clean for the engine.
func WithSecretKeyAdvice() Option { return func(o *options) { o.secretKeyAdvice = true } }
