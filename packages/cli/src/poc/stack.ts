import { randomUUID } from 'node:crypto';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { META, model, tensor, type AcceptContext, type Aggregator, type AuditEventInput, type FilterFactory, type FLModel } from '@flare/core';
import type { Stack } from './participants.js';

/**
 * Streaming FedAvg (FLARE's weighting: aggregation weight x NUM_STEPS_CURRENT_ROUND; sums kept per tensor in
 * float64, so memory is O(model)). A stand-in until @flare/aggregator exports its FedAvg; it refuses a second
 * update from one site and an update for another round.
 */
export class LocalFedAvg implements Aggregator {
  #sums = new Map<string, { sum: Float64Array; weight: number; shape: readonly number[] }>();
  #seen = new Set<string>();
  #round: number | undefined;
  accept(update: FLModel, ctx: AcceptContext): void {
    if (this.#seen.has(ctx.from)) throw new RangeError(`a second update from ${ctx.from} this round`);
    if (this.#round !== undefined && ctx.round !== undefined && ctx.round !== this.#round) throw new RangeError(`update for round ${ctx.round} in round ${this.#round}`);
    if (update.kind !== 'diff') throw new RangeError(`update of ${ctx.from} is not a diff`);
    this.#round ??= ctx.round;
    const w = (ctx.weight ?? 1) * Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1);
    if (!(w > 0) || !Number.isFinite(w)) throw new RangeError(`update of ${ctx.from} has weight ${w}`);
    for (const [name, t] of update.params) {
      let s = this.#sums.get(name);
      if (s === undefined) {
        s = { sum: new Float64Array(t.data.length), weight: 0, shape: t.shape };
        this.#sums.set(name, s);
      }
      if (s.sum.length !== t.data.length) throw new RangeError(`tensor ${name} of ${ctx.from} has the wrong size`);
      const d = t.data as Float32Array;
      for (let i = 0; i < d.length; i++) s.sum[i]! += w * d[i]!;
      s.weight += w;
    }
    this.#seen.add(ctx.from);
  }
  result(): FLModel {
    const params = new Map([...this.#sums].map(([k, s]) => [k, tensor(Float32Array.from(s.sum, (x) => x / s.weight), [...s.shape])] as const));
    return model(params, 'diff');
  }
  reset(): void {
    this.#sums.clear();
    this.#seen.clear();
    this.#round = undefined;
  }
}

/** The stack the `flare` commands run with: what has landed from the other packages, wired here. */
export function defaultStack(): Stack {
  return {
    async openAudit(dir) {
      // Until @flare/audit lands: plain JSON Lines, NOT tamper-evident (the poc reports it as unverified).
      const file = join(dir, 'audit.jsonl');
      const pending: Array<Promise<void>> = [];
      return {
        hook: (e: AuditEventInput) => {
          const id = randomUUID();
          pending.push(appendFile(file, `${JSON.stringify({ id, ts: new Date().toISOString(), ...e })}\n`, { mode: 0o600 }));
          return id;
        },
        tail: async (n) => {
          await Promise.all(pending);
          const text = await readFile(file, 'utf8').catch(() => '');
          return text.trimEnd().split('\n').filter((l) => l !== '').slice(-n);
        },
        close: async () => {
          await Promise.all(pending);
        },
      };
    },
    aggregator: () => new LocalFedAvg(),
    filters: () => new Map<string, FilterFactory<unknown>>(),
  };
}
