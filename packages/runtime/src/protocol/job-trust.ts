import type { KeyObject } from 'node:crypto';
import { parseStrictJson } from '@flare/core';
import { verifyCertificate } from '@flare/pki';
import { signAbort, signJob, type SignerCertificateCheck } from '@flare/policy';
import { signedJobFiles, type JobBundle } from './bundle.js';

// Jobs and aborts are signed by the admin who issues them (@flare/policy's signJob / signAbort), so a server can
// relay a job but never change it or invent who submitted it. This module is the runtime's glue: the admin side
// signs a bundle, the site (and the server) check it against the project's root and CRL (@flare/pki).

/** An admin's signing material: @flare/pki's `Kit` of an admin fits as it is. */
export interface AdminSigningKit {
  /** The project name (from the kit): every signature is bound to it. */
  readonly project: string;
  /** The admin's certificate (PEM). */
  readonly certPem: string;
  readonly privateKey: KeyObject | string;
}

/** How a participant checks job and abort signatures: its project, and the certificate check for admin signers. */
export interface JobTrust {
  /** This participant's project (from its own kit). */
  readonly project: string;
  /** Chain to the project root, validity, revocation, type `admin` (see {@link jobTrustFromKit}). */
  readonly verifyCertificate: SignerCertificateCheck;
}

/**
 * The {@link JobTrust} of a participant's kit: an admin certificate must chain to the project root, be valid now,
 * be of type `admin`, and not be revoked by the newest CRL this participant holds (`crl()` is asked at every
 * check, so a CRL received later applies to the next job).
 *
 * @example
 * ```ts
 * const trust = jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem, crl: () => kit.crlPem });
 * ```
 */
export function jobTrustFromKit(kit: { readonly project: string; readonly rootCaPem: string; readonly crl?: () => string | undefined }): JobTrust {
  return {
    project: kit.project,
    verifyCertificate: (pem) => {
      const crl = kit.crl?.();
      const c = verifyCertificate(pem, { rootCaPem: kit.rootCaPem, expectedType: 'admin', ...(crl === undefined ? {} : { crl }) });
      return { name: c.name, org: c.org, type: c.type, ...(c.role === undefined ? {} : { role: c.role }), publicKey: c.publicKey };
    },
  };
}

/**
 * Signs a job bundle for submission under `jobId` (a UUID the admin chose): meta.json, the initial model and
 * every custom/ file ({@link signedJobFiles}). Returns the bundle with its `signature`.
 */
export function signJobBundle(kit: AdminSigningKit, bundle: JobBundle, jobId: string, now?: Date): JobBundle {
  const signature = signJob(kit, { projectName: kit.project, jobId, files: signedJobFiles(bundle), ...(now === undefined ? {} : { now }) });
  return { ...bundle, signature: new TextEncoder().encode(JSON.stringify(signature)) };
}

/** Signs an abort of `jobId`: the bytes travel as the abort's payload, admin -> server -> every site. */
export function signAbortRequest(kit: AdminSigningKit, jobId: string, now?: Date): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(signAbort(kit, { projectName: kit.project, jobId, ...(now === undefined ? {} : { now }) })));
}

/**
 * A signature as it arrived (JSON bytes, untrusted), for `verifyJob` / `verifyAbort` to judge: undefined when
 * none arrived (refused as unsigned), the raw text when it is not JSON (refused as malformed).
 */
export function receivedSignature(bytes: Uint8Array | undefined): unknown {
  if (bytes === undefined || bytes.byteLength === 0) return undefined;
  try {
    return parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return '(not JSON)';
  }
}
