// CRL numbers only go up (RFC 5280 5.2.3). A root-signed CRL stays root-signed forever, so a signature check
// alone cannot tell a current CRL from an older one an attacker kept: every participant remembers the highest
// CRL number it accepted and refuses a lower one. Without this, putting an older crl.pem back re-admits
// everyone revoked since (issue #14.10).
import { readFile } from 'node:fs/promises';
import { PkiError, parseStrictJson, writeFileAtomic } from '@flare/core';
import { z } from 'zod';
import { crlVerifiedRoot, isRevoked, loadCrl, type Crl } from './crl.js';
import { x509 } from './x509.js';

/** What {@link acceptNewerCrl} and {@link CrlStore.accept} decided. */
export interface CrlAcceptance {
  /** The newest CRL now known: the candidate when it was newer, else the current one. */
  readonly crl: Crl;
  /** True when the candidate replaced the current CRL (a higher CRL number, or the first CRL). */
  readonly changed: boolean;
}

/** The CRL number of a verified CRL, or E_CRL_INVALID. */
function numberOf(crl: Crl, what: string): bigint {
  if (crl.crlNumber === undefined) throw new PkiError('E_CRL_INVALID', `the ${what} CRL has no CRL number: it cannot be ordered against others`);
  return crl.crlNumber;
}

function derOf(crl: Crl): Buffer {
  return Buffer.from(x509.PemConverter.decodeFirst(crl.pem));
}

/**
 * Decides whether `candidate` may replace `current`, the newest CRL a participant accepted so far: it must
 * have been verified by `loadCrl` against the same root, carry a CRL number, and that number must not be
 * lower. The same number is accepted only for the very same CRL (a root never issues two CRLs under one
 * number). Pure: persisting the result is the caller's job ({@link CrlStore} does it).
 *
 * @throws PkiError E_CRL_ROLLBACK for an older CRL (or another CRL under the same number), E_CRL_INVALID for
 *   an unverified CRL, one without a CRL number, or one of another root.
 * @example
 * ```ts
 * const { crl, changed } = acceptNewerCrl(current, loadCrl(welcome.crlPem, { rootCaPem: kit.rootCaPem }));
 * ```
 */
export function acceptNewerCrl(current: Crl | undefined, candidate: Crl): CrlAcceptance {
  const root = crlVerifiedRoot(candidate);
  if (!candidate.verified || root === undefined) {
    throw new PkiError('E_CRL_INVALID', "the CRL's signature was not checked: load it with loadCrl(pem, { rootCaPem }) first");
  }
  const next = numberOf(candidate, 'offered');
  if (current === undefined) return { crl: candidate, changed: true };
  if (crlVerifiedRoot(current) !== root) throw new PkiError('E_CRL_INVALID', 'the offered CRL was verified against another root than the current one');
  const have = numberOf(current, 'current');
  if (next > have) return { crl: candidate, changed: true };
  if (next < have) {
    throw new PkiError('E_CRL_ROLLBACK', `the offered CRL is number ${next}, older than CRL number ${have} already accepted: an older CRL would re-admit participants revoked since`);
  }
  if (!derOf(candidate).equals(derOf(current))) {
    throw new PkiError('E_CRL_ROLLBACK', `the offered CRL differs from the accepted CRL with the same number ${have}: a root never issues two CRLs under one number`);
  }
  return { crl: current, changed: false };
}

/** The file name the runtime uses for a participant's {@link CrlStore} inside its workspace. */
export const CRL_STATE_FILE = 'crl-state.json';
const FORMAT = 'flare-ts-crl-state/1';
const MAX_STATE_BYTES = 8 << 20;
const stateSchema = z.strictObject({
  format: z.literal(FORMAT),
  crlNumber: z.string().regex(/^(0|[1-9][0-9]{0,49})$/),
  crlPem: z.string().min(1).max(MAX_STATE_BYTES),
});

/** Options of {@link CrlStore.open}. */
export interface CrlStoreOptions {
  /** The project's root CA: every CRL the store accepts (and the one it reads back) must be signed by it. */
  readonly rootCaPem: string;
  /**
   * Where the highest accepted CRL is kept (written atomically, fsynced). Omit it for a store in memory only
   * (a process that must not write, or tests).
   */
  readonly file?: string;
  /**
   * A CRL to start from, typically the kit's crl.pem: taken when newer than the stored one, ignored when
   * older (the participant already learned a newer one, e.g. from the server at login).
   */
  readonly seed?: string | Uint8Array;
}

