import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadParticipants, loadProject, parseProject } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { FIXTURE, projectYaml, tempDir } from './helpers.js';

describe('loadProject: unknown participant keys', () => {
  it("refuses a typo'd key with file:line and a did-you-mean (E_PROJECT_INVALID)", async () => {
    const text = projectYaml().replace('    fed_learn_port: 8002', '    fed_learn_prot: 8002');
    const e = await expectFlareCodeAsync(() => parseProject(text, { source: 'project.yml' }), 'E_PROJECT_INVALID');
    expect(e.message).toContain('project.yml:8:');
    expect(e.message).toContain("field 'fed_learn_prot'");
    expect(e.message).toContain("did you mean 'fed_learn_port'?");
    const e2 = await expectFlareCodeAsync(() => parseProject(projectYaml('    conection_security: tls\n')), 'E_PROJECT_INVALID');
    expect(e2.message).toContain("did you mean 'connection_security'?");
    const e3 = await expectFlareCodeAsync(() => parseProject(projectYaml('    favourite_colour: blue\n')), 'E_PROJECT_INVALID');
    expect(e3.message).not.toContain('did you mean');
  });
  it("accepts FLARE's own keys it does not use (cc_config) and keys a kit builder declares", () => {
    expect(() => parseProject(projectYaml('    cc_config: cc_site.yml\n'))).not.toThrow();
    const extra = projectYaml('    attestation_policy: { version: 1 }\n');
    expect(() => parseProject(extra)).toThrow(/attestation_policy/);
    expect(parseProject(extra, { participantKeys: ['attestation_policy'] }).participants.at(-1)?.props['attestation_policy']).toEqual({ version: 1 });
  });
});

describe('loadProject: FLARE project files', () => {
  it("parses FLARE's dummy_project.yml unchanged (nvflare/lighter/dummy_project.yml)", async () => {
    const p = await loadProject(FIXTURE);
    expect(p.apiVersion).toBe(3);
    expect(p.name).toBe('example_project');
    expect(p.rootCommonName).toBe('example_project');
    expect(p.participants.map((x) => [x.name, x.type])).toEqual([
      ['server1', 'server'],
      ['site-1', 'client'],
      ['site-2', 'client'],
      ['admin@nvidia.com', 'admin'],
      ['org-admin@nvidia.com', 'admin'],
      ['lead@nvidia.com', 'admin'],
    ]);
    expect(p.server).toMatchObject({ name: 'server1', fedLearnPort: 8002, adminPort: 8002, defaultHost: 'server1', hostNames: [] });
    expect(p.participants[5]).toMatchObject({ role: 'lead', org: 'nvidia', connectionSecurity: 'mtls' });
    expect(p.scheme).toBe('grpc');
    expect(p.rootValidDays).toBe(360);
    expect(p.builders.map((b) => b.path)).toContain('nvflare.lighter.impl.cert.CertBuilder');
    expect(p.source).toBe(FIXTURE);
  });

  it('reads StaticFileBuilder scheme, CertBuilder root_valid_days and HEBuilder parameters', () => {
    const p = parseProject(
      projectYaml() +
        `builders:
  - path: nvflare.lighter.impl.static_file.StaticFileBuilder
    args:
      scheme: http
  - path: nvflare.lighter.impl.cert.CertBuilder
    args:
      root_valid_days: 3650
  - path: nvflare.lighter.impl.he.HEBuilder
    args:
      poly_modulus_degree: 8192
      coeff_mod_bit_sizes: [60, 40, 40]
      scale_bits: 40
      scheme: CKKS
  - path: my.company.CustomBuilder
    args: { anything: [1, 2] }
packager:
  path: nvflare.lighter.cc_provision.impl.onprem_packager.OnPremPackager
`,
    );
    expect(p.scheme).toBe('http');
    expect(p.rootValidDays).toBe(3650);
    expect(p.he).toEqual({ polyModulusDegree: 8192, coeffModBitSizes: [60, 40, 40], scaleBits: 40, scheme: 'CKKS' });
    expect(p.builders.find((b) => b.path === 'my.company.CustomBuilder')?.args).toEqual({ anything: [1, 2] });
    expect(p.notices.some((n) => n.includes('OnPremPackager'))).toBe(true);
  });

  it('applies connection_security case-insensitively at project and participant level, with custom_ca_cert', () => {
    const p = parseProject(
      `api_version: 4
name: cs
connection_security: TLS
custom_ca_cert: certs/proxy.pem
participants:
  - name: fl.example.com
    type: server
    org: a
    host_names: [10.0.0.5, fl-alt.example.com, "::1"]
    default_host: fl.example.com
    admin_port: 8003
  - name: site-a
    type: client
    org: a
    connection_security: Clear
  - name: site-b
    type: client
    org: b
    connect_to: { name: fl.example.com, host: proxy.example.com, port: 443, connection_security: mtls }
    capacity: { num_of_gpus: 2, mem_per_gpu_in_GiB: 16 }
  - name: site-c
    type: client
    org: b
    connect_to: 10.1.2.3
studies:
  - name: study1
`,
      { baseDir: '/proj' },
    );
    expect(p.apiVersion).toBe(4);
    expect(p.connectionSecurity).toBe('tls');
    expect(p.customCaCert).toBe('/proj/certs/proxy.pem');
    const [server, a, b, c] = p.participants;
    expect(server).toMatchObject({ connectionSecurity: 'tls', hostNames: ['10.0.0.5', 'fl-alt.example.com', '::1'], adminPort: 8003, customCaCert: '/proj/certs/proxy.pem' });
    expect(a?.connectionSecurity).toBe('clear');
    expect(b?.connectTo).toEqual({ name: 'fl.example.com', host: 'proxy.example.com', port: 443, connectionSecurity: 'mtls' });
    expect(b?.capacity).toEqual({ numOfGpus: 2, memPerGpuInGiB: 16 });
    expect(c?.connectTo).toEqual({ host: '10.1.2.3' });
    expect(p.studies).toEqual([{ name: 'study1' }]);
  });

  it('truncates a project name over 63 characters for the root CN, with a notice (as FLARE does)', () => {
    const long = 'p'.repeat(70);
    const p = parseProject(projectYaml('', long));
    expect(p.name).toBe(long);
    expect(p.rootCommonName).toBe('p'.repeat(63));
    expect(p.notices.join('\n')).toContain('truncated');
  });

  it('reports ignored overseers and non-standard roles as notices, never failing on them', () => {
    const p = parseProject(projectYaml(`  - name: overseer.example.com
    type: overseer
    org: nvidia
  - name: auditor@nvidia.com
    type: admin
    org: nvidia
    role: auditor
`));
    expect(p.participants.map((x) => x.name)).not.toContain('overseer.example.com');
    expect(p.notices.join('\n')).toMatch(/overseer/);
    expect(p.notices.join('\n')).toMatch(/non-standard role 'auditor'/);
  });

  it('reads relays with listening_host and clients with a parent relay', () => {
    const p = parseProject(projectYaml(`  - name: relay-1
    type: relay
    org: nvidia
    listening_host: relay1.example.com
  - name: site-9
    type: client
    org: nvidia
    parent: relay-1
`));
    expect(p.participants.find((x) => x.name === 'relay-1')?.listeningHosts).toEqual(['relay1.example.com']);
    expect(p.participants.find((x) => x.name === 'site-9')?.parent).toBe('relay-1');
  });
});

