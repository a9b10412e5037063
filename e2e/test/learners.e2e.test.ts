// The user's own training, for real: `flare server`, three `flare client` sites over mTLS and `flare admin`
// from the built CLI; each site runs the learners its own local/components.json defines as external programs.
// - PyTorch: docs/examples/pytorch-digits (scikit-learn's handwritten digits, split non-IID) trained by three
//   PyTorch sites against a centralized PyTorch baseline of the same run, plainly, with a DP-SGD privacy scope
//   and with HE (CKKS) aggregation.
// - Misbehaving learners (NaN, wrong shapes, a hang, a crash): the job fails with the learner's code, the
//   admin's `status` shows it for each site, and the sites stay connected for the next job.
// - BYOC: a job's own signed Python learner (custom/) runs as a subprocess at the sites that consent
//   (site-1, site-2) and is refused at the one that does not (site-3, E_POLICY_BYOC_DISABLED).
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { decodeModel, encodeModel, model, tensor } from '@flare/core';
import { heDecrypt, heKitBuilder, isEncryptedModel, loadHeContextFromKit } from '@flare/filters-he';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { auditOf, flare, freePort, jobEnded, startFlare, stopAll, submitJob, tempDir, until, type AuditLine, type JobRecord } from './support.js';

const EXAMPLE = resolve(import.meta.dirname, '../../docs/examples/pytorch-digits');
const PYTHON_CLIENT = resolve(import.meta.dirname, '../../packages/runtime/python');
const SITES = ['site-1', 'site-2', 'site-3'];
const ROUNDS = 20;
const ADMIN = 'admin@a.org';

