package hl7feed

import (
	"encoding/json"
	"errors"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/sim"
)

// Source is read access to one tenant's current FHIR data.
type Source interface {
	// Resources returns id → FHIR R4 JSON of every current resource of a
	// type. The caller does not modify the map or the bytes.
	Resources(resourceType string) map[string][]byte
}

// FromSim returns a Source reading a simulator tenant's current data. It
// reads each time it is asked, so a feed sees what the change generator
// creates and updates.
func FromSim(s *sim.Sim, tenantID string) Source { return simSource{s, tenantID} }

type simSource struct {
	s      *sim.Sim
	tenant string
}

func (s simSource) Resources(rt string) map[string][]byte { return s.s.Current(s.tenant, rt) }

// MapSource is a Source held in memory: resource type → id → JSON.
type MapSource map[string]map[string][]byte

// Resources returns the resources of a type.
func (m MapSource) Resources(rt string) map[string][]byte { return m[rt] }

// ErrNoData is returned when a Source holds nothing the message mix can be
// built from.
var ErrNoData = errors.New("hl7feed: the source has no data for the message mix")

// The subset of FHIR R4 the feed reads.

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type concept struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text"`
}

// first returns the first coding, or one made of the text.
func (c *concept) first() coding {
	if c == nil {
		return coding{}
	}
	if len(c.Coding) > 0 {
		cd := c.Coding[0]
		if cd.Display == "" {
			cd.Display = c.Text
		}
		return cd
	}
	return coding{Display: c.Text}
}

type reference struct {
	Reference string `json:"reference"`
	Display   string `json:"display"`
}

// target splits "Type/id" (also the tail of an absolute URL or a versioned
// reference) into its type and id.
func (r reference) target() (string, string) {
	s := r.Reference
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 {
		return "", ""
	}
	return parts[len(parts)-2], parts[len(parts)-1]
}

// id returns the referenced id when the reference is to resource type rt.
func (r reference) id(rt string) string {
	t, id := r.target()
	if t != rt {
		return ""
	}
	return id
}

type identifier struct {
	Use    string   `json:"use"`
	Type   *concept `json:"type"`
	System string   `json:"system"`
	Value  string   `json:"value"`
}

type humanName struct {
	Use    string   `json:"use"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
	Suffix []string `json:"suffix"`
}

type contactPoint struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Use    string `json:"use"`
}

type address struct {
	Use        string   `json:"use"`
	Line       []string `json:"line"`
	City       string   `json:"city"`
	State      string   `json:"state"`
	PostalCode string   `json:"postalCode"`
	Country    string   `json:"country"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type quantity struct {
	Value json.Number `json:"value"`
	Unit  string      `json:"unit"`
	Code  string      `json:"code"`
}

type patientRes struct {
	ID            string         `json:"id"`
	Identifier    []identifier   `json:"identifier"`
	Name          []humanName    `json:"name"`
	Telecom       []contactPoint `json:"telecom"`
	Gender        string         `json:"gender"`
	BirthDate     string         `json:"birthDate"`
	Address       []address      `json:"address"`
	MaritalStatus *concept       `json:"maritalStatus"`
}

// mrn returns the patient's medical record number identifier: the one typed
// MR (v2 table 0203) or, as Epic types it, by the text MRN or EPI; failing
// that the "usual" one, failing that the first with a value.
func (p *patientRes) mrn() (identifier, bool) {
	for _, id := range p.Identifier {
		if id.Value == "" || id.Type == nil {
			continue
		}
		for _, c := range id.Type.Coding {
			if c.Code == "MR" {
				return id, true
			}
		}
		switch strings.ToUpper(id.Type.Text) {
		case "MR", "MRN", "EPI":
			return id, true
		}
	}
	for _, id := range p.Identifier {
		if id.Value != "" && id.Use == "usual" {
			return id, true
		}
	}
	for _, id := range p.Identifier {
		if id.Value != "" {
			return id, true
		}
	}
	return identifier{}, false
}

type practitionerRes struct {
	ID         string       `json:"id"`
	Identifier []identifier `json:"identifier"`
	Name       []humanName  `json:"name"`
}

type locationRes struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type encounterRes struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"`
	Class       coding    `json:"class"`
	Type        []concept `json:"type"`
	Subject     reference `json:"subject"`
	Participant []struct {
		Individual reference `json:"individual"`
	} `json:"participant"`
	Period   period `json:"period"`
	Location []struct {
		Location reference `json:"location"`
	} `json:"location"`
}

