package fhirv2

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/hl7"
)

// Charge is one line of a DFT^P03: a FHIR R4 ChargeItem and, optionally, the
// Encounter and Coverage it is billed under.
type Charge struct {
	// Item is the ChargeItem JSON (required): one FT1.
	Item []byte
	// Encounter is the Encounter JSON for PV1 (optional; when nil, the one
	// ChargeItem.context points to is looked up in refs). All charges of a
	// message must belong to the same encounter.
	Encounter []byte
	// Coverage is the Coverage JSON billed (optional): one IN1 per distinct
	// coverage of the message.
	Coverage []byte
}

// billable are the ChargeItem statuses a charge can be posted for.
var billable = map[string]bool{"planned": true, "billable": true, "billed": true, "unknown": true, "": true}

// relationships maps Coverage.relationship (subscriber-relationship) to HL7
// table 0063 (IN1-17).
var relationships = map[string]string{
	"self": "SEL", "spouse": "SPO", "child": "CHD", "parent": "PAR", "common": "DOM", "other": "OTH", "injured": "OTH",
}

// Charges builds a DFT^P03 (post detail financial transaction) for one
// patient: EVN, PID, PV1 (from the charges' encounter; minimal without
// one), one FT1 per charge, then one IN1 per coverage. refs holds resources
// the charge items point to (performer and enterer Practitioner, the
// encounter's Location, the coverage's payor Organization); it may be nil.
//
// FT1: 2 the ChargeItem identifier (else id), 4 the occurrence date (or
// period), 5 the entered date, 6 "CG", 7 the code (CPT or HCPCS coding
// first), 10 the quantity (1 when absent), 11 the price override, 16 the
// encounter location, 19 the reasons (diagnosis codes), 20 the performer,
// 24 the enterer, 25 the procedure code (the CPT or HCPCS coding).
func (e *Encoder) Charges(patientBody []byte, charges []Charge, refs map[string][]byte) (*hl7.Message, error) {
	p, err := readPatient(patientBody)
	if err != nil {
		return nil, err
	}
	if len(charges) == 0 {
		return nil, missing("charges (a DFT^P03 needs at least one ChargeItem)")
	}
	res := newResolver(refs)
	items := make([]*chargeItem, len(charges))
	var enc *encounter
	var encKey string
	var encBody []byte
	var covs []*coverage
	seenCov := map[string]bool{}
	var covBodies [][]byte
	for i, c := range charges {
		element := "charges[" + strconv.Itoa(i) + "]"
		var it chargeItem
		if err := decode(c.Item, "ChargeItem", &it); err != nil {
			return nil, err
		}
		if !billable[it.Status] {
			return nil, invalid("%s: ChargeItem.status %s cannot be billed", element, it.Status)
		}
		if firstCoding(it.Code) == nil {
			return nil, missing(element + ": ChargeItem.code (FT1-7)")
		}
		if it.OccurrenceDateTime == "" && (it.OccurrencePeriod == nil || it.OccurrencePeriod.Start == "") && it.EnteredDate == "" {
			return nil, missing(element + ": ChargeItem.occurrence[x] or enteredDate (FT1-4)")
		}
		if err := checkSubject(it.Subject, p, element+": ChargeItem.subject"); err != nil {
			return nil, err
		}
		items[i] = &it
		var itEnc *encounter
		if c.Encounter != nil && enc != nil && bytes.Equal(c.Encounter, encBody) {
			itEnc = enc // the same body again: decoded once
		} else if itEnc, err = readEncounter(c.Encounter, it.Context, res); err != nil {
			return nil, err
		}
		// the encounter's identity: its id, its body, or (not resolved) the
		// reference; charges of two encounters cannot share one PV1
		var k string
		switch {
		case itEnc != nil && itEnc.ID != "":
			k = "Encounter/" + itEnc.ID
		case itEnc != nil:
			k = string(c.Encounter)
		default:
			k = refKey(it.Context)
		}
		if k != "" {
			if encKey == "" {
				encKey = k
			} else if k != encKey {
				return nil, invalid("%s belongs to another encounter: send one DFT^P03 per encounter", element)
			}
		}
		if itEnc != nil && enc == nil {
			enc, encBody = itEnc, c.Encounter
		}
		if c.Coverage != nil && !seenBody(covBodies, c.Coverage) {
			covBodies = append(covBodies, c.Coverage)
			var cov coverage
			if err := decode(c.Coverage, "Coverage", &cov); err != nil {
				return nil, err
			}
			k := cov.ID
			if k == "" {
				k = string(c.Coverage)
			}
			if !seenCov[k] {
				seenCov[k] = true
				covs = append(covs, &cov)
			}
		}
	}

	b := e.start("DFT", "P03", "DFT_P03")
	evn := b.add("EVN")
	evn.set("1", "P03")
	evn.set("2", b.now.Format(v2TimeLayout))
	e.pid(b, p)
	e.pv1(b, enc, res)
	var encLoc *location
	if enc != nil {
		for _, l := range enc.Location {
			if encLoc, err = resolveLocation(&l.Location, res); err != nil {
				return nil, err
			}
			if encLoc != nil {
				break
			}
		}
	}
	for i, it := range items {
		if err := e.ft1(b, i+1, it, encLoc, res); err != nil {
			return nil, err
		}
	}
	for i, cov := range covs {
		if err := e.in1(b, i+1, cov, res); err != nil {
			return nil, err
		}
	}
	return b.finish()
}

