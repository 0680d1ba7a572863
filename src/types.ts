/**
 * Public types. Glossary (see DESIGN.md):
 * - task: a named kind of work with a handler (`email.send`).
 * - schedule: one scheduled thing of a task, keyed by `(task, uid)`: once, every or cron.
 * - occurrence: one due firing of a schedule, identified by `(task, uid, dueAt)`.
 * - run: one attempt at an occurrence, holding a lease while it lasts.
 * - store: where schedules, occurrences, leases, reports and locks live.
 */
import type { JsonValue } from './json.js';
import type { MisfirePolicy, OccurrenceKind, OverlapPolicy, RunRecord, Store } from './store/Store.js';
import type { PoolOptions } from './runner/pool.js';
import type { Duration } from './timing/duration.js';

export type { Duration, JsonValue, MisfirePolicy, OccurrenceKind, OverlapPolicy, PoolOptions, RunRecord };

/** What a handler receives for one run. */
export interface RunContext<P = JsonValue | undefined> {
  readonly task: string;
  readonly uid: string;
  readonly params: P;
  /** The occurrence's due time (its identity, with task and uid). */
  readonly dueAt: Date;
  /** 1 on the first try, then 2, 3... on retries and redeliveries. */
  readonly attempt: number;
  /** Why this occurrence exists: scheduled, trigger, retry, catchup or buffered. */
  readonly kind: OccurrenceKind;
  /** Aborted on timeout, on a lost lease, on `cancel-previous`, and on a forced stop. */
  readonly signal: AbortSignal;
}

/** A handler; its resolved value (JSON) becomes the report's `lastResult`. */
export type TaskHandler<P = JsonValue | undefined> = (run: RunContext<P>) => unknown;

/**
 * A handler that runs in the scheduler's pool of worker threads: the module's export is
 * called like an in-process handler (params and result cross by structured clone). A
 * relative path resolves against `process.cwd()`; prefer `new URL('./job.js', import.meta.url)`.
 */
export interface ModuleHandler {
  readonly module: string | URL;
  /** Default `'default'`. */
  readonly export?: string;
}

export interface RetryOptions {
  /** Attempts in all, including the first. Default 1 (no retry). */
  attempts?: number;
  /** Default `'exponential'`. */
  backoff?: 'fixed' | 'exponential';
  /** First retry delay. Default `'1s'`. */
  delay?: Duration;
  /** Cap for exponential backoff. Default `'1h'`. */
  maxDelay?: Duration;
  /** Random spread, 0..1, as a fraction of each delay. Default 0. */
  jitter?: number;
}

export interface TaskOptions {
  /** Abort the run's `signal` after this long; the run counts as failed. Default: none. */
  timeout?: Duration;
  /** Retry policy, or just the number of attempts. */
  retry?: RetryOptions | number;
  /** What to do when an occurrence is due while a run of the same schedule holds a lease. Default `'skip'`. */
  overlap?: OverlapPolicy;
  /** What to do with occurrences missed while nothing ran. Default `'run-once'`. */
  misfire?: MisfirePolicy;
  /** How far back `run-all` catches up. Default `'1h'`. */
  catchupWindow?: Duration;
  /** Runs of this task at once in this process. Default: the scheduler's `concurrency`. */
  concurrency?: number;
  /** Lease length; renewed every third of it while the run lasts. Default `'30s'`. */
  lease?: Duration;
}

/** When and how often: exactly one of `in`, `at`, `every`, `cron` (`every` may add `in`/`at` for its first run). */
export interface ScheduleOptions {
  /** Generated (UUID) and returned when absent. */
  uid?: string;
  in?: Duration;
  at?: Date | number | string;
  every?: Duration;
  cron?: string;
  /** IANA time zone for `cron`. Default: the process's zone. */
  tz?: string;
  /** JSON params given to the handler. */
  params?: unknown;
  /** Default true. A disabled schedule keeps its next due time but does not fire. */
  enabled?: boolean;
}

