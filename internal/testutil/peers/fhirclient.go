package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Library names an ordinary FHIR client library that peers/fhir-client-read.mjs can drive.
type Library string

const (
	// FHIRKit is fhir-kit-client (pages with Client.nextPage).
	FHIRKit Library = "fhir-kit-client"
	// SMARTClient is SMART Health IT's fhirclient (pages with pageLimit/onPage).
	SMARTClient Library = "fhirclient"
)

// clientTimeout bounds one run of the client script.
const clientTimeout = 2 * time.Minute

// Summary is what a client library read from a FHIR API (see
// peers/fhir-client-read.mjs). When a call failed, FailedStep and Error say
// which and why, and the fields of the later steps are nil.
type Summary struct {
	Library      string          `json:"library"`
	Metadata     *MetadataInfo   `json:"metadata"`
	Patients     *SearchResult   `json:"patients"`
	Patient      json.RawMessage `json:"patient"` // the Patient read by id, as the library returned it
	Appointments *SearchResult   `json:"appointments"`
	FailedStep   string          `json:"failedStep"` // "metadata", "patients", "read" or "appointments"
	Error        *CallError      `json:"error"`
}

// MetadataInfo is the part of the CapabilityStatement the script reports.
type MetadataInfo struct {
	ResourceType string `json:"resourceType"`
	FHIRVersion  string `json:"fhirVersion"`
}

// SearchResult is one search followed through all its pages.
type SearchResult struct {
	Total *int     `json:"total"` // Bundle.total of the first page, if the server sent it
	Pages int      `json:"pages"`
	IDs   []string `json:"ids"`
}

// CallError is a failed library call.
type CallError struct {
	Status  int    `json:"status"` // HTTP status, 0 when there was none
	Message string `json:"message"`
}

// RunFHIRKit reads the FHIR API at baseURL with fhir-kit-client, sending token
// (if not empty) as a bearer token. Extra args are passed to the script (e.g.
// "--count", "5", "--patient-id", "p1").
func RunFHIRKit(t testing.TB, baseURL, token string, args ...string) Summary {
	t.Helper()
	return RunClient(t, FHIRKit, baseURL, token, args...)
}

// RunClient reads the FHIR API at baseURL with the given library. The test
// fails if the script cannot run or prints no summary; a failed FHIR call is
// not a test failure here but is reported in Summary.Error.
func RunClient(t testing.TB, lib Library, baseURL, token string, args ...string) Summary {
	t.Helper()
	node := Node(t)
	dir := Dir(t)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()

	argv := append([]string{filepath.Join(dir, "fhir-client-read.mjs"), "--lib", string(lib), "--base", baseURL}, args...)
	cmd := exec.CommandContext(ctx, node, argv...)
	cmd.Dir = dir
	// The token goes through the environment, not argv, so it does not show in process listings.
	cmd.Env = append(os.Environ(), "FHIR_TOKEN="+token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		t.Fatalf("peers: run %s: %v", lib, runErr)
	}
	if ctx.Err() != nil {
		t.Fatalf("peers: %s did not finish within %s; stderr:\n%s", lib, clientTimeout, stderr.String())
	}
	var s Summary
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &s); err != nil || s.Library == "" {
		t.Fatalf("peers: %s printed no summary (exit: %v); stderr:\n%s", lib, runErr, stderr.String())
	}
	if runErr != nil && s.Error == nil {
		t.Fatalf("peers: %s exited with %v but reported no error; stderr:\n%s", lib, runErr, stderr.String())
	}
	return s
}
