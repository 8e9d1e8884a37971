package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

// testState: state documents round-trip, are replaced, listed by prefix,
// deleted, and kept per practice.
func testState(t *testing.T, st store.Store) {
	c := ctx(t)
	if _, err := st.GetState(c, "p1", "bulk/ehr"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing key: %v, want ErrNotFound", err)
	}
	put := func(p, k, v string) {
		t.Helper()
		if err := st.PutState(c, p, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	put("p1", "bulk/ehr", `{"status":"a"}`)
	put("p1", "bulk/ehr", `{"status":"b"}`)
	put("p1", "bulk/ehr2", `{}`)
	put("p1", "subscription/ehr/appointment", `{"n":7}`)
	put("p1", "bulk%/x", `{}`)
	put("p2", "bulk/ehr", `{"other":true}`)
	if v, err := st.GetState(c, "p1", "bulk/ehr"); err != nil || string(v) != `{"status":"b"}` {
		t.Errorf("replaced value %q %v", v, err)
	}
	if v, err := st.GetState(c, "p2", "bulk/ehr"); err != nil || string(v) != `{"other":true}` {
		t.Errorf("p2 value %q %v", v, err)
	}
	keys, err := st.ListState(c, "p1", "bulk/")
	if err != nil || !slices.Equal(keys, []string{"bulk/ehr", "bulk/ehr2"}) {
		t.Errorf("list bulk/: %v %v", keys, err)
	}
	if keys, _ := st.ListState(c, "p1", ""); len(keys) != 4 {
		t.Errorf("list all: %v", keys)
	}
	if err := st.DeleteState(c, "p1", "bulk/ehr"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteState(c, "p1", "bulk/ehr"); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
	if _, err := st.GetState(c, "p1", "bulk/ehr"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted key: %v", err)
	}
	if _, err := st.GetState(c, "p2", "bulk/ehr"); err != nil {
		t.Errorf("p1's delete reached p2: %v", err)
	}
	if err := st.PutState(c, "", "k", nil); err == nil {
		t.Error("empty practice accepted")
	}
}
