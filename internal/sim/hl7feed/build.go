package hl7feed

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/hl7"
)

// Version is the HL7 version of the messages the feed builds.
const Version = "2.5.1"

type kind int

const (
	adtA01 kind = iota
	adtA04
	adtA08
	adtA03
	siuS12
	siuS14
	siuS15
	oruR01
	mdmT02
	numKinds
)

var kindNames = [numKinds]string{"ADT^A01", "ADT^A04", "ADT^A08", "ADT^A03", "SIU^S12", "SIU^S14", "SIU^S15", "ORU^R01", "MDM^T02"}

// structure is MSH-9-3 for each kind.
var kindStructures = [numKinds]string{"ADT_A01", "ADT_A01", "ADT_A01", "ADT_A03", "SIU_S12", "SIU_S12", "SIU_S12", "ORU_R01", "MDM_T02"}

// Mix weighs the message kinds a feed sends, by "TYPE^TRIGGER": ADT^A01,
// ADT^A04, ADT^A08, ADT^A03, SIU^S12, SIU^S14, SIU^S15, ORU^R01, MDM^T02.
// Kinds left out are not sent. A kind the data cannot support (say SIU^S15
// without cancelled appointments) is skipped and the others share its
// weight.
type Mix map[string]float64

// MessageKinds lists the keys a Mix accepts, in a fixed order.
func MessageKinds() []string { return append([]string(nil), kindNames[:]...) }

// DefaultMix is the mix used when FeedConfig.Mix is empty: mostly ADT and
// results, some scheduling, no documents.
func DefaultMix() Mix {
	return Mix{
		"ADT^A01": 10, "ADT^A04": 15, "ADT^A08": 20, "ADT^A03": 10,
		"SIU^S12": 15, "SIU^S14": 5, "SIU^S15": 5,
		"ORU^R01": 20,
	}
}

// ParseMix reads a mix written as "ADT^A01=2,ORU^R01=5" (the kind's "^"
// may also be written "_" or "-").
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("hl7feed: mix %q: want KIND=WEIGHT", part)
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return nil, fmt.Errorf("hl7feed: mix %q: weight: %w", part, err)
		}
		k = strings.NewReplacer("_", "^", "-", "^").Replace(strings.ToUpper(strings.TrimSpace(k)))
		m[k] = w
	}
	if _, err := m.weights(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m Mix) weights() ([numKinds]float64, error) {
	var w [numKinds]float64
	if len(m) == 0 {
		m = DefaultMix()
	}
	var total float64
	for name, v := range m {
		i := -1
		for k, n := range kindNames {
			if n == name {
				i = k
			}
		}
		if i < 0 {
			return w, fmt.Errorf("hl7feed: unknown message kind %q in mix (have %s)", name, strings.Join(kindNames[:], ", "))
		}
		if v < 0 || v != v {
			return w, fmt.Errorf("hl7feed: weight of %s must not be negative", name)
		}
		w[i] = v
		total += v
	}
	if total == 0 {
		return w, fmt.Errorf("hl7feed: the mix has no positive weight")
	}
	return w, nil
}

// builder turns snapshots into messages. It owns its random source and
// control-id sequence; it is used by one goroutine.
type builder struct {
	cfg     FeedConfig
	weights [numKinds]float64
	rng     *rand.Rand
	prefix  string
	seq     uint64
}

func newBuilder(cfg FeedConfig, seed uint64) (*builder, error) {
	w, err := cfg.Mix.weights()
	if err != nil {
		return nil, err
	}
	if cfg.SendingApplication == "" {
		cfg.SendingApplication = "MEDIFLOW-SIM"
	}
	if cfg.SendingFacility == "" {
		cfg.SendingFacility = "SIM"
	}
	if cfg.ReceivingApplication == "" {
		cfg.ReceivingApplication = "MEDIFLOW"
	}
	return &builder{
		cfg:     cfg,
		weights: w,
		rng:     rand.New(rand.NewPCG(seed, 0x4c37f33d)),
		prefix:  cfg.ControlIDPrefix,
	}, nil
}

