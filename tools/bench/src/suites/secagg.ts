import { cpuUsage } from 'node:process';
import {
  decodeSum,
  encodeUpdate,
  planSecAggRound,
  SecAggClient,
  SecAggServer,
} from '@flare/secagg';
import { testIdentities } from '@flare/secagg/testing';
import type { Row, Suite } from '../harness.js';

// SecAgg+ rounds of n sites (10, 50, 100) x d parameters (100k, 1M), all in this process: each site's
// state machine and the server's run one after the other, and each call is timed on its own, so the figures
// are per-site CPU (encoding + every protocol phase), bytes each site sends, and the server's CPU. The
// baseline, measured in the same run on the same updates, is plain FedAvg's aggregation: the server adds n
// float32 updates into a float64 sum, and each site sends its float32 update (4·d bytes).
// The round time of a deployment is estimated as the slowest site's CPU plus the server's (sites run in
// parallel on their own machines; network time excluded); plain FedAvg's is the server's sum alone.
// Plan: semi-honest server, 5% corrupt and 5% dropout sites, failure bounds 2^-40 / 2^-20, 20-bit ring,
// L2 clip 1, random rotation; no DP noise (the sampler is injected and not part of this package).
// A second run per size drops 5% of the sites after they shared their keys, the server's expensive path
// (it rebuilds their mask keys and removes their pairwise masks).

const SIZES = [10, 50, 100];
const DIMS = [100_000, 1_000_000];
const BITS = 20;

interface Measure {
  n: number;
  d: number;
  degree: number;
  threshold: number;
  dropped: number;
  siteMs: number[];
  siteBytes: number[];
  serverMs: number;
  plainMs: number;
  maxError: number;
}

/** A deterministic float32 update for site s: small values, like a weight difference. */
function update(d: number, s: number): Float32Array {
  const out = new Float32Array(d);
  let x = (s + 1) * 2654435761;
  for (let i = 0; i < d; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 2 ** 32 - 0.5) * (0.4 / Math.sqrt(d));
  }
  return out;
}

const cpuMs = (since: NodeJS.CpuUsage): number => {
  const u = cpuUsage(since);
  return (u.user + u.system) / 1000;
};

