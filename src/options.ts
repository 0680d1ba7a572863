/**
 * Validation and normalisation of the options users pass to `define` and `schedule`, in one
 * place, with messages that name the option (`schedule.every: must not be negative`).
 */
import { randomUUID } from 'node:crypto';
import { ValidationError } from './errors.js';
import { toOptionalJson, type JsonValue } from './json.js';
import type { FirstDue, MisfirePolicy, OverlapPolicy, ScheduleInput } from './store/Store.js';
import { getCron, isValidTimeZone } from './timing/cron.js';
import { MAX_DURATION_MS, parseDuration } from './timing/duration.js';
import type { ScheduleSpec } from './timing/spec.js';
import type { RetryOptions, ScheduleOptions, TaskOptions } from './types.js';
import { checkBoolean, checkInteger, checkKeys, checkName, checkNumber, checkObject, checkOneOf, LONE_SURROGATE, MAX_NAME_LENGTH } from './validate.js';

export const OVERLAP: readonly OverlapPolicy[] = ['skip', 'allow', 'buffer-one', 'cancel-previous'];
export const MISFIRE: readonly MisfirePolicy[] = ['run-once', 'run-all', 'skip'];

export interface RetryPolicy {
  readonly attempts: number;
  readonly backoff: 'fixed' | 'exponential';
  readonly delay: number;
  readonly maxDelay: number;
  readonly jitter: number;
}

export interface TaskConfig {
  readonly timeout: number | undefined;
  readonly retry: RetryPolicy;
  readonly overlap: OverlapPolicy;
  readonly misfire: MisfirePolicy;
  readonly catchupWindow: number;
  readonly concurrency: number;
  readonly leaseMs: number;
}

const TASK_KEYS = ['timeout', 'retry', 'overlap', 'misfire', 'catchupWindow', 'concurrency', 'lease'] as const;
const RETRY_KEYS = ['attempts', 'backoff', 'delay', 'maxDelay', 'jitter'] as const;

export function taskConfig(input: TaskOptions | undefined, defaults: TaskOptions | undefined, globalConcurrency: number, field: string): TaskConfig {
  const own = input === undefined ? {} : checkObject(input, field);
  checkKeys(own, TASK_KEYS, field);
  const base = defaults ?? {};
  const pick = <K extends keyof TaskOptions>(key: K): TaskOptions[K] => (own[key] !== undefined ? (own[key] as TaskOptions[K]) : base[key]);
  const timeout = pick('timeout');
  return {
    timeout: timeout === undefined ? undefined : parseDuration(timeout, `${field}.timeout`, { allowZero: false }),
    retry: retryPolicy(pick('retry'), `${field}.retry`),
    overlap: pick('overlap') === undefined ? 'skip' : checkOneOf(pick('overlap'), OVERLAP, `${field}.overlap`),
    misfire: pick('misfire') === undefined ? 'run-once' : checkOneOf(pick('misfire'), MISFIRE, `${field}.misfire`),
    catchupWindow: parseDuration(pick('catchupWindow') ?? '1h', `${field}.catchupWindow`),
    concurrency: pick('concurrency') === undefined ? globalConcurrency : checkInteger(pick('concurrency'), `${field}.concurrency`, 1),
    leaseMs: parseDuration(pick('lease') ?? '30s', `${field}.lease`, { allowZero: false }),
  };
}

function retryPolicy(input: RetryOptions | number | undefined, field: string): RetryPolicy {
  const opts: RetryOptions = typeof input === 'number' ? { attempts: input } : input === undefined ? {} : (checkObject(input, field));
  checkKeys(opts as Record<string, unknown>, RETRY_KEYS, field);
  return {
    attempts: opts.attempts === undefined ? 1 : checkInteger(opts.attempts, `${field}.attempts`, 1, 1_000_000),
    backoff: opts.backoff === undefined ? 'exponential' : checkOneOf(opts.backoff, ['fixed', 'exponential'] as const, `${field}.backoff`),
    delay: parseDuration(opts.delay ?? '1s', `${field}.delay`),
    maxDelay: parseDuration(opts.maxDelay ?? '1h', `${field}.maxDelay`),
    jitter: opts.jitter === undefined ? 0 : checkNumber(opts.jitter, `${field}.jitter`, 0, 1),
  };
}

/** Delay before attempt `attempt + 1` after attempt `attempt` failed. */
export function retryDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  let delay = policy.backoff === 'fixed' ? policy.delay : policy.delay * 2 ** Math.min(attempt - 1, 52);
  delay = Math.min(delay, policy.maxDelay);
  if (policy.jitter > 0) delay += delay * policy.jitter * (random() * 2 - 1);
  return Math.max(0, Math.round(delay));
}

export interface NormalizedSchedule {
  readonly uid: string;
  readonly spec: ScheduleSpec;
  readonly first: FirstDue;
  readonly timeout: number;
  readonly params: JsonValue | undefined;
  readonly enabled: boolean;
}

