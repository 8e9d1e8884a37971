package mapdoc

import (
	"html"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/writeback/contract"
	"github.com/mediflow/mediflow/profiles"
)

// TestWriteContractSection: the document shows the practice's write
// contract, from the shipped contracts when none is given.
func TestWriteContractSection(t *testing.T) {
	reg := contract.Default()
	for _, v := range []string{"epic", "oracle-health", "athenahealth", "nextgen"} {
		t.Run(v, func(t *testing.T) {
			set, err := mapping.Load(profiles.FS, v, "")
			if err != nil {
				t.Fatal(err)
			}
			c, err := reg.For(v, "")
			if err != nil {
				t.Fatal(err)
			}
			in := Input{PracticeID: "p", Set: set, Generated: testTime}
			md := generate(t, in, FormatMarkdown)
			page := generate(t, in, FormatHTML)
			if !strings.Contains(md, "### Write contract\n") || !strings.Contains(md, contract.Markdown(c)) {
				t.Errorf("the Markdown lacks the contract of %s", v)
			}
			// the contract sits in the write-back section, before the parameters
			if strings.Index(md, "### Write contract") < strings.Index(md, "## Written back to the EHR") ||
				strings.Index(md, "### Write contract") > strings.Index(md, "## Profile parameters") {
				t.Error("the contract is outside the write-back section")
			}
			for _, s := range c.Supports() {
				if !strings.Contains(page, "<code>"+string(s.Intent)+"</code>") {
					t.Errorf("the HTML lacks intent %s", s.Intent)
				}
				if !s.Supported && !strings.Contains(html.UnescapeString(page), s.Reason) {
					t.Errorf("the HTML lacks the refusal of %s", s.Intent)
				}
			}
		})
	}
}

// TestContractChangeChangesDocument: the document is the contract it is
// given: change the contract and the document changes with it.
func TestContractChangeChangesDocument(t *testing.T) {
	set, err := mapping.Load(profiles.FS, "epic", "")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := contract.Default().For("epic", "")
	if err != nil {
		t.Fatal(err)
	}
	in := Input{PracticeID: "p", Set: set, Generated: testTime}
	base := generate(t, in, FormatMarkdown)
	// the shipped contract is what a nil Contract means
	in.Contract = shipped
	if got := generate(t, in, FormatMarkdown); got != base {
		t.Error("the shipped contract given explicitly changed the document")
	}

	// This practice's Epic takes bookings over HL7.
	in.Contract = shipped.WithHL7()
	withHL7 := generate(t, in, FormatMarkdown)
	if withHL7 == base || !strings.Contains(withHL7, "| `appointment.book` | yes | hl7 | SIU^S12 from Appointment |") ||
		!strings.Contains(withHL7, "`epic with an HL7 v2 outbound interface`") {
		t.Errorf("an HL7 interface did not change the contract shown:\n%s", writeBackPart(withHL7))
	}

	// A contract of our own: one new rule, one refusal.
	rule := contract.Rule{ID: "windmill.note.signed", Description: "notes are signed before they are sent", Check: func(map[string]any) []contract.FieldError { return nil }}
	note := shipped.Support(contract.NoteCreate)
	note.Rules = append(append([]contract.Rule(nil), note.Rules...), rule)
	in.Contract = contract.New("epic", "", "Windmill's Epic answers with OperationOutcomes.",
		note, contract.Support{Intent: contract.ObservationRecord, Reason: "Windmill files vitals through its device interface"})
	own := generate(t, in, FormatMarkdown)
	for _, want := range []string{
		"windmill.note.signed: notes are signed before they are sent",
		"| `observation.record` | no | — | — | — | Windmill files vitals through its device interface |",
		"Windmill's Epic answers with OperationOutcomes.",
	} {
		if !strings.Contains(own, want) {
			t.Errorf("the document lacks %q:\n%s", want, writeBackPart(own))
		}
	}
	if strings.Contains(own, "epic.flowsheet.vital-signs") {
		t.Error("the document still shows the shipped observation contract")
	}

	// A vendor without a contract: every intent is refused, and the
	// document says so.
	acme := generate(t, testInput(t), FormatMarkdown)
	if !strings.Contains(acme, "No write contract is known for acme") {
		t.Errorf("no contract, no word of it:\n%s", writeBackPart(acme))
	}
}

// writeBackPart is the write-back section of a Markdown document, for failure
// messages.
func writeBackPart(md string) string {
	i, j := strings.Index(md, "## Written back to the EHR"), strings.Index(md, "## Profile parameters")
	if i < 0 || j < i {
		return md
	}
	return md[i:j]
}
