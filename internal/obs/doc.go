// Package obs is mediflow's observability kit: structured logging through
// log/slog with PHI redaction, Prometheus metrics on a private registry, and
// the HTTP middleware that logs, measures and recovers every request.
//
// The logging rule for the whole code base: never log a resource body, a
// payload, a query string or a search parameter value. Log IDs (practice,
// connection, resource type and id, run id, sequence numbers), counts,
// durations and PHI-free error codes. The redacting handler is a safety net
// for mistakes, not permission to log PHI:
//
//   - attributes whose key names PHI (name, family, given, birthDate, address,
//     phone, telecom, email, identifier, mrn, ssn, value*, text, body,
//     resource, query, ... see IsPHIKey) are replaced by "[REDACTED]", also
//     inside groups and in groups whose own key names PHI;
//   - values wrapped with PHI are always redacted, whatever their key, and
//     also when formatted into strings or errors with fmt;
//   - byte slices, raw JSON, structs, maps and pointers are redacted, because
//     their contents cannot be vetted key by key (give such types a
//     slog.LogValuer that returns a group of safe fields);
//   - query strings are cut from URLs found in any string, error or message
//     ("GET /Patient?family=X" is logged as "GET /Patient?[REDACTED]").
package obs
