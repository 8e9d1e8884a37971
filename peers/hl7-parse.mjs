// hl7-parse.mjs: Medplum's HL7 v2 parser as an oracle and a speed peer.
//
// The parser is Hl7Message.parse from @medplum/core, the one @medplum/hl7's
// Hl7Connection runs on every message it receives; like that connection (with
// its default encoding) the bytes are decoded as UTF-8 first.
//
// Usage:
//   node hl7-parse.mjs [--ndjson PATH|-] [--bench N] [FILE...]
// Messages are FILEs (one message per file) or NDJSON lines, each a JSON
// string with the base64 of one message (see hl7-input.mjs).
//
// Without --bench, one JSON line is printed per message, in input order:
//   {"i":0,"msh9":F,"msh10":F,"pid3":F,"pid5":F,"obx":[{"obx3":F,"obx5":F},...]}
// where F is a field as Medplum reads it: an array of repetitions, each an
// array of its components exactly as getComponent returns them (Medplum does
// not unescape, and keeps subcomponent separators inside a component), or
// null when the segment or field is absent. pid3/pid5 come from the first PID
// segment; obx lists every OBX segment. A message Medplum refuses prints
//   {"i":0,"error":"..."}
//
// With --bench N every message is parsed once to find those Medplum refuses
// (they are left out and listed in "refused" by input index), then the rest
// are parsed N times after a warm-up of max(1, N/5) rounds, in this one
// process, and one JSON line is printed:
//   {"refused":[...],"messages":M,"bytes":B,"seconds":S,"messagesPerSecond":R,
//    "mbPerSecond":X,"extractSeconds":S2,"extractMessagesPerSecond":R2,"checksum":C}
// M and B count every parse of the N rounds. messagesPerSecond times decode +
// parse; extractMessagesPerSecond times decode + parse + reading the fields
// listed above (the same work the non-bench output does, without JSON).
// checksum keeps the work from being optimised away.

import { parseArgs } from 'node:util';
import { Hl7Message } from '@medplum/core';
import { readMessages } from './hl7-input.mjs';

const { values: opts, positionals } = parseArgs({
  options: {
    ndjson: { type: 'string' },
    bench: { type: 'string' },
  },
  allowPositionals: true,
});

// field returns a field the way Medplum's accessors present it, or null.
function field(segment, n) {
  if (!segment) {
    return null;
  }
  const f = segment.getField(n);
  if (!f) {
    return null;
  }
  const reps = [];
  for (let r = 0; r < f.components.length; r++) {
    const comps = [];
    for (let c = 1; c <= f.components[r].length; c++) {
      comps.push(f.getComponent(c, undefined, r));
    }
    reps.push(comps);
  }
  return reps;
}

function extract(msg) {
  const msh = msg.getSegment('MSH');
  const pid = msg.getSegment('PID');
  return {
    msh9: field(msh, 9),
    msh10: field(msh, 10),
    pid3: field(pid, 3),
    pid5: field(pid, 5),
    obx: msg.getAllSegments('OBX').map((s) => ({ obx3: field(s, 3), obx5: field(s, 5) })),
  };
}

// valueLength sums the lengths of every component of an extracted field.
function valueLength(f) {
  let n = 0;
  if (f) {
    for (const rep of f) {
      for (const c of rep) {
        n += c.length;
      }
    }
  }
  return n;
}

function extractLength(x) {
  let n = valueLength(x.msh9) + valueLength(x.msh10) + valueLength(x.pid3) + valueLength(x.pid5);
  for (const o of x.obx) {
    n += valueLength(o.obx3) + valueLength(o.obx5);
  }
  return n;
}

function bench(all, rounds) {
  const refused = [];
  const messages = all.filter((b, i) => {
    try {
      Hl7Message.parse(b.toString('utf8'));
      return true;
    } catch {
      refused.push(i);
      return false;
    }
  });
  if (messages.length === 0) {
    throw new Error('Medplum refused every message');
  }
  const bytes = messages.reduce((n, b) => n + b.length, 0);
  let checksum = 0;
  const parseRound = () => {
    for (const b of messages) {
      checksum += Hl7Message.parse(b.toString('utf8')).segments.length;
    }
  };
  const extractRound = () => {
    for (const b of messages) {
      checksum += extractLength(extract(Hl7Message.parse(b.toString('utf8'))));
    }
  };
  const time = (round) => {
    for (let i = 0; i < Math.max(1, Math.floor(rounds / 5)); i++) {
      round();
    }
    const start = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) {
      round();
    }
    return Number(process.hrtime.bigint() - start) / 1e9;
  };
  const seconds = time(parseRound);
  const extractSeconds = time(extractRound);
  const total = messages.length * rounds;
  return {
    refused,
    messages: total,
    bytes: bytes * rounds,
    seconds,
    messagesPerSecond: total / seconds,
    mbPerSecond: (bytes * rounds) / seconds / 1e6,
    extractSeconds,
    extractMessagesPerSecond: total / extractSeconds,
    checksum,
  };
}

function main() {
  const messages = readMessages(positionals, opts.ndjson);
  if (opts.bench !== undefined) {
    const rounds = Number.parseInt(opts.bench, 10);
    if (!Number.isInteger(rounds) || rounds < 1) {
      console.error('hl7-parse: --bench needs a positive number of rounds');
      process.exit(2);
    }
    if (messages.length === 0) {
      console.error('hl7-parse: no messages to benchmark');
      process.exit(2);
    }
    try {
      process.stdout.write(JSON.stringify(bench(messages, rounds)) + '\n');
    } catch (err) {
      console.error(`hl7-parse: ${err.message}`);
      process.exit(1);
    }
    return;
  }
  const out = [];
  messages.forEach((b, i) => {
    try {
      out.push(JSON.stringify({ i, ...extract(Hl7Message.parse(b.toString('utf8'))) }));
    } catch (err) {
      out.push(JSON.stringify({ i, error: String(err?.message ?? err) }));
    }
  });
  process.stdout.write(out.length ? out.join('\n') + '\n' : '');
}

main();
