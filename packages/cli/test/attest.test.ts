import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../src/commands/attest.js';
import { createTestAuthority, synthesizeGpuEvidence, synthesizeSnpEvidence, synthesizeTdxCollateral, synthesizeTdxEvidence } from '@flare/cc-attest/testing';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

// One real SEV-SNP report and its VCEK, so the positive path runs against the pinned AMD roots without
// ../shared/vectors: project-oak/oak oak_attestation_verification/testdata/turin_oc_evidence.binarypb and
// turin_oc_endorsements.binarypb (commit a8b3a9b8d6, Apache-2.0), as extracted in
// shared/vectors/attest/snp/project-oak (turin_oc.report.bin, turin_oc.vcek.der). Turin, report version 5,
// VCEK valid 2025-07-17 to 2032-07-17.
const TURIN_REPORT_HEX =
  '050000000000000000000300000000000000000000000000000000000000000000000000000000000000000000000000000000000100000000010002' +
  '0000004767000000000000000000000000000000e0fd0bdb6aa4030a6ddea9073e1fcec5be6c782a2c8075a0825dfb3d9a81b9240000000000000000' +
  '000000000000000000000000000000000000000000000000f924dd18f168df60fbea937f0b086284d51b1b376de872bac43694f61134d57967c31801' +
  '8de7335503023dbb50dee624000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '0000000000000000000000000000000000000000a5e6fb0b3a3da122dfe52f515cddba1d64ee123e3402546384f92ed7724c17b3ffffffffffffffff' +
  'ffffffffffffffffffffffffffffffffffffffffffffffff00010002000000471a02010000000000000000000000000000000000000000003b42092f' +
  '69c656d30000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '00010002000000473d3701003d3701000001000200000047000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '0000000000000000000000009bf75594b1b5c1f55339e61753056121971b3d6f250c7995b47ca9dab609f7afc44c908571a691e5e113ddf9293e9afb' +
  '0000000000000000000000000000000000000000000000001447586551d9aab998990b83838a695e51f62a1e7cf57d1eee470e417ab804bf7968fa21' +
  'd7d9739d4ccac29c77be89e8000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' +
  '';
const TURIN_VCEK_B64 =
  'MIIFBTCCArmgAwIBAgIBADBBBgkqhkiG9w0BAQowNKAPMA0GCWCGSAFlAwQCAgUAoRwwGgYJKoZIhvcNAQEIMA0GCWCGSAFlAwQCAgUAogMCATAwezEUMBIG' +
  'A1UECwwLRW5naW5lZXJpbmcxCzAJBgNVBAYTAlVTMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExHzAdBgNVBAoMFkFkdmFuY2VkIE1pY3Jv' +
  'IERldmljZXMxEjAQBgNVBAMMCVNFVi1UdXJpbjAeFw0yNTA3MTcxNzA0NDZaFw0zMjA3MTcxNzA0NDZaMHoxFDASBgNVBAsMC0VuZ2luZWVyaW5nMQswCQYD' +
  'VQQGEwJVUzEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMR8wHQYDVQQKDBZBZHZhbmNlZCBNaWNybyBEZXZpY2VzMREwDwYDVQQDDAhTRVYt' +
  'VkNFSzB2MBAGByqGSM49AgEGBSuBBAAiA2IABBVtM2iAzRAxpzKjrWbE45J95nXW7DjXmNGrOJL6CjUG5fl/pal0eram6HcD6iD78fpiSs2/A63dFr0WV/q+' +
  'RmlWVZSZETxkaHlKE+3dCmngoSFCgsL6W7ojPzgXLlEaJqOB2jCB1zAQBgkrBgEEAZx4AQEEAwIBATAUBgkrBgEEAZx4AQIEBxYFVHVyaW4wEQYKKwYBBAGc' +
  'eAEDCQQDAgEAMBEGCisGAQQBnHgBAwEEAwIBATARBgorBgEEAZx4AQMCBAMCAQAwEQYKKwYBBAGceAEDAwQDAgECMBEGCisGAQQBnHgBAwUEAwIBADARBgor' +
  'BgEEAZx4AQMGBAMCAQAwEQYKKwYBBAGceAEDBwQDAgEAMBEGCisGAQQBnHgBAwgEAwIBRzAVBgkrBgEEAZx4AQQECDtCCS9pxlbTMEEGCSqGSIb3DQEBCjA0' +
  'oA8wDQYJYIZIAWUDBAICBQChHDAaBgkqhkiG9w0BAQgwDQYJYIZIAWUDBAICBQCiAwIBMAOCAgEAkjPD2ZftFjSQT0c9zqYj5JrT1XIkfxBb1dhotQaj9Lyb' +
  'QRN89yHaOpUOqWuaA0QIbb+1DRWeuJVzyxrzyZJ64y5T37UZREtaWbVoliJ1lRNkfVAUsXr4SQY8a147INOkve4CwkjvNDWciAQ+TPFJnRRiKL8w5rNKK9bZ' +
  'n5vkyCs065OVhFFrYqCc0qqjb9FrgEr23rXMDO6y0N0S8HpLBfHeuAqHZhzZGV8YC/JRlEvN0QjeQLQLQa0xbAKFlzYPGvy3U59owKI2TCvEGFxXDsoiZqYB' +
  'CSyYdsDyy+JEi73CfKibENtgHXv6HLERZpRoGxxKuz32ynEttjiBZewWN/09spfMBl7/a/esK0GBuG4Qn5WJfVKjIQt4HJ2+R1BIxX6Ci+wxgBxlQLpNlNGf' +
  '4Un/MXr11S+HtBo6Tgoy0hVBkGDlqvAdZDEjfhD90T1mrVeBfhoS2NjLl93qBP77y3VltKMB7DV4KAUTgFzvQbkLEk/ecuLhl+VXpSqrdnBHvWbf3LzNRUoA' +
  'PmJZc/tgzfEmZ6jpF1xpHsdRt6U/b9Ozb6qcdNsxxmVEc8Hq/Qu/KJx4KASGkGm38fK/og4V5oRmF25mftifrg/TX2DtrBawoBqDEDxAvKlDGiuXa1ZKn7fU' +
  'B5j79ch01F3QqoqJrZbdjb8SwXqCH+uXrCTueUM=' +
  '';
