import type { KeyObject } from 'node:crypto';
import { FlareRuntimeError, add, canonicalJson, decodeModel, type FLModel } from '@flare/core';
import { z } from 'zod';
import { tensorDigest } from '../site/initial-model.js';
import { certificateVerifier, kitSigner } from './secagg-identity.js';

// A cyclic hop's model is what the previous site trained, and only that site can vouch for it: it signs the
// model as the next site will receive it, with its kit key, bound to the project, the admin-signed job, the
// hop's place (round, attempt, hop) and its own name. The server relays the proof and cannot forge, move or
// alter it; the next site checks it before its learner sees the model.

/**
 * A site's identity for signing and checking cyclic hops: its startup kit's project, key and certificate, the
 * project root, and the newest CRL it holds (asked at every check, so a CRL pushed later applies at once).
 */
export interface CyclicSiteIdentity {
  /** The project name (`Kit.project`): every hop signature is bound to it. */
  readonly project: string;
  /** The site's kit private key (`Kit.privateKey`). */
  readonly privateKey: KeyObject;
  /** The site's kit certificate (`Kit.certPem`): travels with the hop so the next site can check it. */
  readonly certPem: string;
  /** The project root (`Kit.rootCaPem`): a signer's certificate must chain to it. */
  readonly rootCaPem: string;
  /** The newest CRL this site holds (e.g. `() => crls.current?.pem ?? kit.crlPem`): a revoked signer is refused. */
  readonly crl?: () => string | undefined;
}

