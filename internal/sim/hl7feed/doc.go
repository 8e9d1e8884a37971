// Package hl7feed is the EHR simulator's HL7 v2 side: a feed that sends
// ADT, SIU, ORU (and optionally MDM) messages over MLLP at a set rate, built
// from the simulator's own FHIR data so that both views of a tenant agree,
// and a receiver that acknowledges messages with configurable faults (NAK,
// reject, no ACK, slow ACK, disconnect in the middle of a message).
//
// # The feed
//
// A Feed reads a tenant's Patients, Practitioners, Locations, Encounters,
// Appointments, Observations and DocumentReferences through a Source and
// turns them into v2.5.1 messages:
//
//   - ADT^A01, A04 and A03 from Encounters (PV1-19 visit number = the
//     Encounter id, PV1-44/45 its period), ADT^A08 from Patients (with the
//     patient's latest Encounter in PV1 when there is one);
//   - SIU^S12 and S14 from Appointments that are not cancelled, SIU^S15 from
//     cancelled ones (SCH-1 and SCH-2 = the Appointment id);
//   - ORU^R01 from Observations, grouped under one OBR per patient,
//     encounter and category (OBX-3 = the LOINC code, OBX-5 the value, OBX-6
//     the unit; a panel's components become one OBX each);
//   - MDM^T02 from DocumentReferences (TXA-12 = the DocumentReference id,
//     the note text in one formatted-text OBX); off unless given a weight.
//
// PID-3 carries the patient's medical record number as the simulator's
// Patient.identifier has it (type MR, or Epic's "EPI"), with the sending
// facility as assigning authority namespace (CX-4-1) and the identifier's
// system in CX-4-2/CX-4-3 ("URI", or "ISO" for urn:oid: systems). Names,
// birth date, sex, address, telecom and marital status come from the FHIR
// Patient.
//
// Messages are deterministic for a seed and a data set (Messages); Run adds
// the clock and sends them with an mllp.Client, checking that each ACK's
// MSA-2 echoes the message's MSH-10.
//
// # The receiver
//
// A Receiver is an MLLP server (mllp.Server) that answers AA to what it
// receives, except for the messages its Fault hits: FaultRate of them,
// chosen by a hash of the seed and the message's position, so a run is
// repeatable.
package hl7feed
