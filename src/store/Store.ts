/**
 * The store contract: what the scheduler needs from wherever schedules live.
 *
 * Glossary (DESIGN.md): a *schedule* is keyed by `(task, uid)` and has at most one pending
 * *scheduled occurrence* (its `nextRunAt`). Extra occurrences — manual triggers, retries,
 * catch-ups, a buffered tick — queue beside it. A *claim* turns a due occurrence into a
 * *run* holding a *lease* (token + expiry); only the current lease holder can complete it.
 *
 * The contract speaks of behaviour only. It deliberately leaves out how a store keeps time
 * (it must use ONE clock of its own: `Date.now()` in-process, `TIME` on Redis), how it
 * indexes due times, and how it reaches other processes (`subscribe` is how it says "an
 * earlier occurrence was added, wake up"). Every guarantee here is checked by the shared
 * conformance suite in tests/conformance.ts against each implementation.
 */
import type { JsonValue } from '../json.js';
import type { ScheduleSpec } from '../timing/spec.js';

export type OverlapPolicy = 'skip' | 'allow' | 'buffer-one' | 'cancel-previous';
export type MisfirePolicy = 'run-once' | 'run-all' | 'skip';
/** Why an occurrence exists. */
export type OccurrenceKind = 'scheduled' | 'trigger' | 'retry' | 'catchup' | 'buffered';
export type RunOutcome = 'success' | 'failure' | 'lost' | 'skipped';

/** When the first occurrence of a new schedule is due, resolved by the store's own clock. */
export type FirstDue =
  | { readonly at: number } // absolute epoch ms (past = due now, `iat` kept)
  | { readonly in: number } // ms from the store's now
  | { readonly next: true }; // the spec's first due time after the store's now

export interface ScheduleInput {
  readonly task: string;
  readonly uid: string;
  /** For `every`, `anchor` is ignored and set to the first due time. */
  readonly spec: ScheduleSpec;
  readonly first: FirstDue;
  readonly params?: JsonValue | undefined;
  readonly enabled: boolean;
  /** The delay the caller asked for (schedward's `timeout`), kept for snapshots. */
  readonly timeout: number;
}

export interface SchedulePatch {
  readonly enabled?: boolean;
  readonly params?: JsonValue | undefined;
  /** A new spec, with when its first occurrence is due. */
  readonly spec?: ScheduleSpec;
  readonly first?: FirstDue;
  readonly timeout?: number;
}

/** One finished (or skipped) run in a schedule's bounded history. */
export interface RunRecord {
  readonly dueAt: number;
  readonly attempt: number;
  readonly kind: OccurrenceKind;
  readonly outcome: RunOutcome;
  readonly startedAt: number | null;
  readonly finishedAt: number;
  readonly durationMs: number | null;
  readonly error: string | null;
}

export interface ReportState {
  /** When the latest run started. */
  readonly lastExecutedAt: number | null;
  readonly lastFinishedAt: number | null;
  readonly lastResult: JsonValue | null;
  readonly lastError: string | null;
  readonly lastDurationMs: number | null;
  /** Attempt number of the latest run (1 = first try). */
  readonly attempts: number;
  /** Runs currently holding a lease. */
  readonly running: number;
  readonly successes: number;
  readonly failures: number;
  readonly skips: number;
  /** Newest last; at most `HISTORY_LIMIT` entries. */
  readonly history: readonly RunRecord[];
}

export interface ScheduleState {
  readonly task: string;
  readonly uid: string;
  readonly spec: ScheduleSpec;
  readonly params: JsonValue | undefined;
  readonly enabled: boolean;
  /** Due time of the pending scheduled occurrence; null when none (disabled keeps it). */
  readonly nextRunAt: number | null;
  /** For a one-shot that is running or retrying: the due time of its occurrence. */
  readonly dueAt: number | null;
  readonly timeout: number;
  /** Occurrences queued beside the scheduled one (triggers, retries, catch-ups). */
  readonly pending: number;
  readonly report: ReportState;
}

/** How an executor wants one task's occurrences claimed. */
export interface TaskPolicy {
  readonly overlap: OverlapPolicy;
  readonly misfire: MisfirePolicy;
  /** `run-all` catches up at most this far back (ms). */
  readonly catchupWindow: number;
  /** Attempts in all (1 = no retry); a lost lease is retried while attempts remain. */
  readonly attempts: number;
  readonly leaseMs: number;
  /** At most this many runs of this task from this claim. */
  readonly limit: number;
}

export interface ClaimRequest {
  readonly tasks: ReadonlyMap<string, TaskPolicy>;
  /** At most this many runs in all. */
  readonly limit: number;
  /** Who claims (for diagnostics). */
  readonly owner: string;
}

export interface ClaimedRun {
  readonly token: string;
  readonly task: string;
  readonly uid: string;
  readonly params: JsonValue | undefined;
  /** The occurrence's identity together with task and uid. */
  readonly dueAt: number;
  readonly attempt: number;
  readonly kind: OccurrenceKind;
  readonly leaseExpiresAt: number;
  /** Leases this claim revoked under `cancel-previous`; their holders must abort. */
  readonly supersedes: readonly string[];
}

export interface SkippedOccurrence {
  readonly task: string;
  readonly uid: string;
  readonly dueAt: number;
  readonly reason: 'overlap' | 'misfire';
}

