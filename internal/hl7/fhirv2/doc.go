// Package fhirv2 writes FHIR R4 resources back to an EHR as HL7 v2.5.1
// messages: its one job is to turn a DocumentReference into an MDM^T02, an
// Appointment into an SIU^S12 (booked) or SIU^S15 (cancelled), and
// ChargeItems into a DFT^P03, built with package hl7 so every value is
// escaped.
//
// Inputs are FHIR JSON bodies. Resources an input points to (the author of a
// note, the practitioners and locations of an appointment, the encounter of
// a charge) are looked up by reference ("Practitioner/123"; absolute URLs and
// _history suffixes are reduced to Type/id) in a map the caller fills; a
// reference that is not in the map is written from what the reference itself
// carries (identifier, display) when that is enough.
//
// Identifiers: a FHIR identifier system becomes the HL7 assigning authority
// through Options.IdentifierSystems. Without an entry, NPI and SSN systems get
// "NPI" and "SSA", "urn:mediflow:v2:id:AUTH" (what package v2fhir writes for
// an unmapped authority) gives AUTH back, "urn:oid:X" becomes the universal
// id X of type ISO, and any other URI the universal id of type URI.
//
// Input that cannot make a valid message (no patient identifier, no document
// type, no appointment id, a charge without a code) fails with an error that
// wraps ErrMissingData and names the FHIR element; malformed input (bad JSON,
// a different resourceType, an unreadable date, bad base64) wraps ErrInvalid.
package fhirv2
