// Package dataclass names the classes of data mediflow syncs (demographics,
// insurance, scheduling, clinical, documents, billing, reference), the FHIR
// resource types each one covers, and each class's default sync policy: mode,
// interval, freshness objective, and whether it is operational data that must
// never be batched hourly or nightly without a waiver. Sync policies, config
// validation, the lint, the scheduler and the docs all read these definitions.
package dataclass

import (
	"sort"
	"time"
)

// Mode is how a data class is kept fresh on a connection.
type Mode string

// Sync modes.
const (
	// ModeRealtime: changes are pushed (FHIR Subscription, vendor webhook,
	// HL7 v2 feed), with a safety poll at the policy's interval that catches
	// whatever the push channel missed.
	ModeRealtime Mode = "realtime"
	// ModePoll: an incremental `_lastUpdated` search at the policy's interval.
	ModePoll Mode = "poll"
	// ModeHourly: one incremental batch an hour.
	ModeHourly Mode = "hourly"
	// ModeNightly: one batch a day (Bulk Data `$export` with `_since`).
	ModeNightly Mode = "nightly"
)

// Periods of the batch modes.
const (
	HourlyPeriod  = time.Hour
	NightlyPeriod = 24 * time.Hour
)

// Modes returns every mode, from the freshest to the stalest.
func Modes() []Mode { return []Mode{ModeRealtime, ModePoll, ModeHourly, ModeNightly} }

// ModeNames returns the mode names, in the order of Modes.
func ModeNames() []string {
	out := make([]string, 0, 4)
	for _, m := range Modes() {
		out = append(out, string(m))
	}
	return out
}

// Valid reports whether m is one of the modes.
func (m Mode) Valid() bool {
	switch m {
	case ModeRealtime, ModePoll, ModeHourly, ModeNightly:
		return true
	}
	return false
}

// Batch reports whether m is a fixed-period batch (hourly or nightly).
func (m Mode) Batch() bool { return m == ModeHourly || m == ModeNightly }

// Period is how often a policy of mode m with the given interval refreshes
// the data at the latest: the fixed period of a batch mode, else interval
// (for realtime, the safety poll: the bound when the push channel fails).
func (m Mode) Period(interval time.Duration) time.Duration {
	switch m {
	case ModeHourly:
		return HourlyPeriod
	case ModeNightly:
		return NightlyPeriod
	}
	return interval
}

// Class is one data class and its default policy.
type Class struct {
	Name        string
	Description string
	// ResourceTypes are synced whenever the class is; a type the server's
	// CapabilityStatement does not list with search-type is skipped.
	ResourceTypes []string
	// OptionalTypes are synced only when the server's CapabilityStatement
	// lists them with search-type (and the connection's scopes allow it);
	// many EHRs do not serve them at all.
	OptionalTypes []string
	// DefaultMode is the mode of a sync entry that names neither `mode` nor
	// `interval` (one with only `interval` polls).
	DefaultMode Mode
	// DefaultInterval is the poll interval (or, for realtime, the safety
	// poll interval) when the config names none.
	DefaultInterval time.Duration
	// MaxInterval is the longest refresh period (Mode.Period) accepted
	// without a waiver. For operational classes it is below an hour: a poll
	// as slow as an hourly batch is refused like one.
	MaxInterval time.Duration
	// DefaultSLO is the freshness objective: the longest time from a change
	// in the EHR to the moment it can be read through mediflow.
	DefaultSLO time.Duration
	// Operational data drives decisions during the day (clinical,
	// scheduling, insurance, billing): hourly and nightly batches are refused
	// without a waiver.
	Operational bool
	// Risk says, in one sentence, what goes wrong when the class is stale.
	Risk string
}

// StaleReason is the one-sentence reason the lint gives for refusing stale
// policies of operational data.
const StaleReason = "stale insurance, schedule, clinical or billing data leads to wrong decisions all day long, " +
	"made on what the EHR held at the last batch"

