import { join } from 'node:path';
import type { AuditHook, Logger } from '@flare/core';
import { parseAuthorizationPolicy, type AuthorizationPolicy, type AuthorizationPolicyOptions } from './authorization-policy.js';
import { parseComponentPolicy, type ComponentPolicy } from './component-policy.js';
import { PolicyFile, type PolicyReloadResult } from './policy-file.js';
import { parsePrivacyPolicy, type FilterRegistry, type PrivacyPolicy } from './privacy-policy.js';
import { ResourceManager } from './resource-manager.js';
import { parseResourcePolicy, type ResourceLimits } from './resource-policy.js';

/** Options of {@link loadSitePolicies}. */
export interface SitePolicyOptions {
  /** The site's `local/` folder (from its startup kit). */
  readonly localDir: string;
  /** Registered filters privacy.json may name. */
  readonly registry: FilterRegistry;
  readonly commandCategories?: AuthorizationPolicyOptions['commandCategories'];
  /** The allow-list when the site has no components.json(.default); without it such a site admits no component. */
  readonly defaultComponents?: ComponentPolicy;
  readonly audit?: AuditHook;
  readonly logger?: Logger;
  /** Called after every reload attempt of any of the four files. */
  readonly onReload?: (result: PolicyReloadResult) => void;
}

/** The four policies of a site, each reloadable, and the resource manager that follows resources.json. */
export interface SitePolicies {
  /** local/authorization.json, else local/authorization.json.default (required). */
  readonly authorization: PolicyFile<AuthorizationPolicy>;
  /** local/privacy.json (optional: without it the site has no privacy policy and adds no filters). */
  readonly privacy: PolicyFile<PrivacyPolicy | undefined>;
  /** local/resources.json, else local/resources.json.default (optional: defaults). */
  readonly resources: PolicyFile<ResourceLimits>;
  /** local/components.json, else local/components.json.default (optional: `defaultComponents`, else nothing allowed). */
  readonly components: PolicyFile<ComponentPolicy>;
  /** Reserves per job; its limits follow every accepted change of resources.json. */
  readonly resourceManager: ResourceManager;
  /** Reloads all four files; each keeps its previous policy if its new file is refused. */
  reload(): Promise<PolicyReloadResult[]>;
  /** Reloads on file changes. */
  watch(options?: { readonly debounceMs?: number }): void;
  /** Stops watching and releases every reservation. */
  close(): void;
}

const NO_COMPONENTS: ComponentPolicy = Object.freeze({ allow: new Set<string>(), byoc: false });

/**
 * Loads a site's policies from its `local/` folder with FLARE's file names (`X.json` overrides
 * `X.json.default`). Loading fails if any present file is invalid: a site does not start with a policy it
 * cannot read. Afterwards, reloads replace a policy only with a valid file.
 *
 * @throws PolicyError with the code of the first file that fails (E_POLICY_FILE, E_POLICY_AUTHZ_PARSE, ...).
 */
export async function loadSitePolicies(options: SitePolicyOptions): Promise<SitePolicies> {
  const { localDir, audit, logger } = options;
  const common = (name: string) => ({
    name,
    ...(audit === undefined ? {} : { audit }),
    ...(logger === undefined ? {} : { logger }),
  });
  const files = (base: string, withDefault: boolean) => [join(localDir, base), ...(withDefault ? [join(localDir, `${base}.default`)] : [])];
  const authorization = await PolicyFile.load<AuthorizationPolicy>({
    ...common('authorization'),
    paths: files('authorization.json', true),
    parse: (b) => parseAuthorizationPolicy(b, options.commandCategories === undefined ? {} : { commandCategories: options.commandCategories }),
    ...(options.onReload === undefined ? {} : { onReload: options.onReload }),
  });
  const privacy = await PolicyFile.load<PrivacyPolicy | undefined>({
    ...common('privacy'),
    paths: files('privacy.json', false),
    parse: (b) => parsePrivacyPolicy(b, { registry: options.registry }),
    fallback: () => undefined,
    ...(options.onReload === undefined ? {} : { onReload: options.onReload }),
  });
  const resources = await PolicyFile.load<ResourceLimits>({
    ...common('resources'),
    paths: files('resources.json', true),
    parse: (b) => parseResourcePolicy(b),
    fallback: () => parseResourcePolicy({}),
    onReload: (r) => {
      // Reloads only happen after this function returned, when resourceManager exists.
      if (r.changed) resourceManager.setLimits(resources.current);
      options.onReload?.(r);
    },
  });
  const resourceManager = new ResourceManager(resources.current, audit === undefined ? {} : { audit });
  const components = await PolicyFile.load<ComponentPolicy>({
    ...common('components'),
    paths: files('components.json', true),
    parse: (b) => parseComponentPolicy(b),
    fallback: () => options.defaultComponents ?? NO_COMPONENTS,
    ...(options.onReload === undefined ? {} : { onReload: options.onReload }),
  });
  const all = [authorization, privacy, resources, components] as const;
  return {
    authorization,
    privacy,
    resources,
    components,
    resourceManager,
    reload: () => Promise.all(all.map((f) => f.reload())),
    watch: (w) => {
      for (const f of all) f.watch(w);
    },
    close: () => {
      for (const f of all) f.close();
      resourceManager.close();
    },
  };
}
