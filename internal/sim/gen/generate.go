// Package gen is the simulator's deterministic synthetic data generator: from
// a seed it builds a practice's directory (organization, payors, locations,
// practitioners), schedules, slots and appointments over a date range, and
// patients with coverage, encounters, conditions, observations, allergies,
// medication requests and clinical notes. The same options give
// byte-identical output.
package gen

import (
	"fmt"
	"time"
)

// Options control how much data Generate makes. Zero values take the defaults
// documented on each field.
type Options struct {
	Tenant string
	Seed   uint64
	// Patients is the number of patients (default 100; 0 means the default,
	// use a negative value for none).
	Patients int
	// Practitioners defaults to max(3, Patients/400).
	Practitioners int
	// Locations defaults to max(1, Practitioners/4), at most 8.
	Locations int
	// Anchor is "today" for the data: past visits are before it, future
	// appointments after, and no resource's lastUpdated is later than it.
	// Default: 2026-06-01T00:00:00Z (fixed, so output does not depend on the clock).
	Anchor time.Time
	// PastDays and FutureDays bound the schedule (defaults 60 and 30).
	PastDays, FutureDays int
	// SlotMinutes is the slot length (default 30); clinics run 08:00-17:00 UTC on weekdays.
	SlotMinutes int
	// Per-patient means (defaults in brackets).
	AppointmentsPerPatient float64 // [2]
	EncountersPerPatient   float64 // [2] visits in the past year, in addition to fulfilled appointments' encounters
	ConditionsPerPatient   float64 // [1.5]
	AllergiesPerPatient    float64 // [0.4]
	MedicationsPerPatient  float64 // [1.2]
	// LabsPerEncounter is the mean number of lab results per encounter [1];
	// every encounter also records the vital signs.
	LabsPerEncounter float64
	// DocumentsPerEncounter is the probability an encounter has a note [0.5].
	DocumentsPerEncounter float64
	// VitalsPerEncounter is how many of the vital-sign kinds are recorded per
	// encounter [3]; at most 8.
	VitalsPerEncounter int
}

// DefaultAnchor is the default Options.Anchor.
var DefaultAnchor = time.Date(2026, time.June, 1, 0, 0, 0, 0, time.UTC)

func (o Options) withDefaults() Options {
	if o.Patients == 0 {
		o.Patients = 100
	}
	if o.Patients < 0 {
		o.Patients = 0
	}
	if o.Practitioners <= 0 {
		o.Practitioners = max(3, o.Patients/400)
	}
	if o.Locations <= 0 {
		o.Locations = min(8, max(1, o.Practitioners/4))
	}
	if o.Anchor.IsZero() {
		o.Anchor = DefaultAnchor
	}
	o.Anchor = o.Anchor.UTC()
	if o.PastDays <= 0 {
		o.PastDays = 60
	}
	if o.FutureDays <= 0 {
		o.FutureDays = 30
	}
	if o.SlotMinutes <= 0 {
		o.SlotMinutes = 30
	}
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
		if *v < 0 {
			*v = 0
		}
	}
	def(&o.AppointmentsPerPatient, 2)
	def(&o.EncountersPerPatient, 2)
	def(&o.ConditionsPerPatient, 1.5)
	def(&o.AllergiesPerPatient, 0.4)
	def(&o.MedicationsPerPatient, 1.2)
	def(&o.LabsPerEncounter, 1)
	def(&o.DocumentsPerEncounter, 0.5)
	if o.VitalsPerEncounter <= 0 {
		o.VitalsPerEncounter = 3
	}
	o.VitalsPerEncounter = min(o.VitalsPerEncounter, len(VitalKinds()))
	return o
}

// Stats counts generated resources per type.
type Stats map[string]int

// Total is the number of resources of all types.
func (s Stats) Total() int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

type slotKey struct {
	sched int
	day   int
	idx   int
}

type bookedSlot struct {
	id     string
	status string
	lu     time.Time
}

