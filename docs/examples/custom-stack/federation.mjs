#!/usr/bin/env node
// A secure federation composed from the FLARE-TS packages, without the `flare` CLI: what an integrator writes
// to embed FL in their own service. Every participant here uses real kits, mTLS sockets on loopback,
// @flare/auth sessions, its own policy files and its own audit log; they share one process only to keep the
// example short (move each block into its own process or machine unchanged).
//
//   node docs/examples/custom-stack/federation.mjs [--workspace DIR] [--rounds N] [--he] [--attest]
//
// --he      the sites encrypt their updates (CKKS, @flare/filters-he); the server aggregates ciphertexts with a
//           context that holds no secret key, and the global model stays encrypted at the server.
// --attest  the server and the sites attest to each other (@flare/cc-attest) at login, before the deploy and
//           every 2 s, with synthetic SEV-SNP evidence from a test authority made here (real deployments use
//           ConfigfsTsmAttester and the pinned vendor roots).
//
// Prints one JSON line: the job's status, per-round accuracy, and each participant's audit verification.
import { mkdtemp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FedAvgAggregator } from '@flare/aggregator';
import { AuditLog, verifyAuditLog } from '@flare/audit';
import { attestationPolicyKitBuilder, loadAttestationPolicy } from '@flare/cc-attest';
import { TestAttester, createTestAuthority } from '@flare/cc-attest/testing';
import { encodeModel } from '@flare/core';
import { dpFilterFactories } from '@flare/filters-dp';
import { heAggregationScheme, heDecryptFactory, heEncryptFactory, heKitBuilder, loadHeContextFromKit } from '@flare/filters-he';
import { loadKit, parseProject, provision } from '@flare/pki';
import { loadSitePolicies, parseAuthorizationPolicy } from '@flare/policy';
import { AdminClient, ClientEngine, ServerEngine, authorizerFromPolicy, connectToServer, createLogger, jobTrustFromKit, linkToServer, listenForParticipants, sitePolicyFromFiles } from '@flare/runtime';
import { TfjsLearner, denseNetwork, readWeights, selectBackend } from '@flare/tfjs';
import { z } from 'zod';

const { values } = parseArgs({ options: { workspace: { type: 'string' }, rounds: { type: 'string', default: '3' }, he: { type: 'boolean', default: false }, attest: { type: 'boolean', default: false } } });
const ws = values.workspace ?? (await mkdtemp(join(tmpdir(), 'custom-stack-')));
const rounds = Number(values.rounds);
const logger = createLogger({ name: 'custom-stack', console: false });

// 1. Provision: one root CA, signed kits (FLARE's layout). In production each kit goes to its own machine.
//    The HE key step puts the CKKS secret key into client kits only; the CC builder puts each participant's
//    attestation policy (what it requires of its peers) into its kit, signed with the rest.
const project = parseProject(`api_version: 3
name: custom_stack
participants:
  - name: localhost
    type: server
    org: lab
  - name: clinic-a
    type: client
    org: clinic_a
  - name: clinic-b
    type: client
    org: clinic_b
  - name: ops@lab.org
    type: admin
    org: lab
    role: project_admin
${values.attest ? 'builders:\n  - path: nvflare.lighter.cc_provision.impl.cc.CCBuilder\n    args: { policy: { version: 1, require: [snp], snp: { vmpls: [0] } } }\n' : ''}`);
const builders = [...(values.he ? [heKitBuilder()] : []), ...(values.attest ? [attestationPolicyKitBuilder()] : [])];
const prov = await provision(project, { workspace: ws, builders });
const kitDir = (name) => prov.kits.find((k) => k.name === name).dir;

// Attestation: each participant's evidence comes from its attester; here a test authority stands in for AMD.
const authority = values.attest ? createTestAuthority() : undefined;
const attestationOf = async (kit) =>
  authority === undefined ? {} : { attestation: { policy: await loadAttestationPolicy(kit.dir), attesters: [new TestAttester(authority, { type: 'snp' })], trust: authority.trust, intervalMs: 2000 } };

// 2. The server: its kit (verified on load), an mTLS endpoint on a free loopback port, its audit log, its own
//    authorization.json for admin commands, and the aggregator of our choice.
const serverKit = await loadKit(kitDir('localhost'));
const serverAudit = await AuditLog.open(join(ws, 'server-audit.jsonl'), { site: 'localhost', signer: serverKit.privateKey });
const listener = await listenForParticipants({ kit: serverKit, port: 0 });
const serverAuthz = parseAuthorizationPolicy(await readFile(join(serverKit.dir, 'local', 'authorization.json.default')));
// HE: the server's context from its kit has no secret key (loadHeContextFromKit and the scheme refuse one that has);
// the runtime routes encrypted rounds to the scheme, which aggregates and advances the model without decrypting.
const he = values.he ? await loadHeContextFromKit(serverKit.dir, 'server') : undefined;
const server = await ServerEngine.start({
  name: 'localhost',
  org: 'lab',
  workspace: join(ws, 'server'),
  listener,
  authorize: authorizerFromPolicy(() => serverAuthz, 'lab'),
  aggregator: () => new FedAvgAggregator({ kind: 'diff' }),
  ...(he === undefined ? {} : { schemes: [heAggregationScheme(he)] }),
  ...(await attestationOf(serverKit)),
  audit: serverAudit.append,
  logger,
});
const targets = [{ host: '127.0.0.1', port: listener.port }];

