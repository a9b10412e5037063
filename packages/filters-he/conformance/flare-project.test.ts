import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JsonValue, KitBuildContext, KitParticipant } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HE_CLIENT_CONTEXT_FILE, HE_SERVER_CONTEXT_FILE, heKitBuilder, heParamsFromBuilderArgs, loadHeContext } from '../src/index.js';

// FLARE's own HE integration-test project (vectors/flare/project_yml, copied verbatim from NVIDIA/NVFlare
// f3b7c1b, tests/integration_test/data/projects/2_clients_with_he.yml) provisions as is: its HEBuilder args
// are read, the two clients get the client context, the server the server context, the admin nothing.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const vectors = process.env['FLARE_VECTORS'] ?? resolve(root, '../shared/vectors');
const file = resolve(vectors, 'flare/project_yml/tests__integration_test__data__projects__2_clients_with_he.yml');

interface Project {
  name: string;
  participants: Array<Record<string, JsonValue> & { name: string; type: KitParticipant['type']; org: string }>;
  builders: Array<{ path: string; args?: Record<string, JsonValue> }>;
}

describe("FLARE's 2_clients_with_he project", () => {
  const project = parse(readFileSync(file, 'utf8')) as Project;
  const he = project.builders.find((b) => b.path === 'nvflare.lighter.impl.he.HEBuilder')!;

  it('reads its HEBuilder args: N = 8192, [60, 40, 40], scale 2^40, CKKS', () => {
    expect(heParamsFromBuilderArgs(he.args)).toEqual({ polyModulusDegree: 8192, coeffModBits: [60, 40, 40], scaleBits: 40 });
  });

  it('provisions HE contexts into the kits of its participants', async () => {
    const files = new Map<string, Uint8Array>();
    const state = new Map<string, Uint8Array>();
    const participants: KitParticipant[] = project.participants.map(({ name, type, org, ...props }) => ({ name, type, org, props }));
    const ctx: KitBuildContext = {
      project: { name: project.name, participants },
      args: he.args,
      state: { read: async (f) => state.get(f), write: async (f, b) => void state.set(f, b) },
      addFile: (p, rel, bytes) => void files.set(`${p}/${rel}`, bytes),
    };
    const builder = heKitBuilder();
    expect(builder.matches).toContain(he.path);
    await builder.build(ctx);
    expect([...files.keys()].sort()).toEqual([`localhost0/${HE_SERVER_CONTEXT_FILE}`, `site-1/${HE_CLIENT_CONTEXT_FILE}`, `site-2/${HE_CLIENT_CONTEXT_FILE}`]);
    const server = await loadHeContext(files.get(`localhost0/${HE_SERVER_CONTEXT_FILE}`)!);
    expect(server.hasSecretKey).toBe(false);
    expect(server.params.coeffModBits).toEqual([60, 40, 40]);
    server.dispose();
  });
});
