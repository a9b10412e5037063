import { describe, expect, it } from 'vitest';
import { IdentitySchema, PARTICIPANT_TYPES, identityText, sameIdentity, type Identity, type KitParticipant } from '../src/index.js';

describe('Identity', () => {
  const admin: Identity = { name: 'lead@hospital.org', org: 'hospital_a', type: 'admin', role: 'lead' };

  it('accepts every participant type, with and without a role', () => {
    for (const type of PARTICIPANT_TYPES) expect(IdentitySchema.parse({ name: 'site-1', org: 'org_a', type })).toEqual({ name: 'site-1', org: 'org_a', type });
    expect(IdentitySchema.parse(admin)).toEqual(admin);
  });

  it('refuses unknown types and fields, empty or long names, control characters, and orgs or roles outside FLARE\'s rules', () => {
    const bad: unknown[] = [
      { ...admin, type: 'root' },
      { ...admin, extra: 1 },
      { ...admin, name: '' },
      { ...admin, name: 'x'.repeat(65) },
      { ...admin, name: 'site\nforged log line' },
      { ...admin, org: 'org-a' },
      { ...admin, role: 'lead admin' },
      { name: 'site-1', type: 'client' },
      null,
      'site-1',
    ];
    for (const v of bad) expect(IdentitySchema.safeParse(v).success, JSON.stringify(v)).toBe(false);
  });

  it('compares and prints identities', () => {
    expect(sameIdentity(admin, { ...admin })).toBe(true);
    expect(sameIdentity(admin, { ...admin, role: 'member' })).toBe(false);
    expect(identityText(admin)).toBe('lead@hospital.org (admin lead, hospital_a)');
    expect(identityText({ name: 'site-1', org: 'a', type: 'client' })).toBe('site-1 (client, a)');
  });

  it('a kit participant is an identity with its project.yml entry', () => {
    const p: KitParticipant = { name: 'site-1', org: 'a', type: 'client', props: {} };
    const id: Identity = p;
    expect(id.name).toBe('site-1');
  });
});
