import { z } from 'zod';
import { model, tensor, type Filter, type FilterFactory, type FLModel } from '@flare/core';

/**
 * Test filter factories with real zod schemas, registered under the names a runtime would use. Each filter
 * appends its tag to model.meta.trail so tests can see the order filters ran in.
 */
function taggingFactory(name: string, args: z.ZodType<Record<string, unknown>> = z.strictObject({ tag: z.string().default(name) })): FilterFactory {
  return {
    name,
    args,
    create(parsed: unknown): Filter {
      const tag = String((parsed as { tag?: unknown }).tag ?? name);
      return {
        name,
        apply(m: FLModel): FLModel {
          const trail = Array.isArray(m.meta['trail']) ? (m.meta['trail'] as string[]) : [];
          return { ...m, meta: { ...m.meta, trail: [...trail, tag] } };
        },
      };
    },
  };
}

const gaussian = taggingFactory(
  'gaussian-dp',
  z.strictObject({ epsilon: z.number().positive(), delta: z.number().gt(0).lt(1), clip: z.number().positive().default(1), tag: z.string().default('gaussian-dp') }),
);
const percentile = taggingFactory(
  'percentile-privacy',
  z.strictObject({ percentile: z.number().int().min(0).max(100).default(10), gamma: z.number().positive().default(0.01), tag: z.string().default('percentile-privacy') }),
);
const exclude = taggingFactory('exclude-vars', z.strictObject({ names: z.array(z.string()).min(1), tag: z.string().default('exclude-vars') }));

export const registry: ReadonlyMap<string, FilterFactory> = new Map([gaussian, percentile, exclude].map((f) => [f.name, f]));

export const tiny = (): FLModel => model([['w', tensor(new Float32Array([1, 2, 3]), [3])]]);
