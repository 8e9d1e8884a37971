package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Request headers of a webhook delivery.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
	SignatureHeader = "Mediflow-Signature"
	// EventIDHeader carries the event id: the same on every attempt.
	EventIDHeader = "Mediflow-Event-Id"
	// IdempotencyKeyHeader carries the event id too, under the name generic
	// HTTP tooling knows.
	IdempotencyKeyHeader = "Idempotency-Key"
	// AttemptHeader carries the attempt number (1 for the first).
	AttemptHeader = "Mediflow-Delivery-Attempt"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock, either way, when Verify is given 0.
const DefaultTolerance = 5 * time.Minute

// MaxBodySize bounds the body VerifyRequest reads.
const MaxBodySize = 1 << 20

// Verification errors.
var (
	// ErrNoSignature: the header is missing or has no timestamp or no v1 value.
	ErrNoSignature = errors.New("delivery: no usable signature header")
	// ErrBadSignature: no v1 value matches the body and timestamp.
	ErrBadSignature = errors.New("delivery: signature does not match")
	// ErrStaleTimestamp: the signature is right but its timestamp is outside
	// the tolerance (a replayed request, or a clock far off).
	ErrStaleTimestamp = errors.New("delivery: signature timestamp outside the tolerance")
)

// signature returns the hex HMAC-SHA256 of "<t>.<body>" under secret.
func signature(secret []byte, t int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(strconv.AppendInt(nil, t, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := t.Unix()
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(signature(secret, ts, body))
}

// Verify checks a SignatureHeader value against body: one of its v1 values
// must be the HMAC-SHA256 of "<t>.<body>" under secret (compared in
// constant time), and t must be within tolerance of now (0: DefaultTolerance).
// Several v1 values are allowed (a sender may sign with an old and a new
// secret while they are rotated); unknown keys are ignored.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts int64
	haveT := false
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || haveT {
				return fmt.Errorf("%w: bad or repeated timestamp", ErrNoSignature)
			}
			ts, haveT = n, true
		case "v1":
			if b, err := hex.DecodeString(v); err == nil && len(b) == sha256.Size {
				sigs = append(sigs, b)
			}
		}
	}
	if !haveT || len(sigs) == 0 {
		return ErrNoSignature
	}
	want := signature(secret, ts, body)
	match := 0
	for _, s := range sigs {
		// Every value is compared, so the time taken does not say which matched.
		match |= subtle.ConstantTimeCompare(s, want)
	}
	if match == 0 {
		return ErrBadSignature
	}
	skew := now.Sub(time.Unix(ts, 0))
	if skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: %s off", ErrStaleTimestamp, skew.Round(time.Second))
	}
	return nil
}

// VerifyRequest reads r's body (at most MaxBodySize bytes) and verifies its
// SignatureHeader; it returns the body when the signature holds.
func VerifyRequest(r *http.Request, secret []byte, now time.Time, tolerance time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("delivery: read body: %w", err)
	}
	if len(body) > MaxBodySize {
		return nil, errors.New("delivery: body too large")
	}
	if err := Verify(secret, r.Header.Get(SignatureHeader), body, now, tolerance); err != nil {
		return nil, err
	}
	return body, nil
}
