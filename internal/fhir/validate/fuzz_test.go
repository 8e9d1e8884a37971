package validate_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
)

// FuzzValidate: any input gives issues without panicking, and the JSON
// syntax verdict agrees with encoding/json's.
func FuzzValidate(f *testing.F) {
	for _, c := range badResources {
		f.Add([]byte(c.body))
	}
	for _, c := range validResources {
		f.Add([]byte(c.body))
	}
	v := validate.New(model.R4())
	f.Fuzz(func(t *testing.T, data []byte) {
		issues := v.Validate(data)
		syntaxError := false
		for _, is := range issues {
			if is.Severity != validate.SeverityError && is.Severity != validate.SeverityWarning {
				t.Fatalf("severity %q", is.Severity)
			}
			if strings.HasPrefix(is.Message, "invalid JSON") {
				syntaxError = true
			}
		}
		valid := json.Valid(data)
		if !syntaxError && !valid && !strings.Contains(issuesText(issues), "nested too deeply") {
			t.Fatalf("accepted JSON syntax encoding/json refuses: %q", data)
		}
		if syntaxError && valid && utf8.Valid(data) && len(data) < 400 {
			t.Fatalf("refused JSON syntax encoding/json accepts: %q: %+v", data, issues)
		}
	})
}

func issuesText(issues []validate.Issue) string {
	var b strings.Builder
	for _, is := range issues {
		b.WriteString(is.Message)
		b.WriteByte('\n')
	}
	return b.String()
}
