// Test helpers: an in-memory hub of authenticated channels, a tiny linear learner and a FedAvg aggregator.
// They stand in for @flare/transport+auth, @flare/tfjs and @flare/aggregator only inside these unit tests;
// the e2e tests run the real packages.
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { META, encodeModel, model, tensor, type Aggregator, type AcceptContext, type AuditEventInput, type FLModel, type JsonValue, type Learner } from '@flare/core';
import { z } from 'zod';
import { channelPair, type ChannelServer, type PeerChannel } from '../src/channel.js';
import type { PeerIdentity } from '../src/event-bus.js';
import type { LearnerFactory, SitePolicy } from '../src/site-policy.js';

export async function tempDir(prefix = 'flare-rt-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * A ChannelServer whose clients connect in memory with a given identity. With `sessions`, each connection
 * exports keying material like an @flare/auth session (a fresh secret per connection), for attestation.
 */
export function memoryHub(server: PeerIdentity, options: { sessions?: boolean } = {}): ChannelServer & { connect(who: PeerIdentity): Promise<PeerChannel>; channels: PeerChannel[] } {
  let handler: ((ch: PeerChannel) => void) | undefined;
  const channels: PeerChannel[] = [];
  let open = true;
  return {
    channels,
    onChannel: (h) => {
      handler = h;
    },
    close: async () => {
      open = false;
      for (const c of channels) c.close();
    },
    connect: async (who) => {
      if (!open || handler === undefined) throw new Error('server not listening');
      const [clientSide, serverSide] = channelPair(who, server, options.sessions === true ? { keyingMaterial: randomBytes(32) } : {});
      channels.push(serverSide);
      handler(serverSide);
      return clientSide;
    },
  };
}

/** Streaming FedAvg weighted by NUM_STEPS_CURRENT_ROUND, memory O(model). */
export class TestFedAvg implements Aggregator {
  #sum: Map<string, Float64Array> | undefined;
  #w = 0;
  #seen = new Set<string>();
  accept(update: FLModel, ctx: AcceptContext): void {
    if (this.#seen.has(ctx.from)) throw new Error(`duplicate from ${ctx.from}`);
    this.#seen.add(ctx.from);
    const w = (ctx.weight ?? 1) * Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1);
    this.#sum ??= new Map([...update.params].map(([k, t]) => [k, new Float64Array(t.data.length)]));
    for (const [k, t] of update.params) {
      const s = this.#sum.get(k)!;
      for (let i = 0; i < s.length; i++) s[i]! += w * Number(t.data[i]);
    }
    this.#w += w;
  }
  result(): FLModel {
    const params = new Map([...(this.#sum ?? new Map<string, Float64Array>())].map(([k, s]) => [k, tensor(Float32Array.from(s, (x) => x / this.#w), [s.length])] as const));
    return model(params, 'diff');
  }
  reset(): void {
    this.#sum = undefined;
    this.#w = 0;
    this.#seen.clear();
  }
}

/** Learner: moves w towards `target` by half the distance each round; validates |w - target|. */
export function towardsLearner(target: number, opts: { delayMs?: number; fail?: boolean } = {}): Learner {
  return {
    async train(global, ctx) {
      if (opts.delayMs !== undefined) await new Promise((r, j) => {
        const t = setTimeout(r, opts.delayMs);
        ctx.signal?.addEventListener('abort', () => {
          clearTimeout(t);
          j(ctx.signal?.reason);
        });
      });
      if (opts.fail === true) throw new Error('learner broke');
      const w = global.params.get('w')!.data as Float32Array;
      const d = Float32Array.from(w, (x) => (target - x) / 2);
      return model({ w: tensor(d, [d.length]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 });
    },
    async validate(global) {
      const w = global.params.get('w')!.data as Float32Array;
      return { loss: Math.abs(w[0]! - target), accuracy: 1 / (1 + Math.abs(w[0]! - target)), n: 10 };
    },
  };
}

export function learnerFactory(target: number, opts: { delayMs?: number; fail?: boolean } = {}): LearnerFactory<unknown> {
  return { name: 'towards', args: z.object({}).passthrough(), create: () => towardsLearner(target, opts) };
}

export function initialModelBytes(): Uint8Array {
  return encodeModel(model({ w: tensor(new Float32Array([0, 0]), [2]) }));
}

export interface PolicyOptions {
  allowSubmitter?: (name: string) => boolean;
  scopes?: string[];
  allowList?: string[];
  byocConsent?: boolean;
  maxJobs?: number;
  allowAbort?: boolean;
}

export function sitePolicy(o: PolicyOptions = {}): SitePolicy {
  const scopes = o.scopes ?? ['public'];
  return {
    authorize: ({ user, right }) => (right === 'submit_job' ? (o.allowSubmitter ?? (() => true))(user.name) : right === 'abort_job' ? (o.allowAbort ?? true) : right === 'byoc'),
    scope: (name) => {
      const n = name ?? scopes[0];
      return n !== undefined && scopes.includes(n) ? { name: n, taskDataFilters: [], taskResultFilters: [] } : undefined;
    },
    admitsComponent: (name) => (o.allowList ?? ['towards', 'scale-by']).includes(name),
    byocConsent: o.byocConsent ?? false,
    checkResources: (_needs, running) => (running >= (o.maxJobs ?? 2) ? `at most ${o.maxJobs ?? 2} jobs run here at once` : undefined),
    report: { num_of_gpus: 0, max_jobs: o.maxJobs ?? 2 },
  };
}

/** An audit hook recording events with ids e1, e2, ... */
export function auditRecorder(prefix: string): { hook: (e: AuditEventInput) => string; events: Array<AuditEventInput & { id: string }> } {
  const events: Array<AuditEventInput & { id: string }> = [];
  return {
    events,
    hook: (e) => {
      const id = `${prefix}-${events.length + 1}`;
      events.push({ ...e, id });
      return id;
    },
  };
}

export const SERVER: PeerIdentity = { name: 'server', org: 'nvidia', kind: 'server' };
export const ADMIN: PeerIdentity = { name: 'admin@nvidia.com', org: 'nvidia', role: 'project_admin', kind: 'admin' };
export const site = (n: number): PeerIdentity => ({ name: `site-${n}`, org: `org${n}`, kind: 'client' });

export function jobDefinition(over: Record<string, JsonValue> = {}): { [k: string]: JsonValue } {
  return { name: 'towards', rounds: 3, min_clients: 2, round_timeout_s: 10, deploy: ['site-1', 'site-2', 'site-3'], learner: { name: 'towards', args: {} }, ...over };
}

/** Polls `check` until it returns a value, at most `ms` milliseconds. */
export async function until<T>(check: () => T | undefined | Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
