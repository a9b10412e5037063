import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttestError } from '@flare/core';
import { Reader } from '../bytes.js';
import type { AttestationEvidence, Attester } from './attester.js';

/** The file operations the configfs-tsm attester uses (node:fs/promises by default; tests substitute). */
export interface TsmFileSystem {
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
}

/** Options of {@link ConfigfsTsmAttester}. */
export interface ConfigfsTsmOptions {
  /** The report directory (default /sys/kernel/config/tsm/report). */
  readonly root?: string;
  /** SNP VMPL to request the report from (written to `privlevel`; default: not written, i.e. the kernel's). */
  readonly privlevel?: number;
  readonly fs?: TsmFileSystem;
}

const nodeFs: TsmFileSystem = {
  mkdir: async (p) => {
    await mkdir(p);
  },
  rmdir: (p) => rmdir(p),
  readFile: async (p) => new Uint8Array(await readFile(p)),
  writeFile: (p, d) => writeFile(p, d),
};

// GHCB spec 56421, extended guest request certificate table GUIDs (go-sev-guest abi.go), in the table's
// little-endian GUID byte order.
const guidBytes = (g: string) => {
  const h = g.replace(/-/g, '');
  const le = (s: string) => s.match(/../g)!.reverse().join('');
  return le(h.slice(0, 8)) + le(h.slice(8, 12)) + le(h.slice(12, 16)) + h.slice(16);
};
const CERT_GUIDS = new Map([
  [guidBytes('63da758d-e664-4564-adc5-f4b93be8accd'), 'VCEK'],
  [guidBytes('a8074bc2-a25a-483e-aae6-39c045a0b8a1'), 'VLEK'],
  [guidBytes('4ab7b379-bbac-4fe4-a02f-05aef327c782'), 'ASK'],
  [guidBytes('c0b406a4-a803-4952-9743-3fb6014cd0ae'), 'ARK'],
]);

/** Reads the SNP certificate table (auxblob) into PEM certificates, key certificate first. */
export function parseSnpCertTable(aux: Uint8Array): string[] {
  const r = new Reader(aux, 'SNP certificate table');
  const found: Array<[string, Uint8Array]> = [];
  for (let o = 0; o + 24 <= aux.length && found.length < 16; o += 24) {
    const guid = Buffer.from(r.slice(o, 16)).toString('hex');
    if (/^0+$/.test(guid)) break;
    const kind = CERT_GUIDS.get(guid);
    const offset = r.u32(o + 16);
    const length = r.u32(o + 20);
    if (kind !== undefined && length > 0) found.push([kind, r.slice(offset, length)]);
  }
  const order = ['VCEK', 'VLEK', 'ASK', 'ARK'];
  return found
    .sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))
    .map(([, der]) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`);
}

/**
 * Gets SEV-SNP reports or TDX quotes from the Linux configfs-tsm interface (kernel
 * Documentation/ABI/testing/configfs-tsm-report): create a report directory, write the nonce to `inblob`,
 * read `outblob` (and `auxblob`, the SNP certificate table), and check `generation` did not change between
 * the write and the reads, which would mean another writer raced this one. File I/O only; no external
 * binaries.
 */
export class ConfigfsTsmAttester implements Attester {
  readonly name = 'configfs-tsm';
  readonly #root: string;
  readonly #fs: TsmFileSystem;
  readonly #privlevel: number | undefined;

  constructor(options: ConfigfsTsmOptions = {}) {
    this.#root = options.root ?? '/sys/kernel/config/tsm/report';
    this.#fs = options.fs ?? nodeFs;
    this.#privlevel = options.privlevel;
  }

  async collect(nonce: Uint8Array): Promise<AttestationEvidence[]> {
    if (nonce.length !== 64) throw new RangeError(`"nonce" expected 64 bytes for REPORT_DATA, got ${nonce.length}`);
    const dir = join(this.#root, `flare-${randomBytes(8).toString('hex')}`);
    const fs = this.#fs;
    try {
      await fs.mkdir(dir);
    } catch (cause) {
      throw new AttestError('E_ATTEST_ATTESTER', `cannot create a report under ${this.#root} (not a confidential VM, or configfs-tsm not mounted)`, { cause });
    }
    try {
      const text = async (f: string) => Buffer.from(await fs.readFile(join(dir, f))).toString('utf8').trim();
      if (this.#privlevel !== undefined) await fs.writeFile(join(dir, 'privlevel'), String(this.#privlevel));
      await fs.writeFile(join(dir, 'inblob'), nonce);
      const before = await text('generation');
      const provider = await text('provider');
      const outblob = await fs.readFile(join(dir, 'outblob'));
      let aux: Uint8Array = new Uint8Array(0);
      try {
        aux = await fs.readFile(join(dir, 'auxblob'));
      } catch {
        // auxblob is absent when the host supplies no certificates
      }
      const after = await text('generation');
      if (before !== after) throw new AttestError('E_ATTEST_ATTESTER', `configfs-tsm generation changed from ${before} to ${after}: another process wrote the report inputs`);
      if (provider === 'sev_guest') return [{ type: 'snp', evidence: outblob, certificates: aux.length > 0 ? parseSnpCertTable(aux) : [] }];
      if (provider === 'tdx_guest') return [{ type: 'tdx', evidence: outblob, certificates: [] }];
      throw new AttestError('E_ATTEST_ATTESTER', `configfs-tsm provider ${JSON.stringify(provider)} is not sev_guest or tdx_guest`);
    } catch (e) {
      if (e instanceof AttestError) throw e;
      throw new AttestError('E_ATTEST_ATTESTER', 'reading the configfs-tsm report failed', { cause: e });
    } finally {
      await fs.rmdir(dir).catch(() => undefined);
    }
  }
}
