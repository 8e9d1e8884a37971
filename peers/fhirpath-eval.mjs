// fhirpath-eval.mjs: fhirpath.js (HL7's FHIRPath engine for JavaScript) with
// its FHIR R4 model, as an oracle and a speed peer for mediflow's engine.
//
// Usage:
//   node fhirpath-eval.mjs [--bench N] < lines.ndjson
//
// Input is JSON lines, each one of:
//   {"expr": "Patient.name.given", "resource": {...}}    evaluate on this resource
//   {"id": "r1", "resource": {...}}                      remember a resource
//   {"expr": "...", "ref": "r1"}                         evaluate on a remembered one
//   {"expr": "...", "ref": "r1", "env": {"x": 1}}        with %x defined
//
// Without --bench one JSON line is printed per "expr" line, in order:
//   {"i": 0, "result": [...]}  or  {"i": 0, "error": "message"}
// Results are fhirpath.js's own (resolveInternalTypes): dates and times as
// strings without '@', quantities as strings like "5 'mg'", numbers as JS
// numbers, FHIR elements as their JSON. %resource and %rootResource are the
// evaluated resource unless "env" says otherwise.
//
// resolve() runs in fhirpath.js's async mode. fhirpath.js resolves "#id"
// itself and fetches "Type/id" references from a FHIR server
// (fhirServerUrl); this wrapper answers those fetches from the entries of the
// Bundle being evaluated (matched by resourceType/id), without any network.
// fhirpath.js has no rule of its own for urn:uuid references in a Bundle.
//
// With --bench N every expression is compiled once, every (expression,
// resource) pair is evaluated once to leave out pairs that fail, then after
// a warm-up of max(1, N/5) rounds all pairs are evaluated in 5 batches of N
// rounds, in this one process, and one JSON line is printed:
//   {"pairs":P,"evaluations":E,"seconds":S,"nsPerEvaluation":X,
//    "meanNsPerEvaluation":M,"failed":[...],"checksum":C}
// nsPerEvaluation is that of the fastest batch (the least disturbed by
// other work on the machine), meanNsPerEvaluation the average of all.
// Pairs that need resolve() (async) are left out of --bench and listed in
// "failed" with the reason.

import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';

// trace() output goes to stderr: stdout carries only results.
console.log = (...args) => console.error(...args);

const { values: opts } = parseArgs({
  options: { bench: { type: 'string' } },
  allowPositionals: false,
});

// Each evaluated resource gets its own fake server base, so fhirpath.js's
// request cache (keyed by URL) never mixes Bundles.
const servers = new Map(); // base URL -> Map("Type/id" -> resource)
let serverCount = 0;

function serverFor(resource) {
  const base = `http://bundle-${serverCount++}.invalid`;
  const byTypeId = new Map();
  if (resource && resource.resourceType === 'Bundle') {
    for (const e of resource.entry || []) {
      const r = e.resource;
      if (r && r.resourceType && r.id) {
        const key = `${r.resourceType}/${r.id}`;
        if (!byTypeId.has(key)) {
          byTypeId.set(key, r);
        }
      }
    }
  }
  servers.set(base, byTypeId);
  return base;
}

globalThis.fetch = async (url) => {
  const u = String(url);
  for (const [base, byTypeId] of servers) {
    if (u.startsWith(base + '/')) {
      const found = byTypeId.get(u.slice(base.length + 1));
      if (found) {
        return new Response(JSON.stringify(found), {
          status: 200,
          headers: { 'Content-Type': 'application/fhir+json' },
        });
      }
    }
  }
  return new Response(JSON.stringify({ resourceType: 'OperationOutcome' }), {
    status: 404,
    headers: { 'Content-Type': 'application/fhir+json' },
  });
};

// withResource defines %resource and %rootResource as the evaluated
// resource, as a FHIR application does (fhirpath.js leaves them to the
// caller).
function withResource(env, resource) {
  return { resource, rootResource: resource, ...(env || {}) };
}

async function evaluate(expr, resource, env, base) {
  const needsAsync = /\bresolve\s*\(/.test(expr);
  const options = needsAsync ? { async: true, fhirServerUrl: base } : {};
  let r = fhirpath.evaluate(resource, expr, withResource(env, resource), r4, options);
  if (r && typeof r.then === 'function') {
    r = await r;
  }
  return r;
}

async function readLines() {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  const lines = [];
  for await (const line of rl) {
    if (line.trim() !== '') {
      lines.push(JSON.parse(line));
    }
  }
  return lines;
}

function message(err) {
  return err && err.message ? err.message : String(err);
}

async function runOracle(lines) {
  const resources = new Map(); // id -> {resource, base}
  let i = 0;
  for (const line of lines) {
    if (line.expr === undefined) {
      resources.set(line.id, { resource: line.resource, base: serverFor(line.resource) });
      continue;
    }
    let res;
    if (line.ref !== undefined) {
      res = resources.get(line.ref);
      if (!res) {
        process.stdout.write(JSON.stringify({ i: i++, error: `unknown ref ${line.ref}` }) + '\n');
        continue;
      }
    } else {
      res = { resource: line.resource, base: serverFor(line.resource) };
    }
    let out;
    try {
      out = { i, result: await evaluate(line.expr, res.resource, line.env, res.base) };
    } catch (err) {
      out = { i, error: message(err) };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
    i++;
  }
}

function runBench(lines, rounds) {
  const resources = new Map();
  const pairs = [];
  const failed = [];
  const compiled = new Map();
  let i = 0;
  for (const line of lines) {
    if (line.expr === undefined) {
      resources.set(line.id, line.resource);
      continue;
    }
    const index = i++;
    const resource = line.ref !== undefined ? resources.get(line.ref) : line.resource;
    if (/\bresolve\s*\(/.test(line.expr)) {
      failed.push({ i: index, error: 'resolve() is async in fhirpath.js' });
      continue;
    }
    let fn = compiled.get(line.expr);
    try {
      if (!fn) {
        fn = fhirpath.compile(line.expr, r4);
        compiled.set(line.expr, fn);
      }
      const env = withResource(line.env, resource);
      fn(resource, env);
      pairs.push({ fn, resource, env });
    } catch (err) {
      failed.push({ i: index, error: message(err) });
    }
  }
  let checksum = 0;
  const round = () => {
    for (const p of pairs) {
      const r = p.fn(p.resource, p.env);
      checksum += r.length;
    }
  };
  const warm = Math.max(1, Math.floor(rounds / 5));
  for (let k = 0; k < warm; k++) {
    round();
  }
  checksum = 0;
  const batches = 5;
  let best = Infinity;
  let total = 0;
  for (let b = 0; b < batches; b++) {
    const start = process.hrtime.bigint();
    for (let k = 0; k < rounds; k++) {
      round();
    }
    const ns = Number(process.hrtime.bigint() - start);
    best = Math.min(best, ns);
    total += ns;
  }
  const perBatch = pairs.length * rounds;
  process.stdout.write(JSON.stringify({
    pairs: pairs.length,
    evaluations: perBatch * batches,
    seconds: total / 1e9,
    nsPerEvaluation: perBatch ? best / perBatch : 0,
    meanNsPerEvaluation: perBatch ? total / batches / perBatch : 0,
    failed,
    checksum,
  }) + '\n');
}

const lines = await readLines();
if (opts.bench !== undefined) {
  const n = Number.parseInt(opts.bench, 10);
  if (!(n > 0)) {
    process.stderr.write('--bench needs a positive number of rounds\n');
    process.exit(2);
  }
  runBench(lines, n);
} else {
  await runOracle(lines);
}
