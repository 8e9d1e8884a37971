package contract

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Row is one intent of a contract as the documents show it, in plain text.
type Row struct {
	Intent    string
	Supported bool
	Channel   string   // "" when refused
	Operation string   // "DocumentReference create", "Appointment via PUT /v1/…", "MDM^T02"
	Required  []string // required element paths
	// Notes are the rules ("id: description"), how writes behave
	// (conditional create, If-Match, empty create answers) and the
	// support's note; for a refused intent, the reason.
	Notes []string
}

// Rows describes every intent of the contract, in Intents order.
func (c *Contract) Rows() []Row {
	var out []Row
	for _, s := range c.Supports() {
		r := Row{Intent: string(s.Intent), Supported: s.Supported}
		if !s.Supported {
			r.Notes = []string{s.Reason}
			out = append(out, r)
			continue
		}
		r.Channel = string(s.Channel)
		switch {
		case s.Channel == ChannelVendorREST && s.ResourceType != "":
			r.Operation = s.ResourceType + " via " + s.Operation
		case s.Channel == ChannelHL7:
			r.Operation = s.Operation + " from " + s.ResourceType
		case s.Operation == OpUpsert:
			r.Operation = s.ResourceType + " upsert (create without an id, update with one)"
		default:
			r.Operation = strings.TrimSpace(s.ResourceType + " " + s.Operation)
		}
		r.Required = append(r.Required, s.Required...)
		for _, rule := range s.Rules {
			r.Notes = append(r.Notes, rule.ID+": "+rule.Description)
		}
		if s.Channel == ChannelFHIR {
			switch {
			case s.ConditionalCreate:
				r.Notes = append(r.Notes, "conditional create (If-None-Exist on mediflow's identifier)")
			case creates(s.Operation):
				r.Notes = append(r.Notes, "no conditional create: mediflow searches for its identifier before it creates")
			}
			switch {
			case s.IfMatch:
				r.Notes = append(r.Notes, "updates carry If-Match; a stale version gets "+strconv.Itoa(s.StaleStatus))
			case updates(s.Operation):
				r.Notes = append(r.Notes, "no If-Match: an update overwrites what the EHR has")
			}
			if s.EmptyCreateBody {
				r.Notes = append(r.Notes, "a create answers without a body: the record is read back from Location")
			}
		}
		if s.Note != "" {
			r.Notes = append(r.Notes, s.Note)
		}
		out = append(out, r)
	}
	return out
}

// Title names the contract: the vendor, its version range, and whether the
// practice's HL7 interface counts.
func (c *Contract) Title() string {
	t := c.Vendor
	if c.Versions != "" {
		t += " (versions " + c.Versions + ")"
	}
	if c.HL7 {
		t += " with an HL7 v2 outbound interface"
	}
	return t
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
	if s == "" {
		return "—"
	}
	return s
}

func codes(ss []string) string {
	if len(ss) == 0 {
		return "—"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
	}
	return strings.Join(parts, ", ")
}

// Markdown renders the contract as a Markdown table (intent, supported,
// channel, operation, required, rules and notes) followed by how the EHR
// reports errors.
func Markdown(c *Contract) string {
	s := markdownTable(c.Rows())
	if c.Errors != "" {
		s += "\n**How the EHR reports a failed write:** " + cell(c.Errors) + "\n"
	}
	return s
}

func markdownTable(rows []Row) string {
	var b strings.Builder
	b.WriteString("| Intent | Supported | Channel | Operation | Required | Rules and notes |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		sup := "no"
		if r.Supported {
			sup = "yes"
		}
		notes := make([]string, len(r.Notes))
		for i, n := range r.Notes {
			notes[i] = cell(n)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", r.Intent, sup, cell(r.Channel), cell(r.Operation), codes(r.Required), strings.Join(notes, "<br>"))
	}
	return b.String()
}

const docIntro = `Before mediflow accepts a write from an app (a note, a booking, a problem, a vital sign, a
charge), it asks the practice's EHR contract: which intents the EHR accepts, through which
channel (FHIR REST, HL7 v2, the vendor's own API), with which required elements and rules, and
how the EHR reports errors. An intent the EHR cannot accept is refused when the app submits it,
with the reason below: it is never accepted and then dropped. A supported intent is mapped to the
vendor's shape (the mapping profile, direction out) and checked against the contract at once: any
violation answers HTTP 422 with one message per element, saying how to fix it.

Each practice's data-mapping document (` + "`mediflow mapping doc`" + `) shows the contract of its EHR
and version. Element paths are written like ` + "`content.attachment.contentType`" + ` (every item of a
list); a field error names the item, like ` + "`content[0].attachment.contentType`" + `.`

// WriteDoc writes the contracts of a registry as a Markdown document: one
// section per vendor (and version range), then the HL7 v2 routes that a
// practice with an HL7 outbound interface adds.
func WriteDoc(w io.Writer, r *Registry) error {
	var b strings.Builder
	b.WriteString("# Write-back contracts\n\n")
	b.WriteString("<!-- Generated from internal/writeback/contract by\n     go test ./internal/writeback/contract -run TestContractsDocUpToDate -update\n     Do not edit by hand. -->\n\n")
	b.WriteString(docIntro + "\n\n")
	b.WriteString("## Summary\n\n")
	b.WriteString("| Vendor |")
	for _, i := range Intents() {
		b.WriteString(" `" + string(i) + "` |")
	}
	b.WriteString("\n|---|")
	for range Intents() {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, v := range r.Vendors() {
		for _, c := range r.Contracts(v) {
			b.WriteString("| " + cell(c.Title()) + " |")
			for _, s := range c.Supports() {
				if s.Supported {
					b.WriteString(" " + cell(string(s.Channel)) + " |")
				} else {
					b.WriteString(" refused |")
				}
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nWith an HL7 v2 outbound interface, a refused note, booking, cancellation or charge goes over HL7 instead, and so does a refused " +
		"reschedule where bookings or cancellations then go over HL7 too (see the last section).\n")
	for _, v := range r.Vendors() {
		for _, c := range r.Contracts(v) {
			b.WriteString("\n## " + c.Title() + "\n\n")
			b.WriteString(Markdown(c))
		}
	}
	b.WriteString("\n## With an HL7 v2 outbound interface\n\n")
	b.WriteString("When a practice has an HL7 outbound destination to its EHR, every intent its vendor's contract refuses\n" +
		"and one of these routes carries is accepted and sent over HL7 v2 (package fhirv2 builds the message,\n" +
		"package hl7out delivers it in order and records the ACK). Intents the vendor's API accepts keep their channel.\n" +
		"A reschedule (SIU^S13) names the appointment as it was booked over HL7, so it is carried only where bookings or\n" +
		"cancellations go over HL7 too. MSH-10 is a 20-character id derived from the intent id (HL7 v2.5.1's limit), the same\n" +
		"on every resend; an SIU message also carries the intent id in an NTE segment.\n\n")
	var routes []Row
	for _, r := range New("hl7", "", "", HL7Routes()...).Rows() {
		if r.Supported {
			routes = append(routes, r)
		}
	}
	b.WriteString(markdownTable(routes))
	b.WriteString("\n**How the EHR reports a failed write:** the receiver's ACK: AA accepted; AE or AR rejected, with its ERR segments.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Contracts returns a vendor's contracts in the order they were given.
func (r *Registry) Contracts(vendor string) []*Contract {
	return append([]*Contract(nil), r.byVendor[vendor]...)
}
