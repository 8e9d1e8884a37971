package simstore

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestSnapshotByIdentifier: a query by identifier returns what a scan with
// the same Match returns, before and after the index is built, and follows
// updates that change a resource's identifiers.
func TestSnapshotByIdentifier(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := New(clk.now)
	body := func(ids ...string) []byte {
		var b bytes.Buffer
		b.WriteString(`{"resourceType":"DocumentReference","identifier":[`)
		for i, id := range ids {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"system":"urn:x","value":%q}`, id)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	if err := s.Load("DocumentReference", "loaded", clk.now(), body("a")); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		clk.add(time.Millisecond)
		if _, _, err := s.Put("DocumentReference", fmt.Sprintf("d%d", i), body(fmt.Sprintf("k%d", i%10)), Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	carries := func(key string) func(*Version) bool {
		return func(v *Version) bool { return bytes.Contains(v.Body, []byte(`"value":"`+key+`"`)) }
	}
	check := func(key string) {
		t.Helper()
		scan := s.Snapshot("DocumentReference", Query{Match: carries(key)})
		byID := s.Snapshot("DocumentReference", Query{Match: carries(key), Identifier: "urn:x|" + key})
		if len(scan) != len(byID) {
			t.Fatalf("%s: scan %d, by identifier %d", key, len(scan), len(byID))
		}
		for i := range scan {
			if scan[i] != byID[i] {
				t.Errorf("%s: result %d differs: %s vs %s", key, i, scan[i].ID, byID[i].ID)
			}
		}
	}
	check("k3") // builds the index
	check("a")  // a loaded resource
	clk.add(time.Millisecond)
	if _, _, err := s.Put("DocumentReference", "d3", body("k4"), Precondition{}); err != nil { // k3 → k4
		t.Fatal(err)
	}
	clk.add(time.Millisecond)
	if _, _, err := s.Put("DocumentReference", "new", body("k3"), Precondition{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k3", "k4", "nothing"} {
		check(k)
	}
	if n := len(s.Snapshot("DocumentReference", Query{Match: carries("k3"), Identifier: "urn:x|k3"})); n != 5 {
		t.Errorf("k3: %d, want 5 (d13 d23 d33 d43 new)", n)
	}
	if got := s.Snapshot("Patient", Query{Identifier: "urn:x|k3"}); len(got) != 0 {
		t.Errorf("an empty type: %d", len(got))
	}
}
