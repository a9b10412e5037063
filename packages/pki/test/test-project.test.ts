import { describe, expect, it } from 'vitest';
import { testProject, testProjectYaml } from '../src/testing/index.js';

describe('testProjectYaml / testProject (@flare/pki/testing)', () => {
  it('defaults: a loopback server named localhost on 8002 and site-1, in the server org', () => {
    const p = testProject({ name: 'demo' });
    expect(p.name).toBe('demo');
    expect(p.participants.map((x) => [x.name, x.type, x.org])).toEqual([
      ['localhost', 'server', 'nvidia'],
      ['site-1', 'client', 'nvidia'],
    ]);
    expect(p.participants[0]?.fedLearnPort).toBe(8002);
  });

  it('sites with orgs, admins with roles, relays with their own keys, the port, host names and top-level fields', () => {
    const p = testProject({
      name: 'full',
      server: 'server1',
      org: 'org_a',
      port: 9443,
      hostNames: ['localhost', '127.0.0.1'],
      sites: ['site-1', ['site-2', 'acme']],
      admins: [['admin@a.org', 'org_a', 'project_admin'], ['member@b.org', 'org_b', 'member']],
      participants: [{ name: 'relay-1', type: 'relay', org: 'org_a', listening_host: 'localhost', mode: 'aggregate' }],
      fields: { description: 'a test project' },
    });
    expect(p.description).toBe('a test project');
    const byName = new Map(p.participants.map((x) => [x.name, x]));
    expect(byName.get('server1')?.fedLearnPort).toBe(9443);
    expect(byName.get('server1')?.hostNames).toEqual(['localhost', '127.0.0.1']);
    expect(byName.get('site-2')?.org).toBe('acme');
    expect(byName.get('member@b.org')?.role).toBe('member');
    expect(byName.get('relay-1')?.props['mode']).toBe('aggregate');
  });

  it('no sites when asked, and the text is what provisioning parses', () => {
    const yaml = testProjectYaml({ name: 'empty', sites: [] });
    expect(yaml).toMatch(/^api_version: 3\nname: empty\n/);
    expect(testProject({ name: 'empty', sites: [] }).participants).toHaveLength(1);
  });
});
