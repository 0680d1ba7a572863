import { nextCron, previousCron } from './cron.js';

/**
 * How a schedule repeats. `once` fires at its due time; `every` at fixed rate from an
 * anchor (anchor + k·every, so runs never drift); `cron` by expression and time zone.
 */
export type ScheduleSpec =
  | { readonly kind: 'once' }
  | { readonly kind: 'every'; readonly every: number; readonly anchor: number }
  | { readonly kind: 'cron'; readonly cron: string; readonly tz?: string | undefined };

/** The first due time of `spec` strictly after `after`, or null when it never fires again. */
export function nextDue(spec: ScheduleSpec, after: number): number | null {
  switch (spec.kind) {
    case 'once':
      return null;
    case 'every': {
      if (after < spec.anchor) return spec.anchor;
      const k = Math.floor((after - spec.anchor) / spec.every) + 1;
      return spec.anchor + k * spec.every;
    }
    case 'cron':
      return nextCron(spec.cron, spec.tz, after);
  }
}

/**
 * The due times of `spec` in `[from, to]`, oldest first, at most `limit` of them.
 * `from` must itself be a due time of the spec (the schedule's current one).
 */
export function dueTimesBetween(spec: ScheduleSpec, from: number, to: number, limit: number): number[] {
  const out: number[] = [];
  if (from > to) return out;
  if (spec.kind === 'every') {
    // Jump straight to the window instead of stepping through a long outage.
    let t = from;
    for (; t <= to && out.length < limit; t += spec.every) out.push(t);
    return out;
  }
  let t: number | null = from;
  while (t !== null && t <= to && out.length < limit) {
    out.push(t);
    t = nextDue(spec, t);
  }
  return out;
}

/** The latest due time of `spec` at or before `at`, given a known due time `from <= at`. */
export function latestDueAtOrBefore(spec: ScheduleSpec, from: number, at: number): number {
  if (spec.kind === 'every') return from + Math.floor((at - from) / spec.every) * spec.every;
  if (spec.kind === 'once') return from;
  const prev = previousCron(spec.cron, spec.tz, at, 1)[0];
  return prev !== undefined && prev > from ? prev : from;
}
