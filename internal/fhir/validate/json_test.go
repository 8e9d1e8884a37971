package validate

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// Strings the parser reads decode to what encoding/json encoded.
func TestUnescapeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	runes := []rune{'a', 'Z', '"', '\\', '/', '\b', '\f', '\n', '\r', '\t', 0, 0x1f, 'é', '’', 0x2028, 0x1F600, 0xFFFD, '<', '&'}
	var d doc
	for range 2000 {
		var r []rune
		for range rng.IntN(12) {
			r = append(r, runes[rng.IntN(len(runes))])
		}
		want := string(r)
		enc, err := json.Marshal(map[string]string{want: want})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.parse(string(enc)); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		n := &d.nodes[1]
		if got := d.str(n); got != want {
			t.Errorf("%s: value %q, want %q", enc, got, want)
		}
		if got := d.key(n); got != want {
			t.Errorf("%s: key %q, want %q", enc, got, want)
		}
	}
	// Escaped surrogate pairs and lone surrogates.
	for in, want := range map[string]string{`"\ud83d\ude00"`: "😀", `"\ud83d"`: "\uFFFD", `"\ude00x"`: "\uFFFDx", `"\u00e9\/"`: "é/"} {
		if err := d.parse(in); err != nil {
			t.Fatal(err)
		}
		if got := d.str(&d.nodes[0]); got != want {
			t.Errorf("%s → %q, want %q", in, got, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	var d doc
	for _, in := range []string{``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `-`, `1e`, `"\x"`, `"\u12"`, "\"a\x01\"",
		`tru`, `nul`, `{} {}`, `{"a":1 "b":2}`, `"abc`, "\"\xff\""} {
		if err := d.parse(in); err == nil {
			t.Errorf("parse(%q) accepted", in)
		}
	}
	for _, in := range []string{`{}`, `[]`, ` {"a" : [1, -0.5e+3, true, false, null, "x", {}] } `, `"\u00e9"`, `0`} {
		if err := d.parse(in); err != nil {
			t.Errorf("parse(%q): %v", in, err)
		}
	}
}