func (e *encounterRes) practitionerID() string {
	for _, p := range e.Participant {
		if id := p.Individual.id("Practitioner"); id != "" {
			return id
		}
	}
	return ""
}

func (e *encounterRes) locationID() string {
	for _, l := range e.Location {
		if id := l.Location.id("Location"); id != "" {
			return id
		}
	}
	return ""
}

type appointmentRes struct {
	ID                string    `json:"id"`
	Status            string    `json:"status"`
	CancelationReason *concept  `json:"cancelationReason"`
	AppointmentType   *concept  `json:"appointmentType"`
	ReasonCode        []concept `json:"reasonCode"`
	Description       string    `json:"description"`
	Start             string    `json:"start"`
	End               string    `json:"end"`
	MinutesDuration   int       `json:"minutesDuration"`
	Created           string    `json:"created"`
	Participant       []struct {
		Actor reference `json:"actor"`
	} `json:"participant"`
}

func (a *appointmentRes) actor(rt string) string {
	for _, p := range a.Participant {
		if id := p.Actor.id(rt); id != "" {
			return id
		}
	}
	return ""
}

type obsValue struct {
	ValueQuantity        *quantity `json:"valueQuantity"`
	ValueString          *string   `json:"valueString"`
	ValueCodeableConcept *concept  `json:"valueCodeableConcept"`
}

type observationRes struct {
	ID                string    `json:"id"`
	Status            string    `json:"status"`
	Category          []concept `json:"category"`
	Code              concept   `json:"code"`
	Subject           reference `json:"subject"`
	Encounter         reference `json:"encounter"`
	EffectiveDateTime string    `json:"effectiveDateTime"`
	Issued            string    `json:"issued"`
	obsValue
	Component []struct {
		Code concept `json:"code"`
		obsValue
	} `json:"component"`
}

func (o *observationRes) category() string {
	for _, c := range o.Category {
		for _, cd := range c.Coding {
			if cd.Code != "" {
				return cd.Code
			}
		}
	}
	return ""
}

type documentRes struct {
	ID          string      `json:"id"`
	Status      string      `json:"status"`
	DocStatus   string      `json:"docStatus"`
	Type        concept     `json:"type"`
	Subject     reference   `json:"subject"`
	Date        string      `json:"date"`
	Author      []reference `json:"author"`
	Description string      `json:"description"`
	Content     []struct {
		Attachment struct {
			ContentType string `json:"contentType"`
			Data        []byte `json:"data"` // base64 in JSON
			Title       string `json:"title"`
		} `json:"attachment"`
	} `json:"content"`
	Context struct {
		Encounter []reference `json:"encounter"`
	} `json:"context"`
}

// obsGroup is the Observations one ORU^R01 reports under one OBR.
type obsGroup struct {
	key       string // stable: patient, encounter (or time) and category
	patient   string
	encounter string
	category  string
	obs       []*observationRes
}

// snapshot is a Source read once and indexed for building messages.
type snapshot struct {
	patients      map[string]*patientRes
	practitioners map[string]*practitionerRes
	locations     map[string]*locationRes
	encounters    map[string]*encounterRes

	patientList   []*patientRes   // with an MRN, by id
	encList       []*encounterRes // of known patients, by id
	encFinished   []*encounterRes
	encByPatient  map[string][]*encounterRes // latest first
	apptActive    []*appointmentRes
	apptCancelled []*appointmentRes
	groups        []*obsGroup
	docs          []*documentRes
}

