// hl7-server.mjs: node-hl7-server as an independent MLLP receiver for tests.
//
// node-hl7-server 2.5 passes its bindAddress to net.Server.listen under a key
// listen() does not know, so it always listens on every interface. This file
// therefore replaces only the listening step of the library's Inbound
// listener: the socket is bound to 127.0.0.1 and every connection is handed
// to the library's own connection handler, which frames, parses and answers
// exactly as it would otherwise.
//
// Usage:
//   node hl7-server.mjs [--port N] [--watch-stdin]
// Port 0 (the default) picks a free port. Once listening, one JSON line is
// printed on stdout:
//   {"port":12345}
// then one line per message the library hands to its handler, in order:
//   {"controlId":"MSH-10","type":"MSH-9-1^MSH-9-2","ack":"AA","message":"..."}
// where message is the message as the library's parser gives it back
// (Message.toString(), segments joined by CR). The answer is the library's
// own ACK: AA, or AE when MSH-10 starts with "NAK".
// --watch-stdin makes the process exit when its stdin closes, so a test
// harness that dies cannot leave the server running.
//
// Known limit of node-hl7-server 2.5 (not of this wrapper): its per-connection
// receive buffer is never cleared after a message, so a second message on the
// same connection is parsed together with the first one; send one message per
// connection.

import net from 'node:net';
import { parseArgs } from 'node:util';
import { Inbound, Server } from 'node-hl7-server';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'watch-stdin': { type: 'boolean', default: false },
  },
});
const wantedPort = Number.parseInt(opts.port, 10);
if (!Number.isInteger(wantedPort) || wantedPort < 0 || wantedPort > 65535) {
  console.error('hl7-server: --port must be an integer 0..65535');
  process.exit(2);
}

// LoopbackInbound is the library's Inbound listener bound to 127.0.0.1.
class LoopbackInbound extends Inbound {
  _listen() {
    const server = net.createServer((socket) => this._onTcpClientConnected(socket));
    server.on('error', (err) => this.emit('error', err));
    server.listen({ port: this._opt.port, host: '127.0.0.1' }, () => this.emit('listen'));
    return server;
  }
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const server = new Server({ bindAddress: '127.0.0.1' });
// Inbound validates the port as 0..65353; 0 asks the system for a free port.
const inbound = new LoopbackInbound(server, { port: wantedPort }, async (req, res) => {
  const msg = req.getMessage();
  const controlId = msg.get('MSH.10').toString();
  const code = controlId.startsWith('NAK') ? 'AE' : 'AA';
  print({
    controlId,
    type: `${msg.get('MSH.9.1').toString()}^${msg.get('MSH.9.2').toString()}`,
    ack: code,
    message: msg.toString(),
  });
  await res.sendResponse(code);
});

inbound.on('error', (err) => {
  console.error(`hl7-server: ${err.message}`);
  process.exit(1);
});
inbound.on('data.error', (err) => {
  console.error(`hl7-server: the library could not read a message: ${err?.message ?? err}`);
});
inbound.on('listen', () => {
  print({ port: inbound._socket.address().port });
});

let stopping = false;
async function shutdown() {
  if (stopping) {
    return;
  }
  stopping = true;
  await inbound.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (opts['watch-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.resume();
}