// Generate builds the data set and hands each resource to emit, in a
// deterministic order (directory, then patient by patient, then slots).
// It stops at emit's first error.
func Generate(opt Options, dec Decorator, emit func(Resource) error) (Stats, error) {
	opt = opt.withDefaults()
	b := NewBuilder(opt.Tenant, opt.Seed, dec)
	rng := b.rng
	stats := Stats{}
	out := func(r Resource) error {
		if r.LastUpdated.After(opt.Anchor) {
			r.LastUpdated = opt.Anchor
		}
		stats[r.Type]++
		return emit(r)
	}
	anchor := opt.Anchor
	dirTime := func() time.Time {
		return anchor.AddDate(-1, 0, -rng.IntN(365)).Add(time.Duration(rng.IntN(86400)) * time.Second)
	}

	orgRes, org := b.Organization(dirTime())
	if err := out(orgRes); err != nil {
		return stats, err
	}
	payorRefs := make([]Ref, PayorCount)
	for i := range PayorCount {
		r, ref := b.Payor(i, dirTime())
		payorRefs[i] = ref
		if err := out(r); err != nil {
			return stats, err
		}
	}
	locs := make([]Ref, opt.Locations)
	for i := range locs {
		r, ref := b.Location(org, dirTime())
		locs[i] = ref
		if err := out(r); err != nil {
			return stats, err
		}
	}
	practs := make([]Ref, opt.Practitioners)
	for i := range practs {
		r, ref := b.Practitioner(dirTime())
		practs[i] = ref
		if err := out(r); err != nil {
			return stats, err
		}
	}
	// One schedule per practitioner, at a fixed location.
	first := anchor.AddDate(0, 0, -opt.PastDays)
	last := anchor.AddDate(0, 0, opt.FutureDays)
	scheds := make([]Ref, len(practs))
	schedLoc := make([]Ref, len(practs))
	for i, p := range practs {
		schedLoc[i] = locs[i%len(locs)]
		r, ref := b.Schedule(p, schedLoc[i], first, last)
		r.LastUpdated = first.AddDate(0, 0, -rng.IntN(30))
		scheds[i] = ref
		if err := out(r); err != nil {
			return stats, err
		}
	}
	days := opt.PastDays + opt.FutureDays
	var workdays []int // day offsets from first that are weekdays
	for d := range days {
		wd := first.AddDate(0, 0, d).Weekday()
		if wd != time.Saturday && wd != time.Sunday {
			workdays = append(workdays, d)
		}
	}
	slotsPerDay := 9 * 60 / opt.SlotMinutes
	slotDur := time.Duration(opt.SlotMinutes) * time.Minute
	slotStart := func(k slotKey) time.Time {
		return first.AddDate(0, 0, k.day).Add(8*time.Hour + time.Duration(k.idx)*slotDur)
	}
	booked := map[slotKey]bookedSlot{}

	for range opt.Patients {
		pi := rng.IntN(len(practs))
		pres, pat := b.Patient(anchor, practs[pi], org)
		if err := out(pres); err != nil {
			return stats, err
		}
		if rng.Float64() < 0.9 {
			if err := out(b.Coverage(anchor, pat, payorRefs[rng.IntN(len(payorRefs))])); err != nil {
				return stats, err
			}
		}
		var encs []Ref
		var encTimes []time.Time
		addEncounter := func(start time.Time, pr, loc Ref, apptID string) error {
			end := start.Add(slotDur)
			er, eref := b.Encounter(EncounterSpec{Patient: pat, Practitioner: pr, Location: loc, Organization: org, AppointmentID: apptID, Start: start, End: end, Status: "finished"})
			if err := out(er); err != nil {
				return err
			}
			encs = append(encs, eref)
			encTimes = append(encTimes, start)
			vk := VitalKinds()
			rng.Shuffle(len(vk), func(i, j int) { vk[i], vk[j] = vk[j], vk[i] })
			for _, k := range vk[:opt.VitalsPerEncounter] {
				if err := out(b.Observation(pat, &eref, start.Add(5*time.Minute), k)); err != nil {
					return err
				}
			}
			for range b.count(opt.LabsPerEncounter) {
				if err := out(b.Observation(pat, &eref, start.Add(20*time.Minute), b.LabKind())); err != nil {
					return err
				}
			}
			if rng.Float64() < opt.DocumentsPerEncounter {
				if err := out(b.DocumentReference(pat, &eref, pr, org, end)); err != nil {
					return err
				}
			}
			return nil
		}
		// Appointments, booked into free slots of the patient's practitioner
		// (or another one when the GP is full).
		for range b.count(opt.AppointmentsPerPatient) {
			var key slotKey
			found := false
			for try := 0; try < 6 && !found && len(workdays) > 0; try++ {
				s := pi
				if try >= 3 {
					s = rng.IntN(len(practs))
				}
				key = slotKey{s, workdays[rng.IntN(len(workdays))], rng.IntN(slotsPerDay)}
				_, taken := booked[key]
				found = !taken
			}
			if !found {
				continue
			}
			start := slotStart(key)
			end := start.Add(slotDur)
			var status string
			r := rng.Float64()
			if start.Before(anchor) {
				switch {
				case r < 0.8:
					status = "fulfilled"
				case r < 0.87:
					status = "noshow"
				default:
					status = "cancelled"
				}
			} else {
				switch {
				case r < 0.85:
					status = "booked"
				case r < 0.9:
					status = "proposed"
				default:
					status = "cancelled"
				}
			}
			created := start.AddDate(0, 0, -1-rng.IntN(40))
			slotID := ""
			if status != "cancelled" && status != "proposed" {
				slotID = b.SlotID()
				booked[key] = bookedSlot{id: slotID, status: "busy", lu: created}
			}
			ar := b.Appointment(AppointmentSpec{Patient: pat, Practitioner: practs[key.sched], Location: schedLoc[key.sched], SlotID: slotID, Start: start, End: end, Status: status, Created: created})
			if err := out(ar); err != nil {
				return stats, err
			}
			if status == "fulfilled" {
				if err := addEncounter(start, practs[key.sched], schedLoc[key.sched], ar.ID); err != nil {
					return stats, err
				}
			}
		}
		// Earlier visits (past year, before the schedule window).
		for range b.count(opt.EncountersPerPatient) {
			day := anchor.AddDate(0, 0, -opt.PastDays-1-rng.IntN(305))
			start := time.Date(day.Year(), day.Month(), day.Day(), 8, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(slotsPerDay)) * slotDur)
			if err := addEncounter(start, practs[pi], schedLoc[pi], ""); err != nil {
				return stats, err
			}
		}
		encAt := func() (*Ref, time.Time) {
			if len(encs) == 0 {
				return nil, anchor.AddDate(0, 0, -1-rng.IntN(700)).Add(time.Duration(8+rng.IntN(9)) * time.Hour)
			}
			i := rng.IntN(len(encs))
			return &encs[i], encTimes[i].Add(15 * time.Minute)
		}
		for range b.count(opt.ConditionsPerPatient) {
			e, at := encAt()
			if rng.Float64() < 0.3 {
				e = nil // problem-list entries without an encounter
			}
			if err := out(b.Condition(pat, e, at)); err != nil {
				return stats, err
			}
		}
		for range b.count(opt.AllergiesPerPatient) {
			_, at := encAt()
			if err := out(b.Allergy(pat, practs[pi], at)); err != nil {
				return stats, err
			}
		}
		for range b.count(opt.MedicationsPerPatient) {
			e, at := encAt()
			if err := out(b.MedicationRequest(pat, e, practs[pi], at, anchor)); err != nil {
				return stats, err
			}
		}
	}

	// Slots: every weekday slot of every schedule, busy where booked.
	for s := range scheds {
		for _, d := range workdays {
			for idx := range slotsPerDay {
				k := slotKey{s, d, idx}
				start := slotStart(k)
				var r Resource
				if bs, ok := booked[k]; ok {
					r = b.SlotWithID(bs.id, scheds[s], start, start.Add(slotDur), bs.status, bs.lu)
				} else {
					r, _ = b.Slot(scheds[s], start, start.Add(slotDur), "free", first.AddDate(0, 0, -1))
				}
				if err := out(r); err != nil {
					return stats, fmt.Errorf("gen: emit slot: %w", err)
				}
			}
		}
	}
	return stats, nil
}
