// Test helpers: real kits from @flare/pki's provision(), and an in-memory channel pair with the transport's
// semantics (ordered delivery, guard seal/open, close with a code), so auth is tested without sockets. The
// real-socket tests live in e2e/test/auth-*.e2e.test.ts (auth may not import @flare/transport).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TransportError, type FlareError } from '@flare/core';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import type { AuthChannel, AuthGuard, AuthHeader } from '../src/index.js';

export interface Frame {
  header: AuthHeader;
  payload: Uint8Array;
  trailer: AuthHeader | undefined;
}

type Received = { header: AuthHeader; payload: Uint8Array; trailer?: AuthHeader };
type CloseInfo = { error?: FlareError | undefined; by: 'local' | 'remote'; authenticated: boolean };

/** The payload digest a guard asks for, as the transport computes it (in pieces, as chunks arrive). */
function digest(guard: AuthGuard, payload: Uint8Array, sending: boolean): Uint8Array {
  const d = guard.payloadDigest(payload.length, sending);
  for (let at = 0; at < payload.length || at === 0; at += 65_536) {
    d.update(payload.subarray(at, at + 65_536));
    if (payload.length === 0) break;
  }
  return d.digest();
}

/** One end of an in-memory channel. `wire` sees (and may rewrite or drop) every frame this end sends. */
export class MemoryChannel implements AuthChannel {
  peer!: MemoryChannel;
  guard: AuthGuard | undefined;
  queue: Received[] = [];
  waiters: Array<{ resolve: (m: Received) => void; reject: (e: Error) => void }> = [];
  delivered: Received[] = [];
  sent: Frame[] = [];
  wire: ((f: Frame) => Frame | undefined) | undefined;
  closeError: FlareError | undefined;
  isClosed = false;
  identifiedAs: string | undefined;
  readonly closed: Promise<CloseInfo>;
  #resolveClosed!: (v: CloseInfo) => void;

  constructor(public tls: AuthChannel['tls'] = undefined) {
    this.closed = new Promise((r) => (this.#resolveClosed = r));
  }

  setGuard(guard: AuthGuard): void {
    this.guard = guard;
  }

  identified(name: string): void {
    this.identifiedAs = name;
  }

  async send(header: AuthHeader, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    await Promise.resolve();
    if (this.isClosed) throw this.closeError ?? new TransportError('E_TRANSPORT_CLOSED', 'closed');
    const trailer = this.guard?.seal(header, payload.length, digest(this.guard, payload, true));
    const frame: Frame = { header, payload, trailer };
    this.sent.push(frame);
    const out = this.wire ? this.wire(frame) : frame;
    if (out !== undefined) this.peer.inject(out);
  }

  /** Delivers a frame to this end as if it came from the peer. */
  inject(f: Frame): void {
    if (this.isClosed) return;
    // The wire carries JSON: a receiver never shares objects with the sender.
    const header = JSON.parse(JSON.stringify(f.header)) as AuthHeader;
    const trailer = f.trailer === undefined ? undefined : (JSON.parse(JSON.stringify(f.trailer)) as AuthHeader);
    try {
      if (this.guard !== undefined) {
        if (!this.guard.open(header, f.payload.length, digest(this.guard, f.payload, false), trailer)) return;
        this.#deliver({ header, payload: f.payload });
      } else this.#deliver(trailer === undefined ? { header, payload: f.payload } : { header, payload: f.payload, trailer });
    } catch (e) {
      void this.close(e as FlareError);
    }
  }

  #deliver(m: Received): void {
    // Only what the application would see: messages after the login installed the session.
    if (this.guard !== undefined) this.delivered.push(m);
    const w = this.waiters.shift();
    if (w) w.resolve(m);
    else this.queue.push(m);
  }

  receive(): Promise<Received> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.isClosed) return Promise.reject(this.closeError ?? new TransportError('E_TRANSPORT_CLOSED', 'closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /**
   * Closes both ends; the peer sees the same error, as the transport delivers it: authenticated when this end
   * had a guard (the transport's sealed goodbye), by 'remote'.
   */
  async close(error?: FlareError): Promise<unknown> {
    if (this.isClosed) return undefined;
    const authenticated = error !== undefined && this.guard !== undefined;
    this.#end(error, 'local', false);
    this.peer.#end(error, 'remote', authenticated);
    return undefined;
  }

  #end(error: FlareError | undefined, by: 'local' | 'remote', authenticated: boolean): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeError = error;
    for (const w of this.waiters.splice(0)) w.reject(error ?? new TransportError('E_TRANSPORT_CLOSED', 'closed'));
    this.#resolveClosed(error === undefined ? { by, authenticated } : { error, by, authenticated });
  }
}

/** Two connected ends; `exporter` gives each end's TLS exporter value (equal when TLS is end-to-end). */
export function channelPair(tls?: { client: Uint8Array; server: Uint8Array; clientCert?: string }): { client: MemoryChannel; server: MemoryChannel } {
  const fake = (value: Uint8Array, peerCertificatePem: string | undefined): AuthChannel['tls'] => ({
    peerCertificatePem,
    exportKeyingMaterial: (length: number) => value.subarray(0, length),
  });
  const client = new MemoryChannel(tls ? fake(tls.client, '-----BEGIN CERTIFICATE-----(server)') : undefined);
  const server = new MemoryChannel(tls ? fake(tls.server, tls.clientCert) : undefined);
  client.peer = server;
  server.peer = client;
  return { client, server };
}

export interface Kits {
  server: Kit;
  client: Kit;
  client2: Kit;
  admin: Kit;
  projectDir: string;
  workspace: string;
}

const PROJECT = (name: string): string =>
  testProjectYaml({
    name,
    server: 'server1',
    hostNames: ['localhost', '127.0.0.1'],
    sites: ['site-1', ['site-2', 'acme']],
    admins: [['admin@nvidia.com', 'nvidia', 'project_admin']],
    fields: { description: 'auth tests' },
  });

/** Provisions a project with @flare/pki and loads its kits. */
export async function makeKits(name = 'authtest'): Promise<Kits> {
  const workspace = await mkdtemp(join(tmpdir(), 'flare-auth-'));
  const result = await provision(parseProject(PROJECT(name)), { workspace });
  const dir = (n: string): string => result.kits.find((k) => k.name === n)!.dir;
  return {
    server: await loadKit(dir('server1')),
    client: await loadKit(dir('site-1')),
    client2: await loadKit(dir('site-2')),
    admin: await loadKit(dir('admin@nvidia.com')),
    projectDir: result.projectDir,
    workspace,
  };
}
