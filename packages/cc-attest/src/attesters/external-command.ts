import { execFile } from 'node:child_process';
import { AttestError, parseStrictJson } from '@flare/core';
import { parseGpuEvidenceBundle } from '../gpu/verify.js';
import type { EvidenceType } from '../result.js';
import { parseAttestationEvidence, type AttestationEvidence, type Attester } from './attester.js';

/** Options of {@link ExternalCommandAttester}. */
export interface ExternalCommandOptions {
  readonly type: EvidenceType;
  /** The program to run (no shell is involved). */
  readonly command: string;
  /** Its arguments; `{nonce}` is replaced by the nonce in hex. */
  readonly args?: readonly string[];
  /** Default 60 000 ms. */
  readonly timeoutMs?: number;
  /** Largest stdout accepted (default 16 MiB). */
  readonly maxOutputBytes?: number;
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Runs a vendor tool that prints evidence as JSON, for devices without a kernel interface (NVIDIA GPUs:
 * a small script around NVML / the NVIDIA attestation SDK). Accepted output: the NVIDIA SDK evidence array
 * `[{arch, nonce, evidence, certificate}]`, or this package's wire form (one object or an array). Bounded in
 * time and output; the program is run with execFile, never through a shell. The nonce inside the evidence
 * is what the verifier checks, so a tool that ignores it produces evidence that is refused.
 *
 * @example
 * ```ts
 * new ExternalCommandAttester({ type: 'gpu', command: '/opt/flare/gpu-evidence.py', args: ['--nonce', '{nonce}'] })
 * ```
 */
export class ExternalCommandAttester implements Attester {
  readonly name: string;
  readonly #o: ExternalCommandOptions;

  constructor(options: ExternalCommandOptions) {
    if (typeof options.command !== 'string' || options.command.length === 0) throw new TypeError('"command" expected a program path');
    this.#o = options;
    this.name = `external:${options.type}`;
  }

  async collect(nonce: Uint8Array, options: { readonly signal?: AbortSignal } = {}): Promise<AttestationEvidence[]> {
    const o = this.#o;
    const hexNonce = Buffer.from(nonce).toString('hex');
    const args = (o.args ?? []).map((a) => a.split('{nonce}').join(hexNonce));
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        o.command,
        args,
        { timeout: o.timeoutMs ?? 60_000, maxBuffer: o.maxOutputBytes ?? 16 * 2 ** 20, encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...o.env }, ...(options.signal ? { signal: options.signal } : {}) },
        (error, out) => {
          if (error) reject(new AttestError('E_ATTEST_ATTESTER', `attestation command ${JSON.stringify(o.command)} failed${error.killed ? ' (timed out)' : ''}`, { cause: error }));
          else resolve(out);
        },
      );
    });
    let doc: unknown;
    try {
      doc = parseStrictJson(stdout);
    } catch (cause) {
      throw new AttestError('E_ATTEST_ATTESTER', 'the attestation command did not print JSON', { cause });
    }
    const items = Array.isArray(doc) ? doc : [doc];
    if (items.length > 0 && typeof items[0] === 'object' && items[0] !== null && 'arch' in items[0]) {
      return parseGpuEvidenceBundle(stdout).map((e) => ({
        type: 'gpu' as const,
        evidence: e.evidence,
        certificates: [e.certificates],
        ...(e.driverVersion !== undefined || e.vbiosVersion !== undefined
          ? { reported: { ...(e.driverVersion !== undefined ? { driverVersion: e.driverVersion } : {}), ...(e.vbiosVersion !== undefined ? { vbiosVersion: e.vbiosVersion } : {}) } }
          : {}),
      }));
    }
    if (items.length === 0 || items.length > 64) throw new AttestError('E_ATTEST_ATTESTER', 'the attestation command printed no evidence');
    const out = items.map((i) => parseAttestationEvidence(i));
    const wrong = out.find((e) => e.type !== o.type);
    if (wrong !== undefined) throw new AttestError('E_ATTEST_ATTESTER', `the attestation command printed ${wrong.type} evidence, expected ${o.type}`);
    return out;
  }
}
