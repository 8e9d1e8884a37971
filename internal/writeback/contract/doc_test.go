package contract

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

var update = flag.Bool("update", false, "rewrite docs/writeback-contracts.md from the contracts")

// TestContractsDocUpToDate fails when docs/writeback-contracts.md differs
// from what the shipped contracts generate. Run with -update to rewrite it.
func TestContractsDocUpToDate(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteDoc(&buf, Default()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(repo.RootT(t), "docs", "writeback-contracts.md")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./internal/writeback/contract -run TestContractsDocUpToDate -update)", err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Fatal("docs/writeback-contracts.md is stale; regenerate it: go test ./internal/writeback/contract -run TestContractsDocUpToDate -update")
	}
}

// TestDocCoversContracts: every vendor, intent, rule and refusal appears in
// the generated document.
func TestDocCoversContracts(t *testing.T) {
	var buf bytes.Buffer
	reg := Default()
	if err := WriteDoc(&buf, reg); err != nil {
		t.Fatal(err)
	}
	doc := buf.String()
	for _, v := range reg.Vendors() {
		for _, c := range reg.Contracts(v) {
			if !strings.Contains(doc, "## "+c.Title()+"\n") {
				t.Errorf("no section for %s", c.Title())
			}
			for _, s := range c.Supports() {
				if !strings.Contains(doc, "`"+string(s.Intent)+"`") {
					t.Errorf("%s: intent %s missing", v, s.Intent)
				}
				if !s.Supported && !strings.Contains(doc, cell(s.Reason)) {
					t.Errorf("%s: the refusal of %s is missing", v, s.Intent)
				}
				for _, r := range s.Rules {
					if !strings.Contains(doc, cell(r.ID+": "+r.Description)) {
						t.Errorf("%s: rule %s missing", v, r.ID)
					}
				}
			}
		}
	}
	for _, r := range HL7Routes() {
		if !strings.Contains(doc, r.Operation) {
			t.Errorf("HL7 route %s missing", r.Operation)
		}
	}
}

// TestMarkdownFollowsTheContract: the table is the contract: change the
// contract and the table changes with it.
func TestMarkdownFollowsTheContract(t *testing.T) {
	note := Support{Intent: NoteCreate, Supported: true, Channel: ChannelFHIR, ResourceType: "DocumentReference", Operation: "create",
		Required: []string{"status"}, Rules: []Rule{{ID: "acme.one", Description: "one thing", Check: func(map[string]any) []FieldError { return nil }}}}
	a := Markdown(New("acme", "", "acme answers 422", note))
	for _, want := range []string{
		"| `note.create` | yes | fhir | DocumentReference create | `status` | acme.one: one thing<br>no conditional create",
		"| `appointment.book` | no | — | — | — | acme: no write path is known for appointment.book |",
		"**How the EHR reports a failed write:** acme answers 422",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("the table lacks %q:\n%s", want, a)
		}
	}
	changed := note
	changed.Required = []string{"status", "subject"}
	if b := Markdown(New("acme", "", "acme answers 422", changed)); b == a || !strings.Contains(b, "`status`, `subject`") {
		t.Errorf("a new required element did not change the table:\n%s", b)
	}
	refused := refuse(NoteCreate, "acme has no notes")
	if b := Markdown(New("acme", "", "acme answers 422", refused)); !strings.Contains(b, "| `note.create` | no | — | — | — | acme has no notes") {
		t.Errorf("a refusal did not change the table:\n%s", b)
	}
	// pipes in the text do not break the table
	if b := Markdown(New("acme", "", "", refuse(NoteCreate, "a | b"))); !strings.Contains(b, `a \| b`) {
		t.Errorf("unescaped pipe:\n%s", b)
	}
}
