// flare attest verify: verify SEV-SNP, TDX or NVIDIA GPU attestation evidence offline against the pinned
// vendor roots, optionally against a site's attestation policy.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { AttestError, FlareError } from '@flare/core';
import {
  parseAttestationPolicy,
  parseGpuEvidenceBundle,
  verifyEvidence,
  type AttestationPolicy,
  type EvidenceType,
  type TdxCollateral,
  type VerificationResult,
} from '@flare/cc-attest';
import { EXIT, runCommand, stdio, usageError, type Io } from '../run.js';

interface VerifyOptions {
  type: EvidenceType;
  evidence: string;
  cert: string[];
  chain?: string;
  collateral?: string;
  rim: string[];
  policy?: string;
  nonce?: Uint8Array;
  at?: Date;
  json?: boolean;
}

/** A file the user named could not be read: a usage problem (exit 2), not a verification result. */
class UsageProblem extends Error {}

async function read(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch {
    throw new UsageProblem(`cannot read ${path}`);
  }
}

/** Evidence files come as raw bytes or as hex text (the vendors' samples are hex). */
function evidenceBytes(data: Uint8Array): Uint8Array {
  const t = Buffer.from(data).toString('latin1').trim();
  return t.length > 0 && t.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(t) ? new Uint8Array(Buffer.from(t, 'hex')) : data;
}

/**
 * Reads PCS collateral and CRLs from a folder by file name: *tcbinfo*.json, *qeidentity*.json or
 * *enclaveidentity*.json, *issuerchain*.pem (TCB signing chain), *pck*crl*, *root*crl*, and for SNP any
 * *crl* (the ARK-signed CRL). Two candidates for one role are refused rather than guessed between.
 */
async function loadCollateral(dir: string): Promise<{ tdx: TdxCollateral; crl: Uint8Array | undefined }> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    throw new UsageProblem(`cannot read the collateral folder ${dir}`);
  }
  const norm = (n: string) => n.toLowerCase().replace(/[^a-z0-9.]/g, '');
  const pick = async (what: string, test: (n: string) => boolean): Promise<Uint8Array | undefined> => {
    const found = names.filter((n) => test(norm(n)));
    if (found.length > 1) throw new UsageProblem(`the collateral folder has several ${what} files (${found.join(', ')}): keep one`);
    return found[0] === undefined ? undefined : read(join(dir, found[0]));
  };
  const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('utf8'));
  const tcbInfo = text(await pick('TCB info', (n) => n.includes('tcbinfo') && n.endsWith('.json')));
  const qeIdentity = text(await pick('QE identity', (n) => (n.includes('qeidentity') || n.includes('enclaveidentity')) && n.endsWith('.json')));
  const chain = text(await pick('TCB issuer chain', (n) => (n.includes('tcbinfoissuerchain') || n.includes('tcbsigning')) && n.endsWith('.pem')));
  const pckCrl = await pick('PCK CRL', (n) => n.includes('pck') && n.includes('crl') && !n.endsWith('.pem'));
  const rootCrl = await pick('root CRL', (n) => n.includes('root') && n.includes('crl') && !n.endsWith('.pem'));
  const arkCrl = await pick('ARK CRL', (n) => n.includes('crl') && !n.includes('pck') && !n.includes('root') && !n.endsWith('.pem'));
  const tdx: TdxCollateral = {
    ...(tcbInfo !== undefined ? { tcbInfo } : {}),
    ...(qeIdentity !== undefined ? { qeIdentity } : {}),
    ...(chain !== undefined ? { tcbInfoIssuerChain: chain } : {}),
    ...(pckCrl !== undefined ? { pckCrl } : {}),
    ...(rootCrl !== undefined ? { rootCrl } : {}),
  };
  return { tdx, crl: arkCrl };
}

function parseNonce(value: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2}){1,64}$/.test(value)) throw new InvalidArgumentError('expected 1 to 64 bytes as hex');
  return new Uint8Array(Buffer.from(value, 'hex'));
}

function parseAt(value: string): Date {
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(d.getTime())) throw new InvalidArgumentError('expected an ISO 8601 time, e.g. 2025-10-01T00:00:00Z');
  return d;
}

const collect = (value: string, previous: string[]) => [...previous, value];

function printResult(io: Io, r: VerificationResult, label: string): void {
  io.out(`${label}: ${r.ok ? 'verified' : 'NOT verified'} (${r.type}, at ${r.at}, trust ${r.trust})`);
  for (const c of r.checks) io.out(`  ${c.status.toUpperCase().padEnd(4)} ${c.id}${c.code ? ` [${c.code}]` : ''}: ${c.detail}`);
}

