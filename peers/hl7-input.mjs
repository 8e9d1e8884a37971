// hl7-input.mjs: how the HL7 v2 peer programs read the messages they are given.
//
// Messages come either as file paths (each file holds exactly one message,
// read as bytes) or, with --ndjson PATH ("-" for stdin), as NDJSON: one JSON
// string per line holding the base64 of one message. Every message is
// returned as a Buffer, in the order given; nothing is decoded or changed.

import { readFileSync } from 'node:fs';

// readMessages returns the messages named by the positional arguments, or by
// the NDJSON file when ndjson is set (then positionals must be empty).
export function readMessages(positionals, ndjson) {
  if (ndjson !== undefined) {
    if (positionals.length > 0) {
      throw new Error('give either --ndjson or message files, not both');
    }
    const text = readFileSync(ndjson === '-' ? 0 : ndjson, 'utf8');
    const out = [];
    for (const [n, line] of text.split('\n').entries()) {
      if (line.trim() === '') {
        continue;
      }
      const b64 = JSON.parse(line);
      if (typeof b64 !== 'string') {
        throw new Error(`ndjson line ${n + 1}: want a JSON string of base64`);
      }
      out.push(Buffer.from(b64, 'base64'));
    }
    return out;
  }
  return positionals.map((p) => readFileSync(p));
}
