// Package fhir holds the FHIR R4 building blocks the rest of mediflow shares:
// resources kept as raw JSON documents (lossless), the few header fields the
// engine reads from them, Bundles, and OperationOutcome errors.
package fhir
