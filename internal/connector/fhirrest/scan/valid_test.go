package scan

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	`{}`, `[]`, `0`, `-0`, `1.5e+3`, `-12.25E-2`, `"a"`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}], "c": "\u00e9\n\"\\\/"} `,
	`{"a":{}}`, `[[],[[]],{}]`, `"\ud83d\ude00"`, "\"\xff\"", `{"":""}`,
	// invalid
	``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1 "b":2}`, `[1 2]`, `01`, `1.`, `.5`, `1e`, `-`, `+1`,
	`tru`, `nul`, `falsey`, `"abc`, "\"a\x01b\"", `"\x"`, `"\u12g4"`, `"\u12"`, `{"a":[1}`, `[{]}`, `{"a":1}}`, `[1]]`, `{} {}`, `1 2`,
	`{"a":-}`, `[--1]`, `[1e+]`, `"\`, `[` + strings.Repeat("[", 10001) + strings.Repeat("]", 10002),
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.40q) = %v, encoding/json says %v", c, got, want)
		}
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if Valid([]byte(deep)) != json.Valid([]byte(deep)) {
		t.Error("nesting limit differs from encoding/json")
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range validCases[:16] {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		if got, want := Valid(d), json.Valid(d); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", d, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Bundle","entry":[`)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Family","given":["Given","Middle"]}],"telecom":[{"system":"phone","value":"555-0100"}],"birthDate":"1970-01-01","address":[{"line":["1 Main St"],"city":"Springfield","postalCode":"62701"}],"active":true,"n":-12.5e3}}`)
	}
	sb.WriteString(`]}`)
	doc := []byte(sb.String())
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for i := 0; i < b.N; i++ {
			Valid(doc)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for i := 0; i < b.N; i++ {
			json.Valid(doc)
		}
	})
}