export interface UpdateOptions {
  enabled?: boolean;
  params?: unknown;
  /** A new timing; the next due time is recomputed from now. */
  schedule?: Pick<ScheduleOptions, 'in' | 'at' | 'every' | 'cron' | 'tz'>;
}

/** A schedule's timing as reported. */
export type ScheduleInfo =
  | { readonly kind: 'once' }
  | { readonly kind: 'every'; readonly every: number }
  | { readonly kind: 'cron'; readonly cron: string; readonly tz?: string | undefined };

/** Vendure's `TaskReport` fields plus schedkit's. */
export interface TaskReport {
  /** `task/uid`. */
  readonly id: string;
  readonly task: string;
  readonly uid: string;
  readonly schedule: ScheduleInfo;
  readonly params: JsonValue | undefined;
  readonly enabled: boolean;
  readonly nextRunAt: Date | null;
  readonly lastExecutedAt: Date | null;
  readonly lastFinishedAt: Date | null;
  readonly isRunning: boolean;
  readonly running: number;
  readonly lastResult: JsonValue | null;
  readonly lastError: string | null;
  readonly lastDurationMs: number | null;
  /** Attempt number of the latest run. */
  readonly attempts: number;
  readonly successes: number;
  readonly failures: number;
  readonly skips: number;
  /** Queued triggers, retries and catch-ups. */
  readonly pending: number;
  /** Recent runs, newest last (bounded). */
  readonly history: readonly RunRecord[];
}

export interface ScheduledRef {
  readonly task: string;
  readonly uid: string;
  readonly nextRunAt: Date | null;
}

export interface SchedulerOptions {
  /** Default: a new `MemoryStore()`. */
  store?: Store;
  /** Runs at once in this process, all tasks together. Default 100. */
  concurrency?: number;
  /** Defaults for every task's options. */
  defaults?: TaskOptions;
  /** Throw `UnknownTaskError` when scheduling a task this scheduler has not defined. Default false (a producer may schedule for other processes). */
  strictTasks?: boolean;
  /** Identifies this process in leases. Default: hostname/pid/random. */
  owner?: string;
  /** The worker-thread pool for module handlers (made when the first one is defined). */
  pool?: PoolOptions;
}

export interface StartOptions {
  /** Run due occurrences in this process. Default true; false makes a producer only. */
  execute?: boolean;
  /**
   * An executing scheduler keeps the process alive until `stop()` (its timers are unref'd;
   * one ref'd handle holds the process, as a listening server would). Default true.
   */
  keepAlive?: boolean;
}

export interface StopOptions {
  /** How long to let running work finish before aborting it and giving it back. Default `'30s'`. */
  timeout?: Duration;
}

export interface LockOptions {
  /** The lock expires after this unless extended. Default `'30s'`. */
  ttl?: Duration;
}

export interface Lock {
  readonly key: string;
  readonly token: string;
  /** Compare-and-delete: false when the lock had expired or is held by another. */
  release(): Promise<boolean>;
  /** Compare-and-extend by `ttl` (default: the lock's ttl). */
  extend(ttl?: Duration): Promise<boolean>;
}

export interface RunEvent {
  readonly task: string;
  readonly uid: string;
  readonly dueAt: Date;
  readonly attempt: number;
  readonly kind: OccurrenceKind;
}

export interface SchedulerEvents {
  /** `startedAt` is on the store's clock, so `startedAt - dueAt` is the run's lateness. */
  'run:start': [RunEvent & { readonly startedAt: Date }];
  'run:success': [RunEvent & { readonly result: JsonValue | null; readonly durationMs: number }];
  'run:failure': [RunEvent & { readonly error: Error; readonly durationMs: number; readonly willRetry: boolean }];
  'run:retry': [RunEvent & { readonly error: Error; readonly retryAt: Date; readonly nextAttempt: number }];
  'run:skipped': [{ readonly task: string; readonly uid: string; readonly dueAt: Date; readonly reason: 'overlap' | 'misfire' }];
  'run:lost': [RunEvent & { readonly requeued: boolean; readonly reason: string }];
  error: [Error];
  start: [];
  stop: [];
}
