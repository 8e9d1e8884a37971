package simstore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestZeroBasedVersions(t *testing.T) {
	s := New(func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	s.SetVersionBase(0)
	if s.VersionBase() != 0 {
		t.Fatalf("base %d", s.VersionBase())
	}
	v, created, err := s.Put("Patient", "p1", []byte(`{"resourceType":"Patient"}`), Precondition{MustNotExist: true})
	if err != nil || !created || v.VersionID != 1 || v.Number() != 0 || v.ETag() != `W/"0"` || !strings.Contains(string(v.Body), `"versionId":"0"`) {
		t.Fatalf("first version: %+v created=%v %v %s", v, created, err, v.Body)
	}
	// Preconditions stay 1-based inside the store.
	v2, _, err := s.Put("Patient", "p1", []byte(`{"resourceType":"Patient","active":true}`), Precondition{IfMatch: 1, MustExist: true})
	if err != nil || v2.Number() != 1 || !strings.Contains(string(v2.Body), `"versionId":"1"`) {
		t.Fatalf("second version: %v %s", err, v2.Body)
	}
	var ce *ConflictError
	if _, _, err := s.Put("Patient", "p1", []byte(`{"resourceType":"Patient"}`), Precondition{IfMatch: 1}); !errors.As(err, &ce) || ce.Current != 2 {
		t.Fatalf("stale: %v", err)
	}
	if err := s.Load("Patient", "p2", time.Now(), []byte(`{"resourceType":"Patient","id":"p2","meta":{"versionId":"0"}}`)); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("Patient", "p2"); v.ETag() != `W/"0"` {
		t.Fatalf("loaded ETag %s", v.ETag())
	}
	// The default store numbers from 1.
	d := New(nil)
	if v, _, _ := d.Put("Patient", "p", []byte(`{"resourceType":"Patient"}`), Precondition{}); v.ETag() != `W/"1"` || d.VersionBase() != 1 {
		t.Fatalf("default ETag %s", v.ETag())
	}
}
