// Conformance: every real FLARE project file in ../shared/vectors/flare/project_yml (copied verbatim from
// NVIDIA/NVFlare, see that folder's README) provisions unchanged into kits that verify, load and pass openssl.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKit, loadProject, provision, verifyKit } from '../src/index.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const vectors = process.env['FLARE_VECTORS'] ?? resolve(repoRoot, '../shared/vectors');
const folder = join(vectors, 'flare', 'project_yml');
// cc_server1.yml / cc_site-1.yml are CC settings referenced by a project, not projects: only files with participants.
const projects = readdirSync(folder)
  .filter((f) => /\.ya?ml$/.test(f) && /^participants:/m.test(readFileSync(join(folder, f), 'utf8')))
  .sort();
const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('FLARE sample project files provision unchanged', () => {
  it('finds the FLARE project files', () => {
    expect(projects.length).toBeGreaterThanOrEqual(5);
  });

  it.each(projects)('%s', async (file) => {
    const project = await loadProject(join(folder, file));
    const ws = await mkdtemp(join(tmpdir(), 'flare-conf-pki-'));
    dirs.push(ws);
    const result = await provision(project, { workspace: ws });
    expect(result.kits.map((k) => k.name).sort()).toEqual(project.participants.map((p) => p.name).sort());
    const leaves: string[] = [];
    for (const kit of result.kits) {
      expect((await verifyKit(kit.dir)).signer).toBe('root');
      const loaded = await loadKit(kit.dir);
      expect(loaded.participant.name).toBe(kit.name);
      expect(loaded.participant.type).toBe(kit.type);
      expect(loaded.project).toBe(project.name);
      expect(loaded.server.name).toBe(project.server.name);
      leaves.push(join(kit.dir, 'startup', kit.type === 'server' ? 'server.crt' : 'client.crt'));
    }
    const root = join(result.kits[0]!.dir, 'startup', 'rootCA.pem');
    const { stdout } = await run('openssl', ['verify', '-CAfile', root, ...leaves]);
    expect(stdout.trim().split('\n').filter((l) => l.endsWith(': OK'))).toHaveLength(leaves.length);
  });

  it('reads the HEBuilder parameters of the HE integration project', async () => {
    const p = await loadProject(join(folder, 'tests__integration_test__data__projects__2_clients_with_he.yml'));
    expect(p.he).toEqual({ polyModulusDegree: 8192, coeffModBitSizes: [60, 40, 40], scaleBits: 40, scheme: 'CKKS' });
  });

  it('applies project-level connection_security: tls of the distributed-provisioning example', async () => {
    const p = await loadProject(join(folder, 'examples__advanced__distributed_provision__project.yaml'));
    expect(p.participants.every((x) => x.connectionSecurity === 'tls')).toBe(true);
    expect(p.server.adminPort).toBe(8003);
  });

  it('keeps the federated-policies roles (project_admin, org_admin, lead, member)', async () => {
    const p = await loadProject(join(folder, 'examples__advanced__federated-policies__project.yml'));
    expect(p.name).toBe('fed_policy');
    expect(p.participants.filter((x) => x.type === 'admin').map((x) => x.role)).toEqual(['project_admin', 'org_admin', 'lead', 'lead', 'member']);
  });
});