const SCHEDULE_KEYS = ['uid', 'in', 'at', 'every', 'cron', 'tz', 'params', 'enabled'] as const;
/** Largest absolute time accepted (year ~2286). */
const MAX_EPOCH_MS = 1e13;

export function normalizeSchedule(input: ScheduleOptions, field: string): NormalizedSchedule {
  const opts = checkObject(input, field);
  checkKeys(opts, SCHEDULE_KEYS, field);
  const uid = opts['uid'] === undefined ? randomUUID() : checkName(opts['uid'], `${field}.uid`);
  const timing = normalizeTiming(opts, field);
  return {
    uid,
    ...timing,
    params: toOptionalJson(opts['params'], `${field}.params`),
    enabled: opts['enabled'] === undefined ? true : checkBoolean(opts['enabled'], `${field}.enabled`),
  };
}

/**
 * The store input for the common one-shot `{ uid, at }` (string uid, epoch-ms number `at`,
 * optionally `enabled` / an undefined `params`), validated in one pass: no key list, no
 * field-name strings, no intermediate objects. Anything else, valid or not, returns undefined
 * and takes `normalizeSchedule` (which words every error), so both paths accept the same.
 */
export function onceInput(task: string, input: unknown): ScheduleInput | undefined {
  if (typeof input !== 'object' || input === null || Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  let uid: unknown;
  let at: unknown;
  let enabled: unknown;
  for (const key in input) {
    const value: unknown = (input as Record<string, unknown>)[key];
    if (key === 'uid') uid = value;
    else if (key === 'at') at = value;
    else if (key === 'enabled') enabled = value;
    else if (value !== undefined || !(SCHEDULE_KEYS as readonly string[]).includes(key)) return undefined;
  }
  if (typeof uid !== 'string' || uid.length === 0 || uid.length > MAX_NAME_LENGTH || CONTROL.test(uid) || LONE_SURROGATE.test(uid)) return undefined;
  if (typeof at !== 'number' || !(at >= 0 && at <= MAX_EPOCH_MS)) return undefined;
  if (enabled !== undefined && typeof enabled !== 'boolean') return undefined;
  return { task, uid, spec: ONCE, first: { at }, params: undefined, enabled: enabled ?? true, timeout: 0 };
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export function normalizeTiming(input: Record<string, unknown>, field: string): Pick<NormalizedSchedule, 'spec' | 'first' | 'timeout'> {
  const hasIn = input['in'] !== undefined;
  const hasAt = input['at'] !== undefined;
  const hasEvery = input['every'] !== undefined;
  const hasCron = input['cron'] !== undefined;
  if (!hasIn && !hasAt && !hasEvery && !hasCron) throw new ValidationError(field, 'needs one of `in`, `at`, `every` or `cron`');
  if (hasIn && hasAt) throw new ValidationError(field, 'takes `in` or `at`, not both');
  if (hasCron && (hasEvery || hasIn || hasAt)) throw new ValidationError(field, '`cron` cannot be combined with `in`, `at` or `every`');
  if (input['tz'] !== undefined && !hasCron) throw new ValidationError(`${field}.tz`, 'is only valid with `cron`');

  let first: FirstDue = NEXT;
  let delay = 0;
  if (hasIn) {
    delay = parseDuration(input['in'], `${field}.in`);
    first = { in: delay };
  } else if (hasAt) {
    first = { at: parseAt(input['at'], `${field}.at`) };
  }
  if (hasEvery) {
    const every = parseDuration(input['every'], `${field}.every`, { allowZero: false });
    return { spec: { kind: 'every', every, anchor: 0 }, first, timeout: every };
  }
  if (hasCron) {
    const cron = input['cron'];
    if (typeof cron !== 'string') throw new ValidationError(`${field}.cron`, 'must be a string');
    const tz = input['tz'];
    if (tz !== undefined && (typeof tz !== 'string' || !isValidTimeZone(tz))) {
      throw new ValidationError(`${field}.tz`, `${JSON.stringify(tz)} is not a known IANA time zone`);
    }
    getCron(cron, tz, `${field}.cron`);
    return { spec: { kind: 'cron', cron, tz }, first, timeout: 0 };
  }
  return { spec: ONCE, first, timeout: delay };
}

const NEXT: FirstDue = Object.freeze({ next: true });
const ONCE: ScheduleSpec = Object.freeze({ kind: 'once' });

function parseAt(value: unknown, field: string): number {
  let ms: number;
  if (value instanceof Date) ms = value.getTime();
  else if (typeof value === 'number') ms = value;
  else if (typeof value === 'string') ms = Date.parse(value);
  else throw new ValidationError(field, 'must be a Date, epoch milliseconds or an ISO date string');
  if (!Number.isFinite(ms)) throw new ValidationError(field, `${JSON.stringify(String(value))} is not a valid date`);
  if (ms < 0 || ms > MAX_EPOCH_MS) throw new ValidationError(field, 'is out of range');
  return ms;
}

export { MAX_DURATION_MS };
