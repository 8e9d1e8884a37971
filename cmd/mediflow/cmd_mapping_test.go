package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path → content) under a new temporary folder.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const mappingOverrides = `name: sunrise
params:
  mrnSystem: urn:oid:2.16.840.1.113883.3.9999.1
  timeZone: America/Chicago
resources:
  - resource: Patient
    rules:
      - id: sunrise.patient.active
        target: active
        transform:
          - default: true
        rationale: Our EHR leaves active out for current patients; we treat them as active.
`

const epicPatient = `{"resourceType":"Patient","id":"e1","identifier":[{"use":"usual","type":{"text":"EPI"},"system":"urn:oid:1.2.840.114350.1.13.425.2.7.5.737384.0","value":"200019"},{"type":{"text":"INTERNAL"},"system":"urn:oid:1.2.840.114350.1.13.425.2.7.2.698084","value":"     Z1001"}],"name":[{"family":"Pham","given":["Quang"]}],"telecom":[{"system":"phone","value":"629-555-1578","use":"mobile"}],"gender":"male","birthDate":"1988-02-15"}`

func TestMappingTestCommand(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"overrides.yaml": mappingOverrides,
		"patient.json":   epicPatient,
		"cases/1-phone.yaml": `name: mobile numbers are stored in E.164
vendor: epic
version: May 2026
input: patient.json
expect:
  - "Patient.telecom.where(system = 'phone').value.first() = '+16295551578'"
  - "Patient.identifier.where(type.coding.code = 'MR').system = 'urn:oid:2.16.840.1.113883.3.9999.1'"
  - "Patient.identifier.where(type.text = 'INTERNAL').value = 'Z1001'"
  - "Patient.active = true"
  - "Patient.name.first().use = 'official'"
`,
		"cases/2-inline.yaml": `vendor: generic
input:
  resourceType: Appointment
  status: " booked"
  start: "2026-06-10T15:00:00Z"
  participant:
    - actor: {reference: Patient/1}
expect:
  - "Appointment.status = 'booked'"
  - "Appointment.start = @2026-06-10T10:00:00-05:00"
  - "Appointment.participant.status = 'needs-action'"
`,
		"cases/3-wrong.yaml": `vendor: epic
input: patient.json
expect:
  - "Patient.gender = 'female'"
`,
		"cases/4-error.yaml": `vendor: generic
input: '{"resourceType":"Appointment","status":"tentative","participant":[{"status":"accepted"}]}'
expectError: not in http://mediflow.dev/fhir/ConceptMap/appointment-status
`,
	})
	env, stdout, stderr := testEnv()
	code := run(context.Background(), env, []string{"mapping", "test", dir})
	out := stdout.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (one case fails)\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"PASS  mobile numbers are stored in E.164",
		"PASS  2-inline",
		"FAIL  3-wrong",
		"3-wrong.yaml:4: Patient.gender = 'female' is [false]; Patient.gender gives [\"male\"]",
		"PASS  4-error",
		"3 passed, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "1 of 4 cases failed") {
		t.Errorf("stderr: %s", stderr)
	}

	// Fixing the case makes the run pass.
	if err := os.WriteFile(filepath.Join(dir, "cases", "3-wrong.yaml"), []byte("vendor: epic\ninput: patient.json\nexpect: [\"Patient.gender = 'male'\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, stdout, stderr = testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test", dir}); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestMappingTestExpectedFile(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"cases/c.yaml": "vendor: generic\ninput: in.json\nexpect: want.json\n",
		"cases/in.json": `{"resourceType":"Coverage","status":"active ","beneficiary":{"reference":"Patient/1"},
			"payor":[{"reference":"Organization/2"}],"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MB"}]},"value":"M123"}]}`,
		"cases/want.json": `{"resourceType":"Coverage","status":"active","beneficiary":{"reference":"Patient/1"},"subscriberId":"M123",
			"payor":[{"reference":"Organization/2"}],"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MB"}]},"value":"M123"}]}`,
	})
	env, stdout, stderr := testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test", dir}); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A different expectation fails and names the element.
	if err := os.WriteFile(filepath.Join(dir, "cases", "want.json"), []byte(`{"resourceType":"Coverage","status":"cancelled","beneficiary":{"reference":"Patient/1"},"subscriberId":"M123","payor":[{"reference":"Organization/2"}],"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MB"}]},"value":"M123"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env, stdout, _ = testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test", dir}); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stdout)
	}
	if !strings.Contains(stdout.String(), `c.yaml:3: the result differs from want.json: status: expected "cancelled", got "active"`) {
		t.Errorf("output:\n%s", stdout)
	}
}

func TestMappingTestErrors(t *testing.T) {
	// A mistake in the overrides fails the run with file:line.
	dir := writeTree(t, map[string]string{
		"overrides.yaml": "resource: Patient\nrules:\n  - id: x\n    target: gendr\n    rationale: typo\n",
		"cases/a.yaml":   "vendor: generic\ninput: '{\"resourceType\":\"Patient\"}'\nexpect: [\"true\"]\n",
	})
	env, stdout, stderr := testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test", dir}); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stdout)
	}
	if !strings.Contains(stderr.String(), "overrides.yaml:4: rule x: target: gendr: Patient has no element gendr") {
		t.Errorf("stderr:\n%s", stderr)
	}
	// A broken case fails on its own, with file:line; an unknown vendor too.
	dir = writeTree(t, map[string]string{
		"cases/a.yaml": "vendor: generic\ninput: '{\"resourceType\":\"Patient\"}'\nexpct: [\"true\"]\n",
		"cases/b.yaml": "vendor: nosuch\ninput: '{\"resourceType\":\"Patient\"}'\nexpect: [\"true\"]\n",
		"cases/c.yaml": "vendor: generic\ninput: '{\"resourceType\":\"Patient\"}'\nexpect: [\"Patient.(\"]\n",
	})
	env, stdout, _ = testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test", dir}); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stdout)
	}
	for _, want := range []string{
		`a.yaml:3: unknown key "expct" in a test case (hint: did you mean expect?)`,
		`unknown vendor profile "nosuch"`,
		`c.yaml:3: assertion "Patient.("`,
		"0 passed, 3 failed",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	// Usage.
	env, _, _ = testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test"}); code != 2 {
		t.Errorf("no DIR: exit %d, want 2", code)
	}
	env, _, stderr = testEnv()
	if code := run(context.Background(), env, []string{"mapping", "test", t.TempDir()}); code != 1 || !strings.Contains(stderr.String(), "no test cases") {
		t.Errorf("empty DIR: exit %d: %s", code, stderr)
	}
}
