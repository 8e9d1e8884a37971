package v2fhir_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// cdcResult is the conversion of one ORU^R01 of the CDC sample set.
type cdcResult struct {
	name string
	res  *v2fhir.Result
	err  error
}

// convertCDC converts every ORU^R01 in the CDC trusted-intermediary
// examples that parses.
func convertCDC(t *testing.T) []cdcResult {
	t.Helper()
	root := repo.Shared(t, "testdata/hl7v2/cdc-trusted-intermediary/examples")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".hl7") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	conv := newConverter(t, v2fhir.Options{})
	var out []cdcResult
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, err := hl7.ParseAll(data, hl7.ParseOptions{})
		if err != nil && len(msgs) == 0 {
			continue // not a message (the set has such files on purpose)
		}
		rel, _ := filepath.Rel(root, f)
		for i, m := range msgs {
			h := m.Header()
			if h.MessageCode != "ORU" || h.TriggerEvent != "R01" {
				continue
			}
			name := fmt.Sprintf("%s#%d", filepath.ToSlash(rel), i+1)
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s: panic: %v", name, p)
					}
				}()
				res, err := conv.Convert(m)
				out = append(out, cdcResult{name: name, res: res, err: err})
			}()
		}
	}
	if len(out) < 50 {
		t.Fatalf("only %d ORU^R01 messages found under %s", len(out), root)
	}
	return out
}

// Every ORU^R01 of the CDC samples converts, or fails with a clear error;
// nothing panics, and every resource is a JSON object that says its type
// and id.
func TestCDCMessagesConvert(t *testing.T) {
	results := convertCDC(t)
	converted, failed := 0, 0
	for _, r := range results {
		if r.err != nil {
			failed++
			var u *v2fhir.UnsupportedError
			if errors.As(r.err, &u) || !strings.HasPrefix(r.err.Error(), "v2fhir: ORU^R01: ") {
				t.Errorf("%s: unclear error %v", r.name, r.err)
			}
			continue
		}
		converted++
		types := map[string]int{}
		for _, res := range r.res.Resources {
			types[res.Type]++
			var body struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(res.Body, &body); err != nil || body.ResourceType != res.Type || body.ID != res.ID {
				t.Errorf("%s: %s/%s has body %s", r.name, res.Type, res.ID, res.Body)
			}
		}
		if types["Patient"] == 0 || types["DiagnosticReport"] == 0 {
			t.Errorf("%s: no Patient or DiagnosticReport: %v", r.name, types)
		}
	}
	t.Logf("%d ORU^R01 messages: %d converted, %d refused", len(results), converted, failed)
	if converted < len(results)*9/10 {
		t.Errorf("only %d of %d converted", converted, len(results))
	}
}

// What the CDC samples convert to is valid FHIR R4 too.
func TestCDCResourcesAreValidFHIR(t *testing.T) {
	var bodies [][]byte
	var from []string
	for _, r := range convertCDC(t) {
		if r.err != nil {
			continue
		}
		for _, res := range r.res.Resources {
			bodies = append(bodies, res.Body)
			from = append(from, r.name+" "+res.Type+"/"+res.ID)
		}
	}
	validateWithMedplum(t, bodies, from)
}
