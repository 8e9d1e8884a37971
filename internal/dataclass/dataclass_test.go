package dataclass

import (
	"slices"
	"testing"
	"time"
)

func TestClassesAreConsistent(t *testing.T) {
	seen := map[string]string{}
	for _, c := range All() {
		if c.DefaultInterval <= 0 || c.DefaultInterval > c.MaxInterval {
			t.Errorf("%s: default interval %v must be positive and at most the max %v", c.Name, c.DefaultInterval, c.MaxInterval)
		}
		if !c.DefaultMode.Valid() {
			t.Errorf("%s: default mode %q is not a mode", c.Name, c.DefaultMode)
		}
		if c.Check(c.DefaultMode, c.DefaultInterval) != NoWaiver {
			t.Errorf("%s: its own default policy (%s, %v) needs a waiver", c.Name, c.DefaultMode, c.DefaultInterval)
		}
		// The default objective is reachable by the default policy even when
		// a realtime push channel is down (the safety poll alone).
		if p := c.DefaultMode.Period(c.DefaultInterval); c.DefaultSLO < p {
			t.Errorf("%s: default SLO %v is shorter than the default refresh period %v", c.Name, c.DefaultSLO, p)
		}
		if c.Risk == "" || c.Description == "" {
			t.Errorf("%s has no risk or description", c.Name)
		}
		if len(c.ResourceTypes) == 0 {
			t.Errorf("%s covers no resource type", c.Name)
		}
		for _, rt := range c.AllTypes() {
			if other, dup := seen[rt]; dup {
				t.Errorf("%s is in both %s and %s", rt, other, c.Name)
			}
			seen[rt] = c.Name
			if got, ok := ForResourceType(rt); !ok || got.Name != c.Name {
				t.Errorf("ForResourceType(%s) = %v, %v", rt, got.Name, ok)
			}
			if c.Optional(rt) == slices.Contains(c.ResourceTypes, rt) {
				t.Errorf("%s: Optional(%s) disagrees with ResourceTypes", c.Name, rt)
			}
		}
		if got, ok := Lookup(c.Name); !ok || got.Name != c.Name {
			t.Errorf("Lookup(%s) failed", c.Name)
		}
	}
	if _, ok := Lookup("nightly-everything"); ok {
		t.Error("unknown class found")
	}
	if len(Names()) != len(All()) {
		t.Error("Names and All disagree")
	}
}

// TestIssueClasses pins the classes and their resource types to the list of
// mediflow issue 5.
func TestIssueClasses(t *testing.T) {
	want := map[string][]string{
		"demographics": {"Patient"},
		"insurance":    {"Coverage"},
		"scheduling":   {"Schedule", "Slot", "Appointment"},
		"clinical":     {"Condition", "AllergyIntolerance", "MedicationRequest", "Observation", "DiagnosticReport"},
		"documents":    {"DocumentReference"},
		"billing":      {"Encounter", "ChargeItem", "Claim"},
		"reference":    {"Practitioner", "Organization", "Location"},
	}
	if len(All()) != len(want) {
		t.Errorf("%d classes, want %d", len(All()), len(want))
	}
	for name, types := range want {
		c, ok := Lookup(name)
		if !ok {
			t.Errorf("class %s is missing", name)
			continue
		}
		got := c.AllTypes()
		slices.Sort(got)
		types = slices.Clone(types)
		slices.Sort(types)
		if !slices.Equal(got, types) {
			t.Errorf("%s covers %v, want %v", name, got, types)
		}
	}
	b, _ := Lookup("billing")
	if !b.Optional("ChargeItem") || !b.Optional("Claim") || b.Optional("Encounter") {
		t.Errorf("billing optional types = %v", b.OptionalTypes)
	}
	operational := []string{}
	for _, c := range All() {
		if c.Operational {
			operational = append(operational, c.Name)
			// Otherwise polling every hour would pass where `hourly` does not.
			if c.MaxInterval >= HourlyPeriod {
				t.Errorf("%s is operational but may be polled every %v", c.Name, c.MaxInterval)
			}
		}
	}
	slices.Sort(operational)
	if !slices.Equal(operational, []string{"billing", "clinical", "insurance", "scheduling"}) {
		t.Errorf("operational classes = %v", operational)
	}
}

