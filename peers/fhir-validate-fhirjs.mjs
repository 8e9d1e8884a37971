// fhir-validate-fhirjs.mjs checks FHIR R4 resources with the validator of
// Lantana Group's FHIR.js (npm `fhir`, `Fhir#validate` over the R4 (4.0.0)
// definitions the package ships pre-parsed): resource types, unknown
// elements, arrays versus single values, required elements, the format of
// some primitives, coded values against the value sets it knows (required
// bindings are errors, weaker ones warnings), and the target type of
// references.
//
// Input: one JSON resource per line (NDJSON) on stdin; blank lines are
// skipped. Output: one JSON line per input resource, in order:
//
//   {"line":N,"resourceType":"Patient","id":"...","ok":true,"messages":[]}
//
// where messages lists what the validator reported (severity fatal, error,
// warning or info; location, a dotted path such as "Patient.name[0].given";
// message). Unknown properties are errors (errorOnUnexpected). ok is false
// when any message is an error or fatal. A line that is not a JSON object
// gives ok:false with one fatal message saying so. The exit status is 0 when
// every resource is valid and 1 when any is not; when the package is missing
// Node fails before printing anything (install it with
// `npm ci --prefix peers`).
import { createInterface } from 'node:readline';
import fhirjs from 'fhir';

const { Fhir } = fhirjs;
const fhir = new Fhir(); // the R4 definitions bundled with the package
const options = { errorOnUnexpected: true };

function check(text, line) {
  let resource;
  try {
    resource = JSON.parse(text);
  } catch (err) {
    return { line, ok: false, messages: [{ severity: 'fatal', location: '', message: `not JSON: ${err.message}` }] };
  }
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    return { line, ok: false, messages: [{ severity: 'fatal', location: '', message: 'not a JSON object' }] };
  }
  const out = { line, resourceType: resource.resourceType ?? '', id: resource.id ?? '', ok: true, messages: [] };
  try {
    // Passing the object, not the text: Fhir#validate parses a string not
    // starting with "{" as XML.
    const res = fhir.validate(resource, options);
    out.messages = res.messages.map((m) => ({ severity: m.severity ?? '', location: m.location ?? '', message: m.message ?? '' }));
  } catch (err) {
    out.messages = [{ severity: 'fatal', location: '', message: `validator threw: ${String(err?.message ?? err)}` }];
  }
  out.ok = !out.messages.some((m) => m.severity === 'error' || m.severity === 'fatal');
  return out;
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let n = 0;
let bad = 0;
for await (const raw of rl) {
  n++;
  if (raw.trim() === '') {
    continue;
  }
  const res = check(raw, n);
  if (!res.ok) {
    bad++;
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}
process.exitCode = bad > 0 ? 1 : 0;