/** A Python that imports `modules` ($FLARE_PYTHON, python3, Debian's /usr/bin/python3), or why there is none. */
function python(modules: readonly string[]): { readonly python?: string; readonly reason: string } {
  const tried: string[] = [];
  for (const c of new Set([process.env['FLARE_PYTHON'], 'python3', '/usr/bin/python3'].filter((c): c is string => c !== undefined && c !== ''))) {
    const r = spawnSync(c, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) return { python: c, reason: '' };
    tried.push(`${c}: ${r.error?.message ?? r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`}`);
  }
  return { reason: `no Python with ${modules.join(', ')} (apt-get install -y ${modules.map((m) => (m === 'sklearn' ? 'python3-sklearn' : `python3-${m}`)).join(' ')}); tried ${tried.join('; ')}` };
}
const torchPy = python(['numpy', 'torch', 'sklearn']);
const numpyPy = python(['numpy']);

// A learner that misbehaves as the job's args say: the refusals of the external learner protocol, end to end.
const MISBEHAVING = `import os, sys, time
import numpy as np
import flare_ts as flare
flare.init()
mode = flare.get_job_args().get("mode")
while flare.is_running():
    params = flare.receive()
    if flare.is_evaluate():
        flare.send(metrics={"accuracy": 0.5})
        continue
    if mode == "nan":
        flare.send({k: np.full_like(v, np.nan) for k, v in params.items()}, steps=1, kind="diff")
    elif mode == "shape":
        flare.send({k: np.zeros(v.size + 1, dtype=v.dtype) for k, v in params.items()}, steps=1, kind="diff")
    elif mode == "hang":
        time.sleep(3600)
    elif mode == "die":
        print("the data loader ran out of memory", file=sys.stderr, flush=True)
        os._exit(3)
    else:
        flare.send({k: np.zeros_like(v) for k, v in params.items()}, steps=1, kind="diff")
`;

let root: string;
let serverWs: string;
const kits = new Map<string, string>();
const ended = (id: string, ms: number): Promise<JobRecord> => jobEnded(serverWs, id, ms, 250);
const siteAudit = (site: string): Promise<AuditLine[]> => auditOf(join(root, `${site}-ws`));
const submit = (dir: string): Promise<string> => submitJob(kits.get(ADMIN)!, dir);

/** Runs a Python script of the example and parses its one JSON line. */
function pyJson(py: string, args: string[]): Promise<{ accuracy: number }> {
  return new Promise((done, fail) => {
    const child = spawn(py, args, { cwd: EXAMPLE, env: { ...process.env, PYTHONPATH: PYTHON_CLIENT, PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 280_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) done(JSON.parse(out.trim().split('\n').pop()!) as { accuracy: number });
      else fail(new Error(`${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

/** The job's final global model, downloaded as a user does (`flare admin download`), decrypted with a site's key when it is encrypted. */
async function finalModel(id: string): Promise<{ file: string; encrypted: boolean }> {
  const dir = join(root, 'downloads');
  await mkdir(dir, { recursive: true });
  const r = await flare(['admin', '--kit', kits.get(ADMIN)!, 'download', id, '-o', dir], 120_000);
  expect(r.code, r.stderr).toBe(0);
  const downloaded = r.stdout.trim();
  let m = decodeModel(new Uint8Array(await readFile(downloaded)));
  const encrypted = isEncryptedModel(m);
  if (encrypted) {
    const ctx = await loadHeContextFromKit(kits.get('site-1')!, 'client');
    try {
      m = await heDecrypt({ context: ctx, requireEncrypted: true }).apply(m, { site: 'site-1', job: id, round: ROUNDS });
    } finally {
      ctx.dispose();
    }
  }
  const file = join(root, `${id}-final.safetensors`);
  await writeFile(file, encodeModel(m));
  return { file, encrypted };
}

/** The example's job folder (make_job.py), with the job's scope and learner args. */
async function digitsJob(name: string, over: { scope?: string; args?: { [k: string]: unknown } }): Promise<string> {
  const dir = join(root, 'jobs', name);
  const made = spawnSync(torchPy.python!, [join(EXAMPLE, 'make_job.py'), dir, String(ROUNDS)], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: PYTHON_CLIENT, PYTHONDONTWRITEBYTECODE: '1' }, timeout: 120_000 });
  expect(made.status, made.stderr).toBe(0);
  const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as { name: string; learner: { args: object }; [k: string]: unknown };
  meta.name = name;
  meta['round_timeout_s'] = 600;
  if (over.scope !== undefined) meta['scope'] = over.scope;
  meta.learner.args = { ...meta.learner.args, ...over.args };
  await writeFile(join(dir, 'meta.json'), JSON.stringify(meta, null, 2));
  return dir;
}

const needs = (ctx: TestContext, p: { readonly python?: string; readonly reason: string }): string => p.python ?? ctx.skip(p.reason);

beforeAll(async () => {
  root = await tempDir('flare-learners-e2e-');
  serverWs = join(root, 'server-ws');
  const port = await freePort();
  const yaml = testProjectYaml({
    name: 'learners_e2e',
    org: 'org_a',
    port,
    sites: SITES.map((s, i) => [s, `hospital_${i + 1}`] as const),
    admins: [[ADMIN, 'org_a', 'project_admin']],
    fields: { builders: [{ path: 'nvflare.lighter.impl.he.HEBuilder', args: { poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40, 60], scale_bits: 40 } }] },
  });
  const r = await provision(parseProject(yaml), { workspace: root, builders: [heKitBuilder()] });
  for (const k of r.kits) kits.set(k.name, k.dir);
  await writeFile(join(root, 'misbehaving.py'), MISBEHAVING);
  for (const [i, s] of SITES.entries()) {
    await mkdir(join(root, `${s}-ws`), { recursive: true });
    // The site's own learners (site-1 and site-2 consent to BYOC, site-3 does not): the example's training script with this site's share, and a misbehaving program.
    const learners: { [name: string]: object } = {
      misbehaving: { type: 'external', command: [numpyPy.python ?? 'python3', join(root, 'misbehaving.py')], train_timeout_s: 8, max_restarts: 0 },
      // The job's own code (its custom/ folder), run by the site's Python when the site consents to BYOC.
      custom: { type: 'byoc', python: [numpyPy.python ?? 'python3'], train_timeout_s: 120 },
    };
    if (torchPy.python !== undefined) {
      learners['pytorch-digits'] = {
        type: 'external',
        command: [torchPy.python, join(EXAMPLE, 'train_digits.py'), '--site', String(i), '--sites', String(SITES.length)],
        env: { OMP_NUM_THREADS: '1' },
        start_timeout_s: 300,
        train_timeout_s: 600,
      };
    }
    await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['dp-sgd', 'he-encrypt', 'he-decrypt'], byoc: i < 2, learners }));
    // Scopes: `public` adds nothing; `dp` charges DP-SGD to the site's budget; `he` encrypts what leaves, decrypts what comes in.
    const scopes = [
      { name: 'public', task_result_filters: [], task_data_filters: [] },
      { name: 'dp', task_result_filters: [{ name: 'dp-sgd', args: { budget: { maxEpsilon: 50, delta: 1e-5 }, minNoiseMultiplier: 0.8 } }], task_data_filters: [] },
      { name: 'he', task_result_filters: [{ name: 'he-encrypt', args: {} }], task_data_filters: [{ name: 'he-decrypt', args: {} }] },
    ];
    await writeFile(join(kits.get(s)!, 'local', 'privacy.json'), JSON.stringify({ format_version: '1.0', scopes, default_scope: 'public' }));
  }
  await startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', serverWs], { ready: /listening on port/ });
  await Promise.all(SITES.map((s) => startFlare(['client', '--kit', kits.get(s)!, '--workspace', join(root, `${s}-ws`)])));
  // Every job starts with every site: wait until the three have registered.
  await until(async () => {
    const r = await flare(['admin', '--kit', kits.get(ADMIN)!, 'sites'], 60_000);
    return r.stdout.split('\n').filter((l) => / connected/.test(l)).length === SITES.length ? true : undefined;
  }, 180_000, 'three connected sites');
});

