package fhirv2

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir"
)

// Writers of HL7 v2 composite data types from FHIR data types. Each takes a
// prefix, the field (with repetition) the value goes to: "3(2)", "19(1)".

// Well-known identifier systems and the authorities they get when
// Options.IdentifierSystems has no entry for them.
const (
	systemNPI = "http://hl7.org/fhir/sid/us-npi"
	systemSSN = "http://hl7.org/fhir/sid/us-ssn"
	// defaultSystemPrefix is what package v2fhir writes for an authority it
	// has no system for.
	defaultSystemPrefix = "urn:mediflow:v2:id:"
	systemV2Prefix      = "http://terminology.hl7.org/CodeSystem/v2-"
)

// codeSystems maps FHIR code system URIs to HL7 table 0396 names.
var codeSystems = map[string]string{
	"http://loinc.org":                                         "LN",
	"http://snomed.info/sct":                                   "SCT",
	"http://www.ama-assn.org/go/cpt":                           "C4",
	"https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
	"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets":  "HCPCS",
	"http://hl7.org/fhir/sid/icd-10-cm":                        "I10C",
	"http://hl7.org/fhir/sid/icd-10":                           "I10",
	"http://www.cms.gov/Medicare/Coding/ICD10":                 "I10P",
	"http://hl7.org/fhir/sid/icd-9-cm":                         "I9C",
	"http://www.nlm.nih.gov/research/umls/rxnorm":              "RXNORM",
	"http://hl7.org/fhir/sid/ndc":                              "NDC",
	"http://hl7.org/fhir/sid/cvx":                              "CVX",
	"http://unitsofmeasure.org":                                "UCUM",
	// v3 marital status codes are HL7 table 0002's
	"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus": "HL70002",
}

