package fhirv2

import (
	"strconv"
)

// readPatient decodes a Patient and checks that it can fill PID-3 and PID-5.
func readPatient(body []byte) (*patient, error) {
	var p patient
	if err := decode(body, "Patient", &p); err != nil {
		return nil, err
	}
	if len(patientIdentifiers(&p)) == 0 {
		return nil, missing("Patient.identifier (PID-3 needs at least one identifier with a value)")
	}
	if preferredName(p.Name) == nil {
		return nil, missing("Patient.name (PID-5)")
	}
	return &p, nil
}

// patientIdentifiers returns the identifiers for PID-3: those with a value
// that are not old, medical record numbers (type MR) first.
func patientIdentifiers(p *patient) []*identifier {
	var mr, rest []*identifier
	for i := range p.Identifier {
		id := &p.Identifier[i]
		if id.Value == "" || id.Use == "old" {
			continue
		}
		if identifierTypeCode(id) == "MR" {
			mr = append(mr, id)
		} else {
			rest = append(rest, id)
		}
	}
	return append(mr, rest...)
}

// checkSubject fails when subject points to a Patient other than p.
func checkSubject(subject *reference, p *patient, element string) error {
	if subject == nil || p.ID == "" {
		return nil
	}
	k := refKey(subject)
	if k == "" || refType(subject) != "Patient" {
		return nil
	}
	if k != "Patient/"+p.ID {
		return invalid("%s does not point to the Patient given", element)
	}
	return nil
}

var genders = map[string]string{"male": "M", "female": "F", "other": "O", "unknown": "U"}

// pid writes the PID segment.
func (e *Encoder) pid(b *builder, p *patient) {
	w := b.add("PID")
	w.set("1", "1")
	for i, id := range patientIdentifiers(p) {
		e.cx(w, "3("+strconv.Itoa(i+1)+")", id)
	}
	// the preferred name first, then the other current names
	pref := preferredName(p.Name)
	xpn(w, "5(1)", pref)
	rep := 2
	for i := range p.Name {
		n := &p.Name[i]
		if n == pref || n.Use == "old" || !hasName(n) {
			continue
		}
		xpn(w, "5("+strconv.Itoa(rep)+")", n)
		rep++
	}
	w.date("7", p.BirthDate, "Patient.birthDate")
	w.set("8", genders[p.Gender])
	rep = 1
	for i := range p.Address {
		a := &p.Address[i]
		if a.Use == "old" {
			continue
		}
		xad(w, "11("+strconv.Itoa(rep)+")", a)
		rep++
	}
	home, work := 1, 1
	for i := range p.Telecom {
		c := &p.Telecom[i]
		if c.Value == "" || c.Use == "old" {
			continue
		}
		if c.Use == "work" {
			xtn(w, "14("+strconv.Itoa(work)+")", c)
			work++
		} else {
			xtn(w, "13("+strconv.Itoa(home)+")", c)
			home++
		}
	}
	ce(w, "16", p.MaritalStatus)
	switch {
	case p.DeceasedDateTime != "":
		w.ts("29", p.DeceasedDateTime, "Patient.deceasedDateTime")
		w.set("30", "Y")
	case p.DeceasedBoolean != nil && *p.DeceasedBoolean:
		w.set("30", "Y")
	case p.DeceasedBoolean != nil:
		w.set("30", "N")
	}
}

// patientClasses maps Encounter.class (v3 ActCode) to HL7 table 0004.
var patientClasses = map[string]string{
	"AMB": "O", "IMP": "I", "ACUTE": "I", "NONAC": "I", "EMER": "E", "PRENC": "P", "OBSENC": "O",
	"SS": "O", "HH": "O", "VR": "O", "FLD": "O",
}

// readEncounter returns the Encounter body if given, else the one r points
// to in refs (nil when neither).
func readEncounter(body []byte, r *reference, res *resolver) (*encounter, error) {
	if body == nil {
		return resolve[encounter](res, r, "Encounter")
	}
	var enc encounter
	if err := decode(body, "Encounter", &enc); err != nil {
		return nil, err
	}
	return &enc, nil
}

// pv1 writes a PV1: minimal ("PV1|1|U") without an encounter; with one, the
// patient class, assigned location, attending doctor, visit number and
// admit/discharge times.
func (e *Encoder) pv1(b *builder, enc *encounter, res *resolver) {
	w := b.add("PV1")
	w.set("1", "1")
	if enc == nil {
		w.set("2", "U")
		return
	}
	class := "U"
	if enc.Class != nil {
		if c, ok := patientClasses[enc.Class.Code]; ok {
			class = c
		}
	}
	w.set("2", class)
	for _, l := range enc.Location {
		loc, err := resolveLocation(&l.Location, res)
		if err != nil {
			b.fail(err)
			return
		}
		if loc != nil {
			pl(w, "3", loc)
			break
		}
	}
	for _, part := range enc.Participant {
		if !participantIs(part.Type, "ATND") {
			continue
		}
		p, ok, err := resolvePerson(part.Individual, res)
		if err != nil {
			b.fail(err)
			return
		}
		if ok {
			e.xcn(w, "7", p)
			break
		}
	}
	visit := &identifier{Value: enc.ID}
	for i := range enc.Identifier {
		if enc.Identifier[i].Value != "" {
			visit = &enc.Identifier[i]
			break
		}
	}
	e.cx(w, "19", visit)
	w.ts("44", enc.Period.Start, "Encounter.period.start")
	w.ts("45", enc.Period.End, "Encounter.period.end")
}

// participantIs reports whether one of the type concepts holds code.
func participantIs(types []codeableConcept, code string) bool {
	for _, t := range types {
		for _, c := range t.Coding {
			if c.Code == code {
				return true
			}
		}
	}
	return false
}