function run(n: number, d: number, dropFraction: number): Measure {
  const sites = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(3, '0')}`);
  const { config } = planSecAggRound({
    job: 'bench', round: 0, sites, corruptFraction: 0.05, dropoutFraction: 0.05, bits: BITS,
    encoding: { dimension: d, clip: 1 },
  });
  const ids = testIdentities(sites);
  const siteMs = new Map<string, number>(sites.map((s) => [s, 0]));
  const siteBytes = new Map<string, number>(sites.map((s) => [s, 0]));
  let serverMs = 0;
  const onSite = <T extends Uint8Array>(site: string, f: () => T): T => {
    const t = cpuUsage();
    const out = f();
    siteMs.set(site, siteMs.get(site)! + cpuMs(t));
    siteBytes.set(site, siteBytes.get(site)! + out.length);
    return out;
  };
  const onServer = <T>(f: () => T): T => {
    const t = cpuUsage();
    const out = f();
    serverMs += cpuMs(t);
    return out;
  };
  const dropped = new Set(sites.slice(0, Math.round(dropFraction * n)));
  const server = new SecAggServer(config, { verifier: ids.verifier });
  const clients = new Map(sites.map((site) => [site, new SecAggClient({ site, job: 'bench', round: 0, signer: ids.signers.get(site)!, verifier: ids.verifier })]));
  const setup = onServer(() => server.setupMessage());
  for (const [site, c] of clients) {
    const m = onSite(site, () => c.start(setup));
    onServer(() => server.acceptKeys(site, m));
  }
  for (const [site, bytes] of onServer(() => server.closeKeys())) {
    const m = onSite(site, () => clients.get(site)!.receiveKeys(bytes));
    onServer(() => server.acceptShares(site, m));
  }
  const plainSum = new Float64Array(d);
  for (const [site, bytes] of onServer(() => server.closeShares())) {
    if (dropped.has(site)) continue;
    const x = update(d, sites.indexOf(site));
    const m = onSite(site, () => clients.get(site)!.receiveShares(bytes, encodeUpdate(x, config)));
    onServer(() => server.acceptMaskedInput(site, m));
    for (let i = 0; i < d; i++) plainSum[i] = plainSum[i]! + x[i]!;
  }
  for (const [site, bytes] of onServer(() => server.closeMaskedInputs())) {
    const m = onSite(site, () => clients.get(site)!.receiveSurvivors(bytes));
    onServer(() => server.acceptConsistency(site, m));
  }
  for (const [site, bytes] of onServer(() => server.closeConsistency())) {
    const m = onSite(site, () => clients.get(site)!.receiveUnmask(bytes));
    onServer(() => server.acceptUnmask(site, m));
  }
  const result = onServer(() => server.finish());
  const decoded = onServer(() => decodeSum(result.sum, config));
  let maxError = 0;
  for (let i = 0; i < d; i++) maxError = Math.max(maxError, Math.abs(decoded[i]! - plainSum[i]!));
  return {
    n, d, degree: config.degree, threshold: config.threshold, dropped: dropped.size,
    // Bytes of the sites that completed the round (a dropped site sends less).
    siteMs: [...siteMs.values()], siteBytes: sites.filter((s) => !dropped.has(s)).map((s) => siteBytes.get(s)!), serverMs,
    plainMs: plainFedAvg(n, d), maxError,
  };
}

/** Plain FedAvg's server work on the same updates: n float32 updates added into a float64 sum (median of 3). */
function plainFedAvg(n: number, d: number): number {
  const updates = Array.from({ length: Math.min(n, 8) }, (_, s) => update(d, s));
  const times: number[] = [];
  for (let r = 0; r < 3; r++) {
    const sum = new Float64Array(d);
    const t = cpuUsage();
    for (let s = 0; s < n; s++) {
      const x = updates[s % updates.length]!;
      for (let i = 0; i < d; i++) sum[i] = sum[i]! + x[i]!;
    }
    times.push(cpuMs(t));
  }
  return times.sort((a, b) => a - b)[1]!;
}

const mean = (a: readonly number[]) => a.reduce((s, x) => s + x, 0) / a.length;
const k = (d: number) => (d >= 1e6 ? `${d / 1e6}M` : `${d / 1e3}k`);

export const suite: Suite = {
  name: 'secagg',
  description:
    'SecAgg+ (semi-honest plan, 5% corrupt / 5% dropouts, 20-bit ring) vs plain FedAvg aggregation of the same float32 updates, 10/50/100 sites x 100k/1M parameters, CPU time per call (process.cpuUsage)',
  async run(): Promise<Row[]> {
    const rows: Row[] = [];
    const serverByN = new Map<string, Array<[number, number]>>();
    for (const d of DIMS) {
      for (const n of SIZES) {
        for (const drop of [0, 0.05]) {
          const m = run(n, d, drop);
          const tag = `n=${n} d=${k(d)} k=${m.degree} t=${m.threshold}${m.dropped > 0 ? ` ${m.dropped} dropped after sharing` : ''}`;
          const plainBytes = 4 * d;
          const bytes = mean(m.siteBytes);
          const site = mean(m.siteMs);
          const slowest = Math.max(...m.siteMs);
          rows.push({ label: `${tag}: bytes a site sends (all phases)`, value: bytes / 1e6, unit: 'MB', baseline: { label: 'its float32 update', value: plainBytes / 1e6 }, higherIsBetter: false, ...(n === 100 && d === 1e6 ? { aim: '<= 1.5x the plain bytes (ratio >= 0.67)' } : {}) });
          rows.push({ label: `${tag}: per-site CPU (mean of ${n}; encode + all phases)`, value: site, unit: 'ms' });
          rows.push({ label: `${tag}: server CPU`, value: m.serverMs, unit: 'ms', baseline: { label: 'plain FedAvg sum', value: m.plainMs }, higherIsBetter: false });
          rows.push({ label: `${tag}: round (slowest site + server)`, value: slowest + m.serverMs, unit: 'ms', baseline: { label: 'plain FedAvg round', value: m.plainMs }, higherIsBetter: false });
          rows.push({ label: `${tag}: largest error of the decoded sum`, value: m.maxError, unit: '' });
          if (!serverByN.has(`${d}/${drop}`)) serverByN.set(`${d}/${drop}`, []);
          serverByN.get(`${d}/${drop}`)!.push([n, m.serverMs]);
        }
      }
    }
    // Growth of the server's CPU with n: time / (n log2 n), normalised to n = 10, against n² normalised the
    // same way. Flat means n log n growth; quadratic growth would follow the n² column.
    for (const [key, points] of serverByN) {
      const [d, drop] = key.split('/').map(Number) as [number, number];
      const [n0, t0] = points[0]!;
      for (const [n, t] of points.slice(1)) {
        const nlogn = (n * Math.log2(n)) / (n0 * Math.log2(n0));
        rows.push({
          label: `server CPU growth d=${k(d)}${drop > 0 ? ' with 5% dropped' : ''}: n=${n0} -> ${n} (x${nlogn.toFixed(1)} for n log n, x${((n * n) / (n0 * n0)).toFixed(0)} for n²)`,
          value: t / t0,
          unit: 'x',
        });
      }
    }
    // Flower SecAgg+ (adap/flower at fdef7af, framework/py/flwr/client/mod/secure_aggregation/secaggplus_mod.py and
    // common/secure_aggregation/secaggplus_utils.py): masked parameters are int64 numpy arrays, 8 bytes per parameter.
    rows.push({ label: 'Flower SecAgg+ masked vector, same 1M parameters (int64 per parameter, from its source)', value: 8, unit: 'MB', baseline: { label: 'float32 update', value: 4 }, higherIsBetter: false });
    return rows;
  },
};