const TURIN_AT = '2025-10-01T08:00:00Z';
const TURIN_MEASUREMENT = 'f924dd18f168df60fbea937f0b086284d51b1b376de872bac43694f61134d57967c318018de7335503023dbb50dee624';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function flare(args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill(), 110_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `flare` in this process (fast): the same command definition, output captured, exit code returned. */
async function flareIn(args: readonly string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('flare').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  register(program, { out: (l) => out.push(l), err: (l) => err.push(l) });
  process.exitCode = 0;
  let code: number;
  try {
    await program.parseAsync(['node', 'flare', ...args]);
    code = Number(process.exitCode ?? 0);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    code = e.exitCode === 0 ? 0 : 2;
  } finally {
    process.exitCode = 0;
  }
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** Runs in-process commands one after another (they share process.exitCode). */
async function sequential(calls: ReadonlyArray<() => Promise<Run>>): Promise<Run[]> {
  const runs: Run[] = [];
  for (const call of calls) runs.push(await call());
  return runs;
}

let dir: string;
const file = (name: string) => join(dir, name);
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-cli-attest-'));
  await writeFile(file('turin.bin'), Buffer.from(TURIN_REPORT_HEX, 'hex'));
  await writeFile(file('turin.hex'), TURIN_REPORT_HEX);
  await writeFile(file('vcek.der'), Buffer.from(TURIN_VCEK_B64, 'base64'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const turin = ['attest', 'verify', '--type', 'snp', '--evidence'];

describe('flare attest verify', () => {
  it('exits 0 for real Turin evidence that verifies against the pinned AMD roots (binary and hex files)', async () => {
    for (const f of ['turin.bin', 'turin.hex']) {
      const r = await (f === 'turin.bin' ? flare : flareIn)([...turin, file(f), '--cert', file('vcek.der'), '--at', TURIN_AT]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/verified \(snp/);
      expect(r.stdout).toMatch(/PASS snp\.chip-id/);
    }
  }, 120_000);

  it('--json prints the parsed fields (hex), the chain and every check', async () => {
    const r = await flareIn([...turin, file('turin.bin'), '--cert', file('vcek.der'), '--at', TURIN_AT, '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; claims: { measurement: string; product: string; reportedTcb: { fmc: number } }; chain: Array<{ role: string }>; checks: Array<{ id: string; status: string }> };
    expect(doc.ok).toBe(true);
    expect(doc.claims.measurement).toBe(TURIN_MEASUREMENT);
    expect(doc.claims.product).toBe('Turin');
    expect(doc.claims.reportedTcb.fmc).toBe(0);
    expect(doc.chain.map((c) => c.role)).toEqual(['vcek', 'ask', 'ark']);
    expect(doc.checks.find((c) => c.id === 'snp.report-signature')?.status).toBe('pass');
  });

  it('exits 1 naming the first failed check and its code: expired at --at (E_ATTEST_CERT_EXPIRED)', async () => {
    const r = await flareIn([...turin, file('turin.bin'), '--cert', file('vcek.der'), '--at', '2033-01-01T00:00:00Z']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_ATTEST_CERT_EXPIRED: check snp\.chain failed: .* What to do: /m);
  });

  it('exits 1 when the nonce is not in REPORT_DATA (E_ATTEST_NONCE)', async () => {
    const r = await flareIn([...turin, file('turin.bin'), '--cert', file('vcek.der'), '--at', TURIN_AT, '--nonce', 'aa'.repeat(64)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_ATTEST_NONCE: check snp\.nonce failed/m);
  });

  it('applies --policy: exit 0 when met, 1 with the rule that failed (E_ATTEST_MEASUREMENT)', async () => {
    await writeFile(file('ok.json'), JSON.stringify({ version: 1, freshness: { requireNonce: false }, snp: { measurements: [TURIN_MEASUREMENT], products: ['Turin'] } }));
    await writeFile(file('other.json'), JSON.stringify({ version: 1, freshness: { requireNonce: false }, snp: { measurements: ['00'.repeat(48)] } }));
    expect((await flareIn([...turin, file('turin.bin'), '--cert', file('vcek.der'), '--at', TURIN_AT, '--policy', file('ok.json')])).code).toBe(0);
    const r = await flareIn([...turin, file('turin.bin'), '--cert', file('vcek.der'), '--at', TURIN_AT, '--policy', file('other.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_ATTEST_MEASUREMENT: check policy\.snp\.measurement failed/m);
  });

  it('exits 1 for evidence from an unpinned root (synthetic SNP, TDX and GPU evidence: E_ATTEST_CHAIN)', async () => {
    const auth = createTestAuthority();
    const snp = synthesizeSnpEvidence(auth);
    await writeFile(file('syn-snp.bin'), snp.evidence);
    await writeFile(file('syn-vcek.pem'), snp.certificates[0]!);
    await writeFile(file('syn-tdx.bin'), synthesizeTdxEvidence(auth).evidence);
    const gpu = synthesizeGpuEvidence(auth);
    await writeFile(file('syn-gpu.bin'), gpu.evidence);
    await writeFile(file('syn-gpu.pem'), gpu.certificates);
    await mkdir(file('collateral'));
    const col = synthesizeTdxCollateral(auth);
    await writeFile(file('collateral/tcbInfo.json'), col.tcbInfo);
    await writeFile(file('collateral/qeIdentity.json'), col.qeIdentity);
    await writeFile(file('collateral/tcbInfoIssuerChain.pem'), col.tcbInfoIssuerChain);
    const at = ['--at', '2030-01-01T00:00:00Z'];
    const runs = await sequential([
      () => flareIn(['attest', 'verify', '--type', 'snp', '--evidence', file('syn-snp.bin'), '--cert', file('syn-vcek.pem'), ...at]),
      () => flareIn(['attest', 'verify', '--type', 'tdx', '--evidence', file('syn-tdx.bin'), '--collateral', file('collateral'), ...at]),
      () => flareIn(['attest', 'verify', '--type', 'gpu', '--evidence', file('syn-gpu.bin'), '--chain', file('syn-gpu.pem'), ...at]),
    ]);
    expect(runs.map((r) => r.code)).toEqual([1, 1, 1]);
    expect(runs[0]!.stderr).toMatch(/^E_ATTEST_CHAIN: check snp\.chain failed/m);
    expect(runs[1]!.stderr).toMatch(/^E_ATTEST_CHAIN: check tdx\.pck-chain failed/m);
    expect(runs[2]!.stderr).toMatch(/^E_ATTEST_CHAIN: check gpu\.chain failed/m);
  });

  it('exits 1 for malformed evidence (E_ATTEST_MALFORMED)', async () => {
    await writeFile(file('junk.bin'), Buffer.from('not a report'));
    const r = await flareIn(['attest', 'verify', '--type', 'snp', '--evidence', file('junk.bin')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_ATTEST_MALFORMED: check snp\.parse failed/m);
  });

  it('exits 2 for usage errors: unknown type, missing --evidence, bad --at, bad --nonce, unreadable file, invalid policy', async () => {
    await writeFile(file('bad-policy.json'), '{"version":1,"snp":{"alowDebug":true}}');
    const runs = await sequential([
      () => flareIn(['attest', 'verify', '--type', 'sgx', '--evidence', file('turin.bin')]),
      () => flareIn(['attest', 'verify', '--type', 'snp']),
      () => flareIn([...turin, file('turin.bin'), '--at', 'yesterday']),
      () => flareIn([...turin, file('turin.bin'), '--nonce', 'xyz']),
      () => flareIn([...turin, file('missing.bin')]),
      () => flareIn([...turin, file('turin.bin'), '--cert', file('vcek.der'), '--policy', file('bad-policy.json')]),
    ]);
    expect(runs.map((r) => r.code)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(runs[5]!.stderr).toMatch(/^E_ATTEST_POLICY: /m);
    // And through the real binary: commander's usage error becomes exit 2.
    expect((await flare(['attest', 'verify', '--type', 'sgx', '--evidence', file('turin.bin')])).code).toBe(2);
  }, 120_000);
});
