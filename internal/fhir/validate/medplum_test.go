package validate_test

import (
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
	"github.com/mediflow/mediflow/internal/testutil/peers"
)

// medplumAccepts lists the broken resources Medplum's validator (as
// @medplum/core 4.5.2 ships it) lets through, and why. The differential test
// checks that Medplum still accepts each, so the list stays true.
var medplumAccepts = map[string]string{
	"day the month lacks":                                  "Medplum checks dates with a regex only, which allows days 29-31 in every month",
	"dateTime with time but no zone":                       "Medplum's dateTime regex makes the time zone optional; R4's requires one when a time is given",
	"integer out of range":                                 "Medplum checks that an integer is whole, not that it fits in 32 bits",
	"two choice types":                                     "Medplum only warns about a second type of a choice element",
	"primitive extension of the wrong choice type":         "Medplum only warns when _value[x] names another type than value[x]",
	"primitive extension on a complex element":             "Medplum accepts _name for any element name, primitive or not",
	"primitive array and extension array differ in length": "Medplum does not compare the lengths of a primitive array and its _array",
	"bad id":                                                "Medplum types Resource.id as the snapshot's System.String, so it never applies the id format",
	"id too long":                                           "Medplum types Resource.id as the snapshot's System.String, so it never applies the id format",
	"abstract resource type":                                "Medplum validates a DomainResource like any resource",
	"bundle entry without resourceType":                     "Medplum does not require resourceType on a Bundle entry's resource",
	"code outside a required binding":                       "Medplum does not check required bindings",
	"CodeableConcept outside a required binding":            "Medplum does not check required bindings",
	"CodeableConcept with the right code in another system": "Medplum does not check required bindings",
	"bundle type outside its required binding":              "Medplum does not check required bindings",
	"narrative div without the XHTML namespace":             "Medplum does not check the narrative's XHTML (its xhtml regex is .*)",
	"property given twice":                                  "JSON.parse keeps the last of duplicate properties, so Medplum never sees the first",
	"invalid UTF-8":                                         "Node decodes the NDJSON line as UTF-8, replacing the invalid byte with U+FFFD before Medplum sees it",
}

// medplumRejects lists the valid resources Medplum's validator (with
// peers/fhir-validate.mjs's empty-value check) rejects, and why.
var medplumRejects = map[string]string{
	"nulls aligning a primitive array with its extensions": "peers/fhir-validate.mjs's own empty-value check flags every null, " +
		"including those FHIR JSON uses to align a primitive array with its _array (Medplum's core allows them)",
	"base64 with whitespace between groups": "Medplum's base64Binary regex allows no whitespace; R4's allows it between groups of four",
}

// peers.MedplumVerdict is one line of peers/fhir-validate.mjs's output.

// runMedplum validates each body (one line of JSON each) with Medplum's
// validator and returns its verdicts in order.
func runMedplum(t *testing.T, bodies []string) []peers.MedplumVerdict {
	t.Helper()
	rs := make([][]byte, len(bodies))
	for i, b := range bodies {
		rs[i] = []byte(b)
	}
	return peers.ValidateMedplum(t, rs)
}

func summary(v peers.MedplumVerdict) string {
	var s []string
	for _, is := range v.Issues {
		s = append(s, is.Severity+" "+strings.Join(is.Expression, ",")+": "+is.Details)
	}
	return strings.Join(s, "; ")
}

// Medplum's validator and ours reject the same broken resources, apart from
// the disagreements medplumAccepts explains; and Medplum accepts the
// resources ours finds valid.
func TestDifferentialMedplum(t *testing.T) {
	var bodies []string
	for _, c := range badResources {
		bodies = append(bodies, c.body)
	}
	for _, c := range validResources {
		bodies = append(bodies, c.body)
	}
	verdicts := runMedplum(t, bodies)

	v := validate.New(model.R4())
	for i, c := range badResources {
		if !validate.HasErrors(v.Validate([]byte(c.body))) {
			t.Errorf("%s: our validator accepts it", c.name)
		}
		reason, disagree := medplumAccepts[c.name]
		switch {
		case disagree && !verdicts[i].OK:
			t.Errorf("%s: listed as accepted by Medplum (%s), but Medplum now rejects it: %s", c.name, reason, summary(verdicts[i]))
		case !disagree && verdicts[i].OK:
			t.Errorf("%s: Medplum accepts it; ours rejects it with %v", c.name, errorsOf(v.Validate([]byte(c.body))))
		}
	}
	for name := range medplumAccepts {
		found := false
		for _, c := range badResources {
			found = found || c.name == name
		}
		if !found {
			t.Errorf("medplumAccepts names %q, which is not a bad resource", name)
		}
	}
	for j, c := range validResources {
		vd := verdicts[len(badResources)+j]
		reason, disagree := medplumRejects[c.name]
		switch {
		case disagree && vd.OK:
			t.Errorf("%s: listed as rejected by Medplum (%s), but Medplum now accepts it", c.name, reason)
		case !disagree && !vd.OK:
			t.Errorf("%s: Medplum rejects a resource ours accepts: %s", c.name, summary(vd))
		}
	}
	for name := range medplumRejects {
		found := false
		for _, c := range validResources {
			found = found || c.name == name
		}
		if !found {
			t.Errorf("medplumRejects names %q, which is not a valid resource", name)
		}
	}
}
