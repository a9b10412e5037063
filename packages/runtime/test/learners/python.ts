import { spawnSync } from 'node:child_process';

/**
 * A Python interpreter that imports every module of `modules`: $FLARE_PYTHON, then `python3` on the PATH, then
 * Debian's /usr/bin/python3 (where apt's python3-numpy / python3-torch land when PATH finds another Python).
 * Returns the reason when none does, for the test's skip note.
 */
export function findPython(modules: readonly string[]): { readonly python?: string; readonly reason: string } {
  const candidates = [process.env['FLARE_PYTHON'], 'python3', '/usr/bin/python3'].filter((c): c is string => c !== undefined && c !== '');
  const tried: string[] = [];
  for (const c of [...new Set(candidates)]) {
    const r = spawnSync(c, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) return { python: c, reason: '' };
    tried.push(`${c}: ${r.error === undefined ? (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`) : r.error.message}`);
  }
  return { reason: `no Python with ${modules.join(', ')} (apt-get install -y python3 ${modules.map((m) => `python3-${m}`).join(' ')}); tried ${tried.join('; ')}` };
}