/** Where a hop is in a job: round, then attempt (a retried round), then hop; compared in that order. */
export interface HopPosition {
  readonly round: number;
  readonly attempt: number;
  readonly hop: number;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * What a site that trained a cyclic hop returns with its result and the server passes on with the next hop:
 * the signed fields and the signature, with the signer's certificate. Bounded (one certificate, one signature).
 */
export const HopProof = z.strictObject({
  /** The site that trained (the certificate's CN must be this name). */
  site: z.string().min(1).max(64),
  job: z.string().min(1).max(128),
  round: z.int().min(0),
  attempt: z.int().min(0),
  hop: z.int().min(0),
  /** `tensorDigest` (SHA-256 hex) of the model the next site receives: the global model after this hop. */
  model: z.string().regex(/^[0-9a-f]{64}$/),
  /** Base64 signature by the site's kit key over {@link hopManifest}. */
  signature: z.string().min(1).max(1024).regex(BASE64),
  /** The signer's certificate (PEM). */
  certificate: z.string().min(1).max(16 * 1024),
});
/** A {@link HopProof} as parsed. */
export type HopProof = z.output<typeof HopProof>;

/** What a hop signature binds besides the proof's own fields: the project and the admin-signed job's digest. */
interface HopBinding {
  readonly project: string;
  /** SHA-256 of the admin-signed job manifest (`SiteTaskContext.manifest`). */
  readonly manifest: string;
}

/** The signed bytes: a domain tag, then the canonical JSON of every bound field. */
function hopManifest(p: Omit<HopProof, 'signature' | 'certificate'>, b: HopBinding): Uint8Array {
  const fields = { project: b.project, job: p.job, job_manifest: b.manifest, site: p.site, round: p.round, attempt: p.attempt, hop: p.hop, model: p.model };
  return new TextEncoder().encode(`flare-ts cyclic hop v1\n${canonicalJson(fields)}`);
}

/** -1, 0 or 1 as `a` is before, at or after `b`. */
export function compareHops(a: HopPosition, b: HopPosition): number {
  return Math.sign(a.round - b.round) || Math.sign(a.attempt - b.attempt) || Math.sign(a.hop - b.hop);
}

const at = (p: HopPosition): string => `round ${p.round} attempt ${p.attempt} hop ${p.hop}`;

/**
 * The global model the server forms from a hop's result, as it does it (JobAggregation.advance): a `diff` is
 * added to the model the site received, a `full` model replaces it. Works on copies; the inputs are the bytes
 * that travelled, so site and server compute the same tensors.
 */
export function nextHopModel(received: Uint8Array, result: Uint8Array): FLModel {
  const update = decodeModel(result.slice());
  return update.kind === 'diff' ? add(decodeModel(received.slice()), update) : update;
}

/** Signs a hop this site trained: `next` is the model the next site will receive ({@link nextHopModel}). */
export function signHop(identity: CyclicSiteIdentity, manifest: string, hop: { readonly site: string; readonly job: string } & HopPosition, next: FLModel): HopProof {
  const fields = { site: hop.site, job: hop.job, round: hop.round, attempt: hop.attempt, hop: hop.hop, model: tensorDigest(next) };
  const signature = kitSigner(identity.privateKey).sign(hopManifest(fields, { project: identity.project, manifest }));
  return { ...fields, signature: Buffer.from(signature).toString('base64'), certificate: identity.certPem };
}

/** What the receiving site knows when it checks a hop's proof. */
export interface HopExpectation {
  readonly job: string;
  /** SHA-256 of the admin-signed job manifest. */
  readonly manifest: string;
  /** The signed job's deploy list: the signer must be one of these (any name under `@ALL`). */
  readonly deploy: readonly string[];
  /** The site the server says trained the model. */
  readonly claimed: string;
  /** This task's own place: the proof must be from before it. */
  readonly current: HopPosition;
  /** The newest place this site already holds for the job (a proof it accepted, a hop it signed): no going back. */
  readonly newest?: HopPosition | undefined;
}

/**
 * Checks a hop's proof against the model that arrived: bound to this job and to a place before this task (and
 * not before what this site already holds), signed by the claimed trainer (a site of the signed job whose
 * client certificate chains to the project root, is valid now and not revoked by the newest CRL), over exactly
 * these tensors.
 *
 * @throws FlareRuntimeError E_RUNTIME_HOP_UNSIGNED (no proof, or not a proof), E_RUNTIME_HOP_BINDING (another
 *   job, signer, or place), E_RUNTIME_HOP_MODEL (other tensors than signed), E_RUNTIME_HOP_SIGNATURE (the
 *   certificate or the signature does not verify).
 */
export function verifyHop(identity: CyclicSiteIdentity, proof: unknown, expect: HopExpectation, received: FLModel): HopProof {
  const who = `the model the server says ${expect.claimed} trained`;
  if (proof === undefined) throw new FlareRuntimeError('E_RUNTIME_HOP_UNSIGNED', `job ${expect.job}: ${who} arrived without ${expect.claimed}'s signature`);
  const parsed = HopProof.safeParse(proof);
  if (!parsed.success) throw new FlareRuntimeError('E_RUNTIME_HOP_UNSIGNED', `job ${expect.job}: ${who} arrived with a malformed hop signature (${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? 'invalid'})`);
  const p = parsed.data;
  const binding = (why: string): FlareRuntimeError => new FlareRuntimeError('E_RUNTIME_HOP_BINDING', `job ${expect.job}: ${who}: ${why}`);
  if (p.job !== expect.job) throw binding(`its signature is for job ${p.job.slice(0, 64)}`);
  if (p.site !== expect.claimed) throw binding(`it is signed as ${p.site}'s`);
  if (!expect.deploy.includes('@ALL') && !expect.deploy.includes(p.site)) throw binding(`${p.site} is not a site of the signed job`);
  if (compareHops(p, expect.current) >= 0) throw binding(`it was signed for ${at(p)}, not before this task (${at(expect.current)})`);
  if (expect.newest !== undefined && compareHops(p, expect.newest) < 0) throw binding(`it was signed for ${at(p)}, older than ${at(expect.newest)} this site already holds (a rollback)`);
  const got = tensorDigest(received);
  if (got !== p.model) throw new FlareRuntimeError('E_RUNTIME_HOP_MODEL', `job ${expect.job}: ${who} (tensors ${got.slice(0, 16)}...) is not the model ${p.site} signed at ${at(p)} (${p.model.slice(0, 16)}...): the server changed it`);
  const crl = identity.crl?.();
  const verifier = certificateVerifier(identity.rootCaPem, new Map([[p.site, p.certificate]]), crl);
  if (!verifier.verify(p.site, hopManifest(p, { project: identity.project, manifest: expect.manifest }), Buffer.from(p.signature, 'base64'))) {
    throw new FlareRuntimeError('E_RUNTIME_HOP_SIGNATURE', `job ${expect.job}: ${who} at ${at(p)}: the signature does not verify with a client certificate of ${p.site} issued by the project root, valid now and not revoked by the newest CRL this site holds`);
  }
  return p;
}
