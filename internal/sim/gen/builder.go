package gen

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Decorator gives generated resources a vendor's shape: its id style and its
// identifier and extension quirks. Each simulator flavour implements it.
type Decorator interface {
	// NewID returns a new logical id for a resource of the given type. It must
	// draw randomness only from rng so generation stays deterministic.
	NewID(resourceType string, rng *rand.Rand) string
	// Decorate rewrites r (a complete generated resource) in place.
	Decorate(resourceType string, r *Obj, facts Facts)
}

// Facts is what the generator knows about a resource beyond its JSON.
type Facts struct {
	Tenant string
	// Serial numbers resources of one type within a tenant: 1, 2, ...
	Serial int
	// MRN is the patient's medical record number (patients only).
	MRN string
}

// Plain is the Decorator that leaves resources as generated, with UUID-shaped ids.
type Plain struct{}

// NewID returns a random UUID-shaped (version 4 layout) id.
func (Plain) NewID(_ string, rng *rand.Rand) string { return UUID(rng) }

// Decorate does nothing.
func (Plain) Decorate(string, *Obj, Facts) {}

// UUID returns a version-4-shaped UUID drawn from rng.
func UUID(rng *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Resource is one generated resource.
type Resource struct {
	Type        string
	ID          string
	LastUpdated time.Time
	Obj         *Obj
}

// PatientInfo is what other builders need to know about a patient.
type PatientInfo struct {
	ID        string
	Given     string
	Family    string
	Gender    string
	BirthDate time.Time
	MRN       string
}

// Display is the patient's name as a reference display ("Given Family").
func (p PatientInfo) Display() string { return p.Given + " " + p.Family }

// Ref is a reference target: the id and a display text.
type Ref struct {
	ID      string
	Display string
}

// Builder makes single resources. It owns a random source; one Builder must
// not be used from two goroutines.
type Builder struct {
	rng     *rand.Rand
	dec     Decorator
	tenant  string
	serials map[string]int
}

// NewBuilder returns a builder drawing from a PCG source seeded with seed.
// dec may be nil (Plain).
func NewBuilder(tenant string, seed uint64, dec Decorator) *Builder {
	if dec == nil {
		dec = Plain{}
	}
	return &Builder{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		dec:     dec,
		tenant:  tenant,
		serials: map[string]int{},
	}
}

// Rand exposes the builder's random source (for callers that choose what to build).
func (b *Builder) Rand() *rand.Rand { return b.rng }

// SetSerial sets the last used serial number for a resource type, so that a
// builder continuing an existing data set does not reuse numbers.
func (b *Builder) SetSerial(resourceType string, n int) { b.serials[resourceType] = n }

func (b *Builder) start(rt string) (*Obj, string, int) {
	b.serials[rt]++
	id := b.dec.NewID(rt, b.rng)
	return O("resourceType", rt, "id", id), id, b.serials[rt]
}

func (b *Builder) finish(rt, id string, o *Obj, f Facts, lastUpdated time.Time) Resource {
	f.Tenant = b.tenant
	b.dec.Decorate(rt, o, f)
	// Records are saved a little after the event they describe; the jitter
	// also keeps lastUpdated values from lining up on whole minutes.
	jitter := time.Duration(b.rng.IntN(300_000)) * time.Millisecond
	return Resource{Type: rt, ID: id, Obj: o, LastUpdated: lastUpdated.Add(jitter).UTC().Truncate(time.Millisecond)}
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func (b *Builder) chance(p float64) bool { return b.rng.Float64() < p }

// count draws a non-negative count with the given mean (floor plus a
// Bernoulli draw for the fraction, with some spread).
func (b *Builder) count(mean float64) int {
	if mean <= 0 {
		return 0
	}
	lo := math.Floor(mean * 0.5)
	span := mean - lo
	n := int(lo)
	// uniform on [0, 2*span] has mean span
	x := b.rng.Float64() * 2 * span
	n += int(x)
	if b.rng.Float64() < x-math.Floor(x) {
		n++
	}
	return n
}

func ref(rt string, r Ref) *Obj {
	o := O("reference", rt+"/"+r.ID)
	if r.Display != "" {
		o.Set("display", r.Display)
	}
	return o
}

func cc(c coding) *Obj {
	return O("coding", A(O("system", c.System, "code", c.Code, "display", c.Display)), "text", c.Display)
}

func dateTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
func date(t time.Time) string     { return t.UTC().Format("2006-01-02") }

func round(x float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(x*p) / p
}

// phone returns a North American number in the 555 exchange, "(AAA) 555-NNNN".
func (b *Builder) phone(pl place) string {
	return fmt.Sprintf("(%s) 555-%04d", pick(b.rng, pl.AreaCodes), b.rng.IntN(10000))
}

func emailLocal(s string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

func (b *Builder) address(use string) (*Obj, place) {
	pl := pick(b.rng, places)
	line := A(fmt.Sprintf("%d %s %s", 100+b.rng.IntN(9800), pick(b.rng, streetNames), pick(b.rng, streetSuffixes)))
	if b.chance(0.15) {
		line = append(line, fmt.Sprintf("Apt %d", 1+b.rng.IntN(450)))
	}
	a := NewObj()
	if use != "" {
		a.Set("use", use)
	}
	a.Set("line", line).Set("city", pl.City).Set("state", pl.State).
		Set("postalCode", fmt.Sprintf("%s%02d", pl.ZipPrefix, b.rng.IntN(100))).Set("country", "US")
	return a, pl
}

// NPI returns a 10-digit National Provider Identifier with a valid check
// digit (Luhn over the "80840" prefix plus the first nine digits).
func NPI(rng *rand.Rand, first byte) string {
	d := make([]byte, 9)
	d[0] = first
	for i := 1; i < 9; i++ {
		d[i] = byte('0' + rng.IntN(10))
	}
	return string(d) + string(rune('0'+NPICheckDigit(string(d))))
}

// NPICheckDigit computes the NPI check digit for the first nine digits.
func NPICheckDigit(nine string) int {
	s := "80840" + nine
	sum := 0
	double := true // rightmost digit of the payload is doubled
	for i := len(s) - 1; i >= 0; i-- {
		v := int(s[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return (10 - sum%10) % 10
}

// Organization builds the practice's own organization.
func (b *Builder) Organization(at time.Time) (Resource, Ref) {
	o, id, serial := b.start("Organization")
	addr, pl := b.address("work")
	var name string
	switch b.rng.IntN(3) {
	case 0:
		name = pl.City + " Family Medicine"
	case 1:
		name = pick(b.rng, familyNames) + " Medical Group"
	default:
		name = pick(b.rng, streetNames) + " Primary Care Associates"
	}
	o.Set("identifier", A(O("system", sysNPI, "value", NPI(b.rng, '1'+byte(b.rng.IntN(2))))))
	o.Set("active", true)
	o.Set("type", A(cc(coding{sysOrgType, "prov", "Healthcare Provider"})))
	o.Set("name", name)
	o.Set("telecom", A(O("system", "phone", "value", b.phone(pl), "use", "work")))
	o.Set("address", A(addr))
	return b.finish("Organization", id, o, Facts{Serial: serial}, at), Ref{ID: id, Display: name}
}

// Payor builds an insurer organization for payor index i (of PayorCount).
func (b *Builder) Payor(i int, at time.Time) (Resource, Ref) {
	p := payors[i%len(payors)]
	o, id, serial := b.start("Organization")
	addr, pl := b.address("work")
	o.Set("active", true)
	o.Set("type", A(cc(coding{sysOrgType, "pay", "Payer"})))
	o.Set("name", p.Name)
	o.Set("telecom", A(O("system", "phone", "value", b.phone(pl), "use", "work")))
	o.Set("address", A(addr))
	return b.finish("Organization", id, o, Facts{Serial: serial}, at), Ref{ID: id, Display: p.Name}
}

// PayorCount is the number of distinct payors the generator knows.
const PayorCount = 7

// Location builds a clinic location managed by org.
func (b *Builder) Location(org Ref, at time.Time) (Resource, Ref) {
	o, id, serial := b.start("Location")
	addr, pl := b.address("work")
	street := strings.SplitN(addr.List("line")[0].(string), " ", 2)[1]
	name := fmt.Sprintf("%s Clinic - %s", org.Display, street)
	o.Set("status", "active")
	o.Set("name", name)
	o.Set("mode", "instance")
	o.Set("type", A(cc(coding{sysRoleCode, "PC", "primary care clinic"})))
	o.Set("telecom", A(O("system", "phone", "value", b.phone(pl), "use", "work")))
	o.Set("address", addr)
	o.Set("managingOrganization", ref("Organization", org))
	return b.finish("Location", id, o, Facts{Serial: serial}, at), Ref{ID: id, Display: name}
}

// Practitioner builds a clinician.
func (b *Builder) Practitioner(at time.Time) (Resource, Ref) {
	o, id, serial := b.start("Practitioner")
	gender := "female"
	given := pick(b.rng, femaleGiven)
	if b.chance(0.48) {
		gender, given = "male", pick(b.rng, maleGiven)
	}
	family := pick(b.rng, familyNames)
	sp := pick(b.rng, specialties)
	name := O("use", "official", "family", family, "given", A(given))
	if sp.Credential == "MD" || sp.Credential == "DO" {
		name.Set("prefix", A("Dr."))
	}
	name.Set("suffix", A(sp.Credential))
	display := fmt.Sprintf("%s %s, %s", given, family, sp.Credential)
	_, pl := b.address("")
	o.Set("identifier", A(O("use", "official", "system", sysNPI, "value", NPI(b.rng, '1'))))
	o.Set("active", true)
	o.Set("name", A(name))
	o.Set("telecom", A(
		O("system", "phone", "value", b.phone(pl), "use", "work"),
		O("system", "email", "value", emailLocal(given)+"."+emailLocal(family)+"@"+pick(b.rng, emailDomains), "use", "work"),
	))
	o.Set("gender", gender)
	o.Set("qualification", A(O("code", O("coding", A(O("system", "http://nucc.org/provider-taxonomy", "code", sp.Code, "display", sp.Display)), "text", sp.Display))))
	return b.finish("Practitioner", id, o, Facts{Serial: serial}, at), Ref{ID: id, Display: display}
}

// Patient builds a patient cared for by gp at org.
func (b *Builder) Patient(anchor time.Time, gp, org Ref) (Resource, PatientInfo) {
	o, id, serial := b.start("Patient")
	var gender, given, middle string
	switch r := b.rng.Float64(); {
	case r < 0.505:
		gender = "female"
	case r < 0.99:
		gender = "male"
	case r < 0.995:
		gender = "other"
	default:
		gender = "unknown"
	}
	pool := femaleGiven
	if gender == "male" || (gender != "female" && b.chance(0.5)) {
		pool = maleGiven
	}
	given = pick(b.rng, pool)
	if b.chance(0.6) {
		for middle = pick(b.rng, pool); middle == given; middle = pick(b.rng, pool) {
		}
	}
	family := pick(b.rng, familyNames)
	if b.chance(0.08) {
		family += "-" + pick(b.rng, familyNames)
	}
	var age int
	switch r := b.rng.Float64(); {
	case r < 0.2:
		age = b.rng.IntN(18)
	case r < 0.8:
		age = 18 + b.rng.IntN(47)
	default:
		age = 65 + b.rng.IntN(31)
	}
	birth := anchor.AddDate(-age, 0, -b.rng.IntN(365)).Truncate(24 * time.Hour)
	mrn := strconv.Itoa(200000 + serial*13 + b.rng.IntN(13))

	race := pick(b.rng, races)
	eth := ethnicities[1]
	if b.chance(0.19) {
		eth = ethnicities[0]
	}
	ext := A(
		O("url", extRace, "extension", A(
			O("url", "ombCategory", "valueCoding", O("system", race.System, "code", race.Code, "display", race.Display)),
			O("url", "text", "valueString", race.Display))),
		O("url", extEthn, "extension", A(
			O("url", "ombCategory", "valueCoding", O("system", eth.System, "code", eth.Code, "display", eth.Display)),
			O("url", "text", "valueString", eth.Display))),
	)
	if gender == "female" || gender == "male" {
		ext = append(ext, O("url", extBirthSex, "valueCode", strings.ToUpper(gender[:1])))
	}
	o.Set("extension", ext)
	o.Set("identifier", A(O("use", "usual",
		"type", O("coding", A(O("system", sysV2_0203, "code", "MR", "display", "Medical Record Number")), "text", "MRN"),
		"system", "urn:mediflow:sim:"+b.tenant+":mrn", "value", mrn)))
	o.Set("active", true)
	givens := A(given)
	if middle != "" {
		givens = append(givens, middle)
	}
	name := O("use", "official", "family", family, "given", givens)
	if gender == "male" && age > 25 && b.chance(0.03) {
		name.Set("suffix", A("Jr."))
	}
	o.Set("name", A(name))
	addr, pl := b.address("home")
	telecom := A(O("system", "phone", "value", b.phone(pl), "use", "home"))
	if b.chance(0.7) {
		telecom = append(telecom, O("system", "phone", "value", b.phone(pl), "use", "mobile"))
	}
	if age >= 13 && b.chance(0.8) {
		local := emailLocal(given) + "." + emailLocal(family)
		if b.chance(0.5) {
			local += strconv.Itoa(b.rng.IntN(100))
		}
		telecom = append(telecom, O("system", "email", "value", local+"@"+pick(b.rng, emailDomains)))
	}
	o.Set("telecom", telecom)
	o.Set("gender", gender)
	o.Set("birthDate", date(birth))
	o.Set("address", A(addr))
	if age >= 18 {
		o.Set("maritalStatus", cc(pick(b.rng, maritalStatuses)))
	}
	lang := languages[0]
	if eth == ethnicities[0] && b.chance(0.4) {
		lang = languages[1]
	} else if race.Code == "2028-9" && b.chance(0.3) {
		lang = pick(b.rng, languages[2:])
	}
	o.Set("communication", A(O("language", cc(lang), "preferred", true)))
	o.Set("generalPractitioner", A(ref("Practitioner", gp)))
	o.Set("managingOrganization", ref("Organization", org))
	info := PatientInfo{ID: id, Given: given, Family: family, Gender: gender, BirthDate: birth, MRN: mrn}
	created := anchor.Add(-time.Duration(b.rng.IntN(3*365*24)) * time.Hour)
	return b.finish("Patient", id, o, Facts{Serial: serial, MRN: mrn}, created), info
}

// Coverage builds the patient's insurance with the payor.
func (b *Builder) Coverage(anchor time.Time, p PatientInfo, payorRef Ref) Resource {
	o, id, serial := b.start("Coverage")
	start := time.Date(anchor.Year()-b.rng.IntN(4), time.January, 1, 0, 0, 0, 0, time.UTC)
	member := fmt.Sprintf("%s%09d", strings.ToUpper(payorRef.Display[:1]), b.rng.IntN(1_000_000_000))
	o.Set("identifier", A(O("type", O("coding", A(O("system", sysV2_0203, "code", "MB", "display", "Member Number")), "text", "Member Number"), "value", member)))
	o.Set("status", "active")
	o.Set("type", cc(coding{sysActCov, "HIP", "health insurance plan policy"}))
	o.Set("subscriberId", member)
	o.Set("beneficiary", ref("Patient", Ref{ID: p.ID, Display: p.Display()}))
	rel := coding{sysSubRel, "self", "Self"}
	if anchor.Sub(p.BirthDate) < 18*365*24*time.Hour {
		rel = coding{sysSubRel, "child", "Child"}
	}
	o.Set("relationship", cc(rel))
	o.Set("period", O("start", date(start), "end", date(time.Date(anchor.Year(), time.December, 31, 0, 0, 0, 0, time.UTC))))
	o.Set("payor", A(ref("Organization", payorRef)))
	var plan string
	for _, py := range payors {
		if py.Name == payorRef.Display {
			plan = py.Plan
		}
	}
	o.Set("class", A(
		O("type", cc(coding{sysCovClass, "group", "Group"}), "value", fmt.Sprintf("GRP%06d", b.rng.IntN(1_000_000)), "name", payorRef.Display+" Employer Group"),
		O("type", cc(coding{sysCovClass, "plan", "Plan"}), "value", fmt.Sprintf("PLN%04d", b.rng.IntN(10_000)), "name", plan),
	))
	return b.finish("Coverage", id, o, Facts{Serial: serial}, start.Add(time.Duration(b.rng.IntN(30*24))*time.Hour))
}

// Schedule builds a practitioner's schedule at a location over [start, end).
func (b *Builder) Schedule(pract, loc Ref, start, end time.Time) (Resource, Ref) {
	o, id, serial := b.start("Schedule")
	o.Set("active", true)
	o.Set("serviceCategory", A(cc(coding{sysSvcCat, "17", "General Practice"})))
	o.Set("actor", A(ref("Practitioner", pract), ref("Location", loc)))
	o.Set("planningHorizon", O("start", dateTime(start), "end", dateTime(end)))
	o.Set("comment", "Clinic hours, weekdays")
	return b.finish("Schedule", id, o, Facts{Serial: serial}, start), Ref{ID: id, Display: pract.Display}
}

// Slot builds one bookable slot of a schedule.
func (b *Builder) Slot(schedule Ref, start, end time.Time, status string, lastUpdated time.Time) (Resource, Ref) {
	o, id, serial := b.start("Slot")
	o.Set("serviceCategory", A(cc(coding{sysSvcCat, "17", "General Practice"})))
	o.Set("schedule", ref("Schedule", Ref{ID: schedule.ID}))
	o.Set("status", status)
	o.Set("start", dateTime(start))
	o.Set("end", dateTime(end))
	return b.finish("Slot", id, o, Facts{Serial: serial}, lastUpdated), Ref{ID: id}
}

// SlotID reserves an id for a slot built later (appointments reference slots
// before the slot resources are emitted).
func (b *Builder) SlotID() string { return b.dec.NewID("Slot", b.rng) }

// SlotWithID builds a slot with a reserved id.
func (b *Builder) SlotWithID(id string, schedule Ref, start, end time.Time, status string, lastUpdated time.Time) Resource {
	b.serials["Slot"]++
	o := O("resourceType", "Slot", "id", id)
	o.Set("serviceCategory", A(cc(coding{sysSvcCat, "17", "General Practice"})))
	o.Set("schedule", ref("Schedule", Ref{ID: schedule.ID}))
	o.Set("status", status)
	o.Set("start", dateTime(start))
	o.Set("end", dateTime(end))
	return b.finish("Slot", id, o, Facts{Serial: b.serials["Slot"]}, lastUpdated)
}

// AppointmentSpec describes an appointment to build.
type AppointmentSpec struct {
	Patient      PatientInfo
	Practitioner Ref
	Location     Ref
	SlotID       string // "" when not booked into a slot
	Start, End   time.Time
	Status       string
	Created      time.Time
}

// Appointment builds an appointment.
func (b *Builder) Appointment(s AppointmentSpec) Resource {
	o, id, serial := b.start("Appointment")
	vt := pick(b.rng, visitTypes)
	o.Set("status", s.Status)
	if s.Status == "cancelled" {
		o.Set("cancelationReason", O("coding", A(O("system", "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", "code", "pat", "display", "Patient")), "text", "Patient request"))
	}
	o.Set("serviceCategory", A(cc(coding{sysSvcCat, "17", "General Practice"})))
	apptType := coding{sysApptType, "ROUTINE", "Routine appointment - default if not valued"}
	if vt.Code == "390906007" {
		apptType = coding{sysApptType, "FOLLOWUP", "A follow up visit from a previous appointment"}
	}
	o.Set("appointmentType", cc(apptType))
	o.Set("reasonCode", A(cc(coding{sysSNOMED, vt.Code, vt.Display})))
	o.Set("description", vt.Display)
	o.Set("start", dateTime(s.Start))
	o.Set("end", dateTime(s.End))
	o.Set("minutesDuration", int(s.End.Sub(s.Start)/time.Minute))
	if s.SlotID != "" {
		o.Set("slot", A(ref("Slot", Ref{ID: s.SlotID})))
	}
	o.Set("created", dateTime(s.Created))
	partStatus := "accepted"
	if s.Status == "proposed" || s.Status == "pending" {
		partStatus = "needs-action"
	}
	o.Set("participant", A(
		O("actor", ref("Patient", Ref{ID: s.Patient.ID, Display: s.Patient.Display()}), "required", "required", "status", partStatus),
		O("type", A(cc(coding{sysPartType, "PPRF", "primary performer"})), "actor", ref("Practitioner", s.Practitioner), "required", "required", "status", "accepted"),
		O("actor", ref("Location", s.Location), "required", "required", "status", "accepted"),
	))
	lu := s.Created
	if s.Status == "fulfilled" || s.Status == "noshow" {
		lu = s.End.Add(time.Duration(5+b.rng.IntN(120)) * time.Minute)
	}
	return b.finish("Appointment", id, o, Facts{Serial: serial}, lu)
}

// EncounterSpec describes an encounter to build.
type EncounterSpec struct {
	Patient       PatientInfo
	Practitioner  Ref
	Location      Ref
	Organization  Ref
	AppointmentID string
	Start, End    time.Time
	Status        string // finished | in-progress | planned ...
}

// Encounter builds an ambulatory encounter.
func (b *Builder) Encounter(s EncounterSpec) (Resource, Ref) {
	o, id, serial := b.start("Encounter")
	vt := pick(b.rng, visitTypes)
	o.Set("status", s.Status)
	o.Set("class", O("system", sysActCode, "code", "AMB", "display", "ambulatory"))
	o.Set("type", A(cc(coding{sysSNOMED, vt.Code, vt.Display})))
	o.Set("subject", ref("Patient", Ref{ID: s.Patient.ID, Display: s.Patient.Display()}))
	o.Set("participant", A(O(
		"type", A(cc(coding{sysPartType, "PPRF", "primary performer"})),
		"period", O("start", dateTime(s.Start), "end", dateTime(s.End)),
		"individual", ref("Practitioner", s.Practitioner))))
	if s.AppointmentID != "" {
		o.Set("appointment", A(ref("Appointment", Ref{ID: s.AppointmentID})))
	}
	o.Set("period", O("start", dateTime(s.Start), "end", dateTime(s.End)))
	o.Set("location", A(O("location", ref("Location", s.Location))))
	o.Set("serviceProvider", ref("Organization", s.Organization))
	lu := s.End.Add(time.Duration(10+b.rng.IntN(600)) * time.Minute)
	return b.finish("Encounter", id, o, Facts{Serial: serial}, lu), Ref{ID: id}
}

// Condition builds a diagnosis recorded at when.
func (b *Builder) Condition(p PatientInfo, enc *Ref, when time.Time) Resource {
	o, id, serial := b.start("Condition")
	c := pick(b.rng, conditions)
	clinical := "active"
	if !c.Chronic && b.chance(0.7) {
		clinical = "resolved"
	}
	o.Set("clinicalStatus", O("coding", A(O("system", sysCondClin, "code", clinical))))
	o.Set("verificationStatus", O("coding", A(O("system", sysCondVer, "code", "confirmed"))))
	cat := coding{sysCondCat, "problem-list-item", "Problem List Item"}
	if enc != nil {
		cat = coding{sysCondCat, "encounter-diagnosis", "Encounter Diagnosis"}
	}
	o.Set("category", A(cc(cat)))
	o.Set("code", O("coding", A(
		O("system", sysSNOMED, "code", c.SNOMED, "display", c.Display),
		O("system", sysICD10, "code", c.ICD10, "display", c.Display)), "text", c.Display))
	o.Set("subject", ref("Patient", Ref{ID: p.ID, Display: p.Display()}))
	if enc != nil {
		o.Set("encounter", ref("Encounter", *enc))
	}
	o.Set("onsetDateTime", dateTime(when))
	if clinical == "resolved" {
		o.Set("abatementDateTime", dateTime(when.AddDate(0, 0, 7+b.rng.IntN(30))))
	}
	o.Set("recordedDate", dateTime(when))
	return b.finish("Condition", id, o, Facts{Serial: serial}, when.Add(time.Duration(1+b.rng.IntN(48))*time.Hour))
}

// ObservationKinds is the number of kinds Observation accepts: the vitals,
// then the labs, then the blood-pressure panel (the last kind).
func ObservationKinds() int { return len(vitals) + len(labs) + 1 }

// VitalKinds lists the observation kinds taken at every visit.
func VitalKinds() []int {
	out := make([]int, 0, len(vitals)+1)
	for i := range vitals {
		out = append(out, i)
	}
	return append(out, len(vitals)+len(labs))
}

// LabKind returns a random laboratory observation kind.
func (b *Builder) LabKind() int { return len(vitals) + b.rng.IntN(len(labs)) }

// Observation builds a vital sign or lab result of the given kind (see ObservationKinds).
func (b *Builder) Observation(p PatientInfo, enc *Ref, when time.Time, kind int) Resource {
	o, id, serial := b.start("Observation")
	o.Set("status", "final")
	if kind >= len(vitals)+len(labs) { // blood pressure panel
		o.Set("category", A(O("coding", A(O("system", sysObsCat, "code", "vital-signs", "display", "Vital Signs")), "text", "Vital Signs")))
		o.Set("code", O("coding", A(O("system", sysLOINC, "code", "85354-9", "display", "Blood pressure panel with all children optional")), "text", "Blood pressure"))
		b.obsContext(o, p, enc, when)
		sys := 100 + b.rng.IntN(65)
		dia := 60 + b.rng.IntN(35)
		o.Set("component", A(
			O("code", O("coding", A(O("system", sysLOINC, "code", "8480-6", "display", "Systolic blood pressure")), "text", "Systolic blood pressure"),
				"valueQuantity", O("value", sys, "unit", "mm[Hg]", "system", sysUCUM, "code", "mm[Hg]")),
			O("code", O("coding", A(O("system", sysLOINC, "code", "8462-4", "display", "Diastolic blood pressure")), "text", "Diastolic blood pressure"),
				"valueQuantity", O("value", dia, "unit", "mm[Hg]", "system", sysUCUM, "code", "mm[Hg]")),
		))
		return b.finish("Observation", id, o, Facts{Serial: serial}, when.Add(time.Duration(b.rng.IntN(90))*time.Minute))
	}
	var v vital
	if kind < len(vitals) {
		v = vitals[kind]
	} else {
		v = labs[kind-len(vitals)]
	}
	catDisplay := "Vital Signs"
	if v.Category == "laboratory" {
		catDisplay = "Laboratory"
	}
	o.Set("category", A(O("coding", A(O("system", sysObsCat, "code", v.Category, "display", catDisplay)), "text", catDisplay)))
	o.Set("code", O("coding", A(O("system", sysLOINC, "code", v.LOINC, "display", v.Display)), "text", v.Display))
	b.obsContext(o, p, enc, when)
	val := round(v.Min+b.rng.Float64()*(v.Max-v.Min), v.Decimals)
	var value any = val
	if v.Decimals == 0 {
		value = int(val)
	}
	o.Set("valueQuantity", O("value", value, "unit", v.Unit, "system", sysUCUM, "code", v.Unit))
	lu := when.Add(time.Duration(b.rng.IntN(90)) * time.Minute)
	if v.Category == "laboratory" {
		lu = when.Add(time.Duration(2+b.rng.IntN(46)) * time.Hour)
	}
	return b.finish("Observation", id, o, Facts{Serial: serial}, lu)
}

func (b *Builder) obsContext(o *Obj, p PatientInfo, enc *Ref, when time.Time) {
	o.Set("subject", ref("Patient", Ref{ID: p.ID, Display: p.Display()}))
	if enc != nil {
		o.Set("encounter", ref("Encounter", *enc))
	}
	o.Set("effectiveDateTime", dateTime(when))
	o.Set("issued", when.UTC().Add(time.Hour).Format("2006-01-02T15:04:05.000Z"))
}

// Allergy builds an allergy or intolerance.
func (b *Builder) Allergy(p PatientInfo, recorder Ref, when time.Time) Resource {
	o, id, serial := b.start("AllergyIntolerance")
	a := pick(b.rng, allergies)
	o.Set("clinicalStatus", O("coding", A(O("system", sysAllClin, "code", "active", "display", "Active"))))
	o.Set("verificationStatus", O("coding", A(O("system", sysAllVer, "code", "confirmed", "display", "Confirmed"))))
	o.Set("type", "allergy")
	o.Set("category", A(a.Category))
	crit := "low"
	if a.Reaction == "Anaphylaxis" {
		crit = "high"
	}
	o.Set("criticality", crit)
	o.Set("code", cc(coding{a.System, a.Code, a.Display}))
	o.Set("patient", ref("Patient", Ref{ID: p.ID, Display: p.Display()}))
	o.Set("recordedDate", dateTime(when))
	o.Set("recorder", ref("Practitioner", recorder))
	o.Set("reaction", A(O("manifestation", A(O("text", a.Reaction)), "severity", map[bool]string{true: "severe", false: "mild"}[crit == "high"])))
	return b.finish("AllergyIntolerance", id, o, Facts{Serial: serial}, when.Add(time.Duration(b.rng.IntN(600))*time.Minute))
}

// MedicationRequest builds a prescription.
func (b *Builder) MedicationRequest(p PatientInfo, enc *Ref, requester Ref, when time.Time, anchor time.Time) Resource {
	o, id, serial := b.start("MedicationRequest")
	m := pick(b.rng, medications)
	status := "active"
	if anchor.Sub(when) > 180*24*time.Hour && b.chance(0.6) {
		status = "completed"
	} else if b.chance(0.05) {
		status = "stopped"
	}
	o.Set("status", status)
	o.Set("intent", "order")
	o.Set("category", A(O("coding", A(O("system", "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code", "outpatient", "display", "Outpatient")), "text", "Outpatient")))
	o.Set("medicationCodeableConcept", cc(coding{sysRxNorm, m.RxNorm, m.Display}))
	o.Set("subject", ref("Patient", Ref{ID: p.ID, Display: p.Display()}))
	if enc != nil {
		o.Set("encounter", ref("Encounter", *enc))
	}
	o.Set("authoredOn", dateTime(when))
	o.Set("requester", ref("Practitioner", requester))
	o.Set("dosageInstruction", A(O("text", m.Sig)))
	o.Set("dispenseRequest", O("numberOfRepeatsAllowed", b.rng.IntN(6), "quantity", O("value", 30*(1+b.rng.IntN(3)), "unit", "tablet")))
	return b.finish("MedicationRequest", id, o, Facts{Serial: serial}, when.Add(time.Duration(b.rng.IntN(120))*time.Minute))
}

// DocumentReference builds a clinical note whose text is carried as base64 data.
func (b *Builder) DocumentReference(p PatientInfo, enc *Ref, author, org Ref, when time.Time) Resource {
	o, id, serial := b.start("DocumentReference")
	kind := pick(b.rng, noteKinds)
	cond := pick(b.rng, conditions)
	v := pick(b.rng, vitals)
	text := fmt.Sprintf("%s\n\nPatient: %s (DOB %s)\nDate of service: %s\nAuthor: %s\n\n"+
		"Subjective: Patient seen for %s. Reports symptoms stable since last visit.\n"+
		"Objective: %s within expected range. No acute distress.\n"+
		"Assessment: %s.\nPlan: Continue current management; follow up in %d weeks.\n",
		kind.Display, p.Display(), date(p.BirthDate), date(when), author.Display,
		strings.ToLower(cond.Display), v.Display, cond.Display, 2+b.rng.IntN(11))
	o.Set("identifier", A(O("system", "urn:ietf:rfc:3986", "value", "urn:uuid:"+UUID(b.rng))))
	o.Set("status", "current")
	o.Set("docStatus", "final")
	o.Set("type", cc(kind))
	o.Set("category", A(O("coding", A(O("system", sysDocCat, "code", "clinical-note", "display", "Clinical Note")), "text", "Clinical Note")))
	o.Set("subject", ref("Patient", Ref{ID: p.ID, Display: p.Display()}))
	o.Set("date", when.UTC().Format("2006-01-02T15:04:05.000Z"))
	o.Set("author", A(ref("Practitioner", author)))
	o.Set("custodian", ref("Organization", org))
	o.Set("description", kind.Display)
	o.Set("content", A(O("attachment", O(
		"contentType", "text/plain; charset=utf-8",
		"language", "en-US",
		"data", base64.StdEncoding.EncodeToString([]byte(text)),
		"title", kind.Display,
		"creation", dateTime(when)),
		"format", O("system", "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code", "urn:ihe:iti:xds:2017:mimeTypeSufficient", "display", "mimeType Sufficient"))))
	ctx := O()
	if enc != nil {
		ctx.Set("encounter", A(ref("Encounter", *enc)))
	}
	ctx.Set("period", O("start", dateTime(when), "end", dateTime(when.Add(30*time.Minute))))
	o.Set("context", ctx)
	return b.finish("DocumentReference", id, o, Facts{Serial: serial}, when.Add(time.Duration(30+b.rng.IntN(24*60))*time.Minute))
}
