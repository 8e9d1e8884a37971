package mapping

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// stdDecode is encoding/json's reading of data with numbers kept as text.
func stdDecode(data []byte) (any, error) {
	if !json.Valid(data) {
		return nil, os.ErrInvalid
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	dir := repo.Shared(t, "fixtures/vendors/oracle-health")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) < 200 {
		t.Fatalf("fixtures: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := stdDecode(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got, err := decodeJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded differently from encoding/json", filepath.Base(f))
		}
	}
}

func TestDecodeStrings(t *testing.T) {
	for in, want := range map[string]string{
		`"plain"`:                 "plain",
		`"a\"b\\c\/d"`:            `a"b\c/d`,
		`"tab\there\nnew"`:        "tab\there\nnew",
		`"\u00e9t\u00E9"`:         "été",
		`"\ud83d\ude00"`:          "😀",
		`"lone \ud83d surrogate"`: "lone \ufffd surrogate",
		"\"bad \xff utf8\"":       "bad \ufffd utf8",
		`"ünïcödé"`:               "ünïcödé",
	} {
		got, err := decodeJSON([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
		if std, err := stdDecode([]byte(in)); err == nil && std != got {
			t.Errorf("%s: encoding/json gives %q, we give %q", in, std, got)
		}
	}
}

func TestDecodeRejectsInvalid(t *testing.T) {
	for _, in := range []string{
		``, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `"\x"`,
		"\"ctl\x01\"", `"open`, `tru`, `{} {}`, `{"a":1e}`, `{'a':1}`, `{"a":"\u12"}`,
		strings.Repeat("[", 300) + strings.Repeat("]", 300),
	} {
		if _, err := decodeJSON([]byte(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.50,{"b":null}],"c":true,"d":"x\u00e9"}`, `[]`, `"s"`, `-0.0e+5`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeJSON(data)
		want, werr := stdDecode(data)
		if (err == nil) != (werr == nil) {
			// encoding/json accepts and rejects the same documents, except
			// that we refuse deeper nesting.
			if !(err != nil && strings.Contains(err.Error(), "nested")) {
				t.Fatalf("%q: we say %v, encoding/json says %v", data, err, werr)
			}
			return
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %#v != %#v", data, got, want)
		}
	})
}

func encodeString(t *testing.T, in string, prune bool) string {
	t.Helper()
	v, err := decodeJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := encodeResource(nil, model.R4(), v.(map[string]any), prune)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestEncodeOrder(t *testing.T) {
	in := `{"zzz":1,"gender":"male","_birthDate":{"id":"b"},"birthDate":"2000","name":[{"given":["A"],"family":"B","use":"official"}],"id":"1","resourceType":"Patient",
		"extension":[{"valueString":"x","url":"http://e"}],"meta":{"versionId":"2"},"aaa":2,"_aaa":3}`
	want := `{"resourceType":"Patient","id":"1","meta":{"versionId":"2"},"extension":[{"url":"http://e","valueString":"x"}],` +
		`"name":[{"use":"official","family":"B","given":["A"]}],"gender":"male","birthDate":"2000","_birthDate":{"id":"b"},"aaa":2,"_aaa":3,"zzz":1}`
	if got := encodeString(t, in, false); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Contained resources and bundle entries follow their own type.
	in = `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"status":"final","resourceType":"Observation","code":{"text":"x"}}}]}`
	want = `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}}}]}`
	if got := encodeString(t, in, false); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestEncodePrune(t *testing.T) {
	in := `{"resourceType":"Patient","id":"1","active":null,"gender":"","name":[{},{"family":"","given":[""]},{"family":"F"}],
		"extension":[{"url":"http://only-url"},{"url":"http://x","id":"i"},{"url":"http://nested","extension":[{"url":"inner"}]},{"url":"http://keep","valueString":"v"}],
		"telecom":[],"address":[{"line":["", "1 Main"],"_line":[{"id":"a"},null]}],
		"contact":[{"name":{"given":["A",""],"_given":[null,{"extension":[{"url":"http://e","valueCode":"unknown"}]}]}}]}`
	want := `{"resourceType":"Patient","id":"1","extension":[{"url":"http://keep","valueString":"v"}],"name":[{"family":"F"}],` +
		`"address":[{"line":[null,"1 Main"],"_line":[{"id":"a"},null]}],` +
		`"contact":[{"name":{"given":["A",null],"_given":[null,{"extension":[{"url":"http://e","valueCode":"unknown"}]}]}}]}`
	if got := encodeString(t, in, true); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Without pruning everything stays.
	if got := encodeString(t, `{"resourceType":"Patient","gender":"","telecom":[]}`, false); got != `{"resourceType":"Patient","telecom":[],"gender":""}` {
		t.Errorf("unpruned: %s", got)
	}
}

func TestEncodeRejectsUnknownValues(t *testing.T) {
	if _, err := encodeResource(nil, model.R4(), map[string]any{"resourceType": "Patient", "x": make(chan int)}, false); err == nil {
		t.Error("a channel was encoded")
	}
	if _, err := encodeResource(nil, model.R4(), map[string]any{"resourceType": "Patient", "x": json.Number("1.2.3")}, false); err == nil {
		t.Error("an invalid number was encoded")
	}
}