// 3. Two sites, each with its own data (synthetic here: two Gaussian blobs, differently balanced), its own
//    privacy policy (a `private` scope that demands Gaussian DP on every update) and allow-list.
await selectBackend({ logger });
function blobs(n, positiveShare, seed) {
  let s = seed;
  const rand = () => ((s = (s * 48271) % 2147483647) / 2147483647);
  const x = new Float32Array(n * 8);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const label = rand() < positiveShare ? 1 : 0;
    y[i] = label;
    for (let j = 0; j < 8; j++) x[i * 8 + j] = (label ? 0.6 : -0.6) + (rand() - 0.5) * 1.5;
  }
  return { x, y, features: 8 };
}
const net = () => denseNetwork(8, [{ name: 'out', units: 1, activation: 'sigmoid' }]);
const sites = [];
const siteAudits = [];
for (const [i, name] of ['clinic-a', 'clinic-b'].entries()) {
  const kit = await loadKit(kitDir(name));
  // With HE the site decrypts what comes in and encrypts what leaves, after DP (noise is added in plaintext).
  await writeFile(join(kit.dir, 'local', 'privacy.json'), JSON.stringify({
    scopes: [{
      name: 'private',
      task_result_filters: [{ name: 'gaussian-dp', args: { clipNorm: 1, noiseMultiplier: 0.3, budget: { maxEpsilon: 100, delta: 1e-5 } } }, ...(values.he ? [{ name: 'he-encrypt', args: {} }] : [])],
      task_data_filters: values.he ? [{ name: 'he-decrypt', args: {} }] : [],
    }],
    default_scope: 'private',
  }));
  // The site's own component allow-list: what a job may name here (local/components.json overrides the kit's default).
  await writeFile(join(kit.dir, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['blob-learner'], byoc: false }));
  const siteWs = join(ws, `${name}-state`);
  await mkdir(siteWs, { recursive: true });
  const audit = await AuditLog.open(join(ws, `${name}-audit.jsonl`), { site: name, signer: kit.privateKey });
  siteAudits.push([name, audit, kit]);
  const filters = new Map(dpFilterFactories.map((f) => [f.name, f]));
  if (values.he) {
    const source = { kitDir: kit.dir }; // the client context (secret key) is loaded from the kit on first use
    filters.set('he-encrypt', heEncryptFactory(source));
    filters.set('he-decrypt', heDecryptFactory(source));
  }
  const policies = await loadSitePolicies({ localDir: join(kit.dir, 'local'), registry: filters, defaultComponents: { allow: new Set(['blob-learner']), byoc: false }, audit: audit.append });
  const data = blobs(400, i === 0 ? 0.2 : 0.8, 7 + i);
  const test = blobs(200, 0.5, 99 + i);
  sites.push(
    await ClientEngine.start({
      site: { name, org: kit.participant.org },
      link: linkToServer({ kit, targets }), // reconnects with backoff for as long as the site runs
      // Jobs and aborts are obeyed only when signed by an admin of this project (chain to the kit's root CA).
      policy: sitePolicyFromFiles(policies, { jobTrust: jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem }) }),
      learners: new Map([['blob-learner', { name: 'blob-learner', args: z.strictObject({}), create: () => new TfjsLearner({ build: net, train: data, validation: test, optimizer: { name: 'adam', learningRate: 0.05 } }) }]]),
      filters,
      workspace: siteWs,
      audit: audit.append,
      logger,
      ...(await attestationOf(kit)),
    }),
  );
}

// 4. An admin submits the job over its own authenticated channel and follows it.
const adminKit = await loadKit(kitDir('ops@lab.org'));
// The admin signs every job and abort with its kit key; sites check the signature, not the server's word.
const admin = new AdminClient(await connectToServer({ kit: adminKit, targets }), { signer: adminKit });
const meta = { name: 'blobs', rounds, min_clients: 2, round_timeout_s: 60, deploy: ['clinic-a', 'clinic-b'], learner: { name: 'blob-learner', args: {} }, scope: 'private' };
const id = await admin.submit({ meta: new TextEncoder().encode(JSON.stringify(meta)), model: encodeModel(readWeights(net())), files: new Map() });
const record = await server.waitForJob(id, 120_000);
admin.close();

// 5. Shut down and prove the audit trail is whole and signed by each participant's own key.
for (const s of sites) await s.close();
await server.close();
he?.dispose();
const audits = [];
for (const [name, log, kit] of siteAudits) {
  await log.close();
  audits.push({ name, ok: (await verifyAuditLog(join(ws, `${name}-audit.jsonl`), { certificate: kit.certPem })).ok });
}
await serverAudit.close();
audits.push({ name: 'localhost', ok: (await verifyAuditLog(join(ws, 'server-audit.jsonl'), { certificate: serverKit.certPem })).ok });
await logger.close();
const attested = (await readFile(join(ws, 'server-audit.jsonl'), 'utf8')).split('\n').filter((l) => l.includes('"action":"attestation_verified"')).length;
console.log(JSON.stringify({ job: id, status: record.status, accuracy: record.history.map((h) => h.metrics.accuracy ?? null), encrypted: record.history.map((h) => h.encrypted === true), attested, epsilon: record.history.at(-1)?.site_metrics ?? {}, audits }));
