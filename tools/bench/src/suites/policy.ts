import { createHash, generateKeyPairSync, randomFillSync, sign, verify, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authorize, parseAuthorizationPolicy, signJob, verifyJob, type AuthorizationRequest } from '@flare/policy';
import { time, type Row, type Suite } from '../harness.js';

// authorize() on FLARE's default authorization.json over a realistic mix of 4 roles x 16 rights x 8
// user/submitter situations (the same matrix as FLARE's derived conformance cases), against a hand-written
// decision table for the same policy in the same run (a switch on role and right with pre-folded strings, no
// policy data: the cheapest check this policy could compile to). Also parsing the policy file, against
// JSON.parse of the same text.
const DEFAULT_POLICY = {
  format_version: '1.0',
  permissions: {
    project_admin: 'any',
    org_admin: { submit_job: 'none', clone_job: 'none', manage_job: 'o:submitter', download_job: 'o:submitter', view: 'any', operate: 'o:site', shell_commands: 'o:site', byoc: 'none' },
    lead: { submit_job: 'any', clone_job: 'n:submitter', manage_job: 'n:submitter', download_job: 'n:submitter', view: 'any', operate: 'o:site', shell_commands: 'o:site', byoc: 'any' },
    member: { view: 'any' },
  },
};
const ROLES = ['project_admin', 'org_admin', 'lead', 'member'];
const RIGHTS = ['submit_job', 'clone_job', 'byoc', 'abort_job', 'delete_job', 'download_job', 'list_jobs', 'check_status', 'sys_info', 'shutdown', 'ls', 'cat', 'grep', 'unknown_right', 'Submit_Job', 'configure_job_log'];
const PEOPLE = [
  { name: 'alice@a.org', org: 'org_a' },
  { name: 'dave@b.org', org: 'org_b' },
];
const SUBMITTERS = [null, { name: 'alice@a.org', org: 'org_a', role: 'lead' }, { name: 'bob@a.org', org: 'org_a', role: 'lead' }, { name: 'carol@b.org', org: 'org_b', role: 'lead' }];

const CATEGORY: Record<string, string> = {
  abort_job: 'manage_job', delete_job: 'manage_job', configure_job_log: 'manage_job', download_job: 'download_job', list_jobs: 'view', check_status: 'view',
  sys_info: 'operate', shutdown: 'operate', ls: 'shell_commands', cat: 'shell_commands', grep: 'shell_commands',
};
/** The default policy hand-compiled: what a perfect policy engine for this one file would do. */
function handWritten(r: AuthorizationRequest): boolean {
  const right = r.right.toLowerCase();
  const cat = CATEGORY[right] ?? right;
  const sameOrgAsSubmitter = r.submitter != null && r.user.org === r.submitter.org;
  const isSubmitter = r.submitter != null && r.user.name === r.submitter.name;
  switch (r.user.role) {
    case 'project_admin':
      return true;
    case 'org_admin':
      return cat === 'view' || ((cat === 'manage_job' || cat === 'download_job') && sameOrgAsSubmitter) || ((cat === 'operate' || cat === 'shell_commands') && r.user.org === r.siteOrg);
    case 'lead':
      return cat === 'submit_job' || cat === 'byoc' || cat === 'view' || ((cat === 'clone_job' || cat === 'manage_job' || cat === 'download_job') && isSubmitter) || ((cat === 'operate' || cat === 'shell_commands') && r.user.org === r.siteOrg);
    case 'member':
      return cat === 'view';
    default:
      return false;
  }
}

