/**
 * Translating between RedisStore's stored strings and the contract's types, and computing
 * cron due-time lists (Lua cannot evaluate cron; croner in JS does, the scripts consume).
 */
import { StoreError } from '../../errors.js';
import type { JsonValue } from '../../json.js';
import { latestDueAtOrBefore, nextDue, type ScheduleSpec } from '../../timing/spec.js';
import type { OccurrenceKind, RegistryEntry, RunOutcome, RunRecord, ScheduleState } from '../Store.js';

/** `run-all` never queues more than this many catch-up occurrences at once (as MemoryStore). */
export const MAX_CATCHUP = 1000;

const ONCE: ScheduleSpec = Object.freeze({ kind: 'once' });

export type Fields = Record<string, string>;

/** HGETALL as a script returns it (flat array) to an object. */
export function fieldsOf(flat: unknown): Fields {
  const out: Fields = Object.create(null) as Fields;
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}

export function parseJson(text: string | undefined, what: string): JsonValue | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new StoreError(`RedisStore: corrupt ${what}: ${(err as Error).message}`, { cause: err });
  }
}

function int(text: string | undefined): number | null {
  if (text === undefined || text === '') return null;
  return Number(text);
}

export function specOf(f: Fields): ScheduleSpec {
  switch (f['k']) {
    case 'e':
      return { kind: 'every', every: Number(f['ev']), anchor: Number(f['an']) };
    case 'c':
      return f['tz'] === undefined ? { kind: 'cron', cron: f['cr'] ?? '' } : { kind: 'cron', cron: f['cr'] ?? '', tz: f['tz'] };
    default:
      return ONCE;
  }
}

/** `dueAt|attempt|kind|outcome|startedAt|finishedAt|durationMs|error` ('' = null, error '!'-prefixed). */
export function decodeHistory(rec: string): RunRecord {
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < 7; i++) {
    const bar = rec.indexOf('|', from);
    parts.push(rec.slice(from, bar));
    from = bar + 1;
  }
  const err = rec.slice(from);
  return {
    dueAt: Number(parts[0]),
    attempt: Number(parts[1]),
    kind: parts[2] as OccurrenceKind,
    outcome: parts[3] as RunOutcome,
    startedAt: int(parts[4]),
    finishedAt: Number(parts[5]),
    durationMs: int(parts[6]),
    error: err === '' ? null : err.slice(1),
  };
}

export function stateOf(task: string, uid: string, f: Fields, history: readonly string[]): ScheduleState {
  const spec = specOf(f);
  const due = int(f['d']);
  const claimed = spec.kind === 'once' && f['cl'] === '1';
  return {
    task,
    uid,
    spec,
    params: parseJson(f['p'], 'params'),
    enabled: f['en'] !== '0',
    nextRunAt: claimed ? null : due,
    dueAt: due,
    timeout: Number(f['t'] ?? 0),
    pending: Number(f['pe'] ?? 0),
    report: {
      lastExecutedAt: int(f['lx']),
      lastFinishedAt: int(f['lf']),
      lastResult: f['lr'] === undefined ? null : (parseJson(f['lr'], 'lastResult') ?? null),
      lastError: f['le'] ?? null,
      lastDurationMs: int(f['ld']),
      attempts: Number(f['at'] ?? 0),
      running: Number(f['ru'] ?? 0),
      successes: Number(f['ok'] ?? 0),
      failures: Number(f['ko'] ?? 0),
      skips: Number(f['sk'] ?? 0),
      history: history.map(decodeHistory),
    },
  };
}

/** The registry entry of a schedule, or null when it has no pending due time. */
export function entryOf(f: Fields): RegistryEntry | null {
  const due = int(f['d']);
  if (due === null) return null;
  const entry: RegistryEntry = { iat: due, timeout: Number(f['t'] ?? 0) };
  const params = parseJson(f['p'], 'params');
  if (params !== undefined) entry.params = params;
  const spec = specOf(f);
  if (spec.kind === 'every') entry.every = spec.every;
  if (spec.kind === 'cron') {
    entry.cron = spec.cron;
    if (spec.tz !== undefined) entry.tz = spec.tz;
  }
  if (f['en'] === '0') entry.enabled = false;
  return entry;
}

export interface CronList {
  /** Ascending due times. */
  readonly times: number[];
  /** True when the spec has no due time after the last one. */
  readonly ended: boolean;
}

/** Due times of `spec` after `after`: all up to `through`, then `ahead` more. */
export function cronTimes(spec: ScheduleSpec, after: number, through: number, ahead: number): CronList {
  const times: number[] = [];
  let t = nextDue(spec, after);
  let beyond = 0;
  while (t !== null && beyond < ahead) {
    times.push(t);
    if (t > through) beyond++;
    t = nextDue(spec, t);
  }
  return { times, ended: t === null };
}

/**
 * A refilled list for a cron schedule due at `due` whose list is `list` (times after due).
 * When the list still reaches past `now`, more times are appended. When it does not (the
 * schedule missed ticks while nothing claimed it), the new list holds what every misfire
 * policy needs: the ticks in the catch-up window (at most MAX_CATCHUP, oldest first), the
 * latest tick at or before `now`, and `ahead` ticks after it.
 */
export function refillCron(spec: ScheduleSpec, due: number, list: readonly number[], now: number, window: number, ahead: number): CronList {
  const last = list.length > 0 ? (list[list.length - 1] as number) : due;
  if (last > now) {
    const times = list.slice();
    let t: number | null = last;
    let added = 0;
    while (added < ahead) {
      t = nextDue(spec, t);
      if (t === null) return { times, ended: true };
      times.push(t);
      added++;
    }
    return { times, ended: false };
  }
  const times: number[] = [];
  let t = nextDue(spec, Math.max(due, now - window - 1));
  while (t !== null && t <= now && times.length < MAX_CATCHUP) {
    times.push(t);
    t = nextDue(spec, t);
  }
  const latest = latestDueAtOrBefore(spec, due, now);
  if (latest > due && (times.length === 0 || latest > (times[times.length - 1] as number))) times.push(latest);
  const future = cronTimes(spec, Math.max(now, times.length > 0 ? (times[times.length - 1] as number) : due), now, ahead);
  return { times: times.concat(future.times), ended: future.ended };
}

export function parseTimes(text: string): number[] {
  return text === '' ? [] : text.split(',').map(Number);
}
