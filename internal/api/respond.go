package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/mediflow/mediflow/internal/fhir"
)

// Content types of the answers.
const (
	fhirJSON  = "application/fhir+json; charset=utf-8"
	plainJSON = "application/json; charset=utf-8"
)

// outcomeJSON renders a one-issue OperationOutcome.
func outcomeJSON(status int, code, diagnostics string) []byte {
	sev := "error"
	if status >= 500 {
		sev = "fatal"
	}
	b, err := json.Marshal(fhir.NewOutcome(sev, code, diagnostics))
	if err != nil { // cannot happen for these field types
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception"}]}`)
	}
	return b
}

// writeOutcome answers with an OperationOutcome.
func writeOutcome(w http.ResponseWriter, status int, code, diagnostics string) {
	b := outcomeJSON(status, code, diagnostics)
	h := w.Header()
	h.Set("Content-Type", fhirJSON)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, "exception", "cannot encode the answer")
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Response buffers are pooled: a search page is written into one buffer by
// appending the stored resource bytes as they are, never re-encoding them.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 4<<20 { // let outsized buffers go
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// marshalLine encodes v as JSON followed by a newline.
func marshalLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
