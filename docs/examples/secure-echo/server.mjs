#!/usr/bin/env node
// An authenticated echo server built only from FLARE-TS public APIs: a server startup kit (@flare/pki), a
// WebSocket endpoint with the kit's connection security (@flare/transport), and the login handshake with
// per-message authentication (@flare/auth). Prints `listening <port>` when ready.
//
//   node server.mjs --kit <server kit dir> --port <port> [--host 127.0.0.1]
import { parseArgs } from 'node:util';
import { createServerAuth } from '@flare/auth';
import { loadKit } from '@flare/pki';
import { listen, serverOptionsFromKit } from '@flare/transport';

const { values } = parseArgs({ options: { kit: { type: 'string' }, port: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } } });
if (!values.kit || !values.port) {
  console.error('usage: server.mjs --kit DIR --port N [--host H]');
  process.exit(2);
}

try {
  const kit = await loadKit(values.kit);
  const auth = createServerAuth({ kit });
  const server = await listen({
    ...serverOptionsFromKit(kit),
    host: values.host,
    port: Number(values.port),
    authenticate: (connection) => auth.accept(connection),
  });
  server.on('connection', (connection) => {
    // Identity comes from the session, never from the message.
    const peer = connection.auth.peer;
    connection.on('message', ({ header, payload }) => {
      if (header.type !== 'echo') return;
      connection.send({ type: 'echo', text: header.text, to: peer.name }, payload).catch(() => undefined);
    });
  });
  server.on('refused', ({ remote, error }) => console.error(`refused ${remote.address}: ${error.code}`));
  const stop = () => server.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log(`listening ${server.port}`);
} catch (error) {
  console.log(error?.code ? `${error.code}: ${error.message}` : String(error));
  process.exit(1);
}