// next builds the next message from s at time now and returns it with its
// control id.
func (b *builder) next(s *snapshot, now time.Time) ([]byte, string, error) {
	var w [numKinds]float64
	var total float64
	for k := range numKinds {
		if s.candidates(k) > 0 {
			w[k] = b.weights[k]
			total += w[k]
		}
	}
	if total == 0 {
		return nil, "", ErrNoData
	}
	x := b.rng.Float64() * total
	k := numKinds - 1
	for i := range numKinds {
		if x < w[i] {
			k = i
			break
		}
		x -= w[i]
	}
	for w[k] == 0 { // rounding at the top end
		k--
	}
	b.seq++
	ctrl := b.prefix + fmt.Sprintf("%08d", b.seq)
	e := &enc{m: hl7.New(hl7.DefaultDelimiters, Version), b: b}
	e.header(k, ctrl, now)
	pick := b.rng.IntN(s.candidates(k))
	switch k {
	case adtA01, adtA04:
		e.adtEncounter(s, k, s.encList[pick], now)
	case adtA03:
		e.adtEncounter(s, k, s.encFinished[pick], now)
	case adtA08:
		e.adtUpdate(s, s.patientList[pick], now)
	case siuS12, siuS14:
		e.siu(s, k, s.apptActive[pick])
	case siuS15:
		e.siu(s, k, s.apptCancelled[pick])
	case oruR01:
		e.oru(s, s.groups[pick])
	case mdmT02:
		e.mdm(s, s.docs[pick], now)
	}
	if e.err != nil {
		return nil, "", fmt.Errorf("hl7feed: build %s: %w", kindNames[k], e.err)
	}
	return e.m.Encode(), ctrl, nil
}

// enc writes one message, keeping the first error.
type enc struct {
	m   *hl7.Message
	b   *builder
	err error
}

// seg starts a segment and returns a setter for its fields; empty values are
// not written (so no trailing delimiters appear).
func (e *enc) seg(id string) func(path, value string) {
	s := e.m.AddSegment(id)
	return func(path, value string) {
		if value == "" || e.err != nil {
			return
		}
		if err := s.Set(path, value); err != nil {
			e.err = fmt.Errorf("%s-%s: %w", id, path, err)
		}
	}
}

func (e *enc) set(path, value string) {
	if value == "" || e.err != nil {
		return
	}
	if err := e.m.Set(path, value); err != nil {
		e.err = fmt.Errorf("%s: %w", path, err)
	}
}

func (e *enc) header(k kind, ctrl string, now time.Time) {
	cfg := e.b.cfg
	// MSH-18 first: values are encoded in the declared character set.
	e.set("MSH-18", "UNICODE UTF-8")
	e.set("MSH-3", cfg.SendingApplication)
	e.set("MSH-4", cfg.SendingFacility)
	e.set("MSH-5", cfg.ReceivingApplication)
	e.set("MSH-6", cfg.ReceivingFacility)
	e.set("MSH-7", dtmTime(now))
	code, trig, _ := strings.Cut(kindNames[k], "^")
	e.set("MSH-9-1", code)
	e.set("MSH-9-2", trig)
	e.set("MSH-9-3", kindStructures[k])
	e.set("MSH-10", ctrl)
	e.set("MSH-11", "P")
}

func (e *enc) evn(trigger string, now time.Time, occurred string) {
	set := e.seg("EVN")
	set("1", trigger)
	set("2", dtmTime(now))
	set("6", dtm(occurred))
}

