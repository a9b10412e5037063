import { resolve } from 'node:path';
import { FileError, readFileIfExists } from '@flare/core';
import { ANY_SITE } from '@flare/runtime';
import { InvalidArgumentError } from 'commander';

/** The environment variable `flare admin submit` reads a token for every site from, when no `--token-file` gives one. */
export const OIDC_TOKEN_ENV = 'FLARE_OIDC_TOKEN';

/** One `--token-file [site=]file`: which site (`*`: every site without its own) and where the token is. */
export interface TokenFileArg {
  readonly site: string;
  readonly file: string;
}

/** Commander's collector for the repeatable `--token-file [site=]file`. */
export function collectTokenFile(value: string, previous: TokenFileArg[]): TokenFileArg[] {
  const m = /^([A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})=(.+)$/.exec(value);
  const arg = m === null ? { site: ANY_SITE, file: value } : { site: m[1]!, file: m[2]! };
  if (previous.some((p) => p.site === arg.site)) throw new InvalidArgumentError(`two tokens for ${arg.site === ANY_SITE ? 'every site' : arg.site}`);
  return [...previous, arg];
}

/**
 * The tokens `flare admin submit` attaches to the job: each `--token-file` (the file's content, trimmed), and
 * `$FLARE_OIDC_TOKEN` for every site when no file gives one for every site.
 *
 * @throws FileError E_FILE_READ naming a token file that does not exist or cannot be read.
 */
export async function readTokenFiles(args: readonly TokenFileArg[], env: string | undefined): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  for (const a of args) {
    const path = resolve(a.file);
    const bytes = await readFileIfExists(path, { maxBytes: 64 * 1024 });
    if (bytes === undefined) throw new FileError('E_FILE_READ', `token file ${path} does not exist`);
    tokens.set(a.site, new TextDecoder().decode(bytes).trim());
  }
  if (!tokens.has(ANY_SITE) && env !== undefined && env.trim() !== '') tokens.set(ANY_SITE, env.trim());
  return tokens;
}
