package mapdoc

import (
	"encoding/csv"
	"io"
	"strings"
)

// CSVHeader is the header row of the CSV format. Each further row is one
// element: kind "element" (a mapping rule), "not-available" (an element the
// EHR cannot provide) or "hl7v2" (a rule of the HL7 v2 → FHIR conversion).
var CSVHeader = []string{
	"practice", "vendor", "vendor_version", "profile_version", "kind",
	"resource_type", "rule", "element", "source", "condition",
	"transforms", "transform_summaries", "default", "required", "direction",
	"ehr_versions", "layer", "layer_name", "defined_at", "rationale", "example",
}

func writeCSV(w io.Writer, d *document) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	common := []string{d.PracticeID, d.Vendor, d.VendorVersion, d.Profile}
	row := func(fields ...string) error {
		return cw.Write(append(append([]string{}, common...), fields...))
	}
	for _, s := range d.Sections {
		for _, e := range s.Elements {
			var steps, sums []string
			for _, st := range e.Steps {
				steps = append(steps, st.Text())
				sums = append(sums, st.Name+": "+st.Summary)
			}
			if err := row("element", e.ResourceType, e.Rule, e.Element, e.Source, e.Condition,
				strings.Join(steps, " | "), strings.Join(sums, " | "), e.Default, yesNo(e.Required), e.Direction,
				e.Versions, e.LayerKind, e.Layer, e.DefinedAt, prose(e.Rationale), e.Example); err != nil {
				return err
			}
		}
	}
	for _, n := range d.NotAvailable {
		if err := row("not-available", n.ResourceType, "", n.Element, "", "", "", "", "", "", "",
			n.Versions, "", "", n.DefinedAt, prose(n.Text), ""); err != nil {
			return err
		}
	}
	if d.HL7 != nil {
		for _, ms := range [][]hl7Map{d.HL7.SegmentMaps, d.HL7.DatatypeMaps} {
			for _, m := range ms {
				for _, r := range m.Rules {
					if err := row("hl7v2", m.Name, "", r.Path, r.From, r.When, r.How, "", r.Default, "", "in",
						"", "", "", r.DefinedAt, prose(r.Note), ""); err != nil {
						return err
					}
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func prose(s string) string { return strings.Join(strings.Fields(s), " ") }