func (e *enc) pid(p *patientRes) {
	set := e.seg("PID")
	set("1", "1")
	if id, ok := p.mrn(); ok {
		set("3-1", id.Value)
		set("3-4-1", e.b.cfg.SendingFacility)
		uid, typ := authority(id.System)
		set("3-4-2", uid)
		set("3-4-3", typ)
		set("3-5", "MR")
	}
	if n := pickName(p.Name); n != nil {
		setXPN(set, "5", n)
	}
	set("7", dtm(p.BirthDate))
	set("8", sexCode(p.Gender))
	for i, a := range firstN(p.Address, 3) {
		r := fmt.Sprintf("11(%d)", i+1)
		if len(a.Line) > 0 {
			set(r+"-1", a.Line[0])
		}
		if len(a.Line) > 1 {
			set(r+"-2", strings.Join(a.Line[1:], ", "))
		}
		set(r+"-3", a.City)
		set(r+"-4", a.State)
		set(r+"-5", a.PostalCode)
		set(r+"-6", a.Country)
		set(r+"-7", map[string]string{"home": "H", "work": "O", "temp": "C", "billing": "M"}[a.Use])
	}
	home, work := 0, 0
	for _, t := range p.Telecom {
		if t.Value == "" || (t.System != "phone" && t.System != "sms" && t.System != "email") {
			continue
		}
		var r string
		if t.Use == "work" {
			work++
			r = fmt.Sprintf("14(%d)", work)
		} else {
			home++
			r = fmt.Sprintf("13(%d)", home)
		}
		if t.System == "email" {
			set(r+"-2", "NET")
			set(r+"-3", "Internet")
			set(r+"-4", t.Value)
			continue
		}
		set(r+"-1", t.Value)
		switch t.Use {
		case "work":
			set(r+"-2", "WPN")
		case "mobile":
			set(r+"-2", "ORN")
		default:
			set(r+"-2", "PRN")
		}
		if t.Use == "mobile" || t.System == "sms" {
			set(r+"-3", "CP")
		} else {
			set(r+"-3", "PH")
		}
	}
	if c := p.MaritalStatus.first(); c.Code != "" {
		set("16-1", c.Code)
		set("16-2", c.Display)
		set("16-3", "HL70002")
	}
}

// pv1 writes the visit; enc may be nil (a patient update outside a visit).
func (e *enc) pv1(s *snapshot, en *encounterRes, discharge bool) {
	set := e.seg("PV1")
	set("1", "1")
	if en == nil {
		set("2", "N")
		return
	}
	set("2", patientClass(en.Class.Code))
	if l := s.locations[en.locationID()]; l != nil {
		set("3-1", l.Name)
		set("3-4-1", e.b.cfg.SendingFacility)
	}
	if pr := s.practitioners[en.practitionerID()]; pr != nil {
		setXCN(set, "7", pr)
	}
	set("19-1", en.ID)
	set("44", dtm(en.Period.Start))
	if discharge {
		set("45", dtm(en.Period.End))
	}
}

func (e *enc) adtEncounter(s *snapshot, k kind, en *encounterRes, now time.Time) {
	_, trig, _ := strings.Cut(kindNames[k], "^")
	occurred := en.Period.Start
	if k == adtA03 {
		occurred = en.Period.End
	}
	e.evn(trig, now, occurred)
	e.pid(s.patients[en.Subject.id("Patient")])
	e.pv1(s, en, k == adtA03)
}

func (e *enc) adtUpdate(s *snapshot, p *patientRes, now time.Time) {
	e.evn("A08", now, "")
	e.pid(p)
	var latest *encounterRes
	if list := s.encByPatient[p.ID]; len(list) > 0 {
		latest = list[0]
	}
	e.pv1(s, latest, latest != nil && latest.Status == "finished" && latest.Period.End != "")
}

// fillerStatus maps FHIR Appointment.status to HL7 table 0278.
var fillerStatus = map[string]string{
	"proposed": "Pending", "pending": "Pending", "booked": "Booked", "arrived": "Started",
	"checked-in": "Started", "fulfilled": "Complete", "cancelled": "Cancelled",
	"noshow": "Noshow", "waitlist": "Waitlist",
}

