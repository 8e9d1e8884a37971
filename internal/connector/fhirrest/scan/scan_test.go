package scan

import (
	"encoding/json"
	"reflect"
	"testing"
)

func members(t *testing.T, doc string) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := Object([]byte(doc), func(k, v []byte) bool { got[string(k)] = string(v); return true }); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	return got
}

func TestObjectMatchesEncodingJSON(t *testing.T) {
	docs := []string{
		`{}`,
		` { "a" : 1 , "b":"x\"y\\", "c" : {"d":[1,2,{"e":"}]"}]}, "f":null,"g":true, "h": -1.5e3 } `,
		`{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2025-01-01T00:00:00Z"},"name":[{"family":"O\u0027Brien"}]}`,
		`{"k\u0065y":"escaped key","s":"\\\\"}`,
	}
	for _, doc := range docs {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatal(err)
		}
		got := members(t, doc)
		if len(got) != len(want) {
			t.Fatalf("%s: got %v want %v", doc, got, want)
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Fatalf("%s: member %q = %s, want %s", doc, k, got[k], v)
			}
		}
	}
}

func TestArrayAndString(t *testing.T) {
	var elems []string
	err := Array([]byte(` [ {"a":"]"}, "s", 3 ,[[]] ] `), func(e []byte) bool { elems = append(elems, string(e)); return true })
	if err != nil || !reflect.DeepEqual(elems, []string{`{"a":"]"}`, `"s"`, `3`, `[[]]`}) {
		t.Fatalf("%v %q", err, elems)
	}
	if err := Array([]byte(`[]`), func([]byte) bool { t.Fatal("element in empty array"); return true }); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{`"plain"`: "plain", `"a\nb\u00e9"`: "a\nb\u00e9", `null`: ""} {
		if got, err := String([]byte(in)); err != nil || got != want {
			t.Fatalf("String(%s) = %q, %v", in, got, err)
		}
	}
	if _, err := String([]byte(`12`)); err == nil {
		t.Fatal("number decoded as string")
	}
	if err := Object([]byte(`[1]`), func(k, v []byte) bool { return true }); err != ErrType {
		t.Fatalf("array as object: %v", err)
	}
}

func TestEarlyStop(t *testing.T) {
	n := 0
	Object([]byte(`{"a":1,"b":2,"c":3}`), func(k, v []byte) bool { n++; return string(k) != "b" })
	if n != 2 {
		t.Fatalf("visited %d members", n)
	}
}

func TestMalformedNeverPanics(t *testing.T) {
	doc := `{"a":[1,{"b":"c\"d"}],"e":{"f":null},"g":"h"}`
	for i := 0; i < len(doc); i++ {
		for _, in := range []string{doc[:i], doc[i:], doc[:i] + "\"" + doc[i:]} {
			Object([]byte(in), func(k, v []byte) bool {
				Object(v, func(k, v []byte) bool { return true })
				Array(v, func([]byte) bool { return true })
				String(v)
				return true
			})
		}
	}
	for _, bad := range []string{``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":"x`, `{"a":[1,2}`} {
		if err := Object([]byte(bad), func(k, v []byte) bool { return true }); err == nil && bad != `{"a":[1,2}` {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzObject(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"c\"d"}],"e":{"f":null}}`))
	f.Fuzz(func(t *testing.T, d []byte) {
		err := Object(d, func(k, v []byte) bool { Object(v, func(k, v []byte) bool { return true }); return true })
		if json.Valid(d) {
			var m map[string]json.RawMessage
			if json.Unmarshal(d, &m) == nil && m != nil && err != nil {
				t.Fatalf("valid object rejected: %s: %v", d, err)
			}
		}
	})
}
