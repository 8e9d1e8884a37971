package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fhirJSTimeout bounds one run of fhir-validate-fhirjs.mjs (about 1 s for
// the 6,700 resources of the Synthea test bundles).
const fhirJSTimeout = 2 * time.Minute

// FhirJSDir returns the peers/ folder after checking that npm `fhir`
// (Lantana Group's FHIR.js) is installed; it skips (or, under CI, fails) the
// test when it is not.
func FhirJSDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "peers")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fhir", "package.json")); err != nil {
		unavailable(t, "peers/node_modules lacks fhir")
	}
	return dir
}

// FhirJSMessage is one message of FHIR.js's validator: severity fatal,
// error, warning or info; location, a dotted path ("Patient.name[0]");
// message, which may quote values of the resource.
type FhirJSMessage struct {
	Severity string `json:"severity"`
	Location string `json:"location"`
	Message  string `json:"message"`
}

// IsError reports whether the message makes the resource invalid.
func (m FhirJSMessage) IsError() bool { return m.Severity == "error" || m.Severity == "fatal" }

// FhirJSVerdict is FHIR.js's verdict on one resource.
type FhirJSVerdict struct {
	Line         int             `json:"line"`
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id"`
	OK           bool            `json:"ok"`
	Messages     []FhirJSMessage `json:"messages"`
}

// Errors returns the error and fatal messages.
func (v FhirJSVerdict) Errors() []FhirJSMessage {
	var out []FhirJSMessage
	for _, m := range v.Messages {
		if m.IsError() {
			out = append(out, m)
		}
	}
	return out
}

// ValidateFhirJS validates every resource with FHIR.js (peers/
// fhir-validate-fhirjs.mjs: npm `fhir`'s validator over its bundled R4
// definitions, unknown properties as errors) in one Node process and
// returns one verdict per resource, in order. It fails the test when the
// program cannot run or answers out of step; invalid resources are not a
// failure here, callers judge the verdicts (see FhirJSFalsePositive).
func ValidateFhirJS(t testing.TB, resources [][]byte) []FhirJSVerdict {
	t.Helper()
	node := Node(t)
	dir := FhirJSDir(t)
	var in bytes.Buffer
	for i, r := range resources {
		var compact bytes.Buffer
		if err := json.Compact(&compact, r); err != nil {
			t.Fatalf("peers: resource %d is not JSON: %v", i, err)
		}
		in.Write(compact.Bytes())
		in.WriteByte('\n')
	}
	ctx, cancel := context.WithTimeout(context.Background(), fhirJSTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "fhir-validate-fhirjs.mjs"))
	cmd.Dir = dir
	cmd.Stdin = &in
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("peers: fhir-validate-fhirjs.mjs did not finish within %s; stderr:\n%s", fhirJSTimeout, stderr)
	}
	// Exit status 1 means "some resource is invalid"; anything else, or no
	// output, means the program failed.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1 && stdout.Len() > 0) {
		t.Fatalf("peers: fhir-validate-fhirjs.mjs failed (%v); stderr:\n%s", err, stderr)
	}
	var out []FhirJSVerdict
	dec := json.NewDecoder(&stdout)
	for {
		var v FhirJSVerdict
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("peers: fhir-validate-fhirjs.mjs printed a line that is not a verdict: %v", err)
		}
		if v.Line != len(out)+1 {
			t.Fatalf("peers: fhir-validate-fhirjs.mjs verdict %d is for line %d", len(out)+1, v.Line)
		}
		out = append(out, v)
	}
	if len(out) != len(resources) {
		t.Fatalf("peers: fhir-validate-fhirjs.mjs gave %d verdicts for %d resources; stderr:\n%s", len(out), len(resources), stderr)
	}
	return out
}

// Known false positives of FHIR.js 4.12.0: errors it reports on valid R4.
const (
	// FhirJSVersionedReference: FHIR.js takes a reference's type from its
	// next-to-last path segment, which for a version-specific reference
	// ("Patient/1/_history/2") is "_history", and reports the reference as
	// of a type the element does not allow.
	FhirJSVersionedReference = "versioned reference taken for a wrong target type"
	// FhirJSFalsyChoice: FHIR.js tests that a required choice element is
	// present by the truthiness of its value in JavaScript, so a required
	// value[x] that is false, 0 or "" (Group.characteristic.valueBoolean
	// false, Questionnaire.item.enableWhen.answerBoolean false) is reported
	// missing.
	FhirJSFalsyChoice = "required choice element with a false or zero value reported missing"
)

var referenceMessage = regexp.MustCompile(`^Invalid type for reference (\{.*\})$`)

// FhirJSFalsePositive reports whether an error FHIR.js gave for resource is
// one of its known false positives, and which (one of the FhirJS*
// constants). Each is recognised from the message and the resource itself,
// so a real error of the same shape is not excused. The resource is the one
// validated at the top level: a falsy choice inside a Bundle entry or a
// contained resource (whose locations FHIR.js gives relative to that
// resource) is not recognised.
func FhirJSFalsePositive(resource []byte, m FhirJSMessage) (string, bool) {
	if sub := referenceMessage.FindStringSubmatch(m.Message); sub != nil {
		var ref struct {
			Reference string `json:"reference"`
			Type      string `json:"type"`
		}
		if json.Unmarshal([]byte(sub[1]), &ref) == nil && ref.Type == "" {
			parts := strings.Split(ref.Reference, "/")
			if n := len(parts); n >= 4 && parts[n-2] == "_history" && parts[n-4] != "" {
				return FhirJSVersionedReference, true
			}
		}
		return "", false
	}
	if m.Message == "Missing property" && strings.HasSuffix(m.Location, "[x]") {
		var doc any
		if json.Unmarshal(resource, &doc) != nil {
			return "", false
		}
		// Location: "Type.a[0].b.name[x]" → walk a[0].b, then look for name*.
		path := strings.Split(strings.TrimSuffix(m.Location, "[x]"), ".")
		node := doc
		for _, seg := range path[1 : len(path)-1] {
			node = step(node, seg)
		}
		obj, ok := node.(map[string]any)
		if !ok {
			return "", false
		}
		name := path[len(path)-1]
		for k, v := range obj {
			if len(k) > len(name) && strings.HasPrefix(k, name) && k[len(name)] >= 'A' && k[len(name)] <= 'Z' {
				if v == false || v == 0.0 || v == "" {
					return FhirJSFalsyChoice, true
				}
			}
		}
	}
	return "", false
}

// step follows one location segment ("name" or "name[3]").
func step(node any, seg string) any {
	idx := -1
	if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
		n := 0
		for _, c := range seg[i+1 : len(seg)-1] {
			if c < '0' || c > '9' {
				return nil
			}
			n = n*10 + int(c-'0')
		}
		seg, idx = seg[:i], n
	}
	obj, ok := node.(map[string]any)
	if !ok {
		return nil
	}
	v := obj[seg]
	if idx < 0 {
		return v
	}
	arr, ok := v.([]any)
	if !ok || idx >= len(arr) {
		return nil
	}
	return arr[idx]
}
