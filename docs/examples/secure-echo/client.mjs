#!/usr/bin/env node
// Connects to the secure-echo server with a client or admin startup kit, logs in, sends one authenticated
// message and prints the server's identity and the echo. On refusal it prints the error code and exits 1.
//
//   node client.mjs --kit <client or admin kit dir> --host <host> --port <port> --message <text>
import { parseArgs } from 'node:util';
import { createClientAuth } from '@flare/auth';
import { loadKit } from '@flare/pki';
import { clientOptionsFromKit, dial } from '@flare/transport';

const { values } = parseArgs({ options: { kit: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, message: { type: 'string' } } });
if (!values.kit || !values.host || !values.port || values.message === undefined) {
  console.error('usage: client.mjs --kit DIR --host H --port N --message TEXT');
  process.exit(2);
}

let connection;
try {
  const kit = await loadKit(values.kit);
  const auth = createClientAuth({ kit });
  connection = await dial({
    ...clientOptionsFromKit(kit),
    targets: [{ host: values.host, port: Number(values.port) }],
    authenticate: (c) => auth.login(c),
  });
  console.log(`peer ${connection.auth.peer.name}`);
  const reply = connection.receive();
  await connection.send({ type: 'echo', text: values.message });
  const { header } = await reply;
  console.log(`echo ${header.text}`);
  await connection.close();
  process.exit(0);
} catch (error) {
  console.log(error?.code ? `${error.code}: ${error.message}` : String(error));
  await connection?.close().catch(() => undefined);
  process.exit(1);
}
