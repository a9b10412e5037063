// Order statistics on small float64 arrays (internal): in-place quickselect (Hoare, "Algorithm 65: Find",
// CACM 4(7), 1961) with a median-of-three pivot; deterministic (no random pivots).

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}

/**
 * Rearranges a[lo..hi] so that a[k] holds the value it would have if sorted, everything before it is <= and
 * everything after it is >=. Returns a[k].
 */
export function select(a: Float64Array, k: number, lo = 0, hi = a.length - 1): number {
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // Median of three moved to lo as the pivot: sorted input does not degrade to O(n^2).
    if (a[mid]! < a[lo]!) swap(a, mid, lo);
    if (a[hi]! < a[lo]!) swap(a, hi, lo);
    if (a[hi]! < a[mid]!) swap(a, hi, mid);
    swap(a, lo, mid);
    const pivot = a[lo]!;
    let i = lo;
    let j = hi + 1;
    for (;;) {
      do i++;
      while (i <= hi && a[i]! < pivot);
      do j--;
      while (a[j]! > pivot);
      if (i >= j) break;
      swap(a, i, j);
    }
    swap(a, lo, j);
    if (j === k) return a[k]!;
    if (j < k) lo = j + 1;
    else hi = j - 1;
  }
  return a[k]!;
}

/** numpy.median of a[0..n): the middle value, or the mean of the two middle values for even n. Reorders `a`. */
export function medianOf(a: Float64Array, n: number = a.length): number {
  const k = n >>> 1;
  const upper = select(a, k, 0, n - 1);
  if (n % 2 === 1) return upper;
  // After select, a[0..k) holds the k smallest: the lower middle is their maximum.
  let lower = a[0]!;
  for (let i = 1; i < k; i++) if (a[i]! > lower) lower = a[i]!;
  return (lower + upper) / 2;
}