/** A lease that expired before its run completed (found while claiming). */
export interface LostLease {
  readonly token: string;
  readonly task: string;
  readonly uid: string;
  readonly dueAt: number;
  readonly attempt: number;
  readonly kind: OccurrenceKind;
  /** True when the occurrence was queued again with `attempt + 1`. */
  readonly requeued: boolean;
}

export interface ClaimResult {
  readonly runs: ClaimedRun[];
  readonly skipped: SkippedOccurrence[];
  readonly lost: LostLease[];
  /**
   * The earliest time at which the requested tasks will have something to do (a due
   * occurrence or a lease to expire), null when nothing is pending. May be <= `now` when
   * the claim stopped at a limit.
   */
  readonly nextDueAt: number | null;
  /** The store's clock at the claim. */
  readonly now: number;
}

export interface Completion {
  readonly token: string;
  /** `abandon` gives the occurrence back unchanged (graceful stop), counting no attempt. */
  readonly outcome: 'success' | 'failure' | 'abandon';
  readonly result?: JsonValue | undefined;
  readonly error?: string | undefined;
  readonly startedAt: number;
  readonly durationMs: number;
  /** On failure: queue attempt + 1 at this time. Absent = no more attempts. */
  readonly retryAt?: number | undefined;
}

/** `ok`, or `lease-lost` when the token is no longer the current lease (fenced out). */
export type CompletionStatus = 'ok' | 'lease-lost';

/** The snapshot format: schedward's `TaskRunnerRegistryDump`, extended for recurring schedules. */
export interface RegistryEntry {
  /** Due time (epoch ms) of the next occurrence. */
  iat: number;
  /** The delay originally asked for (ms); for `every` the period. */
  timeout: number;
  params?: JsonValue;
  /** Recurring: the period in ms (fixed rate anchored at `iat`). */
  every?: number;
  /** Recurring: the cron expression. */
  cron?: string;
  tz?: string;
  /** Present (false) only for disabled schedules. */
  enabled?: boolean;
}
export interface RegistryDump {
  [task: string]: { [uid: string]: RegistryEntry };
}

export interface ListFilter {
  readonly task?: string;
}

export const HISTORY_LIMIT = 20;

export interface Store {
  /** Human-readable kind, e.g. "memory". */
  readonly kind: string;
  /** Connects / restores persisted state. Idempotent. */
  open(): Promise<void>;
  /** Persists and releases connections and timers. Idempotent; `open()` may follow. */
  close(): Promise<void>;
  /** The store's clock (epoch ms). */
  now(): Promise<number>;
  /**
   * Optional capability of in-process stores: the store's clock, synchronously. Executors
   * use it instead of estimating the store's time (from the latest claim plus a monotonic
   * clock), which is what they do for remote stores.
   */
  nowSync?(): number;
  /**
   * Optional: failures the store handled in the background (a Redis partition that failed
   * while the others answered). A started `Scheduler` listens and emits them as `error`.
   * Returns the function that stops listening.
   */
  onBackgroundError?(listener: (err: Error) => void): () => void;

  /**
   * Creates or replaces the schedule `(task, uid)`; pending extra occurrences are dropped.
   * Resolves the due time of its first occurrence (null when it never fires).
   */
  upsert(input: ScheduleInput): Promise<number | null>;
  /**
   * Optional capability of in-process stores: `upsert` done synchronously, returning the due
   * time. The scheduler uses it to skip a promise per schedule on its hot path.
   */
  upsertNow?(input: ScheduleInput): number | null;
  /** Many upserts in one call (one round trip where the store can). */
  upsertMany(inputs: readonly ScheduleInput[]): Promise<void>;
  /** Removes a schedule and its pending occurrences; running runs finish but change nothing. */
  remove(task: string, uid: string): Promise<boolean>;
  get(task: string, uid: string): Promise<ScheduleState | null>;
  list(filter?: ListFilter): Promise<ScheduleState[]>;
  update(task: string, uid: string, patch: SchedulePatch): Promise<ScheduleState | null>;
  /** Queues a manual occurrence due now. False when there is no such schedule. */
  trigger(task: string, uid: string): Promise<boolean>;
  /** Counts of due-now and later occurrences per task (queue depths). */
  depths(): Promise<Map<string, { due: number; scheduled: number; running: number }>>;

  claim(request: ClaimRequest): Promise<ClaimResult>;
  /** Extends leases; false for a token that is no longer current. */
  renew(tokens: readonly string[], leaseMs: number): Promise<boolean[]>;
  complete(completions: readonly Completion[]): Promise<CompletionStatus[]>;
  /** Calls `listener(dueAt)` when an occurrence earlier than any before may have been added. */
  subscribe(listener: (dueAt: number) => void): () => void;

  /** Takes the lock when free or expired. */
  acquireLock(key: string, token: string, ttlMs: number): Promise<boolean>;
  /** Compare-and-delete: releases only when `token` holds it. */
  releaseLock(key: string, token: string): Promise<boolean>;
  /** Compare-and-extend. */
  extendLock(key: string, token: string, ttlMs: number): Promise<boolean>;

  snapshot(): Promise<RegistryDump>;
  /** Removes everything of this store's namespace; resolves how many schedules went. */
  clear(): Promise<number>;
}