var classes = []Class{
	{
		Name: "demographics", Description: "patients",
		ResourceTypes: []string{"Patient"},
		DefaultMode:   ModePoll, DefaultInterval: 5 * time.Minute, MaxInterval: time.Hour, DefaultSLO: 15 * time.Minute,
		Risk: "patients registered or updated since the last sync are missing or out of date",
	},
	{
		Name: "insurance", Description: "coverage",
		ResourceTypes: []string{"Coverage"},
		DefaultMode:   ModeRealtime, DefaultInterval: 15 * time.Minute, MaxInterval: 30 * time.Minute, DefaultSLO: 30 * time.Minute,
		Operational: true,
		Risk:        "a coverage change entered at the front desk stays invisible, so eligibility checks and scheduling use the old plan",
	},
	{
		Name: "scheduling", Description: "schedules, slots and appointments",
		ResourceTypes: []string{"Schedule", "Slot", "Appointment"},
		DefaultMode:   ModePoll, DefaultInterval: time.Minute, MaxInterval: 15 * time.Minute, DefaultSLO: 5 * time.Minute,
		Operational: true,
		Risk:        "appointments booked, moved or cancelled in the EHR stay invisible, so apps offer taken slots and miss new visits",
	},
	{
		Name: "clinical", Description: "conditions, allergies, medications, observations and diagnostic reports",
		ResourceTypes: []string{"Condition", "AllergyIntolerance", "MedicationRequest", "Observation", "DiagnosticReport"},
		DefaultMode:   ModeRealtime, DefaultInterval: 5 * time.Minute, MaxInterval: 30 * time.Minute, DefaultSLO: 15 * time.Minute,
		Operational: true,
		Risk:        "problems, allergies, medications and results recorded since the last sync are invisible, so clinical decisions rest on an old chart",
	},
	{
		Name: "documents", Description: "clinical notes and documents",
		ResourceTypes: []string{"DocumentReference"},
		DefaultMode:   ModePoll, DefaultInterval: 5 * time.Minute, MaxInterval: time.Hour, DefaultSLO: 15 * time.Minute,
		Risk: "notes and documents signed since the last sync are missing",
	},
	{
		Name: "billing", Description: "encounters, charge items and claims",
		ResourceTypes: []string{"Encounter"},
		OptionalTypes: []string{"ChargeItem", "Claim"},
		DefaultMode:   ModePoll, DefaultInterval: 5 * time.Minute, MaxInterval: 30 * time.Minute, DefaultSLO: 15 * time.Minute,
		Operational: true,
		Risk:        "encounters and charges entered since the last sync are missing, so coding and claims work on an incomplete day",
	},
	{
		Name: "reference", Description: "practitioners, organizations and locations",
		ResourceTypes: []string{"Practitioner", "Organization", "Location"},
		DefaultMode:   ModeHourly, DefaultInterval: time.Hour, MaxInterval: 24 * time.Hour, DefaultSLO: 2 * time.Hour,
		Risk: "new practitioners, organizations and locations appear late",
	},
}

// aliases maps deprecated class names to their current name.
var aliases = map[string]string{"directory": "reference"}

// All returns every class, in a stable order.
func All() []Class {
	out := make([]Class, len(classes))
	for i, c := range classes {
		out[i] = c.clone()
	}
	return out
}

func (c Class) clone() Class {
	c.ResourceTypes = append([]string(nil), c.ResourceTypes...)
	c.OptionalTypes = append([]string(nil), c.OptionalTypes...)
	return c
}

// Lookup returns the class with the given name. A deprecated alias
// ("directory") finds the class it was renamed to.
func Lookup(name string) (Class, bool) {
	if to, ok := aliases[name]; ok {
		name = to
	}
	for _, c := range classes {
		if c.Name == name {
			return c.clone(), true
		}
	}
	return Class{}, false
}

// Alias returns the current name of a deprecated class name.
func Alias(name string) (current string, ok bool) {
	current, ok = aliases[name]
	return current, ok
}

// Aliases returns the deprecated class names, each mapped to its current name.
func Aliases() map[string]string {
	out := make(map[string]string, len(aliases))
	for k, v := range aliases {
		out[k] = v
	}
	return out
}

// Names returns the class names, sorted (aliases not included).
func Names() []string {
	out := make([]string, 0, len(classes))
	for _, c := range classes {
		out = append(out, c.Name)
	}
	sort.Strings(out)
	return out
}

// AllTypes returns the class's resource types followed by its optional ones.
func (c Class) AllTypes() []string {
	return append(append([]string(nil), c.ResourceTypes...), c.OptionalTypes...)
}

// Optional reports whether rt is one of the class's optional types.
func (c Class) Optional(rt string) bool {
	for _, t := range c.OptionalTypes {
		if t == rt {
			return true
		}
	}
	return false
}

// ForResourceType returns the class that covers a resource type, optional
// types included.
func ForResourceType(rt string) (Class, bool) {
	for _, c := range classes {
		for _, t := range c.AllTypes() {
			if t == rt {
				return c.clone(), true
			}
		}
	}
	return Class{}, false
}

// Need says whether a policy needs a waiver, and why.
type Need int

// Outcomes of Class.Check.
const (
	// NoWaiver: the policy keeps the class fresh enough.
	NoWaiver Need = iota
	// WaiverForBatch: operational data batched hourly or nightly.
	WaiverForBatch
	// WaiverForPeriod: the class refreshed less often than its MaxInterval.
	WaiverForPeriod
)

// Check says whether a policy of mode m with the given interval (see
// Mode.Period) needs a waiver for class c: operational data batched hourly
// or nightly does, and so does any class refreshed less often than its
// MaxInterval.
func (c Class) Check(m Mode, interval time.Duration) Need {
	switch {
	case c.Operational && m.Batch():
		return WaiverForBatch
	case m.Period(interval) > c.MaxInterval:
		return WaiverForPeriod
	}
	return NoWaiver
}