/** Registers `flare attest ...` on `program`; `io` is where it prints (tests pass their own). */
export function register(program: Command, io: Io = stdio): void {
  const attest = program.command('attest').description('confidential-computing attestation tools');
  attest
    .command('verify')
    .description('verify SEV-SNP, TDX or NVIDIA GPU evidence offline: exit 0 verified (and meets --policy), 1 not, 2 usage error')
    .addOption(new Option('--type <type>', 'evidence type').choices(['snp', 'tdx', 'gpu']).makeOptionMandatory())
    .requiredOption('--evidence <file>', 'SNP report, TDX quote, GPU SPDM evidence (binary or hex), or NVIDIA SDK evidence JSON')
    .option('--cert <file>', 'a certificate (PEM or DER): the VCEK/VLEK for SNP; repeatable', collect, [])
    .option('--chain <file>', 'a PEM chain: ASK and ARK for SNP, the device chain (leaf first) for GPU')
    .option('--collateral <dir>', 'folder with Intel PCS collateral (tcbInfo, qeIdentity, issuer chain, CRLs) or the AMD ARK CRL')
    .option('--rim <file>', 'an NVIDIA driver or VBIOS RIM (XML); repeatable', collect, [])
    .option('--policy <file>', 'an attestation policy (JSON) the evidence must meet')
    .option('--nonce <hex>', 'the nonce expected in REPORT_DATA or the SPDM request', parseNonce)
    .option('--at <iso-time>', 'verification time (default now)', parseAt)
    .option('--json', 'print the parsed fields, the chain and every check as JSON')
    .action(async (opts: VerifyOptions) => {
      let inputs: { evidence: Array<{ bytes: Uint8Array; certificates: Array<Uint8Array | string> }>; policy: AttestationPolicy | undefined; collateral: TdxCollateral | undefined; crl: Uint8Array | undefined; rims: string[] };
      try {
        const raw = await read(opts.evidence);
        const certs: Array<Uint8Array | string> = [...(await Promise.all(opts.cert.map(read))), ...(opts.chain !== undefined ? [await read(opts.chain)] : [])];
        const rims = (await Promise.all(opts.rim.map(read))).map((b) => Buffer.from(b).toString('utf8'));
        const col = opts.collateral !== undefined ? await loadCollateral(opts.collateral) : undefined;
        let policy: AttestationPolicy | undefined;
        if (opts.policy !== undefined) policy = parseAttestationPolicy(Buffer.from(await read(opts.policy)).toString('utf8'));
        const asText = Buffer.from(raw).toString('utf8').trimStart();
        const evidence =
          opts.type === 'gpu' && (asText.startsWith('[') || asText.startsWith('{'))
            ? parseGpuEvidenceBundle(asText).map((e) => ({ bytes: e.evidence, certificates: certs.length > 0 ? certs : [e.certificates] }))
            : [{ bytes: evidenceBytes(raw), certificates: certs }];
        inputs = { evidence, policy, collateral: col?.tdx, crl: col?.crl, rims };
      } catch (e) {
        if (e instanceof UsageProblem) {
          io.err(usageError(e.message, 'flare attest verify').describe());
          process.exitCode = EXIT.usage;
          return;
        }
        if (e instanceof FlareError) {
          io.err(e.describe());
          process.exitCode = e.code === 'E_ATTEST_POLICY' ? EXIT.usage : EXIT.refused;
          return;
        }
        throw e;
      }
      await runCommand(async () => {
        const at = opts.at ?? new Date();
        const results: VerificationResult[] = [];
        for (const e of inputs.evidence) {
          results.push(
            await verifyEvidence({
              type: opts.type,
              evidence: e.bytes,
              certificates: e.certificates,
              at,
              ...(opts.nonce !== undefined ? { nonce: opts.nonce } : {}),
              ...(inputs.policy !== undefined ? { policy: inputs.policy } : {}),
              ...(inputs.collateral !== undefined ? { collateral: inputs.collateral } : {}),
              ...(inputs.crl !== undefined ? { crl: inputs.crl } : {}),
              ...(inputs.rims.length > 0 ? { rims: inputs.rims } : {}),
            }),
          );
        }
        if (opts.json) {
          const doc = results.map((r) => ({ type: r.type, ok: r.ok, at: r.at, trust: r.trust, failure: r.failure ?? null, claims: r.claims, chain: r.chain, checks: r.checks }));
          io.out(JSON.stringify(doc.length === 1 ? doc[0] : doc, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2));
        } else results.forEach((r, i) => printResult(io, r, results.length > 1 ? `evidence ${i}` : 'evidence'));
        const failed = results.findIndex((r) => !r.ok);
        if (failed >= 0) {
          const f = results[failed]!.failure!;
          throw new AttestError(f.code ?? 'E_ATTEST_MALFORMED', `${results.length > 1 ? `evidence ${failed}: ` : ''}check ${f.id} failed: ${f.detail}.`);
        }
        return EXIT.ok;
      }, io);
    });
}
