import { Cron } from 'croner';
import { InvalidCronError } from '../errors.js';

/**
 * Cron through croner: 5 fields, or 6 with a leading seconds field; L, W and # supported;
 * `tz` an IANA zone (default: the process's local zone).
 *
 * DST, as croner computes it and as tests/timing.test.ts pins down:
 * - spring forward: a wall time inside the skipped hour does not exist; that day's
 *   occurrence fires one hour later on the wall clock (02:30 in Europe/Berlin on
 *   2026-03-29 fires at 03:30 CEST), never dropped; the next day fires at 02:30 again;
 * - fall back: a wall time inside the repeated hour fires once, on its first pass (CEST);
 *   the second pass of that hour fires nothing, so a every-30-minutes schedule has one
 *   90-minute gap that night instead of a double fire;
 * - every computed next time is strictly later than the previous one, so a schedule can
 *   neither loop nor stop.
 */
const cache = new Map<string, Cron>();
const CACHE_MAX = 1000;

export function getCron(expr: string, tz: string | undefined, field = 'cron'): Cron {
  // No tz and tz "" must not share an entry: the cache would then skip the zone check for "".
  const key = tz === undefined ? `|${expr}` : `${tz.length}:${tz}|${expr}`;
  let cron = cache.get(key);
  if (cron === undefined) {
    if (typeof expr !== 'string' || expr.trim() === '') throw new InvalidCronError(field, 'must be a non-empty cron expression');
    if (tz !== undefined && !isValidTimeZone(tz)) throw new InvalidCronError('tz', `"${tz}" is not a known IANA time zone`);
    try {
      cron = new Cron(expr, { paused: true, mode: '5-or-6-parts', ...(tz === undefined ? {} : { timezone: tz }) });
    } catch (err) {
      throw new InvalidCronError(field, `"${expr}" is not a valid cron expression (${(err as Error).message})`, { cause: err });
    }
    if (cron.nextRun() === null) {
      throw new InvalidCronError(field, `"${expr}" never fires`);
    }
    if (cache.size >= CACHE_MAX) {
      const first = cache.keys().next();
      if (first.done !== true) cache.delete(first.value);
    }
    cache.set(key, cron);
  }
  return cron;
}

/** The first occurrence strictly after `after` (epoch ms), or null when there is none. */
export function nextCron(expr: string, tz: string | undefined, after: number): number | null {
  const next = getCron(expr, tz).nextRun(new Date(after));
  if (next === null) return null;
  const t = next.getTime();
  // croner works in whole seconds; never return a time that is not strictly later.
  return t > after ? t : nextCron(expr, tz, after + 1000 - (after % 1000));
}

/** Up to `n` most recent occurrences at or before `at`, newest first. */
export function previousCron(expr: string, tz: string | undefined, at: number, n: number): number[] {
  return getCron(expr, tz).previousRuns(n, new Date(at + 1)).map((d) => d.getTime()).filter((t) => t <= at);
}

const zones = new Map<string, boolean>();
export function isValidTimeZone(tz: string): boolean {
  let ok = zones.get(tz);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      ok = true;
    } catch {
      ok = false;
    }
    if (zones.size < 1000) zones.set(tz, ok);
  }
  return ok;
}
