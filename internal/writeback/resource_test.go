package writeback

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewIDIsULIDLike(t *testing.T) {
	seen := map[string]bool{}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	prev := ""
	for i := 0; i < 1000; i++ {
		id, err := newID(t0.Add(time.Duration(i) * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 26 || strings.Trim(id, crockford) != "" || seen[id] {
			t.Fatalf("id %q", id)
		}
		if id[:10] < prev {
			t.Fatalf("ids do not sort by time: %q after %q", id[:10], prev)
		}
		prev = id[:10]
		seen[id] = true
	}
}

func TestPrepareCreate(t *testing.T) {
	in := []byte(`{"resourceType":"Observation","id":"client","meta":{"versionId":"3","tag":[{"system":"x","code":"y"},{"system":"urn:mediflow:intent","code":"OLD"}]},"identifier":[{"system":"s","value":"v"}],"valueQuantity":{"value":12.50}}`)
	out, err := prepareCreate(in, "Observation", "ID1")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		ID         string `json:"id"`
		Meta       map[string]any
		Identifier []map[string]string
		Value      struct {
			Value json.Number `json:"value"`
		} `json:"valueQuantity"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != "" || m.Meta["versionId"] != nil || len(m.Identifier) != 2 || m.Identifier[1]["value"] != "ID1" || m.Value.Value != "12.50" {
		t.Errorf("prepared %s", out)
	}
	if !hasTag(out, "ID1") || hasTag(out, "OLD") || !strings.Contains(string(out), `"system":"x"`) {
		t.Errorf("tags %s", out)
	}
	if _, err := prepareCreate(in, "Condition", "ID1"); err == nil {
		t.Error("a body of another type was accepted")
	}
}

func TestApplyChangesAndPatch(t *testing.T) {
	cur := []byte(`{"resourceType":"Appointment","id":"a1","meta":{"versionId":"4"},"status":"booked","description":"x"}`)
	ch := []byte(`{"resourceType":"Appointment","id":"zzz","status":"cancelled","comment":"c"}`)
	out, err := applyChanges(cur, ch, "I1")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	if m["id"] != "a1" || m["status"] != "cancelled" || m["comment"] != "c" || m["description"] != "x" || !hasTag(out, "I1") {
		t.Errorf("applied %s", out)
	}
	p, err := jsonPatch(cur, ch, "I1")
	if err != nil {
		t.Fatal(err)
	}
	var ops []map[string]any
	json.Unmarshal(p, &ops)
	var paths []string
	for _, op := range ops {
		paths = append(paths, op["op"].(string)+" "+op["path"].(string))
	}
	if !slices.Equal(paths, []string{"add /comment", "add /status", "add /meta/tag"}) {
		t.Errorf("patch %s", p)
	}
}

func TestDifferences(t *testing.T) {
	want := `{"resourceType":"X","id":"1","meta":{"tag":[]},"status":"final","value":1.0,"when":"2026-01-02T10:00:00Z",
		"code":{"coding":[{"system":"s","code":"c"}]},"identifier":[{"system":"a","value":"1"},{"system":"b","value":"2"}],
		"note":[{"text":"t"}]}`
	cases := []struct {
		name, got string
		want      []string
	}{
		{"equal with extras and reordering", `{"resourceType":"X","id":"9","status":"final","value":1,"when":"2026-01-02T11:00:00.000+01:00",
			"code":{"coding":[{"system":"s","code":"c","display":"added by the server"}],"text":"T"},
			"identifier":[{"system":"z","value":"0"},{"system":"b","value":"2"},{"system":"a","value":"1"}],"note":[{"text":"t"}],"extra":true}`, nil},
		{"changed and missing", `{"resourceType":"X","status":"amended","value":2,"when":"2026-01-02T10:00:01Z",
			"code":{"coding":[{"system":"s","code":"d"}]},"identifier":[{"system":"a","value":"1"}]}`,
			[]string{"code.coding[0].code", "identifier[1]", "note", "status", "value", "when"}},
		{"type changed", `{"resourceType":"Y","status":"final","value":"1","when":"2026-01-02T10:00:00Z","code":{"coding":[{"system":"s","code":"c"}]},
			"identifier":[{"system":"a","value":"1"},{"system":"b","value":"2"}],"note":{"text":"t"}}`, []string{"note", "resourceType", "value"}},
	}
	for _, tc := range cases {
		got, err := differences([]byte(want), []byte(tc.got))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, err := differences([]byte(want), []byte(`[]`)); err == nil {
		t.Error("a non-object read-back compared")
	}
}