func (e *Encoder) ft1(b *builder, n int, it *chargeItem, loc *location, res *resolver) error {
	w := b.add("FT1")
	w.set("1", strconv.Itoa(n))
	txID := it.ID
	for _, id := range it.Identifier {
		if id.Value != "" {
			txID = id.Value
			break
		}
	}
	w.set("2", txID)
	switch {
	case it.OccurrenceDateTime != "":
		w.ts("4-1", it.OccurrenceDateTime, "ChargeItem.occurrenceDateTime")
	case it.OccurrencePeriod != nil && it.OccurrencePeriod.Start != "":
		w.ts("4-1", it.OccurrencePeriod.Start, "ChargeItem.occurrencePeriod.start")
		w.ts("4-2", it.OccurrencePeriod.End, "ChargeItem.occurrencePeriod.end")
	default:
		w.ts("4-1", it.EnteredDate, "ChargeItem.enteredDate")
	}
	w.ts("5", it.EnteredDate, "ChargeItem.enteredDate")
	w.set("6", "CG")
	billing := codingIn(it.Code, billingSystems...)
	ceFirst(w, "7", it.Code, billing)
	qty := "1"
	if it.Quantity != nil && it.Quantity.Value != "" {
		qty = decimal(it.Quantity.Value)
	}
	w.set("10", qty)
	if it.PriceOverride != nil && it.PriceOverride.Value != "" {
		w.set("11-1-1", decimal(it.PriceOverride.Value))
		w.set("11-1-2", it.PriceOverride.Currency)
	}
	if loc != nil {
		pl(w, "16", loc)
	}
	rep := 0
	for i := range it.Reason {
		if firstCoding(&it.Reason[i]) == nil && it.Reason[i].Text == "" {
			continue
		}
		rep++
		ce(w, "19("+strconv.Itoa(rep)+")", &it.Reason[i])
	}
	for i := range it.Performer {
		pr, ok, err := resolvePerson(&it.Performer[i].Actor, res)
		if err != nil {
			return err
		}
		if ok {
			e.xcn(w, "20", pr)
			break
		}
	}
	if it.Enterer != nil {
		pr, ok, err := resolvePerson(it.Enterer, res)
		if err != nil {
			return err
		}
		if ok {
			e.xcn(w, "24", pr)
		}
	}
	if billing != nil {
		coding(w, "25", 1, billing, billing.Display)
	}
	return nil
}

func (e *Encoder) in1(b *builder, n int, cov *coverage, res *resolver) error {
	if len(cov.Payor) == 0 {
		return missing("Coverage.payor (IN1-3)")
	}
	w := b.add("IN1")
	w.set("1", strconv.Itoa(n))
	for _, c := range cov.Class {
		switch {
		case participantIs([]codeableConcept{c.Type}, "plan"):
			w.set("2-1", c.Value)
			w.set("2-2", c.Name)
		case participantIs([]codeableConcept{c.Type}, "group"):
			w.set("8", c.Value)
			w.set("9-1", c.Name)
		}
	}
	payor := &cov.Payor[0]
	name := payor.Display
	var payorID *identifier
	org, err := resolve[organization](res, payor, "Organization")
	if err != nil {
		return err
	}
	if org != nil {
		if org.Name != "" {
			name = org.Name
		}
		for i := range org.Identifier {
			if org.Identifier[i].Value != "" {
				payorID = &org.Identifier[i]
				break
			}
		}
	}
	if payorID == nil && payor.Identifier != nil && payor.Identifier.Value != "" {
		payorID = payor.Identifier
	}
	if payorID == nil && name == "" {
		return missing("Coverage.payor identifier or name (IN1-3, IN1-4)")
	}
	if payorID != nil {
		e.cx(w, "3", payorID)
	}
	w.set("4-1", name)
	w.date("12", cov.Period.Start, "Coverage.period.start")
	w.date("13", cov.Period.End, "Coverage.period.end")
	if c := firstCoding(cov.Relationship); c != nil {
		w.set("17-1", relationships[c.Code])
	}
	policy := cov.SubscriberID
	if policy == "" {
		for _, id := range cov.Identifier {
			if id.Value != "" {
				policy = id.Value
				break
			}
		}
	}
	w.set("36", policy)
	return nil
}

// decimal writes a JSON number as an HL7 NM (no exponent).
func decimal(n json.Number) string {
	s := n.String()
	if strings.ContainsAny(s, "eE") {
		if f, err := n.Float64(); err == nil {
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	return s
}

// seenBody reports whether body is byte for byte one of bodies.
func seenBody(bodies [][]byte, body []byte) bool {
	for _, b := range bodies {
		if bytes.Equal(b, body) {
			return true
		}
	}
	return false
}
