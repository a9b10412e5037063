// Node 20's crypto deadlocks when the garbage collector destroys an X25519 key-generation job while
// `export({ format: 'jwk' })` of that key holds its mutex (issue #18: a relay hung for good after ~7,000 logins).
// The loop runs in a child process under constant collection, so a regression hangs the child, not the suite.
import { spawn } from 'node:child_process';
import { createPublicKey, diffieHellman } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ephemeral, sharedSecret } from '../src/x25519.js';

const LOOP = fileURLToPath(new URL('./fixtures/ephemeral-loop.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/x25519.js', import.meta.url));

describe('ephemeral X25519 keys', () => {
  it('are valid pairs: the public key is the private key\'s, and both sides agree on the secret', () => {
    const a = ephemeral();
    const b = ephemeral();
    expect(a.publicB64u).toBe(createPublicKey(a.privateKey).export({ format: 'jwk' }).x);
    expect(a.publicB64u).not.toBe(b.publicB64u);
    const ab = sharedSecret(a.privateKey, b.publicB64u);
    expect(ab).toEqual(sharedSecret(b.privateKey, a.publicB64u));
    expect(ab).toEqual(new Uint8Array(diffieHellman({ privateKey: a.privateKey, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b.publicB64u }, format: 'jwk' }) })));
  });

  it('20,000 made under constant garbage collection do not deadlock the thread (generateKeyPairSync + jwk export did)', async () => {
    const child = spawn(process.execPath, ['--max-semi-space-size=1', LOOP, DIST, '20000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    // Generous: a busy machine makes it slow; a deadlock makes it never end.
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(timer);
    expect(out, 'the child did not finish: deadlocked (killed after 10 minutes)').toBe('done\n');
    expect(code).toBe(0);
  }, 660_000);
});
