/** The validation metrics of one model across sites: per site, a bounded weighted mean, and the spread. */
export interface SiteMetrics {
  /**
   * `accuracy`, `loss`, ... weighted by each site's sample count capped at the median count (so one site
   * claiming a huge count cannot set the figure), plus `<name>_min`, `<name>_max`, `<name>_median` across
   * sites and `sites` (how many reported).
   */
  readonly summary: Record<string, number>;
  /** Each site's own figures (without the `val_` prefix). */
  readonly perSite: Record<string, Record<string, number>>;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Summarises the sites' validation metrics (`val_<name>` keys; `val_n` is the site's sample count). A count
 * is only a claim: each weight is the count capped at the median count of the sites that reported (a site
 * without a count weighs as the median, or 1 when none reported one), and the spread is reported beside the
 * mean so an outlier shows.
 */
export function siteMetrics(per: ReadonlyMap<string, Readonly<Record<string, number>>>): SiteMetrics {
  const perSite: Record<string, Record<string, number>> = {};
  const counts: number[] = [];
  for (const [site, m] of per) {
    const own: Record<string, number> = {};
    for (const [k, v] of Object.entries(m)) if (k.startsWith('val_') && Number.isFinite(v)) own[k.slice(4)] = v;
    if (Object.keys(own).length === 0) continue;
    perSite[site] = own;
    const n = own['n'];
    if (n !== undefined && n > 0) counts.push(n);
  }
  const cap = counts.length === 0 ? 1 : median(counts);
  const names = new Set(Object.values(perSite).flatMap((m) => Object.keys(m).filter((k) => k !== 'n')));
  const summary: Record<string, number> = {};
  for (const name of [...names].sort()) {
    let sum = 0;
    let total = 0;
    const values: number[] = [];
    for (const m of Object.values(perSite)) {
      const v = m[name];
      if (v === undefined) continue;
      const w = Math.min(m['n'] !== undefined && m['n'] > 0 ? m['n'] : cap, cap);
      sum += w * v;
      total += w;
      values.push(v);
    }
    if (values.length === 0 || total === 0) continue;
    summary[name] = sum / total;
    summary[`${name}_min`] = Math.min(...values);
    summary[`${name}_max`] = Math.max(...values);
    summary[`${name}_median`] = median(values);
  }
  if (Object.keys(perSite).length > 0) summary['sites'] = Object.keys(perSite).length;
  return { summary, perSite };
}
