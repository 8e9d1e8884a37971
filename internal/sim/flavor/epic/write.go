package epic

import (
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// flowsheetRows are the LOINC codes this simulated install maps to vital
// sign flowsheet rows: the generator's vitals and the blood-pressure panel
// with its components (a real install's mapping is per customer).
var flowsheetRows = map[string]bool{
	"8867-4": true, "9279-1": true, "8310-5": true, "29463-7": true, "8302-2": true,
	"39156-5": true, "2708-6": true, "59408-5": true, "85354-9": true, "8480-6": true, "8462-4": true,
}

const (
	loincSystem       = "http://loinc.org"
	obsCategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category"
)

// CheckWrite implements flavor.WriteChecker:
//   - a create whose identifiers (system and value) already belong to a
//     resource of the same type is a duplicate (59141): nothing is created;
//   - a vital-sign Observation (category vital-signs) files into a flowsheet
//     row found by its LOINC code: without a LOINC code it is refused with
//     59187, with a code this install does not map with 59188.
func (Flavor) CheckWrite(w flavor.Write) *flavor.Problem {
	if w.Op == "create" && w.FindByIdentifier != nil {
		for _, x := range w.New.List("identifier") {
			id, _ := x.(*gen.Obj)
			if id == nil || id.Str("value") == "" {
				continue
			}
			if len(w.FindByIdentifier(w.ResourceType, id.Str("system"), id.Str("value"))) > 0 {
				return &flavor.Problem{Kind: flavor.Duplicate, Code: CodeDuplicate,
					Diagnostics: "a " + w.ResourceType + " with the same identifier already exists"}
			}
		}
	}
	if w.ResourceType == "Observation" && w.Op != "patch" && vitalSign(w.New) {
		var loinc []string
		if code := w.New.Child("code"); code != nil {
			for _, x := range code.List("coding") {
				if c, _ := x.(*gen.Obj); c != nil && c.Str("system") == loincSystem && c.Str("code") != "" {
					loinc = append(loinc, c.Str("code"))
				}
			}
		}
		if len(loinc) == 0 {
			return &flavor.Problem{Kind: flavor.Unprocessable, Code: CodeFlowsheetMissing,
				Diagnostics: "a vital-sign Observation needs a LOINC code naming its flowsheet row"}
		}
		for _, c := range loinc {
			if flowsheetRows[c] {
				return nil
			}
		}
		return &flavor.Problem{Kind: flavor.Unprocessable, Code: CodeFlowsheetUnmapped,
			Diagnostics: "the Observation's LOINC code is not mapped to a flowsheet row"}
	}
	return nil
}

// vitalSign reports whether an Observation is in the vital-signs category.
func vitalSign(o *gen.Obj) bool {
	for _, x := range o.List("category") {
		cc, _ := x.(*gen.Obj)
		if cc == nil {
			continue
		}
		for _, y := range cc.List("coding") {
			if c, _ := y.(*gen.Obj); c != nil && c.Str("system") == obsCategorySystem && c.Str("code") == "vital-signs" {
				return true
			}
		}
	}
	return false
}
