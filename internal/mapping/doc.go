// Package mapping turns vendor-shaped FHIR R4 resources into mediflow's one
// canonical, US Core shaped model (and canonical resources back into a
// vendor's shape for write-back) by running mapping profiles: rules that are
// data, loaded from YAML and checked against the FHIR R4 model before they
// run. The data-mapping document and the coverage report read the same
// loaded rules (Set.Rules, Set.NotAvailable, Set.Layers), so they cannot
// drift from what the engine does.
//
// # Layers
//
// Load reads the canonical layer (profiles/canonical), one vendor profile
// (profiles/<vendor>) for a vendor version, and then a practice's overrides
// (Source), in that order. A rule is identified by its id: a later layer
// that names an existing id changes only the fields it gives (and must say
// why, in its rationale); "enabled: false" switches a rule off; a new id adds
// a rule at the end, or where "after"/"before" put it. Rules and notes with
// a "versions" range (">= May 2024", ">= 5.0, < 5.1") apply only to vendor
// versions in it; an unknown version is taken as the newest. Parameters
// (params: mrnSystem, timeZone, phoneRegion, vendorMrnSystem) are declared
// by the shipped layers and may be set by a practice; rules read them as
// %name in FHIRPath and in transform arguments.
//
// # Spec files
//
//	name: epic                 # profile.yaml: the layer (name = folder), version, title,
//	version: 1                 # description, releases (versions + note), writeBack
//	...
//	resource: Patient          # a rules file (or resources: [{resource, rules, notAvailable}])
//	rules:
//	  - id: patient.gender                       # stable id
//	    each: "telecom.where(system = 'phone')"  # optional FHIRPath: the elements the rule works on
//	    target: value                            # element path: a.b, extension('url').valueX, or $this
//	    source: gender                           # FHIRPath (default: the target itself)
//	    condition: "gender.exists()"             # optional FHIRPath Boolean
//	    transform:                               # pipeline of named transforms
//	      - code: {map: "http://mediflow.dev/fhir/ConceptMap/administrative-gender", unmapped: default, default: unknown}
//	    default: unknown                         # written when the element would stay empty
//	    required: true                           # an element left empty is an issue
//	    direction: in                            # in (default), out (write-back) or both
//	    versions: ">= May 2024"                  # optional
//	    rationale: Why, in words a practice manager reads.
//	notAvailable:
//	  - {element: Patient.maritalStatus.coding, note: "Epic sends text only."}
//
// Every problem is reported as "file:line: message (hint: ...)": unknown
// keys, resource types, transforms and arguments, code tables, parameters,
// FHIRPath syntax, and every element a source, condition, each or target
// names that its FHIR type does not have.
//
// # Semantics
//
// Map decodes the resource once, starts the result as that resource (so
// nothing the EHR sent is lost), runs the type's rules and then the rules
// for every type (resource: Resource), and encodes once, with members in
// FHIR definition order. For each element (each node, or the resource) a
// rule checks its condition, reads its source, runs the transforms and
// writes the target; when nothing comes out the element keeps what it has,
// or gets the default if it is empty. A transform failure leaves the element
// as it was and is reported; a code under the "error" policy fails the
// resource (*MapError). The Report says per rule and element what happened
// (populated, kept, empty, failed, skipped), with unmapped codes; canonical
// resources carry the profile version (Set.Version) in meta.tag under
// ProfileTagSystem.
//
// Paths with simple filters (where with =, and, or, exists(), empty();
// first(); extension('url'); %res) are evaluated straight on the decoded
// JSON; everything else runs on package fhirpath, compiled once at Load.
// When every rule of a type is in that subset, Load also works out which
// elements the rules can reach (plan.go): Map decodes only those, keeps
// the rest as bytes of the input (checked as the decoder would check them)
// and copies them to the output when they are already in the encoder's
// form, as it does top-level members the rules read but left unchanged
// (and meta, with the profile tag written into its bytes).
// The output is the same as decoding and encoding everything.
// A Set is immutable and Map is safe for concurrent use.
//
// RunCases runs a practice's own test cases for its overrides (the
// "mediflow mapping test" command).
package mapping
