package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Go verifier shown in docs/delivery.md, kept here word for word so the
// documentation's example is known to accept what the Dispatcher signs.
func verifyMediflow(secret []byte, header string, body []byte, now time.Time) bool {
	var t int64 = -1
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			t, _ = strconv.ParseInt(v, 10, 64)
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if t < 0 || now.Sub(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	fmt.Fprintf(mac, "%d.", t)
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		ok = ok || (err == nil && hmac.Equal(got, want))
	}
	return ok
}

func TestDocsGoVerifier(t *testing.T) {
	secret := []byte(newSecret())
	now := time.Now()
	body := []byte(`{"id":"evt_1","seq":7}`)
	h := Sign(secret, now, body)
	if !verifyMediflow(secret, h, body, now) {
		t.Errorf("the docs' verifier refuses a good signature")
	}
	_, v1, _ := strings.Cut(h, ",")
	if !verifyMediflow(secret, h+",v1=00", body, now) || !verifyMediflow(secret, "v1=00,"+h, body, now) {
		t.Errorf("the docs' verifier refuses a good signature next to another v1 %s", v1)
	}
	if verifyMediflow(secret, h, []byte(`{"id":"evt_1","seq":8}`), now) {
		t.Errorf("the docs' verifier accepts a tampered body")
	}
	if verifyMediflow(secret, h, body, now.Add(6*time.Minute)) {
		t.Errorf("the docs' verifier accepts a stale timestamp")
	}
	if verifyMediflow([]byte("whsec_other"), h, body, now) || verifyMediflow(secret, "", body, now) {
		t.Errorf("the docs' verifier accepts a wrong secret or no header")
	}
}