// decodeAll decodes every resource of a type, in id order; resources that do
// not decode are skipped (the simulator only holds valid JSON).
func decodeAll[T any](src Source, rt string) []*T {
	m := src.Resources(rt)
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*T, 0, len(ids))
	for _, id := range ids {
		v := new(T)
		if err := json.Unmarshal(m[id], v); err != nil {
			continue
		}
		out = append(out, v)
	}
	return out
}

func load(src Source) *snapshot {
	s := &snapshot{
		patients:      map[string]*patientRes{},
		practitioners: map[string]*practitionerRes{},
		locations:     map[string]*locationRes{},
		encounters:    map[string]*encounterRes{},
		encByPatient:  map[string][]*encounterRes{},
	}
	for _, p := range decodeAll[patientRes](src, "Patient") {
		if _, ok := p.mrn(); ok && p.ID != "" {
			s.patients[p.ID] = p
			s.patientList = append(s.patientList, p)
		}
	}
	for _, p := range decodeAll[practitionerRes](src, "Practitioner") {
		s.practitioners[p.ID] = p
	}
	for _, l := range decodeAll[locationRes](src, "Location") {
		s.locations[l.ID] = l
	}
	for _, e := range decodeAll[encounterRes](src, "Encounter") {
		pid := e.Subject.id("Patient")
		if s.patients[pid] == nil {
			continue
		}
		s.encounters[e.ID] = e
		s.encList = append(s.encList, e)
		if e.Status == "finished" && e.Period.End != "" {
			s.encFinished = append(s.encFinished, e)
		}
		s.encByPatient[pid] = append(s.encByPatient[pid], e)
	}
	for _, list := range s.encByPatient {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Period.Start > list[j].Period.Start })
	}
	for _, a := range decodeAll[appointmentRes](src, "Appointment") {
		if s.patients[a.actor("Patient")] == nil || a.Start == "" {
			continue
		}
		switch a.Status {
		case "cancelled":
			s.apptCancelled = append(s.apptCancelled, a)
		case "entered-in-error":
		default:
			s.apptActive = append(s.apptActive, a)
		}
	}
	groups := map[string]*obsGroup{}
	for _, o := range decodeAll[observationRes](src, "Observation") {
		pid := o.Subject.id("Patient")
		if s.patients[pid] == nil || len(obsResults(o)) == 0 {
			continue
		}
		enc := o.Encounter.id("Encounter")
		if s.encounters[enc] == nil {
			enc = ""
		}
		when := ""
		if enc == "" {
			when = o.EffectiveDateTime
		}
		key := pid + "|" + enc + "|" + when + "|" + o.category()
		g := groups[key]
		if g == nil {
			g = &obsGroup{key: key, patient: pid, encounter: enc, category: o.category()}
			groups[key] = g
			s.groups = append(s.groups, g)
		}
		g.obs = append(g.obs, o)
	}
	sort.Slice(s.groups, func(i, j int) bool { return s.groups[i].key < s.groups[j].key })
	for _, d := range decodeAll[documentRes](src, "DocumentReference") {
		if s.patients[d.Subject.id("Patient")] != nil {
			s.docs = append(s.docs, d)
		}
	}
	return s
}

// fillerID returns a stable order number for a group: a short hash of its key.
func (g *obsGroup) fillerID() string {
	h := fnv.New64a()
	h.Write([]byte(g.key))
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	v := h.Sum64()
	b := []byte("ORD")
	for range 12 {
		b = append(b, digits[v%36])
		v /= 36
	}
	return string(b)
}

// candidates returns how many resources each message kind can be built from.
func (s *snapshot) candidates(k kind) int {
	switch k {
	case adtA01, adtA04:
		return len(s.encList)
	case adtA03:
		return len(s.encFinished)
	case adtA08:
		return len(s.patientList)
	case siuS12, siuS14:
		return len(s.apptActive)
	case siuS15:
		return len(s.apptCancelled)
	case oruR01:
		return len(s.groups)
	case mdmT02:
		return len(s.docs)
	}
	return 0
}
