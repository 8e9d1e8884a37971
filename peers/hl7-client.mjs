// hl7-client.mjs: node-hl7-client as an independent MLLP sender for tests.
//
// Usage:
//   node hl7-client.mjs --port N [--host 127.0.0.1] [--timeout MS] [--ndjson PATH|-] [FILE...]
// Messages are FILEs (one message per file) or NDJSON lines, each a JSON
// string with the base64 of one message (see hl7-input.mjs). Each message is
// parsed by node-hl7-client (new Message({text})) and sent with the library's
// Connection.sendMessage on one connection, one at a time: the next message
// goes out when the library has handed the previous one's reply to its
// handler. For every reply one JSON line is printed, in order:
//   {"i":0,"sentControlId":"MSH-10 as the library read it","msa1":"AA","msa2":"...","msa3":"...","ackType":"ACK^A01"}
// All values are read with the library's own parser. When a reply does not
// come within --timeout ms (default 10000) or the connection fails, a line
//   {"i":0,"error":"..."}
// is printed and the program exits with status 1.

import { parseArgs } from 'node:util';
import { Client, Message } from 'node-hl7-client';
import { readMessages } from './hl7-input.mjs';

const { values: opts, positionals } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    timeout: { type: 'string', default: '10000' },
    ndjson: { type: 'string' },
  },
  allowPositionals: true,
});
const port = Number.parseInt(opts.port ?? '', 10);
const timeoutMs = Number.parseInt(opts.timeout, 10);
if (!Number.isInteger(port) || port < 1 || port > 65353 || !Number.isInteger(timeoutMs) || timeoutMs < 1) {
  console.error('hl7-client: --port 1..65353 is required and --timeout must be a positive number of ms');
  process.exit(2);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const texts = readMessages(positionals, opts.ndjson).map((b) => b.toString('utf8'));
  const client = new Client({ host: opts.host });

  // The library hands each reply to this handler; the sender waits on `waiting`.
  let waiting = null;
  const conn = client.createConnection({ port, waitAck: true, maxConnectionAttempts: 1 }, async (res) => {
    const w = waiting;
    waiting = null;
    if (w) {
      w.resolve(res.getMessage());
    }
  });
  let failedEarly;
  const failed = new Promise((_, reject) => {
    failedEarly = (err) => reject(new Error(`connection error: ${err?.message ?? err}`));
    conn.on('client.error', (err) => reject(new Error(`connection error: ${err?.message ?? err}`)));
    conn.on('data.error', (err) => reject(new Error(`could not read a reply: ${err?.message ?? err}`)));
  });
  failed.catch(() => {});
  // With its default options the library swallows socket errors and closes
  // (a refused connection only shows as a missing 'connect'); listen on its
  // socket so those fail at once instead of after --timeout.
  conn._socket?.on('error', (err) => failedEarly(err));
  conn._socket?.on('close', () => failedEarly('the connection was closed'));
  const connected = new Promise((resolve) => conn.once('connect', resolve));

  let i = 0;
  try {
    // Sending before the socket is connected would make the library queue the
    // message and open a second socket; wait for the first to connect.
    await withTimeout(Promise.race([connected, failed]), 'connect');
    for (; i < texts.length; i++) {
      const msg = new Message({ text: texts[i] });
      const reply = new Promise((resolve) => {
        waiting = { resolve };
      });
      await conn.sendMessage(msg);
      const ack = await withTimeout(Promise.race([reply, failed]), `message ${i}`);
      print({
        i,
        sentControlId: msg.get('MSH.10').toString(),
        msa1: ack.get('MSA.1').toString(),
        msa2: ack.get('MSA.2').toString(),
        msa3: ack.get('MSA.3').toString(),
        ackType: `${ack.get('MSH.9.1').toString()}^${ack.get('MSH.9.2').toString()}`,
      });
    }
  } catch (err) {
    print({ i, error: String(err?.message ?? err) });
    process.exitCode = 1;
  } finally {
    await conn.close();
    client.closeAll();
  }
}

main().catch((err) => {
  console.error(`hl7-client: ${err?.stack ?? err}`);
  process.exit(1);
});