// Billing code systems, preferred for FT1-7 and FT1-25.
var billingSystems = []string{
	"http://www.ama-assn.org/go/cpt",
	"https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
	"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}

// codeSystemName returns the HL7 name of a FHIR code system: the table 0396
// name when known, "HL7nnnn" for an HL7 v2 table, otherwise the URI itself.
func codeSystemName(system string) string {
	if n, ok := codeSystems[system]; ok {
		return n
	}
	if t, ok := strings.CutPrefix(system, systemV2Prefix); ok && t != "" {
		return "HL7" + t
	}
	return system
}

// authority returns the HD (namespace id, universal id, universal id type)
// for a FHIR identifier system.
func (e *Encoder) authority(system string) (ns, uid, uidType string) {
	if system == "" {
		return "", "", ""
	}
	if a, ok := e.opts.IdentifierSystems[system]; ok {
		return a, "", ""
	}
	switch system {
	case systemNPI:
		return "NPI", "", ""
	case systemSSN:
		return "SSA", "", ""
	}
	if a, ok := strings.CutPrefix(system, defaultSystemPrefix); ok && a != "" {
		// package v2fhir percent-encodes spaces, '%', '"' and non-ASCII
		if u, err := url.PathUnescape(a); err == nil {
			a = u
		}
		return a, "", ""
	}
	if oid, ok := strings.CutPrefix(system, "urn:oid:"); ok && oid != "" {
		return "", oid, "ISO"
	}
	return "", system, "URI"
}

// identifierTypeCode returns the HL7 table 0203 code of an identifier.
func identifierTypeCode(id *identifier) string {
	if c := firstCoding(id.Type); c != nil {
		return c.Code
	}
	switch id.System {
	case systemNPI:
		return "NPI"
	case systemSSN:
		return "SS"
	}
	return ""
}

// hd writes an HD at prefix (a component, e.g. "3(1)-4"), its parts as
// subcomponents.
func (e *Encoder) hd(w seg, prefix, system string) {
	ns, uid, typ := e.authority(system)
	w.set(prefix+"-1", ns)
	w.set(prefix+"-2", uid)
	w.set(prefix+"-3", typ)
}

// cx writes an identifier as a CX: value^^^authority^type.
func (e *Encoder) cx(w seg, prefix string, id *identifier) {
	w.set(prefix+"-1", id.Value)
	e.hd(w, prefix+"-4", id.System)
	w.set(prefix+"-5", identifierTypeCode(id))
}

// ei writes an identifier as an EI: entity id^namespace^universal id^type.
func (e *Encoder) ei(w seg, prefix string, id *identifier) {
	ns, uid, typ := e.authority(id.System)
	w.set(prefix+"-1", id.Value)
	w.set(prefix+"-2", ns)
	w.set(prefix+"-3", uid)
	w.set(prefix+"-4", typ)
}

// ce writes a CodeableConcept as a CE (or CWE): the first coding as the
// identifier, a second as the alternate; text alone goes to CE-2.
func ce(w seg, prefix string, cc *codeableConcept) {
	if cc == nil {
		return
	}
	var codes []*fhir.Coding
	for i := range cc.Coding {
		if cc.Coding[i].Code != "" {
			codes = append(codes, &cc.Coding[i])
		}
	}
	if len(codes) == 0 {
		w.set(prefix+"-2", cc.Text)
		return
	}
	text := codes[0].Display
	if text == "" {
		text = cc.Text
	}
	coding(w, prefix, 1, codes[0], text)
	if len(codes) > 1 {
		coding(w, prefix, 4, codes[1], codes[1].Display)
	}
}

// ceFirst writes cc as a CE with first (one of its codings) as the identifier.
func ceFirst(w seg, prefix string, cc *codeableConcept, first *fhir.Coding) {
	if first == nil {
		ce(w, prefix, cc)
		return
	}
	reordered := codeableConcept{Text: cc.Text, Coding: []fhir.Coding{*first}}
	for _, c := range cc.Coding {
		if c != *first {
			reordered.Coding = append(reordered.Coding, c)
		}
	}
	ce(w, prefix, &reordered)
}

// coding writes code^text^system at components at, at+1, at+2.
func coding(w seg, prefix string, at int, c *fhir.Coding, text string) {
	w.set(prefix+"-"+strconv.Itoa(at), c.Code)
	w.set(prefix+"-"+strconv.Itoa(at+1), text)
	w.set(prefix+"-"+strconv.Itoa(at+2), codeSystemName(c.System))
}

// nameTypes maps HumanName.use to HL7 table 0200.
var nameTypes = map[string]string{
	"official": "L", "usual": "D", "nickname": "N", "maiden": "M", "anonymous": "S", "temp": "TEMP",
}

// namePartsAt writes the name parts shared by XPN (from component at) and XCN
// (from component at = 2): family^given^middle^suffix^prefix.
func namePartsAt(w seg, prefix string, at int, n *humanName) {
	family := n.Family
	if family == "" && len(n.Given) == 0 {
		family = n.Text
	}
	w.set(prefix+"-"+strconv.Itoa(at), family)
	if len(n.Given) > 0 {
		w.set(prefix+"-"+strconv.Itoa(at+1), n.Given[0])
		w.set(prefix+"-"+strconv.Itoa(at+2), strings.Join(n.Given[1:], " "))
	}
	w.set(prefix+"-"+strconv.Itoa(at+3), strings.Join(n.Suffix, " "))
	w.set(prefix+"-"+strconv.Itoa(at+4), strings.Join(n.Prefix, " "))
}

// xpn writes a HumanName as an XPN.
func xpn(w seg, prefix string, n *humanName) {
	namePartsAt(w, prefix, 1, n)
	w.set(prefix+"-7", nameTypes[n.Use])
}

func hasName(n *humanName) bool {
	return n.Family != "" || len(n.Given) > 0 || n.Text != ""
}

// preferredName returns the official, else usual, else first name that is
// not old.
func preferredName(names []humanName) *humanName {
	var best *humanName
	rank := 99
	for i := range names {
		n := &names[i]
		if !hasName(n) || n.Use == "old" {
			continue
		}
		r := 3
		switch n.Use {
		case "official":
			r = 1
		case "usual":
			r = 2
		}
		if r < rank {
			best, rank = n, r
		}
	}
	return best
}

// addressTypes maps Address.use / Address.type to HL7 table 0190.
var addressTypes = map[string]string{"home": "H", "work": "B", "temp": "C", "billing": "BI", "old": "BA"}

// xad writes an Address as an XAD.
func xad(w seg, prefix string, a *address) {
	if len(a.Line) > 0 {
		w.set(prefix+"-1", a.Line[0])
		w.set(prefix+"-2", strings.Join(a.Line[1:], ", "))
	} else if a.City == "" && a.PostalCode == "" {
		w.set(prefix+"-1", a.Text)
	}
	w.set(prefix+"-3", a.City)
	w.set(prefix+"-4", a.State)
	w.set(prefix+"-5", a.PostalCode)
	w.set(prefix+"-6", a.Country)
	typ := addressTypes[a.Use]
	if a.Type == "postal" {
		typ = "M"
	}
	w.set(prefix+"-7", typ)
	w.set(prefix+"-9", a.District)
}

// xtn writes a ContactPoint as an XTN (v2.5: number in XTN-1, use and
// equipment codes, e-mail in XTN-4).
func xtn(w seg, prefix string, c *contactPoint) {
	if c.System == "email" {
		w.set(prefix+"-2", "NET")
		w.set(prefix+"-3", "Internet")
		w.set(prefix+"-4", c.Value)
		return
	}
	w.set(prefix+"-1", c.Value)
	use := "PRN"
	switch c.Use {
	case "work":
		use = "WPN"
	case "temp":
		use = "VHN"
	}
	w.set(prefix+"-2", use)
	equip := "PH"
	switch {
	case c.System == "fax":
		equip = "FX"
	case c.System == "pager":
		equip = "BP"
	case c.Use == "mobile":
		equip = "CP"
	}
	w.set(prefix+"-3", equip)
}

// person is what an XCN holds: an identifier, a name, a degree.
type person struct {
	id     *identifier
	name   *humanName
	degree string
}

func (p person) empty() bool {
	return (p.id == nil || p.id.Value == "") && p.name == nil
}

// xcn writes a person as an XCN.
func (e *Encoder) xcn(w seg, prefix string, p person) {
	if p.id != nil && p.id.Value != "" {
		w.set(prefix+"-1", p.id.Value)
		e.hd(w, prefix+"-9", p.id.System)
		w.set(prefix+"-13", identifierTypeCode(p.id))
	}
	if p.name != nil {
		namePartsAt(w, prefix, 2, p.name)
		w.set(prefix+"-10", nameTypes[p.name.Use])
	}
	w.set(prefix+"-7", p.degree)
}

// practitionerPerson reads a Practitioner: its NPI (else first) identifier
// and preferred name.
func practitionerPerson(pr *practitioner) person {
	var p person
	for i := range pr.Identifier {
		id := &pr.Identifier[i]
		if id.Value == "" || id.Use == "old" {
			continue
		}
		if p.id == nil || (id.System == systemNPI && p.id.System != systemNPI) {
			p.id = id
		}
	}
	p.name = preferredName(pr.Name)
	for _, q := range pr.Qualification {
		if c := firstCoding(&q.Code); c != nil {
			p.degree = c.Code
			break
		}
	}
	return p
}

// resolvePerson turns a reference to a Practitioner or PractitionerRole into
// a person: from the resource in refs when there, else from the reference's
// identifier and display. ok is false for other resource types and for a
// reference that carries nothing usable.
func resolvePerson(r *reference, res *resolver) (p person, ok bool, err error) {
	if r == nil {
		return person{}, false, nil
	}
	switch refType(r) {
	case "Practitioner":
		pr, err := resolve[practitioner](res, r, "Practitioner")
		if err != nil {
			return person{}, false, err
		}
		if pr != nil {
			p := practitionerPerson(pr)
			return p, !p.empty(), nil
		}
	case "PractitionerRole":
		role, err := resolve[practitionerRole](res, r, "PractitionerRole")
		if err != nil {
			return person{}, false, err
		}
		if role != nil && role.Practitioner != nil {
			if p, ok, err := resolvePerson(role.Practitioner, res); err != nil || ok {
				return p, ok, err
			}
		}
	default:
		return person{}, false, nil
	}
	if r.Identifier != nil && r.Identifier.Value != "" {
		p.id = r.Identifier
	}
	if r.Display != "" {
		p.name = &humanName{Text: r.Display}
	}
	return p, !p.empty(), nil
}

// pl writes a Location as a PL: point of care (its identifier, else its
// name) and the name as the location description.
func pl(w seg, prefix string, loc *location) {
	poc := loc.Name
	for _, id := range loc.Identifier {
		if id.Value != "" {
			poc = id.Value
			break
		}
	}
	w.set(prefix+"-1", poc)
	w.set(prefix+"-9", loc.Name)
}

// resolveLocation reads a Location reference from refs, or from its display.
func resolveLocation(r *reference, res *resolver) (*location, error) {
	if r == nil || refType(r) != "Location" {
		return nil, nil
	}
	loc, err := resolve[location](res, r, "Location")
	if err != nil || loc != nil {
		return loc, err
	}
	loc = &location{Name: r.Display}
	if r.Identifier != nil && r.Identifier.Value != "" {
		loc.Identifier = []identifier{*r.Identifier}
	}
	if loc.Name == "" && len(loc.Identifier) == 0 {
		return nil, nil
	}
	return loc, nil
}