export const suite: Suite = {
  name: 'policy',
  description: "authorize() on FLARE's default policy (512 mixed requests) vs a hand-written decision table; parsing vs JSON.parse; verifyJob vs hashing the job's bytes",
  async run(): Promise<Row[]> {
    const policy = parseAuthorizationPolicy(DEFAULT_POLICY);
    const requests: AuthorizationRequest[] = [];
    for (const role of ROLES) for (const right of RIGHTS) for (const p of PEOPLE) for (const submitter of SUBMITTERS) requests.push({ right, user: { ...p, role }, submitter, siteOrg: 'org_a' });
    // The two must agree on every request, or the comparison means nothing.
    for (const r of requests) if (authorize(policy, r).allowed !== handWritten(r)) throw new Error(`bench baseline disagrees on ${JSON.stringify(r)}`);
    const n = requests.length;
    let sink = 0;
    const ours = await time(() => {
      for (let i = 0; i < n; i++) if (authorize(policy, requests[i]!).allowed) sink++;
    }, { minRuns: 50, minMs: 1500, maxRuns: 100_000 });
    const base = await time(() => {
      for (let i = 0; i < n; i++) if (handWritten(requests[i]!)) sink++;
    }, { minRuns: 50, minMs: 1500, maxRuns: 100_000 });
    const text = JSON.stringify(DEFAULT_POLICY);
    const parse = await time(() => parseAuthorizationPolicy(text), { minRuns: 200, minMs: 1000, maxRuns: 100_000 });
    const jsonParse = await time(() => JSON.parse(text), { minRuns: 200, minMs: 1000, maxRuns: 100_000 });
    if (sink < 0) console.log(sink);
    const perSec = (ms: number, count: number) => count / (ms / 1000);

    // Signed jobs: verifyJob on a job of meta.json, a 64 MiB model and 20 custom/ files, against its floor in the
    // same run: SHA-256 of the same bytes plus one ECDSA P-256 verification (what any signature over the files
    // costs). The certificate check is the caller's (pki's verifyCertificate); here a fixed key stands in.
    const dir = mkdtempSync(join(tmpdir(), 'flare-bench-policy-'));
    let jobRows: Row[] = [];
    try {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      writeFileSync(join(dir, 'k.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
      execFileSync('/usr/bin/openssl', ['req', '-x509', '-new', '-key', join(dir, 'k.pem'), '-subj', '/CN=lead@a.org/O=org_a/OU=admin/unstructuredName=lead', '-days', '2', '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
      const certPem = readFileSync(join(dir, 'c.pem'), 'utf8');
      const publicKey = new X509Certificate(certPem).publicKey;
      const files = new Map<string, Uint8Array>([['meta.json', Buffer.from('{"name":"bench","min_clients":3}')], ['app/model.safetensors', randomFillSync(new Uint8Array(64 * 2 ** 20))]]);
      for (let i = 0; i < 20; i++) files.set(`app/custom/module_${i}.py`, randomFillSync(new Uint8Array(8192)));
      const jobId = '0b8e6c1e-0000-4000-8000-000000000000';
      const signature = signJob({ certPem, privateKey }, { projectName: 'bench', jobId, files });
      const check = () => ({ name: 'lead@a.org', org: 'org_a', type: 'admin', role: 'lead', publicKey });
      const bytes = [...files.values()].reduce((n, b) => n + b.length, 0);
      const verifyMs = await time(() => verifyJob(signature, files, { projectName: 'bench', jobId, verifyCertificate: check }), { minRuns: 10 });
      const digest = Buffer.from('x');
      const sig = sign('sha256', digest, privateKey);
      const floor = await time(() => {
        for (const b of files.values()) createHash('sha256').update(b).digest();
        verify('sha256', digest, publicKey, sig);
      }, { minRuns: 10 });
      const signMs = await time(() => signJob({ certPem, privateKey }, { projectName: 'bench', jobId, files }), { minRuns: 10 });
      const mib = bytes / 2 ** 20;
      jobRows = [
        { label: `verifyJob, ${files.size} files, ${mib.toFixed(1)} MiB (hashes, manifest, ECDSA P-256)`, value: mib / (verifyMs.median / 1000), unit: 'MiB/s', baseline: { label: 'SHA-256 of the same bytes + one ECDSA verify', value: mib / (floor.median / 1000) }, higherIsBetter: true },
        { label: '  signJob of the same job (admin side)', value: signMs.median, unit: 'ms' },
      ];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return [
      {
        label: `authorize(), ${n} mixed requests`,
        value: perSec(ours.median, n),
        unit: 'calls/s',
        baseline: { label: 'hand-written decision table', value: perSec(base.median, n) },
        higherIsBetter: true,
        aim: '> 100k calls/s',
      },
      {
        label: `parseAuthorizationPolicy (default policy, ${text.length} bytes)`,
        value: perSec(parse.median, 1),
        unit: 'parses/s',
        baseline: { label: 'JSON.parse of the same text', value: perSec(jsonParse.median, 1) },
        higherIsBetter: true,
      },
      ...jobRows,
    ];
  },
};