describe("loadProject: FLARE's rejection cases (flare-compat.md), each with file, participant, field and line", () => {
  const server = (name: string): string => `api_version: 3
name: demo
participants:
  - name: ${name}
    type: server
    org: nvidia
`;
  it.each(['server_', 'server@', '-server'])("refuses server name '%s' (E_PROJECT_INVALID)", async (name) => {
    const e = await expectFlareCodeAsync(() => parseProject(server(name), { source: 'project.yml' }), 'E_PROJECT_INVALID');
    expect(e.message).toContain(`project.yml:4: participant '${name}' (server), field 'name'`);
    expect(e.message).toContain('host name');
  });
  it.each(['client!', 'client@'])("refuses client name '%s'", async (name) => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: "${name}"\n    type: client\n    org: nvidia\n`), { source: 'p.yml' }), 'E_PROJECT_INVALID');
    expect(e.message).toMatch(/p\.yml:16: participant 'client.' \(client\), field 'name'/);
    expect(e.message).toContain('letters, digits, "-" and "_" only');
  });
  it.each(['admin', 'admin@example_1.com'])("refuses admin name '%s'", async (name) => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: ${name}\n    type: admin\n    org: nvidia\n    role: lead\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain('an email address');
  });
  it.each(['org-', 'org@', 'org!', 'org~'])("refuses org '%s' (no hyphen)", async (org) => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: site-7\n    type: client\n    org: "${org}"\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain("participant 'site-7' (client), field 'org'");
    expect(e.message).toContain('no hyphen');
  });
  it('refuses an admin without a role', async () => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: x@y.com\n    type: admin\n    org: nvidia\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain("field 'role'");
    expect(e.message).toContain('project_admin, org_admin, lead, member');
  });
  it('refuses a malformed admin role', async () => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: x@y.com\n    type: admin\n    org: nvidia\n    role: "lead-dev"\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain("field 'role'");
  });
  it('refuses duplicate names', async () => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: site-1\n    type: client\n    org: other\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain("the name 'site-1' is used by another participant");
  });
  it('refuses zero or two servers', async () => {
    await expectFlareCodeAsync(() => parseProject(`api_version: 3\nname: x\nparticipants:\n  - name: s\n    type: client\n    org: o\n`), 'E_PROJECT_INVALID');
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: server2\n    type: server\n    org: nvidia\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain('exactly one participant of type server');
  });
  it.each([
    ['api_version: 2', 'api_version', '3 or 4'],
    ['connection_security: secure', 'connection_security', 'clear, tls or mtls'],
  ])('refuses %s', async (line, field, looks) => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml().replace('api_version: 3', line.startsWith('api') ? line : `api_version: 3\n${line}`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain(`field '${field}'`);
    expect(e.message).toContain(looks);
  });
  it('refuses bad ports, hosts, capacity and a relay without listening_host', async () => {
    await expectFlareCodeAsync(() => parseProject(projectYaml().replace('fed_learn_port: 8002', 'fed_learn_port: 70000')), 'E_PROJECT_INVALID');
    await expectFlareCodeAsync(() => parseProject(projectYaml().replace('fed_learn_port: 8002', 'host_names: [bad_host]')), 'E_PROJECT_INVALID');
    await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: s9\n    type: client\n    org: o\n    capacity: { num_of_gpus: -1 }\n`)), 'E_PROJECT_INVALID');
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: r1\n    type: relay\n    org: o\n`)), 'E_PROJECT_INVALID');
    expect(e.message).toContain("field 'listening_host'");
    await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: s9\n    type: client\n    org: o\n    parent: site-1\n`)), 'E_PROJECT_INVALID');
  });
  it('refuses a participant name over 64 characters (E_CERT_CN_TOO_LONG)', async () => {
    const e = await expectFlareCodeAsync(() => parseProject(projectYaml(`  - name: ${'s'.repeat(65)}\n    type: client\n    org: o\n`)), 'E_CERT_CN_TOO_LONG');
    expect(e.message).toContain('at most 64');
  });
  it('refuses a project name that could leave the workspace', async () => {
    await expectFlareCodeAsync(() => parseProject(projectYaml('', '../evil')), 'E_PROJECT_INVALID');
  });
  it('reports YAML syntax errors with their line (E_PROJECT_YAML)', async () => {
    const e = await expectFlareCodeAsync(() => parseProject('api_version: 3\nname: x\nparticipants:\n  - name: a\n   type: server\n', { source: 'bad.yml' }), 'E_PROJECT_YAML');
    expect(e.message).toMatch(/^bad\.yml:\d+: /);
    await expectFlareCodeAsync(() => parseProject('a: 1\na: 2\n'), 'E_PROJECT_YAML');
  });
  it('refuses a missing file and a file over 1 MiB (E_PROJECT_READ)', async () => {
    const dir = await tempDir();
    await expectFlareCodeAsync(() => loadProject(join(dir, 'nope.yml')), 'E_PROJECT_READ');
    const big = join(dir, 'big.yml');
    await writeFile(big, `# ${'x'.repeat(1 << 20)}`);
    await expectFlareCodeAsync(() => loadProject(big), 'E_PROJECT_READ');
  });
  it('bounds YAML alias expansion (a billion-laughs file is refused, not expanded)', async () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`)].join('\n');
    expect(() => parseProject(bomb + '\n')).toThrow();
  });
});

describe('loadParticipants (--add files)', () => {
  it('validates added participants with the same rules, against the project', async () => {
    const project = parseProject(projectYaml());
    const added = await loadParticipants('participants:\n  - name: site-3\n    type: client\n    org: nvidia\n', project);
    expect(added.map((p) => p.name)).toEqual(['site-3']);
    await expectFlareCodeAsync(() => loadParticipants('participants:\n  - name: site-3!\n    type: client\n    org: nvidia\n', project), 'E_PROJECT_INVALID');
    await expectFlareCodeAsync(() => loadParticipants('nothing: here\n', project), 'E_PROJECT_INVALID');
  });
});

describe('name rules agree with FLARE (nvflare/apis/utils/format_check.py), property-tested', () => {
  const chars = fc.constantFrom(...'abcXYZ019-_.@!~ '.split(''));
  it('a client name is accepted exactly when it matches ^[A-Za-z0-9-_]+$', () => {
    fc.assert(
      fc.property(fc.string({ unit: chars, minLength: 1, maxLength: 12 }), (name) => {
        const yaml = projectYaml(`  - name: ${JSON.stringify(name)}\n    type: client\n    org: o\n`);
        const ok = /^[A-Za-z0-9-_]+$/.test(name) && name !== 'site-1';
        let accepted = true;
        try {
          parseProject(yaml);
        } catch {
          accepted = false;
        }
        expect(accepted).toBe(ok);
      }),
      { numRuns: 300, seed: 42 },
    );
  });
  it('an org is accepted exactly when it matches ^[A-Za-z0-9_]+$', () => {
    fc.assert(
      fc.property(fc.string({ unit: chars, minLength: 1, maxLength: 12 }), (org) => {
        const yaml = projectYaml(`  - name: site-77\n    type: client\n    org: ${JSON.stringify(org)}\n`);
        let accepted = true;
        try {
          parseProject(yaml);
        } catch {
          accepted = false;
        }
        expect(accepted).toBe(/^[A-Za-z0-9_]+$/.test(org));
      }),
      { numRuns: 300, seed: 43 },
    );
  });
});