/**
 * A participant's memory of the newest root-signed CRL it has accepted: {@link CrlStore.accept} takes a
 * newer CRL (persisting it before it answers) and refuses an older one with E_CRL_ROLLBACK, so neither a
 * rolled-back kit file nor a stale or hostile peer can bring back a revoked certificate. Calls are
 * serialized; `current` is what verification should use.
 *
 * What it cannot do: an attacker who can delete the store's file as well as roll back the kit resets it to
 * the kit's CRL; the server handing its newest CRL to every participant at login closes that gap for sites,
 * and the server's own store is the project's anchor (keep its workspace on a disk only the server writes).
 *
 * @example
 * ```ts
 * const crls = await CrlStore.open({ rootCaPem: kit.rootCaPem, file: join(workspace, CRL_STATE_FILE), seed: kit.crlPem });
 * verifyCertificate(peerPem, { rootCaPem: kit.rootCaPem, crl: crls.current });
 * await crls.accept(welcome.crlPem); // E_CRL_ROLLBACK when older than what this site has seen
 * ```
 */
export class CrlStore {
  readonly #rootCaPem: string;
  readonly #file: string | undefined;
  #current: Crl | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(rootCaPem: string, file: string | undefined, current: Crl | undefined) {
    this.#rootCaPem = rootCaPem;
    this.#file = file;
    this.#current = current;
  }

  /**
   * Opens the store: reads the stored CRL (checking its root signature and number), then takes `seed` if it
   * is newer.
   *
   * @throws PkiError E_CRL_STATE when the stored file is damaged, too large or not signed by this root;
   *   E_CRL_INVALID for a bad seed.
   */
  static async open(options: CrlStoreOptions): Promise<CrlStore> {
    const current = options.file === undefined ? undefined : await readState(options.file, options.rootCaPem);
    const store = new CrlStore(options.rootCaPem, options.file, current);
    if (options.seed !== undefined) {
      const seed = loadCrl(options.seed, { rootCaPem: options.rootCaPem });
      if (current === undefined || numberOf(seed, 'seed') > numberOf(current, 'stored')) await store.accept(seed);
    }
    return store;
  }

  /** The newest CRL accepted so far (verified against the root), or undefined before the first one. */
  get current(): Crl | undefined {
    return this.#current;
  }

  /** The CRL number of {@link CrlStore.current}. */
  get crlNumber(): bigint | undefined {
    return this.#current?.crlNumber;
  }

  /**
   * Takes `crl` when it is newer than the current one and persists it before resolving; an identical CRL is a
   * no-op. A string or bytes are parsed and verified against the store's root; a `Crl` must have been.
   *
   * @throws PkiError E_CRL_ROLLBACK (older, or different under the same number), E_CRL_INVALID (unparsable,
   *   unsigned by this root, no CRL number).
   */
  accept(crl: Crl | string | Uint8Array): Promise<CrlAcceptance> {
    const run = this.#queue.then(async () => {
      const candidate = typeof crl === 'string' || crl instanceof Uint8Array ? loadCrl(crl, { rootCaPem: this.#rootCaPem }) : crl;
      if (crlVerifiedRoot(candidate) !== this.#rootCaPem) {
        throw new PkiError('E_CRL_INVALID', "the CRL was not verified against this store's root: load it with loadCrl(pem, { rootCaPem })");
      }
      const result = acceptNewerCrl(this.#current, candidate);
      if (result.changed) {
        if (this.#file !== undefined) {
          const state = { format: FORMAT, crlNumber: numberOf(result.crl, 'offered').toString(), crlPem: result.crl.pem };
          await writeFileAtomic(this.#file, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
        }
        this.#current = result.crl;
      }
      return result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** True when `cert` is revoked by the current CRL (false before any CRL was accepted). */
  isRevoked(cert: string | Uint8Array): boolean {
    return this.#current !== undefined && isRevoked(cert, this.#current);
  }
}

async function readState(file: string, rootCaPem: string): Promise<Crl | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PkiError('E_CRL_STATE', `${file} cannot be read`, { cause: e });
  }
  if (text.length > MAX_STATE_BYTES) throw new PkiError('E_CRL_STATE', `${file} is larger than ${MAX_STATE_BYTES} bytes`);
  let crl: Crl;
  let state: z.infer<typeof stateSchema>;
  try {
    state = stateSchema.parse(parseStrictJson(text, { maxDepth: 2 }));
    crl = loadCrl(state.crlPem, { rootCaPem });
  } catch (e) {
    throw new PkiError('E_CRL_STATE', `${file} does not hold a CRL signed by this project's root`, { cause: e });
  }
  if (crl.crlNumber?.toString() !== state.crlNumber) throw new PkiError('E_CRL_STATE', `${file} records CRL number ${state.crlNumber} but holds CRL number ${crl.crlNumber ?? 'none'}`);
  return crl;
}
