import { fileURLToPath } from 'node:url';

/**
 * The folder holding the Python client (`flare_ts`) shipped inside @flare/runtime: put it on a program's
 * PYTHONPATH (external learners get it there by default) and `import flare_ts as flare`.
 */
export const PYTHON_CLIENT_DIR: string = fileURLToPath(new URL('../../python', import.meta.url));
