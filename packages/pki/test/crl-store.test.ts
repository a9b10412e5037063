import { generateKeyPairSync } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { acceptNewerCrl, createCrl, createRootCa, CrlStore, issueCertificate, loadCrl, verifyCertificate, type RootCa } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { tempDir } from './helpers.js';

const now = new Date('2026-05-01T00:00:00Z');
const key = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;

describe('CRL numbers only go up', () => {
  let root: RootCa;
  let site2: string;
  let crl1: string; // site-2 not yet revoked
  let crl2: string; // site-2 revoked
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'proj', keyType: 'ecdsa-p256', now });
    site2 = await issueCertificate({ issuer: root, subject: { name: 'site-2', org: 'o', type: 'client' }, publicKey: key(), now });
    const serial = verifyCertificate(site2, { rootCaPem: root.certPem, at: now }).serial;
    crl1 = await createCrl({ issuer: root, entries: [], crlNumber: 1, now });
    crl2 = await createCrl({ issuer: root, entries: [{ serial, date: now }], crlNumber: 2, now });
  });

  it('loadCrl reads the CRL number (RFC 5280 5.2.3), also past 2^53', async () => {
    expect(loadCrl(crl2).crlNumber).toBe(2n);
    const big = await createCrl({ issuer: root, entries: [], crlNumber: Number.MAX_SAFE_INTEGER, now });
    expect(loadCrl(big).crlNumber).toBe(BigInt(Number.MAX_SAFE_INTEGER));
  });

  it('acceptNewerCrl takes a higher number and keeps an identical CRL', () => {
    const a = loadCrl(crl1, { rootCaPem: root.certPem });
    const b = loadCrl(crl2, { rootCaPem: root.certPem });
    expect(acceptNewerCrl(undefined, a)).toEqual({ crl: a, changed: true });
    expect(acceptNewerCrl(a, b)).toEqual({ crl: b, changed: true });
    expect(acceptNewerCrl(b, loadCrl(crl2, { rootCaPem: root.certPem })).changed).toBe(false);
  });

  it('refuses an older CRL (E_CRL_ROLLBACK)', async () => {
    const older = loadCrl(crl1, { rootCaPem: root.certPem });
    const newer = loadCrl(crl2, { rootCaPem: root.certPem });
    await expectFlareCodeAsync(() => acceptNewerCrl(newer, older), 'E_CRL_ROLLBACK');
  });

  it('refuses another CRL under the same number (E_CRL_ROLLBACK)', async () => {
    const same = await createCrl({ issuer: root, entries: [], crlNumber: 2, now });
    await expectFlareCodeAsync(() => acceptNewerCrl(loadCrl(crl2, { rootCaPem: root.certPem }), loadCrl(same, { rootCaPem: root.certPem })), 'E_CRL_ROLLBACK');
  });

  it('refuses an unverified CRL, one without a number, and one of another root (E_CRL_INVALID)', async () => {
    await expectFlareCodeAsync(() => acceptNewerCrl(undefined, loadCrl(crl2)), 'E_CRL_INVALID');
    const other = await createRootCa({ commonName: 'proj', keyType: 'ecdsa-p256', now });
    const foreign = loadCrl(await createCrl({ issuer: other, entries: [], crlNumber: 9, now }), { rootCaPem: other.certPem });
    await expectFlareCodeAsync(() => acceptNewerCrl(loadCrl(crl1, { rootCaPem: root.certPem }), foreign), 'E_CRL_INVALID');
  });

  it('CrlStore persists the highest CRL and refuses a rollback after a restart (E_CRL_ROLLBACK)', async () => {
    const file = join(await tempDir(), 'crl-state.json');
    const first = await CrlStore.open({ rootCaPem: root.certPem, file, seed: crl1 });
    expect(first.crlNumber).toBe(1n);
    expect(first.isRevoked(site2)).toBe(false);
    expect((await first.accept(crl2)).changed).toBe(true);
    expect(first.isRevoked(site2)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // A restart with the old kit's CRL as seed: the stored, newer CRL wins and site-2 stays revoked.
    const again = await CrlStore.open({ rootCaPem: root.certPem, file, seed: crl1 });
    expect(again.crlNumber).toBe(2n);
    expect(again.isRevoked(site2)).toBe(true);
    expect(verifyCertificate.bind(null, site2, { rootCaPem: root.certPem, crl: again.current!, at: now })).toThrow(/revoked/);
    await expectFlareCodeAsync(() => again.accept(crl1), 'E_CRL_ROLLBACK');
    expect(again.crlNumber).toBe(2n);
  });

  it('serializes concurrent offers: the highest wins whatever the order', async () => {
    const store = await CrlStore.open({ rootCaPem: root.certPem });
    const results = await Promise.allSettled([store.accept(crl2), store.accept(crl1), store.accept(crl2)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(store.crlNumber).toBe(2n);
  });

  it('refuses a damaged or foreign state file (E_CRL_STATE)', async () => {
    const dir = await tempDir();
    const file = join(dir, 'crl-state.json');
    await writeFile(file, '{"format":"flare-ts-crl-state/1","crlNumber":"1"');
    await expectFlareCodeAsync(() => CrlStore.open({ rootCaPem: root.certPem, file }), 'E_CRL_STATE');
    const other = await createRootCa({ commonName: 'proj', keyType: 'ecdsa-p256', now });
    const planted = await createCrl({ issuer: other, entries: [], crlNumber: 99, now });
    await writeFile(file, JSON.stringify({ format: 'flare-ts-crl-state/1', crlNumber: '99', crlPem: planted }));
    await expectFlareCodeAsync(() => CrlStore.open({ rootCaPem: root.certPem, file }), 'E_CRL_STATE');
    // The recorded number must be the CRL's own.
    await writeFile(file, JSON.stringify({ format: 'flare-ts-crl-state/1', crlNumber: '7', crlPem: crl2 }));
    await expectFlareCodeAsync(() => CrlStore.open({ rootCaPem: root.certPem, file }), 'E_CRL_STATE');
  });

  it('refuses a CRL of another root offered to the store (E_CRL_INVALID) and leaves the file as it was', async () => {
    const file = join(await tempDir(), 'crl-state.json');
    const store = await CrlStore.open({ rootCaPem: root.certPem, file, seed: crl2 });
    const before = await readFile(file, 'utf8');
    const other = await createRootCa({ commonName: 'proj', keyType: 'ecdsa-p256', now });
    const foreignPem = await createCrl({ issuer: other, entries: [], crlNumber: 50, now });
    await expectFlareCodeAsync(() => store.accept(foreignPem), 'E_CRL_INVALID');
    await expectFlareCodeAsync(() => store.accept(loadCrl(foreignPem, { rootCaPem: other.certPem })), 'E_CRL_INVALID');
    expect(await readFile(file, 'utf8')).toBe(before);
  });
});
