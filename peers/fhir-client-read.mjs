// fhir-client-read.mjs: read a FHIR R4 API the way an ordinary app would, with
// an off-the-shelf client library, and print what was read as one JSON object.
//
// mediflow's tests point it at the app-facing API to prove that apps can
// consume it unchanged. Only the libraries' public calls are used: their own
// paging (fhir-kit-client's nextPage, fhirclient's pageLimit/onPage), their
// own bearer-token handling, their own error reporting.
//
// Usage:
//   node fhir-client-read.mjs --base URL [--token T] [--lib fhir-kit-client|fhirclient]
//                             [--count N] [--patient-id ID]
// --base and --token may also come from FHIR_BASE_URL and FHIR_TOKEN.
//
// Steps, in order: GET metadata; search Patient with _count=N following every
// next page; read one Patient (--patient-id, else the first one found);
// search Appointment with _count=N following every next page.
//
// Output (stdout, one JSON object):
//   {"library":"fhir-kit-client@2.0.3","metadata":{"resourceType":..,"fhirVersion":..},
//    "patients":{"total":N,"pages":P,"ids":[..]},"patient":{..resource..},
//    "appointments":{"total":N,"pages":P,"ids":[..]}}
// On the first failure it prints {"library":..,"failedStep":"patients",
// "error":{"status":401,"message":".."}} with whatever was read before, and exits 1.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { Client as FhirKitClient } from 'fhir-kit-client';

const require = createRequire(import.meta.url);

const { values: opts } = parseArgs({
  options: {
    base: { type: 'string' },
    token: { type: 'string' },
    lib: { type: 'string', default: 'fhir-kit-client' },
    count: { type: 'string', default: '10' },
    'patient-id': { type: 'string' },
  },
});
const baseUrl = (opts.base ?? process.env.FHIR_BASE_URL ?? '').replace(/\/+$/, '');
const token = opts.token ?? process.env.FHIR_TOKEN ?? '';
const count = Number.parseInt(opts.count, 10);
if (!baseUrl || !Number.isInteger(count) || count < 1) {
  console.error('usage: fhir-client-read.mjs --base URL [--token T] [--lib fhir-kit-client|fhirclient] [--count N]');
  process.exit(2);
}

// version reads an installed library's version from its package.json (not
// every package exports that file, so it is read from disk).
function version(pkg) {
  const file = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(file, 'utf8')).version;
}

// Each adapter offers the same four calls over one library.
function fhirKitAdapter() {
  const client = new FhirKitClient({ baseUrl, ...(token ? { bearerToken: token } : {}) });
  return {
    library: `fhir-kit-client@${version('fhir-kit-client')}`,
    metadata: () => client.capabilityStatement(),
    read: (resourceType, id) => client.read({ resourceType, id }),
    // searchAll walks the pages with the library's nextPage, which follows the
    // Bundle's next link and resolves undefined on the last page.
    async searchAll(resourceType) {
      let bundle = await client.search({ resourceType, searchParams: { _count: count } });
      const result = { total: bundle.total ?? null, pages: 0, ids: [] };
      for (;;) {
        result.pages++;
        for (const e of bundle.entry ?? []) {
          if (e.resource?.resourceType === resourceType) {
            result.ids.push(e.resource.id);
          }
        }
        const next = client.nextPage({ bundle });
        if (!next) {
          return result;
        }
        bundle = await next;
      }
    },
  };
}

function fhirclientAdapter() {
  const smart = require('fhirclient');
  // A backend process has no incoming browser request; the Node adapter only
  // needs one to build redirect URLs and session storage, which are unused here.
  const placeholderRequest = { headers: { host: '127.0.0.1' }, url: '/', socket: {}, session: {} };
  const state = { serverUrl: baseUrl, ...(token ? { tokenResponse: { access_token: token, token_type: 'Bearer' } } : {}) };
  const client = smart(placeholderRequest, {}).client(state);
  return {
    library: `fhirclient@${version('fhirclient')}`,
    metadata: () => client.request('metadata'),
    read: (resourceType, id) => client.request(`${resourceType}/${encodeURIComponent(id)}`),
    // pageLimit 0 asks the library to follow every next link itself; onPage
    // sees each Bundle as it arrives.
    async searchAll(resourceType) {
      const result = { total: null, pages: 0, ids: [] };
      await client.request(`${resourceType}?_count=${count}`, {
        pageLimit: 0,
        onPage(bundle) {
          if (result.pages === 0) {
            result.total = bundle.total ?? null;
          }
          result.pages++;
          for (const e of bundle.entry ?? []) {
            if (e.resource?.resourceType === resourceType) {
              result.ids.push(e.resource.id);
            }
          }
        },
      });
      return result;
    },
  };
}

// describeError reduces a library error to status + message; the two
// libraries report HTTP failures differently.
function describeError(err) {
  const status = err?.response?.status ?? err?.status ?? err?.statusCode ?? null;
  let message = String(err?.message ?? err).split('\n')[0];
  const data = err?.response?.data;
  if (data?.resourceType === 'OperationOutcome') {
    message = data.issue?.map((i) => `${i.severity}/${i.code}`).join('; ') || message;
  }
  return { status, message };
}

async function main() {
  let adapter;
  switch (opts.lib) {
    case 'fhir-kit-client':
      adapter = fhirKitAdapter();
      break;
    case 'fhirclient':
      adapter = fhirclientAdapter();
      break;
    default:
      console.error(`unknown --lib ${opts.lib}`);
      process.exit(2);
  }
  const out = { library: adapter.library };
  let step = 'metadata';
  try {
    const cs = await adapter.metadata();
    out.metadata = { resourceType: cs.resourceType, fhirVersion: cs.fhirVersion ?? null };
    step = 'patients';
    out.patients = await adapter.searchAll('Patient');
    step = 'read';
    const id = opts['patient-id'] ?? out.patients.ids[0];
    if (id) {
      out.patient = await adapter.read('Patient', id);
    }
    step = 'appointments';
    out.appointments = await adapter.searchAll('Appointment');
  } catch (err) {
    out.failedStep = step;
    out.error = describeError(err);
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exitCode = 1;
    return;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

await main();
