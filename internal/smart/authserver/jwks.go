package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// verifyKey is one public key a client registered for verifying assertions.
type verifyKey struct {
	kid string
	alg string // the JWK's alg, if it named one
	key any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// parseJWKS reads the usable verification keys of a JWKS. Keys of unknown
// types, or marked for another use, are skipped; private key material is an
// error (a client must never hand over its private key).
func parseJWKS(raw []byte) ([]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not valid JSON: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`JWKS has no "keys" array`)
	}
	var out []verifyKey
	for _, rk := range set.Keys {
		var meta struct {
			Use    string   `json:"use"`
			KeyOps []string `json:"key_ops"`
			D      string   `json:"d"`
		}
		if err := json.Unmarshal(rk, &meta); err != nil {
			continue
		}
		if meta.D != "" {
			return nil, errors.New("JWKS contains private key material; register only the public keys")
		}
		if meta.Use != "" && meta.Use != "sig" {
			continue
		}
		if meta.KeyOps != nil && !slices.Contains(meta.KeyOps, "verify") {
			continue
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(rk); err != nil {
			continue // unknown kty or malformed: not usable, not fatal
		}
		switch k := jwk.Key.(type) {
		case *rsa.PublicKey:
			out = append(out, verifyKey{kid: jwk.KeyID, alg: jwk.Algorithm, key: k})
		case *ecdsa.PublicKey:
			out = append(out, verifyKey{kid: jwk.KeyID, alg: jwk.Algorithm, key: k})
		}
	}
	return out, nil
}

// fits reports whether k can verify alg: the kty must match the algorithm
// family (and for ES384 the curve), and a JWK that names an alg must name this one.
func (k verifyKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch p := k.key.(type) {
	case *rsa.PublicKey:
		return alg == "RS384" && p.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return alg == "ES384" && p.Curve == elliptic.P384()
	}
	return false
}

// selectKey picks the single key with this kid that fits alg.
func selectKey(keys []verifyKey, kid, alg string) (verifyKey, error) {
	var found []verifyKey
	for _, k := range keys {
		if k.kid == kid && k.fits(alg) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return verifyKey{}, fmt.Errorf("no registered key has kid %q and fits %s", kid, alg)
	default:
		return verifyKey{}, fmt.Errorf("more than one registered key has kid %q", kid)
	}
}

// jwksEntry is a JWKS fetched from a URL.
type jwksEntry struct {
	keys      []verifyKey
	fetchedAt time.Time
	expiresAt time.Time // fetchedAt + max-age; equal to fetchedAt when not cacheable
}

// fetchJWKS GETs a JWKS URL and reports how long it may be cached, per its
// Cache-Control header (no max-age, no-store or no-cache: not at all).
func fetchJWKS(ctx context.Context, hc *http.Client, u string) ([]verifyKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch JWKS: HTTP %d", resp.StatusCode)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, 0, err
	}
	return keys, cacheMaxAge(resp.Header.Values("Cache-Control")), nil
}

// cacheMaxAge returns the max-age of Cache-Control header values, or 0 when
// the response must not be reused.
func cacheMaxAge(values []string) time.Duration {
	var maxAge time.Duration
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return 0
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(d, "max-age="), `"`))
				if err == nil && n > 0 {
					maxAge = time.Duration(n) * time.Second
				}
			}
		}
	}
	return maxAge
}
