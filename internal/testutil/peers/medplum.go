package peers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// medplumStartTimeout bounds how long the server may take to index the FHIR
// definitions and start listening (about 3 s on a quiet 2-core machine).
const medplumStartTimeout = 90 * time.Second

// requestTimeout bounds every HTTP call the helpers make to a peer.
const requestTimeout = 60 * time.Second

// StartMedplum starts Medplum's FHIR engine (peers/medplum-fhir-server.mjs)
// on 127.0.0.1 with a free port and returns its base URL, e.g.
// "http://127.0.0.1:41234". The server has no authentication: connect to it
// with auth type none. It is stopped when the test ends.
func StartMedplum(t testing.TB) string {
	t.Helper()
	node := Node(t)
	dir := Dir(t)

	var ready struct {
		Port    int    `json:"port"`
		BaseURL string `json:"baseUrl"`
	}
	startServerPeer(t, "medplum server", node, dir, "medplum-fhir-server.mjs", medplumStartTimeout, &tailBuffer{max: 16 << 10},
		func(stdout io.Reader, first chan<- string) {
			br := bufio.NewReader(stdout)
			line, _ := br.ReadString('\n')
			first <- line
			_, _ = io.Copy(io.Discard, br)
		}, &ready)
	return fmt.Sprintf("http://127.0.0.1:%d", ready.Port)
}

// LoadBundle posts a transaction (or batch) Bundle to a FHIR server and returns
// the response Bundle. It fails the test unless the server answers 200 and
// every entry succeeded (2xx). Servers assign new ids to POSTed entries: read
// them from the returned entries' response.location or resource.
func LoadBundle(t testing.TB, baseURL string, bundleJSON []byte) *fhir.Bundle {
	t.Helper()
	status, body := do(t, http.MethodPost, strings.TrimRight(baseURL, "/")+"/", bundleJSON)
	if status != http.StatusOK {
		t.Fatalf("peers: load bundle: status %d: %s", status, summarize(body))
	}
	var resp fhir.Bundle
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("peers: load bundle: response is not a Bundle: %v", err)
	}
	for i, e := range resp.Entry {
		if e.Response == nil || !strings.HasPrefix(e.Response.Status, "2") {
			st := "<none>"
			if e.Response != nil {
				st = e.Response.Status
			}
			t.Fatalf("peers: load bundle: entry %d failed with status %s", i, st)
		}
	}
	return &resp
}

// Reset deletes every resource held by the Medplum peer.
func Reset(t testing.TB, baseURL string) {
	t.Helper()
	status, body := do(t, http.MethodPost, strings.TrimRight(baseURL, "/")+"/_admin/reset", nil)
	if status != http.StatusNoContent {
		t.Fatalf("peers: reset: status %d: %s", status, summarize(body))
	}
}

// Read returns the body of GET {baseURL}/{resourceType}/{id} exactly as the
// server sent it, failing the test unless the status is 200.
func Read(t testing.TB, baseURL, resourceType, id string) []byte {
	t.Helper()
	status, body := do(t, http.MethodGet, strings.TrimRight(baseURL, "/")+"/"+resourceType+"/"+id, nil)
	if status != http.StatusOK {
		t.Fatalf("peers: read %s/%s: status %d: %s", resourceType, id, status, summarize(body))
	}
	return body
}

// Update PUTs a resource to {baseURL}/{resourceType}/{id} and returns the
// stored version as the server sent it back, failing the test unless the
// status is 200 or 201.
func Update(t testing.TB, baseURL string, resource []byte) []byte {
	t.Helper()
	h, err := fhir.ParseHeader(resource)
	if err != nil || h.ID == "" {
		t.Fatalf("peers: update: resource needs resourceType and id (%v)", err)
	}
	status, body := do(t, http.MethodPut, strings.TrimRight(baseURL, "/")+"/"+h.ResourceType+"/"+h.ID, resource)
	if status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("peers: update %s/%s: status %d: %s", h.ResourceType, h.ID, status, summarize(body))
	}
	return body
}

// do makes one request with a FHIR JSON body and returns status and body.
func do(t testing.TB, method, url string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("peers: %s %s: %v", method, url, err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("peers: %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("peers: %s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, out
}

// summarize describes an error response without echoing resource content:
// an OperationOutcome's codes, or the body's size.
func summarize(body []byte) string {
	if oo, ok := fhir.ParseOutcome(body); ok {
		return oo.Summary()
	}
	return fmt.Sprintf("%d-byte body", len(body))
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