afterAll(stopAll);

describe('three PyTorch sites over mTLS (docs/examples/pytorch-digits)', () => {
  let centralized: Promise<{ accuracy: number }> | undefined;
  const baseline = (py: string) => (centralized ??= pyJson(py, ['centralized.py', '--epochs', String(ROUNDS)]));

  async function federate(name: string, over: { scope?: string; args?: { [k: string]: unknown } }): Promise<{ id: string; accuracy: number; encrypted: boolean }> {
    const id = await submit(await digitsJob(name, over));
    const rec = await ended(id, 290_000);
    expect(rec.status, JSON.stringify(rec.error ?? rec.refused)).toBe('FINISHED');
    expect(rec.history).toHaveLength(ROUNDS);
    expect(rec.history.at(-1)!.contributors.sort()).toEqual(SITES);
    const { file, encrypted } = await finalModel(id);
    const { accuracy } = await pyJson(torchPy.python!, ['evaluate.py', file]);
    return { id, accuracy, encrypted };
  }

  it('reach the centralized PyTorch baseline within 3 points', async (t) => {
    const py = needs(t, torchPy);
    const [central, fed] = await Promise.all([baseline(py), federate('digits', {})]);
    process.stdout.write(`pytorch digits: federated ${(fed.accuracy * 100).toFixed(1)}% (3 sites, ${ROUNDS} rounds, non-IID) vs centralized ${(central.accuracy * 100).toFixed(1)}%\n`);
    expect(fed.accuracy).toBeGreaterThan(central.accuracy - 0.03);
    expect(fed.encrypted).toBe(false);
  });

  it("with a DP-SGD privacy scope: the sites' accountants charge epsilon, printed beside the accuracy", async (t) => {
    const py = needs(t, torchPy);
    const dp = { noise_multiplier: 1.0, clip_norm: 1.0, sampling_rate: 0.2 };
    const [central, fed] = await Promise.all([baseline(py), federate('digits-dp', { scope: 'dp', args: { dp_sgd: dp, lr: 2.0 } })]);
    const epsilons = await Promise.all(
      SITES.map(async (s) => {
        const charged = (await siteAudit(s)).filter((e) => e.action === 'dp_sgd_accounted' && e.job === fed.id);
        expect(charged).toHaveLength(ROUNDS);
        return charged.at(-1)!.data!['epsilon'] as number;
      }),
    );
    process.stdout.write(`pytorch digits, DP-SGD (z ${dp.noise_multiplier}, q ${dp.sampling_rate}, C ${dp.clip_norm}): federated ${(fed.accuracy * 100).toFixed(1)}% vs centralized (no DP) ${(central.accuracy * 100).toFixed(1)}%; epsilon per site ${epsilons.map((e) => e.toFixed(2)).join(', ')} (delta 1e-5)\n`);
    for (const e of epsilons) expect(e).toBeGreaterThan(0);
    // DP-SGD on ~500 examples a site costs accuracy (measured here: about 88-90% against 98%); far above chance (10%).
    expect(fed.accuracy).toBeGreaterThan(0.75);
  });

  it('with HE: the server aggregates CKKS ciphertexts and the decrypted model reaches the baseline within 3 points', async (t) => {
    const py = needs(t, torchPy);
    const [central, fed] = await Promise.all([baseline(py), federate('digits-he', { scope: 'he' })]);
    process.stdout.write(`pytorch digits, HE: federated ${(fed.accuracy * 100).toFixed(1)}% vs centralized ${(central.accuracy * 100).toFixed(1)}%\n`);
    expect(fed.accuracy).toBeGreaterThan(central.accuracy - 0.03);
    // The server's checkpoint is a ciphertext; only a site's key made the model evaluate.py measured.
    expect(fed.encrypted).toBe(true);
  });
});

