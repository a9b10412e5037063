// Log-space arithmetic and the complementary error function for the RDP accountant. Internal: not exported
// from the package index. Everything is in float64; comments give the accuracy each piece was checked to
// (against mpmath at 50 digits, see test/log-math.test.ts).

const SQRT_PI = Math.sqrt(Math.PI);

/** log(e^a + e^b) without overflow; -Infinity is the log of zero. */
export function logAdd(a: number, b: number): number {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  if (lo === -Infinity) return hi;
  return Math.log1p(Math.exp(lo - hi)) + hi;
}

/**
 * log(e^a - e^b) for a >= b; NaN when a < b (the caller decides what a negative difference means: for the
 * accountant it marks a series that lost its precision).
 */
export function logSub(a: number, b: number): number {
  if (a < b) return Number.NaN;
  if (b === -Infinity) return a;
  if (a === b) return -Infinity;
  // log(e^a - e^b) = b + log(expm1(a - b)); for a - b > ~709 expm1 overflows and the answer is a.
  const d = a - b;
  if (d > 700) return a;
  return Math.log(Math.expm1(d)) + b;
}

/** erf(x) by its Maclaurin series, for |x| <= 0.5 (terms fall by x^2 < 0.25 each: 25 terms reach 2^-53). */
function erfSmall(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 40; n++) {
    term *= -x2 / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / SQRT_PI) * sum;
}

/**
 * erfc(x) * e^(x^2) * sqrt(pi) for x >= 0.5, by the Laplace continued fraction
 * erfc(x) = e^(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
 * (Abramowitz & Stegun 7.1.14), evaluated with the modified Lentz method. Converges for every x > 0, in
 * fewer than 40 steps for x >= 4 and about 60 at 2.5 (where it takes over); the loop is bounded at 5,000.
 */
function erfcCf(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n <= 5000; n++) {
    const a = n / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 2e-16) break;
  }
  return 1 / f;
}

/**
 * erf(x) for 0 < x < 2.5 by the series erf(x) = 2/sqrt(pi) e^(-x²) Σ (2x²)^n x / (1·3·...·(2n+1))
 * (Abramowitz & Stegun 7.1.6): positive terms, no cancellation; about 60 terms at x = 2.5.
 */
function erfMid(x: number): number {
  const x2 = 2 * x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= x2 / (2 * n + 1);
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return (2 / SQRT_PI) * Math.exp(-x * x) * sum;
}

/** erfc(|x|)·e^(x²)·sqrt(pi) for |x| > 0.5: the series below 2.5 (1 - erf loses at most a factor 1/erfc(2.5) =
 * 2500 of float64's 2^-53, keeping 1e-12 relative), the continued fraction (at most ~60 steps) from 2.5 on. */
function scaledErfc(ax: number): number {
  if (ax < 2.5) return (1 - erfMid(ax)) * Math.exp(ax * ax) * SQRT_PI;
  return erfcCf(ax);
}

/** ln erfc(x) for every finite x, without underflow for large x (erfc(30) is 2.6e-393, below float64). */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x === Infinity) return -Infinity;
  if (x === -Infinity) return Math.LN2;
  const ax = Math.abs(x);
  if (ax <= 0.5) return Math.log1p(-erfSmall(x));
  if (x > 0) return ax < 2.5 ? Math.log1p(-erfMid(ax)) : -x * x + Math.log(erfcCf(x) / SQRT_PI);
  // erfc(-a) = 2 - erfc(a), which lies in (1, 2]: no cancellation.
  return Math.log(2 - Math.exp(-ax * ax) * (scaledErfc(ax) / SQRT_PI));
}

/** erfc(x) for every finite x (underflows to 0 past x ≈ 26.5); the same pieces as {@link logErfc}. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x <= 0.5) return 1 - erfSmall(x);
  if (x < 2.5) return 1 - erfMid(x);
  if (x > 27) return 0;
  return (Math.exp(-x * x) * erfcCf(x)) / SQRT_PI;
}
