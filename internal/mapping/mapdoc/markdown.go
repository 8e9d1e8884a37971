package mapdoc

import (
	"fmt"
	"io"
	"strings"
)

// ew writes and keeps the first error.
type ew struct {
	w   io.Writer
	err error
}

func (e *ew) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}

func (e *ew) line(s string) { e.printf("%s\n", s) }

// code renders text as a Markdown code span.
func code(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "\n", " ")
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if s == "" {
		return "—"
	}
	return s
}

// codeCell is a code span inside a table cell.
func codeCell(s string) string {
	if s == "" {
		return "—"
	}
	return cell(code(s))
}

// text makes prose safe in Markdown: characters that would start markup
// are escaped.
func text(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "<", `&lt;`, ">", `&gt;`, "[", `\[`, "]", `\]`, "`", "\\`")
	return r.Replace(strings.Join(strings.Fields(s), " "))
}

func directionText(d string) string {
	switch d {
	case "in":
		return "EHR → mediflow (reading)"
	case "out":
		return "mediflow → EHR (write-back)"
	default:
		return "both ways (reading and write-back)"
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (d *document) vendorLine() string {
	v := d.VendorTitle
	if d.VendorVersion != "" {
		v += ", version " + d.VendorVersion
	} else {
		v += " (newest release the profile knows)"
	}
	return v
}

func (d *document) practiceLine() string {
	switch {
	case d.PracticeName != "" && d.PracticeID != "":
		return d.PracticeName + " (" + d.PracticeID + ")"
	case d.PracticeName != "":
		return d.PracticeName
	case d.PracticeID != "":
		return d.PracticeID
	default:
		return "(no practice)"
	}
}

func (d *document) exampleLine() string {
	if d.SampleCount == 0 {
		return "none: no sample data was given, so the example column is empty"
	}
	src := d.SampleSource
	if src == "" {
		src = "sample data"
	}
	return fmt.Sprintf("from %d resources of %s, with names, identifiers, addresses, phone numbers, birth dates (but the year) and free text masked", d.SampleCount, src)
}

func (e element) layerText() string {
	kind := e.LayerKind
	if kind == "" {
		kind = "unknown"
	}
	s := kind + " layer"
	if e.Layer != "" && e.Layer != kind {
		s += " (" + e.Layer + ")"
	}
	return s
}

const howToRead = `This document lists every element of the canonical FHIR R4 record that
mediflow fills from the EHR, and how. It is generated from the mapping rules
the engine runs, so it always matches what the engine does. Each rule says
which element it fills, where the value comes from (a FHIRPath expression over
the record the EHR sent; "the element itself" means the EHR's own value is
tidied in place), the transforms applied in order, the default used when the
EHR sends nothing, whether the element is required, and why. Rules come in
layers: the canonical rules apply to every EHR, the vendor layer adapts them
to this EHR, and the practice layer holds this practice's own overrides. The
layer named is the one that last set or changed the rule, at the file and
line given. Everything the EHR sends that no rule names is kept unchanged.`

func writeMarkdown(w io.Writer, d *document) error {
	e := &ew{w: w}
	e.printf("# Data mapping: %s\n\n", text(d.practiceLine()))
	e.line("| | |")
	e.line("|---|---|")
	e.printf("| EHR | %s |\n", cell(text(d.vendorLine())))
	e.printf("| Mapping profile | %s |\n", codeCell(d.Profile))
	e.printf("| Generated | %s by mediflow %s |\n", cell(d.Generated), cell(d.Mediflow))
	e.printf("| Elements | %d rules over %d resource types |\n", d.ElementCount, d.typeCount())
	e.printf("| Examples | %s |\n\n", cell(d.exampleLine()))
	e.line(strings.Join(strings.Fields(howToRead), " "))
	e.line("")

	e.line("## Layers")
	e.line("")
	for _, l := range d.Layers {
		e.printf("- **%s layer** %s", text(l.Kind), code(l.Name+"@"+l.Version))
		switch {
		case l.Title != "" && l.Description != "":
			e.printf(": %s — %s", text(l.Title), text(l.Description))
		case l.Title != "" || l.Description != "":
			e.printf(": %s", text(l.Title+l.Description))
		}
		e.line("")
		for _, r := range l.Releases {
			e.printf("  - releases %s: %s\n", code(r.Versions), text(r.Note))
		}
	}
	e.line("")

	e.line("## Data read")
	e.line("")
	if len(d.Reads) == 0 {
		e.line("No data class is configured to be read for this practice.")
	} else {
		e.line("| Data class | What | Resource types | How |")
		e.line("|---|---|---|---|")
		for _, r := range d.Reads {
			e.printf("| %s | %s | %s | %s |\n", cell(r.Class), cell(r.Description), cell(strings.Join(r.ResourceTypes, ", ")), cell(r.Via))
		}
	}
	e.line("")

	e.line("## Written back to the EHR")
	e.line("")
	if len(d.WriteBack) == 0 {
		e.printf("The %s profile names no write-back.\n", text(d.VendorTitle))
	} else {
		e.line("| Resource type | Read as | How it is written back | Rules applied on write-back |")
		e.line("|---|---|---|---|")
		for _, r := range d.WriteBack {
			how := r.How
			if how == "" {
				how = "not described by the profile"
			}
			e.printf("| %s | %s | %s | %s |\n", cell(r.ResourceType), cell(r.ReadBy), cell(how), codeList(r.OutRules))
		}
	}
	e.line("")

	e.line("### Write contract")
	e.line("")
	if d.Contract.Missing != "" {
		e.line(text(d.Contract.Missing))
	} else {
		e.printf("What %s accepts from apps through mediflow (contract %s): an intent marked no is refused when the app submits it, with the reason given; a supported one is checked against the required elements and rules before it is sent, and refused with HTTP 422 and one message per element when it does not meet them.\n\n", text(d.VendorTitle), code(d.Contract.Title))
		e.printf("%s", d.Contract.Markdown)
	}
	e.line("")

	e.line("## Profile parameters")
	e.line("")
	e.line("| Parameter | Value |")
	e.line("|---|---|")
	for _, p := range d.Params {
		v := p.Value
		if v == "" {
			v = "(not set)"
		}
		e.printf("| %s | %s |\n", codeCell("%"+p.Name), cell(v))
	}
	e.line("")

	e.line("## Elements")
	for _, s := range d.Sections {
		e.line("")
		e.printf("### %s\n", text(s.heading()))
		for _, el := range s.Elements {
			e.line("")
			e.printf("#### %s\n\n", text(el.Element))
			e.printf("Rule %s · set by the %s at %s · layers: %s\n\n", code(el.Rule), text(el.layerText()), code(el.DefinedAt), text(strings.Join(el.Layers, ", ")))
			if el.Rationale != "" {
				e.printf("%s\n\n", text(el.Rationale))
			}
			src := "the element itself, as the EHR sent it"
			if el.Source != "" {
				src = code(el.Source)
			}
			e.printf("- **Source:** %s\n", src)
			if el.Condition != "" {
				e.printf("- **Only when:** %s\n", code(el.Condition))
			}
			switch len(el.Steps) {
			case 0:
				e.line("- **Transforms:** none (the value is taken as it is)")
			default:
				e.line("- **Transforms:**")
				for i, st := range el.Steps {
					e.printf("  %d. %s — %s\n", i+1, code(st.Text()), text(st.Summary))
				}
			}
			if el.Default != "" {
				e.printf("- **Default:** %s\n", code(el.Default))
			}
			e.printf("- **Required:** %s\n", yesNo(el.Required))
			e.printf("- **Direction:** %s\n", directionText(el.Direction))
			if el.Versions != "" {
				e.printf("- **EHR versions:** %s\n", code(el.Versions))
			}
			ex := "—"
			if el.Example != "" {
				ex = code(el.Example)
			}
			e.printf("- **Example:** %s\n", ex)
		}
	}
	e.line("")

	e.printf("## Not available from %s\n\n", text(d.VendorTitle))
	if len(d.NotAvailable) == 0 {
		e.line("The profile lists nothing this EHR cannot provide.")
	} else {
		e.line("| Resource type | Element | Why | EHR versions | Defined at |")
		e.line("|---|---|---|---|---|")
		for _, n := range d.NotAvailable {
			e.printf("| %s | %s | %s | %s | %s |\n", cell(n.ResourceType), codeCell(n.Element), cell(text(n.Text)), codeCell(n.Versions), codeCell(n.DefinedAt))
		}
	}
	e.line("")

	e.line("## Defaults")
	e.line("")
	if len(d.Defaults) == 0 {
		e.line("No rule has a default.")
	} else {
		e.line("| Resource type | Element | Default | Used when | Rule |")
		e.line("|---|---|---|---|---|")
		for _, r := range d.Defaults {
			e.printf("| %s | %s | %s | %s | %s |\n", cell(r.ResourceType), cell(text(r.Element)), codeCell(r.Value), cell(r.When), codeCell(r.Rule))
		}
	}
	e.line("")

	e.line("## Transforms")
	e.line("")
	for _, t := range d.Transforms {
		e.printf("- %s — %s\n", code(t.Name), text(t.Summary))
		for _, a := range t.Args {
			req := ""
			if a.Required {
				req = " (required)"
			}
			e.printf("  - %s%s: %s\n", code(a.Name), req, text(a.Summary))
		}
	}
	e.line("")

	e.line("## Code tables")
	for _, ct := range d.CodeTables {
		e.line("")
		title := ct.Title
		if title == "" {
			title = ct.Name
		}
		if title == "" {
			title = ct.URL
		}
		e.printf("### %s\n\n", text(title))
		if ct.File == "" {
			e.printf("%s — the rules name this table but it is not loaded.\n", code(ct.URL))
			continue
		}
		e.printf("%s, version %s, status %s, file %s; %d source codes. Used by %s.\n\n", code(ct.URL), cell(ct.Version), cell(ct.Status), code(ct.File), ct.Codes, codeList(ct.UsedBy))
		if ct.Description != "" {
			e.printf("%s\n\n", text(ct.Description))
		}
		for _, g := range ct.Groups {
			e.printf("#### From %s to %s\n\n", code(g.Source), code(g.Target))
			if len(g.Patterns) > 0 {
				e.printf("Also applies to the code systems %s.\n\n", codeList(g.Patterns))
			}
			if g.Unmapped != "" {
				e.printf("Unlisted codes: %s.\n\n", text(g.Unmapped))
			}
			e.line("| EHR code | EHR display | Standard code | Standard display | Equivalence | Comment |")
			e.line("|---|---|---|---|---|---|")
			for _, r := range g.Rows {
				c, disp := codeCell(r.Code), cell(r.Display)
				if !r.First {
					c, disp = "〃", ""
				}
				e.printf("| %s | %s | %s | %s | %s | %s |\n", c, disp, codeCell(r.Target), cell(r.TargetDisplay), cell(r.Equivalence), cell(text(r.Comment)))
			}
			e.line("")
		}
	}
	if d.HL7 != nil {
		writeMarkdownHL7(e, d.HL7)
	}
	return e.err
}

func codeList(xs []string) string {
	if len(xs) == 0 {
		return "—"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = cell(code(x))
	}
	return strings.Join(parts, ", ")
}

const hl7Intro = `The practice sends HL7 v2 messages to mediflow. Each message is first
converted to FHIR R4 resources by the conversion rules below (they follow the
HL7 v2-to-FHIR implementation guide); the resources then go through the
element rules above like data read over FHIR.`

func writeMarkdownHL7(e *ew, h *hl7Doc) {
	e.line("")
	e.line("## HL7 v2 messages")
	e.line("")
	e.line(strings.Join(strings.Fields(hl7Intro), " "))
	e.line("")
	e.line("### Messages")
	e.line("")
	e.line("| Message | Structure | Description | Resources made | Defined at |")
	e.line("|---|---|---|---|---|")
	for _, m := range h.Messages {
		e.printf("| %s | %s | %s | %s | %s |\n", codeCell(m.Type), cell(m.Structure), cell(text(m.Description)), cell(text(strings.Join(m.Resources, "; "))), codeCell(m.DefinedAt))
	}
	maps := func(title string, ms []hl7Map) {
		e.line("")
		e.printf("### %s\n", title)
		for _, m := range ms {
			e.line("")
			e.printf("#### %s\n\n", text(m.Name))
			var meta []string
			if m.IG != "" {
				meta = append(meta, "follows the IG map "+text(m.IG))
			}
			if m.Resource != "" {
				meta = append(meta, "builds a "+text(m.Resource)+" resource of its own")
			}
			meta = append(meta, "defined at "+code(m.DefinedAt))
			e.printf("%s.\n\n", strings.Join(meta, "; "))
			if m.Note != "" {
				e.printf("%s\n\n", text(m.Note))
			}
			e.line("| FHIR element | From (v2) | How | Only when | Default | Note | Defined at |")
			e.line("|---|---|---|---|---|---|---|")
			for _, r := range m.Rules {
				e.printf("| %s | %s | %s | %s | %s | %s | %s |\n", codeCell(r.Path), codeCell(r.From), cell(text(r.How)), codeCell(r.When), codeCell(r.Default), cell(text(r.Note)), codeCell(r.DefinedAt))
			}
		}
	}
	maps("Segment maps", h.SegmentMaps)
	maps("Data type maps", h.DatatypeMaps)
	e.line("")
	e.line("### HL7 v2 code tables")
	for _, t := range h.Tables {
		e.line("")
		title := t.Name
		if t.V2 != "" {
			title += " (HL7 table " + t.V2 + ")"
		}
		e.printf("#### %s\n\n", text(title))
		var meta []string
		if t.System != "" {
			meta = append(meta, "codes of "+code(t.System))
		}
		if t.IG != "" {
			meta = append(meta, "follows the IG map "+text(t.IG))
		}
		if t.KeepUnmapped {
			meta = append(meta, "codes not listed are kept as they are")
		}
		meta = append(meta, "defined at "+code(t.DefinedAt))
		e.printf("%s.\n\n", strings.Join(meta, "; "))
		e.line("| v2 code | FHIR code | Display | System | Note |")
		e.line("|---|---|---|---|---|")
		for _, en := range t.Entries {
			e.printf("| %s | %s | %s | %s | %s |\n", codeCell(en.Code), codeCell(en.Target), cell(en.Display), codeCell(en.System), cell(text(en.Note)))
		}
	}
	e.line("")
	e.line("### Conversions")
	e.line("")
	for _, c := range h.Conversions {
		e.printf("- %s — %s\n", code(c.Name), text(c.Value))
	}
}
