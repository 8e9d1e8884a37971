package v2fhir_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
)

// Any message converts without panicking, to bodies that are JSON objects
// naming their type and id.
func FuzzConvert(f *testing.F) {
	for _, file := range goldenFiles(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	conv := newConverter(f, v2fhir.Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := hl7.Parse(data, hl7.ParseOptions{})
		if err != nil {
			return
		}
		res, err := conv.Convert(m)
		if err != nil {
			return
		}
		for _, r := range res.Resources {
			var body struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil || body.ResourceType != r.Type || body.ID != r.ID {
				t.Fatalf("%s/%s: body %s", r.Type, r.ID, r.Body)
			}
		}
	})
}
