// Package v2fhir converts parsed HL7 v2 messages into FHIR R4 resources by
// conversion rules that are data: YAML spec files embedded from specs/,
// which follow the maps of the HL7 v2-to-FHIR implementation guide (IG). Its
// one job is that conversion; storing the resources and carrying out merges
// belong to the caller (internal/ingest/hl7in).
//
// # Supported messages
//
// ADT^A01, A02, A03, A04, A08, A11, A13, A28, A31 (Patient, Encounter,
// Observation, AllergyIntolerance, Condition, and the Practitioners,
// Organizations and Locations they name), ADT^A40 (the surviving Patient and
// a Merge), SIU^S12, S13, S14, S15, S17, S26 (Appointment with its
// participants, Patient), ORU^R01 (DiagnosticReport per OBR, Observation per
// OBX, Patient) and MDM^T02 (DocumentReference with the OBX text as a
// base64 text/plain attachment, Patient). Convert returns an
// *UnsupportedError for anything else. Specs and SpecFor describe each
// conversion; LoadCatalog returns everything the spec files define, for the
// mapping document.
//
// # Ids
//
// Every resource id is "v2-" + a hash of its type and a natural key (the
// first identifier and its assigning authority for a Patient, the visit
// number for an Encounter, the filler or placer number for a
// DiagnosticReport or an Appointment, ...), so converting a message again
// yields the same resources, and two messages about the same patient write
// the same Patient. An ADT^A40 merge names the merged patient by the id the
// same key gives, i.e. the id it got from earlier messages.
//
// # Spec files
//
//	specs/v2/segments.yaml, specs/v2/datatypes.yaml  the v2 segments and data types rules may name
//	specs/tables/*.yaml                              code tables (IG concept maps): v2 code → FHIR code
//	specs/datatypes/*.yaml                           data type maps, e.g. CX[Identifier]
//	specs/segments/*.yaml                            segment maps, e.g. PID[Patient]
//	specs/messages/*.yaml                            message specs, e.g. ADT_A01 with its trigger events
//
// New loads and checks them: unknown keys, segments, fields, components,
// data types, maps, tables, conversions, resource names and malformed paths
// or conditions are errors that name the file and line.
//
// A message spec lists the resources a message makes. Each has a name,
// a FHIR type and a segment; one resource is made per occurrence of the
// segment, built by its segment map, then by the message's own rules for
// it, then by the maps of its "include" segments (segments that belong to
// it, e.g. PD1 and NK1 to the Patient of the PID before them), then by the
// rules of the trigger event. "key" lists alternative natural keys; "when"
// conditions (when false the resource is silently not made); "parent" the
// resource it belongs to (an OBX's OBR); "same_key: merge" makes
// occurrences with the same key one resource (otherwise their ids are
// numbered); "emit: false" computes the id for references without writing
// the resource; "required" fails the conversion when none can be made.
// "merges" turn a segment (MRG) into Merges.
//
// # Rules
//
// A rule reads a value, checks its conditions and writes the FHIR element at
// its path, relative to the resource (or to the element the enclosing rule
// built):
//
//	from: PID-3           read a message path (SEG-field[-component[-subcomponent]]): in the
//	                      current segment when it has that id, else the nearest one before it
//	                      (else the first). A list gives alternatives: the first valued wins.
//	comp: 4 | 4.1 | [2,3,4]
//	                      in a data type map: read a component (subcomponent) of the value;
//	                      several make one value of those parts (EI.2-4 read as an HD)
//	(neither)             the value of the enclosing rule, if any
//	path: identifier[]    where to write. "x[]" adds an element per value (per repetition of a
//	                      repeating field), "x[2]" is the third element, "x[#tag]" one element
//	                      shared by all rules naming the tag; "_x" holds a primitive's extensions
//	map: CX[Identifier]   apply a data type map to the value (maps with "resource" build a
//	                      resource of their own and write a Reference to it)
//	as: dateTime          convert the value with a built-in conversion (see Catalog.Conversions)
//	table: AdministrativeSex
//	                      translate the code first (with as), or add the table's coding in front
//	                      (map to CodeableConcept) or use it instead (map to Coding)
//	value: {...}          write a constant (any YAML, written as JSON)
//	format: "[+{5} ]{7}"  write text: {5} a component, {OBX-6-1} a message path, [...] dropped
//	                      when a placeholder in it is empty
//	ref: patient          write a Reference to the message's resource of that name
//	refs: observation     write References to every resource of that name that belongs to this one
//	remove: true          delete the element at path
//	warn: "..."           add a warning (never with field values: they may be PHI)
//	default: ...          written when the rule wrote nothing (and its conditions hold)
//	join: "\n"            all values written to the path are joined, then converted once
//	plus: [[AIS-7, AIS-8]] add the first duration [amount, units] to a date/time (table DurationUnits)
//	when: ["PID-29 empty", ".3 in Internet,X.400 or .3 empty"]
//	                      conditions, all must hold; one may join tests with " or ". A test is
//	                      "<ref> valued|empty|numeric|not-numeric|has-time|base64|not-base64" or
//	                      "<ref> = X", "!= X", "in X,Y", "not-in X,Y" (codes, case ignored). A ref
//	                      is a message path, a component .N of the value in scope (the value a
//	                      "from" rule reads, else the enclosing one), or @name (a resource).
//	rules: [...]          rules for the element at path, reading this rule's value
//	choose: [...]         only the first of these rules whose conditions hold
//	note: "..."           why, for the mapping document
//
// Later rules overwrite what earlier ones wrote at the same path; empty
// strings, objects and arrays are never written. Values are read unescaped
// (hl7's Get), and the explicit null "" reads as empty.
//
// # Times
//
// v2 date/times keep their precision. FHIR requires a UTC offset beside a
// time of day: a value without one takes MSH-7's offset, else
// Options.TimeZone, else UTC (and the result carries a warning).
package v2fhir
