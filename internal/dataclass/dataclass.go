// Package dataclass names the classes of data mediflow syncs (demographics,
// scheduling, clinical, ...) and the FHIR resource types each one covers. Sync
// policies, config validation and docs all read these definitions.
package dataclass

import (
	"sort"
	"time"
)

// Class is one data class.
type Class struct {
	Name          string
	Description   string
	ResourceTypes []string
	// DefaultInterval is the poll interval used when the config names none.
	DefaultInterval time.Duration
	// Operational data (scheduling, clinical, billing, demographics, insurance)
	// must never be synced less often than MaxInterval.
	MaxInterval time.Duration
}

var classes = []Class{
	{Name: "demographics", Description: "patients", ResourceTypes: []string{"Patient"}, DefaultInterval: 5 * time.Minute, MaxInterval: time.Hour},
	{Name: "directory", Description: "practitioners, organizations and locations", ResourceTypes: []string{"Practitioner", "Organization", "Location"}, DefaultInterval: time.Hour, MaxInterval: 24 * time.Hour},
	{Name: "scheduling", Description: "schedules, slots and appointments", ResourceTypes: []string{"Schedule", "Slot", "Appointment"}, DefaultInterval: time.Minute, MaxInterval: 15 * time.Minute},
	{Name: "insurance", Description: "coverage", ResourceTypes: []string{"Coverage"}, DefaultInterval: 15 * time.Minute, MaxInterval: 6 * time.Hour},
	{Name: "clinical", Description: "encounters, conditions, observations, allergies and medications", ResourceTypes: []string{"Encounter", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest"}, DefaultInterval: 5 * time.Minute, MaxInterval: time.Hour},
	{Name: "documents", Description: "clinical notes and documents", ResourceTypes: []string{"DocumentReference"}, DefaultInterval: 5 * time.Minute, MaxInterval: time.Hour},
}

// All returns every class, in a stable order.
func All() []Class {
	out := make([]Class, len(classes))
	copy(out, classes)
	return out
}

// Lookup returns the class with the given name.
func Lookup(name string) (Class, bool) {
	for _, c := range classes {
		if c.Name == name {
			return c, true
		}
	}
	return Class{}, false
}

// Names returns the class names, sorted.
func Names() []string {
	out := make([]string, 0, len(classes))
	for _, c := range classes {
		out = append(out, c.Name)
	}
	sort.Strings(out)
	return out
}

// ForResourceType returns the class that covers a resource type.
func ForResourceType(rt string) (Class, bool) {
	for _, c := range classes {
		for _, t := range c.ResourceTypes {
			if t == rt {
				return c, true
			}
		}
	}
	return Class{}, false
}
