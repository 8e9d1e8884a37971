package peers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MedplumVerdict is Medplum's validator's verdict on one resource (see
// peers/fhir-validate.mjs).
type MedplumVerdict struct {
	Line         int            `json:"line"`
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id"`
	OK           bool           `json:"ok"`
	Issues       []MedplumIssue `json:"issues"`
}

// MedplumIssue is one problem Medplum's validator reported.
type MedplumIssue struct {
	Severity   string   `json:"severity"`
	Code       string   `json:"code"`
	Expression []string `json:"expression"`
	Details    string   `json:"details"`
}

// ValidateMedplum validates every resource (FHIR JSON, one line each) with
// Medplum's validator (`validateResource` of @medplum/core with the R4
// definitions) in one Node.js process and returns one verdict per resource,
// in order. It fails the test when the program cannot run or answers out of
// step; invalid resources are not a failure here, callers judge the
// verdicts.
func ValidateMedplum(t testing.TB, resources [][]byte) []MedplumVerdict {
	t.Helper()
	node := Node(t)
	dir := Dir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "fhir-validate.mjs"))
	cmd.Dir = dir
	var in bytes.Buffer
	for _, b := range resources {
		if bytes.ContainsAny(b, "\r\n") {
			t.Fatalf("resource %d holds a line break: validate compact JSON", in.Len())
		}
		in.Write(b)
		in.WriteByte('\n')
	}
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("fhir-validate.mjs did not finish: %s", stderr.String())
	}
	if exit, ok := err.(*exec.ExitError); err != nil && (!ok || exit.ExitCode() != 1) {
		t.Fatalf("fhir-validate.mjs: %v\n%s", err, stderr.String())
	}
	out := make([]MedplumVerdict, len(resources))
	seen := make([]bool, len(resources))
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var v MedplumVerdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("fhir-validate.mjs printed %q: %v", sc.Text(), err)
		}
		if v.Line < 1 || v.Line > len(resources) || seen[v.Line-1] {
			t.Fatalf("fhir-validate.mjs reported line %d of %d (twice?)", v.Line, len(resources))
		}
		out[v.Line-1], seen[v.Line-1] = v, true
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("fhir-validate.mjs said nothing about resource %d; stderr:\n%s", i+1, stderr.String())
		}
	}
	if err == nil {
		for _, v := range out {
			if !v.OK {
				t.Fatal("fhir-validate.mjs exited 0 but reported an invalid resource")
			}
		}
	}
	return out
}