describe("a misbehaving learner is refused with its code, which the admin's status shows for each site", () => {
  const cases: Array<[string, string]> = [
    ['nan', 'E_LEARNER_NOT_FINITE'],
    ['shape', 'E_LEARNER_RESULT_SHAPE'],
    ['hang', 'E_LEARNER_TIMEOUT'],
    ['die', 'E_LEARNER_EXITED'],
  ];
  for (const [mode, code] of cases) {
    it(`${mode}: ${code}`, async (t) => {
      needs(t, numpyPy);
      const dir = join(root, 'jobs', `misbehaving-${mode}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'meta.json'), JSON.stringify({ name: `misbehaving-${mode}`, rounds: 2, min_clients: 3, retries: 0, round_timeout_s: 120, deploy: ['@ALL'], learner: { name: 'misbehaving', args: { mode } } }));
      await writeFile(join(dir, 'model.safetensors'), encodeModel(model({ w: tensor(new Float32Array(4), [4]) }, 'full')));
      const id = await submit(dir);
      const rec = await ended(id, 200_000);
      expect(rec.status).toBe('FAILED');
      expect(rec.error?.code).toBe(code);
      const status = await flare(['admin', '--kit', kits.get(ADMIN)!, 'status', id], 120_000);
      expect(status.code, status.stderr).toBe(0);
      // The admin sees the code and, for each site, the code it failed with.
      const why = /^why: (.*)$/m.exec(status.stdout)?.[1] ?? '';
      expect(why.startsWith(`${code}: `), status.stdout).toBe(true);
      for (const s of SITES) expect(why).toContain(`${s}: ${code}`);
      // The sites are still there for the next job.
      const sites = await flare(['admin', '--kit', kits.get(ADMIN)!, 'sites'], 60_000);
      expect(sites.stdout.split('\n').filter((l) => / connected/.test(l))).toHaveLength(SITES.length);
    });
  }
});

// The job's own learner: numpy and the flare_ts client only; it moves every weight by +1 and reports a metric.
const BYOC_LEARNER = `import numpy as np
import flare_ts as flare
flare.init()
while flare.is_running():
    params = flare.receive()
    if flare.is_evaluate():
        flare.send(metrics={"accuracy": 0.42})
        continue
    flare.send({k: np.ones_like(v) for k, v in params.items()}, steps=3, kind="diff", metrics={"loss": 1.0})
`;

describe('BYOC: the job brings its own learner', () => {
  it("runs the signed custom/ Python learner as a subprocess at the consenting sites; the other refuses (E_POLICY_BYOC_DISABLED)", async (t) => {
    needs(t, numpyPy);
    const dir = join(root, 'jobs', 'byoc');
    await mkdir(join(dir, 'custom'), { recursive: true });
    await writeFile(join(dir, 'custom', 'learner.py'), BYOC_LEARNER);
    await writeFile(join(dir, 'meta.json'), JSON.stringify({ name: 'byoc', rounds: 2, min_clients: 2, round_timeout_s: 120, deploy: ['@ALL'], learner: { name: 'custom', args: { entry: 'learner.py' } } }));
    await writeFile(join(dir, 'model.safetensors'), encodeModel(model({ w: tensor(new Float32Array(4), [4]) }, 'full')));
    const id = await submit(dir);
    const rec = await ended(id, 200_000);
    expect(rec.status, JSON.stringify(rec.error ?? rec.refused)).toBe('FINISHED');
    expect(rec.sites.sort()).toEqual(['site-1', 'site-2']);
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_BYOC_DISABLED/);
    expect(rec.history.map((h) => h.contributors.sort())).toEqual([['site-1', 'site-2'], ['site-1', 'site-2']]);
    for (const s of ['site-1', 'site-2']) expect((await siteAudit(s)).some((e) => e.action === 'byoc_verified' && e.job === id)).toBe(true);
    expect((await siteAudit('site-3')).find((e) => e.action === 'deploy_refused' && e.job === id)?.data?.['code']).toBe('E_POLICY_BYOC_DISABLED');
    // The job's code trained: every weight of the global model moved up from 0.
    const { file } = await finalModel(id);
    const w = decodeModel(new Uint8Array(await readFile(file))).params.get('w')!;
    expect(Array.from(w.data as Float32Array).every((v) => v > 0)).toBe(true);
  });
});
