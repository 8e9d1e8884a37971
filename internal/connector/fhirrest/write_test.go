package fhirrest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/vendors/epic"
)

func TestWriteCreateReadsLocationAndSendsHeaders(t *testing.T) {
	var got http.Header
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/fhir/DocumentReference" {
			t.Errorf("request %s %s", r.Method, r.URL.Path)
		}
		got = r.Header.Clone()
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.Header().Set("Location", "http://"+r.Host+"/fhir/DocumentReference/doc-7/_history/1")
		w.Header().Set("ETag", `W/"1"`)
		w.WriteHeader(http.StatusCreated) // empty body, as Oracle Health answers
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL+"/fhir", nil)
	res, err := c.Write(context.Background(), WriteRequest{Method: http.MethodPost, ResourceType: "DocumentReference",
		Body: []byte(`{"resourceType":"DocumentReference"}`), IfNoneExist: "identifier=urn:mediflow:intent|X1", Prefer: "return=representation"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Status != 201 || res.ID != "doc-7" || res.VersionID != "1" || res.ETag != `W/"1"` || res.Outcome != nil {
		t.Errorf("result %+v", res)
	}
	if got.Get("If-None-Exist") != "identifier=urn:mediflow:intent|X1" || got.Get("Prefer") != "return=representation" ||
		got.Get("Content-Type") != "application/fhir+json" || got.Get("If-Match") != "" || body != `{"resourceType":"DocumentReference"}` {
		t.Errorf("headers %v body %q", got, body)
	}
}

func TestWriteUpdateConflictIsAnAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/fhir/Appointment/a-1" || r.Header.Get("If-Match") != `W/"3"` {
			t.Errorf("request %s %s If-Match %q", r.Method, r.URL.Path, r.Header.Get("If-Match"))
		}
		outcome(http.StatusPreconditionFailed, w, "error", "conflict", "", "version 4 is current for Smith")
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL+"/fhir", nil)
	res, err := c.Write(context.Background(), WriteRequest{Method: http.MethodPut, ResourceType: "Appointment", ID: "a-1",
		Body: []byte(`{}`), IfMatch: "3"})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || res.Status != 412 || res.Kind != KindConflict || res.Outcome == nil || res.Outcome.Issue[0].Code != "conflict" || res.ID != "a-1" {
		t.Errorf("result %+v", res)
	}
}

func TestWriteVendorCodeAndRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/Condition" {
			outcome(http.StatusBadRequest, w, "error", "duplicate", epic.CodeDuplicate, "duplicate")
			return
		}
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL+"/fhir", func(cfg *Config) { cfg.Profile = epic.New() })
	res, err := c.Write(context.Background(), WriteRequest{Method: http.MethodPost, ResourceType: "Condition", Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.VendorCode != epic.CodeDuplicate || res.Status != 400 {
		t.Errorf("vendor code %q status %d", res.VendorCode, res.Status)
	}
	res, err = c.Write(context.Background(), WriteRequest{Method: http.MethodPost, ResourceType: "Observation", Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindRateLimited || res.RetryAfter != 7*time.Second {
		t.Errorf("429: kind %v retry-after %v", res.Kind, res.RetryAfter)
	}
}

func TestWriteRefreshesTokenOnceOn401(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") == "Bearer tok1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	tokens := &fakeTokens{}
	c, _ := newClient(t, srv.URL, func(cfg *Config) { cfg.Tokens = tokens })
	res, err := c.Write(context.Background(), WriteRequest{Method: http.MethodPost, ResourceType: "Observation", Body: []byte(`{}`)})
	if err != nil || res.Status != 201 || calls.Load() != 2 || len(tokens.invalidated) != 1 {
		t.Errorf("res %+v err %v calls %d invalidated %v", res, err, calls.Load(), tokens.invalidated)
	}
}

func TestWriteNoAnswerIsAWriteError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("no hijacker")
			return
		}
		conn, _, _ := hj.Hijack()
		conn.Close() // the write arrived; the answer never leaves
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, nil)
	_, err := c.Write(context.Background(), WriteRequest{Method: http.MethodPost, ResourceType: "Observation", Body: []byte(`{"name":"Smith"}`)})
	var we *WriteError
	if !errors.As(err, &we) || !we.Sent || we.Kind != KindNetwork || we.Method != "POST" {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "Smith") {
		t.Error("the error quotes the body")
	}
	// A request that is not valid never leaves.
	for _, w := range []WriteRequest{
		{Method: http.MethodGet, ResourceType: "Observation"},
		{Method: http.MethodPut, ResourceType: "Observation"},
		{Method: http.MethodPost, ResourceType: "Observation", ID: "x"},
		{Method: http.MethodPost, ResourceType: "observation"},
	} {
		if _, err := c.Write(context.Background(), w); err == nil || errors.As(err, &we) && we.Sent {
			t.Errorf("%+v: %v", w, err)
		}
	}
}

func TestParseLocationAndETags(t *testing.T) {
	cases := []struct {
		loc, rt, id, vid string
		ok               bool
	}{
		{"http://ehr/fhir/r4/DocumentReference/abc/_history/2", "DocumentReference", "abc", "2", true},
		{"DocumentReference/abc", "DocumentReference", "abc", "", true},
		{"/fhir/Observation/o-1/_history/9?x=1", "Observation", "o-1", "9", true},
		{"http://ehr/fhir/Patient/abc", "DocumentReference", "", "", false},
		{"", "Patient", "", "", false},
	}
	for _, tc := range cases {
		id, vid, ok := ParseLocation(tc.loc, tc.rt)
		if id != tc.id || vid != tc.vid || ok != tc.ok {
			t.Errorf("ParseLocation(%q) = %q %q %v", tc.loc, id, vid, ok)
		}
	}
	if ETagOf("3") != `W/"3"` || ETagOf(`W/"4"`) != `W/"4"` || VersionOfETag(`W/"12"`) != "12" || VersionOfETag("") != "" {
		t.Error("ETag helpers")
	}
}