func (e *enc) siu(s *snapshot, k kind, a *appointmentRes) {
	set := e.seg("SCH")
	set("1-1", a.ID)
	set("2-1", a.ID)
	var reason coding
	if len(a.ReasonCode) > 0 {
		reason = a.ReasonCode[0].first()
	}
	event := reason
	if k == siuS15 && a.CancelationReason != nil {
		event = a.CancelationReason.first()
	}
	setCE(set, "6", event)
	if t := a.AppointmentType.first(); t.Code != "" || t.Display != "" {
		t.System = "HL70276" // ROUTINE, FOLLOWUP, ... are table 0276 codes
		setCE(set, "7", t)
	} else {
		setCE(set, "7", reason)
	}
	set("8-1", "Normal")
	set("8-3", "HL70277")
	if d := a.minutes(); d > 0 {
		set("9", strconv.Itoa(d))
		set("10-1", "min")
	}
	set("11-4", dtm(a.Start))
	set("11-5", dtm(a.End))
	if st := fillerStatus[a.Status]; st != "" {
		set("25-1", st)
		set("25-3", "HL70278")
	}
	tq := e.seg("TQ1")
	tq("1", "1")
	tq("7", dtm(a.Start))
	tq("8", dtm(a.End))
	e.pid(s.patients[a.actor("Patient")])
	e.seg("RGS")("1", "1")
	if l := s.locations[a.actor("Location")]; l != nil {
		ail := e.seg("AIL")
		ail("1", "1")
		ail("3-1", l.Name)
		ail("3-4-1", e.b.cfg.SendingFacility)
		ail("6", dtm(a.Start))
	}
	if pr := s.practitioners[a.actor("Practitioner")]; pr != nil {
		aip := e.seg("AIP")
		aip("1", "1")
		setXCN(aip, "3", pr)
		aip("4-1", "AT")
		aip("4-2", "Attending")
		aip("4-3", "HL70443")
		aip("6", dtm(a.Start))
	}
}

func (a *appointmentRes) minutes() int {
	if a.MinutesDuration > 0 {
		return a.MinutesDuration
	}
	st, err1 := time.Parse(time.RFC3339, a.Start)
	en, err2 := time.Parse(time.RFC3339, a.End)
	if err1 != nil || err2 != nil || !en.After(st) {
		return 0
	}
	return int(en.Sub(st) / time.Minute)
}

// result is one OBX: a code and a value.
type result struct {
	code     coding
	vtype    string // NM, ST, CE
	value    string
	valueCE  coding
	unit     string // UCUM code
	unitText string
	obs      *observationRes
}

// obsResults returns an Observation's reportable values: its own value, or
// one per component.
func obsResults(o *observationRes) []result {
	var out []result
	add := func(code concept, v obsValue) {
		r := result{code: code.first(), obs: o}
		switch {
		case v.ValueQuantity != nil && v.ValueQuantity.Value != "":
			r.vtype, r.value = "NM", v.ValueQuantity.Value.String()
			r.unit, r.unitText = v.ValueQuantity.Code, v.ValueQuantity.Unit
			if r.unit == "" {
				r.unit = v.ValueQuantity.Unit
			}
		case v.ValueString != nil && *v.ValueString != "":
			r.vtype, r.value = "ST", *v.ValueString
		case v.ValueCodeableConcept != nil:
			r.vtype, r.valueCE = "CE", v.ValueCodeableConcept.first()
			if r.valueCE.Code == "" && r.valueCE.Display == "" {
				return
			}
		default:
			return
		}
		if r.code.Code == "" && r.code.Display == "" {
			return
		}
		out = append(out, r)
	}
	add(o.Code, o.obsValue)
	for _, c := range o.Component {
		add(c.Code, c.obsValue)
	}
	return out
}

// obxStatus maps FHIR Observation.status to HL7 table 0085.
var obxStatus = map[string]string{
	"registered": "I", "preliminary": "P", "final": "F", "amended": "C", "corrected": "C",
	"cancelled": "X", "entered-in-error": "W",
}

