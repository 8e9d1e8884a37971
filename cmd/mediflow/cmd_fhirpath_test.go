package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fhirpathCLIPatient = `{"resourceType": "Patient", "id": "p1",
  "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
  "birthDate": "1974-12-25",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
  "multipleBirthInteger": 2}`

func fhirpathRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	env, stdout, stderr := testEnv()
	code := run(context.Background(), env, append([]string{"fhirpath"}, args...))
	return code, stdout.String(), stderr.String()
}

func writeFHIRPathInput(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "patient.json")
	if err := os.WriteFile(p, []byte(fhirpathCLIPatient), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFHIRPathCommand(t *testing.T) {
	f := writeFHIRPathInput(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"Patient.name.given", f}, `["Peter","James"]`},
		{[]string{"birthDate", f}, `["1974-12-25"]`},
		{[]string{"birthDate + 1 day", f}, `["1974-12-26"]`},
		{[]string{"birthDate.extension.value", f}, `["1974-12-25T14:35:45-05:00"]`},
		{[]string{"@T10:30:00.5", f}, `["10:30:00.5"]`},
		{[]string{"2 'mg' + 1 'g'", f}, `[{"value":1002,"unit":"mg"}]`},
		{[]string{"multipleBirth", f}, `[2]`},
		{[]string{"--model", "none", "multipleBirth", f}, `[]`},
		{[]string{"--model", "none", "multipleBirthInteger", f}, `[2]`},
		{[]string{"--var", `n=3`, "--var", `s="x"`, "%n * 2 & %s", f}, ``},
		{[]string{"--var", `codes=["a","b"]`, "%codes.count()", f}, `[2]`},
		{[]string{"name.where(given = %g).family", "--", f}, ``},
		{[]string{"--", "-1.5 + 1", f}, `[-0.5]`},
		{[]string{"Patient.nothing", f}, `[]`},
	}
	for _, tc := range tests {
		code, out, stderr := fhirpathRun(t, tc.args...)
		if tc.want == "" {
			if code == 0 {
				t.Errorf("%v: exit 0, want a failure (out %s)", tc.args, out)
			}
			continue
		}
		if code != 0 {
			t.Errorf("%v: exit %d: %s", tc.args, code, stderr)
			continue
		}
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("%v: got %s, want %s", tc.args, out, tc.want)
		}
	}
}

func TestFHIRPathCommandStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old })
	go func() {
		_, _ = w.WriteString(fhirpathCLIPatient)
		_ = w.Close()
	}()
	code, out, stderr := fhirpathRun(t, "name.family", "-")
	if code != 0 || strings.TrimSpace(out) != `["Chalmers"]` {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, stderr)
	}
}

func TestFHIRPathCommandErrors(t *testing.T) {
	f := writeFHIRPathInput(t)
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"Patient.name.where(use = 'x'))", f}, 1, "1:30: unexpected ')'"},
		{[]string{"name.single()", f + ".missing"}, 1, "no such file"},
		{[]string{"Patient.name.given.single()", f}, 1, "1:20: single() on 2 items"},
		{[]string{"%undefined", f}, 1, "1:1: undefined variable %undefined"},
		{[]string{"name"}, 2, "takes EXPR and FILE"},
		{[]string{"--model", "r5", "name", f}, 2, "--model must be r4 or none"},
		{[]string{"--var", "x", "name", f}, 2, "want name=json"},
	}
	for _, tc := range tests {
		code, _, stderr := fhirpathRun(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
	}
	// a bad JSON file names the file
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := fhirpathRun(t, "id", bad); code != 1 || !strings.Contains(stderr, "bad.json") {
		t.Errorf("bad JSON: exit %d, stderr %q", code, stderr)
	}
}
