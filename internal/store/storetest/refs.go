package storetest

import (
	"testing"

	"github.com/mediflow/mediflow/internal/store"
)

// testCurrentRefs: the current version of each resource of a type, deleted
// ones flagged, ordered by id, without other types or other practices.
func testCurrentRefs(t *testing.T, st store.Store) {
	c := ctx(t)
	w := func(practice string, ws ...store.ResourceWrite) {
		t.Helper()
		if _, err := st.WriteResources(c, practice, ws); err != nil {
			t.Fatal(err)
		}
	}
	w("p1",
		store.ResourceWrite{ResourceType: "Patient", ID: "b", SourceVersionID: "1", SourceLastUpdated: ts(1), Connection: "ehr", Body: patient("b", "B", "X", "male", "1970-01-01", ts(1))},
		store.ResourceWrite{ResourceType: "Patient", ID: "a", SourceVersionID: "1", SourceLastUpdated: ts(2), Connection: "ehr", Body: patient("a", "A", "X", "female", "1971-01-01", ts(2))},
		store.ResourceWrite{ResourceType: "Patient", ID: "c", SourceVersionID: "1", SourceLastUpdated: ts(3), Connection: "hl7", Body: patient("c", "C", "X", "female", "1972-01-01", ts(3))},
		store.ResourceWrite{ResourceType: "Observation", ID: "o1", Connection: "ehr", Body: observation("o1", "Patient/a", "1234-5", "2024-01-01", ts(3))},
	)
	// a gets a second version; c is deleted.
	w("p1",
		store.ResourceWrite{ResourceType: "Patient", ID: "a", SourceVersionID: "2", SourceLastUpdated: ts(10), Connection: "ehr", Body: patient("a", "A2", "X", "female", "1971-01-01", ts(10))},
		store.ResourceWrite{ResourceType: "Patient", ID: "c", SourceLastUpdated: ts(11), Connection: "ehr", Deleted: true},
	)
	w("p2", store.ResourceWrite{ResourceType: "Patient", ID: "z", Connection: "ehr", Body: patient("z", "Z", "X", "male", "1980-01-01", ts(1))})

	refs, err := st.CurrentRefs(c, "p1", "Patient")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.ResourceRef{
		{ID: "a", Version: 2, SourceVersionID: "2", SourceLastUpdated: ts(10), Connection: "ehr"},
		{ID: "b", Version: 1, SourceVersionID: "1", SourceLastUpdated: ts(1), Connection: "ehr"},
		{ID: "c", Version: 2, SourceLastUpdated: ts(11), Connection: "ehr", Deleted: true},
	}
	if len(refs) != len(want) {
		t.Fatalf("refs %+v, want %+v", refs, want)
	}
	for i := range want {
		g := refs[i]
		if g.ID != want[i].ID || g.Version != want[i].Version || g.SourceVersionID != want[i].SourceVersionID ||
			!g.SourceLastUpdated.Equal(want[i].SourceLastUpdated) || g.Connection != want[i].Connection || g.Deleted != want[i].Deleted {
			t.Errorf("ref %d = %+v, want %+v", i, g, want[i])
		}
	}
	if refs, err := st.CurrentRefs(c, "p1", "Encounter"); err != nil || len(refs) != 0 {
		t.Errorf("no encounters: %v %v", refs, err)
	}
	if refs, err := st.CurrentRefs(c, "p2", "Patient"); err != nil || len(refs) != 1 || refs[0].ID != "z" {
		t.Errorf("p2 sees %v %v", refs, err)
	}
	if _, err := st.CurrentRefs(c, "", "Patient"); err == nil {
		t.Error("an empty practice was accepted")
	}
}