func (e *enc) oru(s *snapshot, g *obsGroup) {
	e.pid(s.patients[g.patient])
	en := s.encounters[g.encounter]
	if en != nil {
		e.pv1(s, en, false)
	}
	var orderer *practitionerRes
	if en != nil {
		orderer = s.practitioners[en.practitionerID()]
	}
	obs := append([]*observationRes(nil), g.obs...)
	sort.SliceStable(obs, func(i, j int) bool { return obs[i].EffectiveDateTime < obs[j].EffectiveDateTime })
	filler := g.fillerID()
	orc := e.seg("ORC")
	orc("1", "RE")
	orc("3-1", filler)
	orc("3-2", e.b.cfg.SendingApplication)
	if orderer != nil {
		setXCN(orc, "12", orderer)
	}
	obr := e.seg("OBR")
	obr("1", "1")
	obr("3-1", filler)
	obr("3-2", e.b.cfg.SendingApplication)
	var service coding
	switch {
	case len(obs) == 1:
		service = obs[0].Code.first()
	case g.category == "vital-signs":
		service = coding{System: sysLOINC, Code: "8716-3", Display: "Vital signs"}
	case g.category == "laboratory":
		service = coding{System: sysLOINC, Code: "26436-6", Display: "Laboratory studies (set)"}
	default:
		service = obs[0].Code.first()
	}
	setCE(obr, "4", service)
	obr("7", dtm(obs[0].EffectiveDateTime))
	if orderer != nil {
		setXCN(obr, "16", orderer)
	}
	issued := ""
	status := "F"
	for _, o := range obs {
		issued = max(issued, o.Issued)
		if st := obxStatus[o.Status]; st != "F" {
			status = "P"
		}
	}
	obr("22", dtm(issued))
	obr("25", status)
	n := 0
	for _, o := range obs {
		for _, r := range obsResults(o) {
			n++
			obx := e.seg("OBX")
			obx("1", strconv.Itoa(n))
			obx("2", r.vtype)
			setCE(obx, "3", r.code)
			if r.vtype == "CE" {
				setCE(obx, "5", r.valueCE)
			} else {
				obx("5", r.value)
			}
			if r.unit != "" {
				obx("6-1", r.unit)
				obx("6-2", r.unitText)
				obx("6-3", "UCUM")
			}
			obx("11", obxStatus[o.Status])
			obx("14", dtm(o.EffectiveDateTime))
		}
	}
}

// txaType maps note LOINC codes to HL7 table 0270 document types.
var txaType = map[string]string{"11506-3": "PN", "34117-2": "HP", "18842-5": "DS", "11488-4": "CN"}

