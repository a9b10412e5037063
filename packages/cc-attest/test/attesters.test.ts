import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigfsTsmAttester, encodeAttestationEvidence, ExternalCommandAttester, parseAttestationEvidence, parseSnpCertTable, verifyEvidence, type TsmFileSystem } from '../src/index.js';
import { synthesizeGpuEvidence, synthesizeSnpEvidence, TestAttester } from '../src/testing/index.js';
import { AT, authority, nonce32, nonce64 } from './helpers.js';

const auth = authority();

/** An in-memory configfs-tsm: writing inblob makes the "kernel" produce outblob, like the real interface. */
function fakeTsm(provider: string, opts: { raceOnRead?: boolean; failMkdir?: boolean } = {}) {
  const files = new Map<string, Uint8Array>();
  const dirs = new Set<string>();
  let generation = 0;
  const fs: TsmFileSystem = {
    async mkdir(p) {
      if (opts.failMkdir) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      dirs.add(p);
    },
    async rmdir(p) {
      dirs.delete(p);
    },
    async writeFile(p, d) {
      const data = typeof d === 'string' ? new Uint8Array(Buffer.from(d)) : d;
      files.set(p, data);
      if (p.endsWith('/inblob')) {
        generation++;
        const dir = p.slice(0, -'/inblob'.length);
        if (provider === 'sev_guest') {
          const e = synthesizeSnpEvidence(auth, { reportData: data });
          files.set(`${dir}/outblob`, e.evidence);
          const der = Buffer.from(e.certificates[0]!.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
          // GHCB certificate table: VCEK entry, terminator, then the certificate.
          const table = Buffer.alloc(48 + der.length);
          Buffer.from('8d75da6364e66445adc5f4b93be8accd', 'hex').copy(table, 0);
          table.writeUInt32LE(48, 16);
          table.writeUInt32LE(der.length, 20);
          der.copy(table, 48);
          files.set(`${dir}/auxblob`, new Uint8Array(table));
        } else files.set(`${dir}/outblob`, new Uint8Array([1, 2, 3]));
      }
    },
    async readFile(p) {
      if (p.endsWith('/generation')) {
        if (opts.raceOnRead && files.has(`${p}.read`)) generation++;
        files.set(`${p}.read`, new Uint8Array());
        return new Uint8Array(Buffer.from(`${generation}\n`));
      }
      if (p.endsWith('/provider')) return new Uint8Array(Buffer.from(`${provider}\n`));
      const f = files.get(p);
      if (f === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return f;
    },
  };
  return { fs, dirs };
}

describe('ConfigfsTsmAttester', () => {
  it('writes the nonce to inblob, reads outblob and the certificate table, and removes its report directory', async () => {
    const { fs, dirs } = fakeTsm('sev_guest');
    const [e] = await new ConfigfsTsmAttester({ fs, root: '/tsm' }).collect(nonce64());
    expect(e!.type).toBe('snp');
    expect(e!.certificates).toHaveLength(1);
    expect(dirs.size).toBe(0);
    const r = await verifyEvidence({ ...e!, nonce: nonce64(), at: AT, trust: auth.trust });
    expect(r.ok).toBe(true);
  });

  it('refuses a report when generation changed while reading: another writer raced (E_ATTEST_ATTESTER)', async () => {
    const { fs } = fakeTsm('sev_guest', { raceOnRead: true });
    await expect(new ConfigfsTsmAttester({ fs }).collect(nonce64())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
  });

  it('fails clearly outside a confidential VM and on an unknown provider (E_ATTEST_ATTESTER)', async () => {
    await expect(new ConfigfsTsmAttester({ fs: fakeTsm('sev_guest', { failMkdir: true }).fs }).collect(nonce64())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
    await expect(new ConfigfsTsmAttester({ fs: fakeTsm('arm_cca').fs }).collect(nonce64())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
  });

  it('maps tdx_guest to TDX evidence', async () => {
    const [e] = await new ConfigfsTsmAttester({ fs: fakeTsm('tdx_guest').fs }).collect(nonce64());
    expect(e!.type).toBe('tdx');
  });

  it('refuses a nonce that is not 64 bytes (programmer misuse)', async () => {
    await expect(new ConfigfsTsmAttester({ fs: fakeTsm('sev_guest').fs }).collect(nonce32())).rejects.toThrow(RangeError);
  });

  it('parseSnpCertTable stops at the zero GUID and ignores unknown GUIDs', () => {
    expect(parseSnpCertTable(new Uint8Array(24))).toEqual([]);
  });
});

describe('ExternalCommandAttester', () => {
  const script = (body: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'flare-attest-'));
    const file = join(dir, 'attest.mjs');
    writeFileSync(file, body);
    chmodSync(file, 0o755);
    return file;
  };

  it('runs the tool without a shell, substitutes {nonce}, and reads the NVIDIA SDK JSON', async () => {
    const e = synthesizeGpuEvidence(auth, { nonce: nonce32() });
    const json = JSON.stringify([{ arch: 'HOPPER', nonce: Buffer.from(nonce32()).toString('hex'), evidence: Buffer.from(e.evidence).toString('base64'), certificate: Buffer.from(e.certificates).toString('base64'), driver_version: '550.90.07' }]);
    const file = script(`if (process.argv[2] !== '${Buffer.from(nonce32()).toString('hex')}') process.exit(3);\nprocess.stdout.write(${JSON.stringify(json)});\n`);
    const a = new ExternalCommandAttester({ type: 'gpu', command: process.execPath, args: [file, '{nonce}'] });
    const [got] = await a.collect(nonce32());
    expect(got!.type).toBe('gpu');
    expect(got!.reported).toEqual({ driverVersion: '550.90.07' });
    expect((await verifyEvidence({ ...got!, nonce: nonce32(), at: AT, trust: auth.trust })).ok).toBe(true);
  });

  it('reads this package wire form too, and refuses evidence of another type (E_ATTEST_ATTESTER)', async () => {
    const [snp] = await new TestAttester(auth, { type: 'snp' }).collect(nonce64());
    const file = script(`process.stdout.write(${JSON.stringify(JSON.stringify(encodeAttestationEvidence(snp!)))});\n`);
    const [got] = await new ExternalCommandAttester({ type: 'snp', command: process.execPath, args: [file] }).collect(nonce64());
    expect(got!.type).toBe('snp');
    await expect(new ExternalCommandAttester({ type: 'gpu', command: process.execPath, args: [file] }).collect(nonce32())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
  });

  it('fails on a non-zero exit, a timeout and non-JSON output (E_ATTEST_ATTESTER)', async () => {
    await expect(new ExternalCommandAttester({ type: 'gpu', command: process.execPath, args: [script('process.exit(1)')] }).collect(nonce32())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
    await expect(new ExternalCommandAttester({ type: 'gpu', command: process.execPath, args: [script('setTimeout(() => {}, 10000)')], timeoutMs: 200 }).collect(nonce32())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
    await expect(new ExternalCommandAttester({ type: 'gpu', command: process.execPath, args: [script('console.log("hello")')] }).collect(nonce32())).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
  });
});

describe('TestAttester', () => {
  it('evidence it signs is refused under the vendor roots (E_ATTEST_CHAIN)', async () => {
    const [e] = await new TestAttester(auth, { type: 'tdx' }).collect(nonce64());
    expect((await verifyEvidence({ ...e!, nonce: nonce64(), at: AT })).failure?.code).toBe('E_ATTEST_CHAIN');
  });

  it('can be told to produce failing evidence (a site with failing evidence)', async () => {
    const [e] = await new TestAttester(auth, { type: 'snp', snp: { policy: 0x30000n | (1n << 19n) } }).collect(nonce64());
    const r = await verifyEvidence({ ...e!, nonce: nonce64(), at: AT, trust: auth.trust });
    expect(r.ok).toBe(true);
    expect(r.claims['debug']).toBe(true);
  });
});

describe('wire form', () => {
  it('round-trips and refuses unknown fields and oversized values (E_ATTEST_MALFORMED)', async () => {
    const [e] = await new TestAttester(auth, { type: 'gpu' }).collect(nonce32());
    const wire = JSON.parse(JSON.stringify(encodeAttestationEvidence(e!))) as unknown;
    const back = parseAttestationEvidence(wire);
    expect(Buffer.from(back.evidence).equals(Buffer.from(e!.evidence))).toBe(true);
    expect(() => parseAttestationEvidence({ ...(wire as object), extra: 1 })).toThrow(expect.objectContaining({ code: 'E_ATTEST_MALFORMED' }));
    expect(() => parseAttestationEvidence({ ...(wire as object), evidence: 'A'.repeat(200_000) })).toThrow(expect.objectContaining({ code: 'E_ATTEST_MALFORMED' }));
  });
});