func TestDirectoryIsAnAliasOfReference(t *testing.T) {
	c, ok := Lookup("directory")
	if !ok || c.Name != "reference" {
		t.Fatalf("Lookup(directory) = %q, %v", c.Name, ok)
	}
	if to, ok := Alias("directory"); !ok || to != "reference" {
		t.Errorf("Alias(directory) = %q, %v", to, ok)
	}
	if _, ok := Alias("reference"); ok {
		t.Error("reference is not an alias")
	}
	if slices.Contains(Names(), "directory") {
		t.Error("Names lists the deprecated alias")
	}
	a := Aliases()
	a["x"] = "y" // a copy
	if _, ok := Alias("x"); ok {
		t.Error("Aliases returned the package's map")
	}
}

func TestAllReturnsCopies(t *testing.T) {
	all := All()
	all[0].ResourceTypes[0] = "Changed"
	if c, _ := Lookup(all[0].Name); c.ResourceTypes[0] == "Changed" {
		t.Error("All shares its slices with the package")
	}
}

func TestModes(t *testing.T) {
	if got := ModeNames(); !slices.Equal(got, []string{"realtime", "poll", "hourly", "nightly"}) {
		t.Errorf("ModeNames = %v", got)
	}
	for _, tc := range []struct {
		m      Mode
		batch  bool
		period time.Duration
	}{
		{ModeRealtime, false, 7 * time.Minute},
		{ModePoll, false, 7 * time.Minute},
		{ModeHourly, true, time.Hour},
		{ModeNightly, true, 24 * time.Hour},
	} {
		if !tc.m.Valid() || tc.m.Batch() != tc.batch || tc.m.Period(7*time.Minute) != tc.period {
			t.Errorf("%s: valid %v batch %v period %v", tc.m, tc.m.Valid(), tc.m.Batch(), tc.m.Period(7*time.Minute))
		}
	}
	if Mode("weekly").Valid() || Mode("").Valid() {
		t.Error("unknown mode is valid")
	}
}

// TestCheckEveryClassAndMode is the policy rule for every class × mode, at
// the class's default interval and just beyond its maximum.
func TestCheckEveryClassAndMode(t *testing.T) {
	// want[class][mode] at the default interval.
	want := map[string]map[Mode]Need{
		"demographics": {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: NoWaiver, ModeNightly: WaiverForPeriod},
		"insurance":    {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: WaiverForBatch, ModeNightly: WaiverForBatch},
		"scheduling":   {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: WaiverForBatch, ModeNightly: WaiverForBatch},
		"clinical":     {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: WaiverForBatch, ModeNightly: WaiverForBatch},
		"documents":    {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: NoWaiver, ModeNightly: WaiverForPeriod},
		"billing":      {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: WaiverForBatch, ModeNightly: WaiverForBatch},
		"reference":    {ModeRealtime: NoWaiver, ModePoll: NoWaiver, ModeHourly: NoWaiver, ModeNightly: NoWaiver},
	}
	for _, c := range All() {
		for _, m := range Modes() {
			if got := c.Check(m, c.DefaultInterval); got != want[c.Name][m] {
				t.Errorf("%s/%s at %v: %v, want %v", c.Name, m, c.DefaultInterval, got, want[c.Name][m])
			}
			// A poll or safety poll slower than the maximum needs a waiver;
			// the batch modes ignore the interval.
			over := c.Check(m, c.MaxInterval+time.Second)
			switch {
			case !m.Batch() && over != WaiverForPeriod:
				t.Errorf("%s/%s beyond the maximum: %v", c.Name, m, over)
			case m.Batch() && over != want[c.Name][m]:
				t.Errorf("%s/%s: the interval changed the outcome to %v", c.Name, m, over)
			}
			if !m.Batch() && c.Check(m, c.MaxInterval) != NoWaiver {
				t.Errorf("%s/%s at exactly the maximum needs a waiver", c.Name, m)
			}
		}
	}
}