func (e *enc) mdm(s *snapshot, d *documentRes, now time.Time) {
	var en *encounterRes
	for _, r := range d.Context.Encounter {
		if x := s.encounters[r.id("Encounter")]; x != nil {
			en = x
			break
		}
	}
	e.evn("T02", now, d.Date)
	e.pid(s.patients[d.Subject.id("Patient")])
	e.pv1(s, en, false)
	kind := d.Type.first()
	txa := e.seg("TXA")
	txa("1", "1")
	typ := txaType[kind.Code]
	if typ == "" {
		typ = "CN"
	}
	txa("2", typ)
	txa("3", "FT")
	txa("4", dtm(d.Date))
	for _, a := range d.Author {
		if pr := s.practitioners[a.id("Practitioner")]; pr != nil {
			setXCN(txa, "5", pr)
			break
		}
	}
	txa("12-1", d.ID)
	completion := "AU"
	if d.DocStatus == "preliminary" {
		completion = "IP"
	}
	txa("17", completion)
	txa("19", "AV")
	text := d.Description
	for _, c := range d.Content {
		if len(c.Attachment.Data) > 0 && (c.Attachment.ContentType == "" || strings.HasPrefix(c.Attachment.ContentType, "text/")) {
			text = string(c.Attachment.Data)
			break
		}
	}
	obx := e.seg("OBX")
	obx("1", "1")
	obx("2", "FT")
	setCE(obx, "3", kind)
	obx("5", strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n"))
	obx("11", "F")
}

const sysLOINC = "http://loinc.org"

// codingSystem names a FHIR code system the way v2 (table 0396) does.
func codingSystem(system string) string {
	switch system {
	case "":
		return ""
	case sysLOINC:
		return "LN"
	case "http://snomed.info/sct":
		return "SCT"
	case "http://hl7.org/fhir/sid/icd-10-cm":
		return "I10C"
	case "http://www.nlm.nih.gov/research/umls/rxnorm":
		return "RXNORM"
	case "http://unitsofmeasure.org":
		return "UCUM"
	}
	if strings.HasPrefix(system, "HL7") {
		return system
	}
	if t, ok := strings.CutPrefix(system, "http://terminology.hl7.org/CodeSystem/v2-"); ok {
		return "HL7" + t
	}
	return "L"
}

func setCE(set func(string, string), field string, c coding) {
	set(field+"-1", c.Code)
	set(field+"-2", c.Display)
	if c.Code != "" {
		set(field+"-3", codingSystem(c.System))
	}
}

func pickName(names []humanName) *humanName {
	for i := range names {
		if names[i].Use == "official" {
			return &names[i]
		}
	}
	if len(names) > 0 {
		return &names[0]
	}
	return nil
}

// setXPN writes a person name: family^given^middle^suffix^prefix^^type.
func setXPN(set func(string, string), field string, n *humanName) {
	set(field+"-1", n.Family)
	if len(n.Given) > 0 {
		set(field+"-2", n.Given[0])
		set(field+"-3", strings.Join(n.Given[1:], " "))
	}
	set(field+"-4", strings.Join(n.Suffix, " "))
	set(field+"-5", strings.Join(n.Prefix, " "))
	switch n.Use {
	case "official", "usual", "":
		set(field+"-7", "L")
	case "nickname":
		set(field+"-7", "N")
	case "maiden":
		set(field+"-7", "M")
	}
}

const sysNPI = "http://hl7.org/fhir/sid/us-npi"

// setXCN writes a practitioner: NPI^family^given^middle^suffix^prefix^^^NPI
// authority^...^NPI, or the FHIR id when there is no NPI.
func setXCN(set func(string, string), field string, p *practitionerRes) {
	npi := ""
	for _, id := range p.Identifier {
		if id.System == sysNPI && id.Value != "" {
			npi = id.Value
			break
		}
	}
	if npi != "" {
		set(field+"-1", npi)
	} else {
		set(field+"-1", p.ID)
	}
	if n := pickName(p.Name); n != nil {
		set(field+"-2", n.Family)
		if len(n.Given) > 0 {
			set(field+"-3", n.Given[0])
			set(field+"-4", strings.Join(n.Given[1:], " "))
		}
		set(field+"-5", strings.Join(n.Suffix, " "))
		set(field+"-6", strings.Join(n.Prefix, " "))
	}
	if npi != "" {
		set(field+"-9-1", "NPI")
		set(field+"-9-2", "2.16.840.1.113883.4.6")
		set(field+"-9-3", "ISO")
		set(field+"-13", "NPI")
	}
}

// authority splits an identifier system into an HD universal id and its
// type: an OID ("ISO") or a URI.
func authority(system string) (string, string) {
	if system == "" {
		return "", ""
	}
	if oid, ok := strings.CutPrefix(system, "urn:oid:"); ok {
		return oid, "ISO"
	}
	return system, "URI"
}

func sexCode(g string) string {
	switch g {
	case "male":
		return "M"
	case "female":
		return "F"
	case "other":
		return "O"
	case "unknown":
		return "U"
	}
	return ""
}

// patientClass maps the FHIR encounter class (v3 ActCode) to HL7 table 0004.
func patientClass(c string) string {
	switch c {
	case "IMP", "ACUTE", "NONAC":
		return "I"
	case "EMER":
		return "E"
	case "PRENC":
		return "P"
	case "OBSENC":
		return "O"
	}
	return "O"
}

func firstN[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

// dtm converts a FHIR date or dateTime to an HL7 DTM of the same precision
// (date times in UTC); "" when it does not parse.
func dtm(s string) string {
	switch len(s) {
	case 0:
		return ""
	case 4, 7, 10: // YYYY, YYYY-MM, YYYY-MM-DD
		return strings.ReplaceAll(s, "-", "")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return ""
	}
	return dtmTime(t)
}

func dtmTime(t time.Time) string { return t.UTC().Format("20060102150405") + "+0000" }
