/** Small numeric and formatting helpers shared by the benchmark's parent and workers. */
import { performance } from 'node:perf_hooks';

/** Nearest-rank percentile of an ascending-sorted array (p in 0..100). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/**
 * Wall-clock epoch milliseconds with sub-millisecond resolution: performance.now() anchored
 * to Date.now() at the instant it ticks over, and kept inside [Date.now(), Date.now() + 1) on
 * every read, so it follows the wall clock (the frame due times live in) even when the system
 * slews it. `drift()` says how far the wall clock has moved against the monotonic clock since
 * the anchor (about 0 unless the system clock was stepped or slewed).
 */
export function preciseClock() {
  const anchor = nextTick() - performance.now();
  let offset = anchor;
  const now = () => {
    const p = performance.now();
    const d = Date.now();
    let t = offset + p;
    if (t < d) {
      offset += d - t;
      t = d;
    } else if (t >= d + 1) {
      offset -= t - (d + 0.999);
      t = d + 0.999;
    }
    return t;
  };
  return { now, drift: () => nextTick() - performance.now() - anchor };
}

/** Spins (at most ~1 ms) until Date.now() ticks over; returns the new value. */
function nextTick() {
  const d0 = Date.now();
  let d = d0;
  while (d === d0) d = Date.now();
  return d;
}

export function gcFull() {
  if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
  globalThis.gc();
  globalThis.gc();
}

export function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(abs >= 100 ? 0 : digits);
}

export function fmtInt(value) {
  return value === null || value === undefined ? 'n/a' : Math.round(value).toLocaleString('en-US');
}

/** Renders rows (arrays of strings) as an aligned text table; numeric-looking cells align right. */
export function renderTable(header, rows) {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c] ?? '').length)));
  const numeric = /^[-+]?[\d,.]+(x|%| ms| B)?$|^n\/a$/;
  const line = (r) =>
    r
      .map((cell, c) => {
        const s = String(cell ?? '');
        return numeric.test(s) ? s.padStart(widths[c]) : s.padEnd(widths[c]);
      })
      .join(' | ');
  const sep = widths.map((w) => '-'.repeat(w)).join('-+-');
  return [line(header), sep, ...rows.map(line)].join('\n');
}
