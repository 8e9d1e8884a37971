package delivery

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignatureFormat(t *testing.T) {
	secret := []byte("whsec_test")
	at := time.Unix(1767000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := Sign(secret, at, body)
	// Computed independently: HMAC-SHA256 over "<t>.<body>".
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("1767000000." + string(body)))
	want := "t=1767000000,v1=" + hex.EncodeToString(m.Sum(nil))
	if h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("whsec_test")
	at := time.Unix(1767000000, 0)
	body := []byte(`{"id":"evt_1","seq":7}`)
	good := Sign(secret, at, body)
	other := Sign([]byte("whsec_other"), at, body)
	_, v1, _ := strings.Cut(good, ",")
	_, otherV1, _ := strings.Cut(other, ",")

	cases := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		tol    time.Duration
		want   error
	}{
		{"good", secret, good, body, at, 0, nil},
		{"good, clock 4m59s ahead", secret, good, body, at.Add(4*time.Minute + 59*time.Second), 0, nil},
		{"good, clock 5m behind (boundary)", secret, good, body, at.Add(-5 * time.Minute), 0, nil},
		{"spaces and unknown keys", secret, " t=1767000000 , v0=abc, " + v1 + " ", body, at, 0, nil},
		{"several v1, one right (rotation)", secret, "t=1767000000," + otherV1 + "," + v1, body, at, 0, nil},
		{"body changed", secret, good, []byte(`{"id":"evt_1","seq":8}`), at, 0, ErrBadSignature},
		{"wrong secret", []byte("whsec_other"), good, body, at, 0, ErrBadSignature},
		{"timestamp changed", secret, "t=1767000001," + v1, body, at, 0, ErrBadSignature},
		{"stale: replayed 6 min later", secret, good, body, at.Add(6 * time.Minute), 0, ErrStaleTimestamp},
		{"from the future", secret, good, body, at.Add(-6 * time.Minute), 0, ErrStaleTimestamp},
		{"tolerance 10s", secret, good, body, at.Add(11 * time.Second), 10 * time.Second, ErrStaleTimestamp},
		{"empty header", secret, "", body, at, 0, ErrNoSignature},
		{"no timestamp", secret, v1, body, at, 0, ErrNoSignature},
		{"no v1", secret, "t=1767000000", body, at, 0, ErrNoSignature},
		{"v1 not hex", secret, "t=1767000000,v1=zz", body, at, 0, ErrNoSignature},
		{"two timestamps", secret, "t=1,t=1767000000," + v1, body, at, 0, ErrNoSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.secret, c.header, c.body, c.now, c.tol)
			if c.want == nil && err != nil {
				t.Fatalf("Verify: %v, want success", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyRequest(t *testing.T) {
	secret := []byte("whsec_test")
	now := time.Unix(1767000000, 0)
	body := []byte(`{"id":"evt_9"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/hook", bytes.NewReader(body))
	req.Header.Set(SignatureHeader, Sign(secret, now, body))
	got, err := VerifyRequest(req, secret, now, 0)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("VerifyRequest = %q, %v", got, err)
	}
	big := bytes.Repeat([]byte("x"), MaxBodySize+1)
	req, _ = http.NewRequest(http.MethodPost, "http://127.0.0.1/hook", bytes.NewReader(big))
	req.Header.Set(SignatureHeader, Sign(secret, now, big))
	if _, err := VerifyRequest(req, secret, now, 0); err == nil {
		t.Fatalf("VerifyRequest accepted a body over MaxBodySize")
	}
}

func TestSealRoundTrip(t *testing.T) {
	s, err := newSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(newSecret())
	sealed := s.seal("p1", "wh_1", secret)
	if bytes.Contains(sealed, secret) || bytes.Contains(sealed, secret[len(secretPrefix):]) {
		t.Fatalf("the sealed secret contains the secret")
	}
	if again := s.seal("p1", "wh_1", secret); bytes.Equal(again, sealed) {
		t.Errorf("two seals of the same secret are equal (nonce reused?)")
	}
	got, err := s.open("p1", "wh_1", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open = %q, %v", got, err)
	}
	// Bound to its practice and webhook.
	if _, err := s.open("p1", "wh_2", sealed); err == nil {
		t.Errorf("a sealed secret opened for another webhook")
	}
	if _, err := s.open("p2", "wh_1", sealed); err == nil {
		t.Errorf("a sealed secret opened for another practice")
	}
	other, _ := newSealer([]byte("ffffffffffffffffffffffffffffffff"))
	if _, err := other.open("p1", "wh_1", sealed); err == nil {
		t.Errorf("a sealed secret opened with another key")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.open("p1", "wh_1", tampered); err == nil {
		t.Errorf("a tampered sealed secret opened")
	}
	if _, err := newSealer([]byte("short")); err == nil {
		t.Errorf("newSealer accepted a 5-byte key")
	}
}

func TestEventIDStable(t *testing.T) {
	a := EventID("p1", 42, "wh_a")
	if a != EventID("p1", 42, "wh_a") {
		t.Fatalf("EventID is not stable")
	}
	seen := map[string]string{a: "p1/42/wh_a"}
	for _, c := range []struct {
		p  string
		s  int64
		wh string
	}{{"p1", 43, "wh_a"}, {"p2", 42, "wh_a"}, {"p1", 42, "wh_b"}, {"p1w", 42, "h_a"}, {"", 42, "p1wh_a"}} {
		id := EventID(c.p, c.s, c.wh)
		key := c.p + "/" + strconv.FormatInt(c.s, 10) + "/" + c.wh
		if prev, dup := seen[id]; dup {
			t.Errorf("EventID(%s) = EventID(%s)", key, prev)
		}
		seen[id] = key
	}
}
