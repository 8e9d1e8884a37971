package v2fhir_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.json from the converter's output (review every change by hand)")

// goldenResult is the canonical JSON form of a conversion for golden files.
type goldenResult struct {
	Error       string           `json:"error,omitempty"`
	Unsupported bool             `json:"unsupported,omitempty"`
	Resources   []goldenResource `json:"resources"`
	Deletes     []goldenResource `json:"deletes"`
	Merges      []v2fhir.Merge   `json:"merges"`
	Warnings    []string         `json:"warnings"`
}

type goldenResource struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Body json.RawMessage `json:"body,omitempty"`
}

func goldenFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden messages in testdata/golden")
	}
	return files
}

// readMessage reads a test message; line feeds end segments in the files.
func readMessage(t testing.TB, file string) *hl7.Message {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(bytes.TrimRight(data, "\r\n"), []byte("\r\n"), []byte("\r"))
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r"))
	m, err := hl7.Parse(data, hl7.ParseOptions{})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m
}

func render(t testing.TB, res *v2fhir.Result, err error) []byte {
	t.Helper()
	g := goldenResult{Resources: []goldenResource{}, Deletes: []goldenResource{}, Merges: []v2fhir.Merge{}, Warnings: []string{}}
	var unsup *v2fhir.UnsupportedError
	switch {
	case errors.As(err, &unsup):
		g.Unsupported = true
		g.Error = err.Error()
	case err != nil:
		g.Error = err.Error()
	default:
		for _, r := range res.Resources {
			g.Resources = append(g.Resources, goldenResource{Type: r.Type, ID: r.ID, Body: r.Body})
		}
		for _, r := range res.Deletes {
			g.Deletes = append(g.Deletes, goldenResource{Type: r.Type, ID: r.ID})
		}
		g.Merges = append(g.Merges, res.Merges...)
		g.Warnings = append(g.Warnings, res.Warnings...)
	}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	conv, err := v2fhir.New(v2fhir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range goldenFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".hl7")
		t.Run(name, func(t *testing.T) {
			m := readMessage(t, file)
			res, err := conv.Convert(m)
			got := render(t, res, err)
			want := strings.TrimSuffix(file, ".hl7") + ".json"
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it, then review it)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("%s differs from the conversion; got:\n%s", want, got)
			}
		})
	}
}

// Every supported trigger event has a golden message.
func TestEveryTriggerHasAGolden(t *testing.T) {
	have := map[string]bool{}
	for _, f := range goldenFiles(t) {
		m := readMessage(t, f)
		h := m.Header()
		have[h.MessageCode+"^"+h.TriggerEvent] = true
	}
	specs := v2fhir.Specs()
	if len(specs) == 0 {
		t.Fatal("no specs")
	}
	for _, s := range specs {
		if !have[s.MessageCode+"^"+s.TriggerEvent] {
			t.Errorf("no golden message for %s^%s", s.MessageCode, s.TriggerEvent)
		}
	}
}
