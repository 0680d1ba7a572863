/**
 * Remote HTTP workers as executors: pop (claim), ack/nack (complete) and renew of due
 * occurrences, plus long polls woken by store notifications.
 *
 * Every pop is a `store.claim` for one task with `limit: 1`, so the store alone decides who
 * gets an occurrence (one client, never two). A pop without a lease completes its claim at
 * once as a success (the registry's destructive pop); a pop with a lease keeps it until the
 * worker acknowledges it, and the store redelivers it once the lease expires while attempts
 * remain.
 */
import { SchedkitError, SchedulerStoppedError } from '../errors.js';
import type { JsonValue } from '../json.js';
import { retryDelay, type RetryPolicy } from '../options.js';
import type { Scheduler } from '../scheduler.js';
import type { ClaimedRun, ClaimResult, Store, TaskPolicy } from '../store/Store.js';

/** Lease of a destructive pop: completed right after the claim, so its length hardly matters. */
const DESTRUCTIVE_LEASE_MS = 30_000;
/** Waiting long polls re-check the store at least this often (other processes, clock jumps). */
export const RECHECK_MS = 1000;
/** Floor for re-check timers, so a store reporting "due now" cannot make us spin. */
const MIN_RECHECK_MS = 10;
/** Forget a handed-out lease this long after it expired (the store has already dropped it). */
const LEASE_GRACE_MS = 60_000;
/** Backoff of a nack without an explicit delay: exponential from 1 s, capped at 1 h. */
const NACK_BACKOFF: RetryPolicy = { attempts: Number.MAX_SAFE_INTEGER, backoff: 'exponential', delay: 1000, maxDelay: 3_600_000, jitter: 0 };

export interface PopOptions {
  /** Lease length in ms; absent = destructive pop. */
  readonly leaseMs?: number | undefined;
  /** Attempts in all for a leased pop (redelivery after an expired lease, retry on nack). */
  readonly attempts: number;
  /** Long-poll this long (ms) when nothing is due; 0 = answer at once. */
  readonly waitMs: number;
  /** Who pops (diagnostics). */
  readonly owner: string;
  /** Aborted when the client goes away: a claim made for it is given back. */
  readonly signal: AbortSignal;
}

/** A lease handed to an HTTP worker. */
export interface HeldLease {
  readonly token: string;
  readonly task: string;
  readonly uid: string;
  readonly dueAt: number;
  readonly attempt: number;
  readonly attempts: number;
  /** The lease length asked for at the pop (the default for renewals). */
  readonly leaseMs: number;
  readonly startedAt: number;
  expiresAt: number;
}

export interface NackOptions {
  readonly error?: string | undefined;
  /** false: no more attempts; a number: attempts in all (overrides the pop's). */
  readonly retry?: boolean | number | undefined;
  /** Delay before the retry (ms); default exponential from 1 s. */
  readonly delayMs?: number | undefined;
}

export interface NackResult {
  readonly lease: HeldLease;
  readonly retryAt: number | undefined;
}

/**
 * Told what happens to the occurrences HTTP workers take (the service's metrics). Called
 * after the store confirmed each step, never for an occurrence that was given back.
 */
export interface QueueObserver {
  /** A claim on behalf of workers: the leases it found expired and the occurrences it skipped. */
  claimed(result: ClaimResult): void;
  /** An occurrence was handed to a worker at store time `now`; a destructive pop is also its success. */
  popped(run: ClaimedRun, now: number, leased: boolean): void;
  /** A leased pop was acknowledged. */
  acked(lease: HeldLease): void;
  /** A leased pop was failed; `retrying` when it is queued again. */
  nacked(lease: HeldLease, retrying: boolean): void;
}

interface Waiter {
  readonly task: string;
  readonly opts: PopOptions;
  readonly resolve: (run: ClaimedRun | null) => void;
  readonly reject: (err: unknown) => void;
  readonly timer: NodeJS.Timeout;
  readonly onAbort: () => void;
  done: boolean;
}

interface TaskWake {
  timer: NodeJS.Timeout | undefined;
  at: number;
}

export class WorkerQueues {
  readonly #scheduler: Scheduler;
  readonly #store: Store;
  /** Long polls per task, oldest first: the longest-waiting worker is served first. */
  readonly #waiters = new Map<string, Waiter[]>();
  readonly #wakes = new Map<string, TaskWake>();
  readonly #pumping = new Set<string>();
  readonly #again = new Set<string>();
  readonly #leases = new Map<string, HeldLease>();
  #lastSweep = 0;
  #unsubscribe: (() => void) | undefined;
  #closed = false;
  readonly #observer: QueueObserver | undefined;

  constructor(scheduler: Scheduler, observer?: QueueObserver) {
    this.#scheduler = scheduler;
    this.#store = scheduler.store;
    this.#observer = observer;
  }

  /** Leases currently handed out to HTTP workers (known to this server), expired ones included until swept. */
  get leases(): number {
    return this.#leases.size;
  }

  /** Leases handed out by this server that are neither finished nor expired at `now` (store clock). */
  heldLeases(now = Date.now()): number {
    let n = 0;
    for (const held of this.#leases.values()) if (held.expiresAt > now) n++;
    return n;
  }

  /** Long polls waiting now. */
  get waiting(): number {
    let n = 0;
    for (const list of this.#waiters.values()) n += list.length;
    return n;
  }

  /** Claims one due occurrence of `task`, waiting up to `opts.waitMs` for one; null when none. */
  async pop(task: string, opts: PopOptions): Promise<ClaimedRun | null> {
    await this.ready('popTask');
    this.#sweep();
    // Waiting workers are served first; a non-waiting pop still tries (the store arbitrates).
    const queued = this.#waiters.get(task);
    if (queued === undefined || queued.length === 0 || opts.waitMs <= 0) {
      const result = await this.#claim(task, opts);
      const run = result.runs[0];
      if (run !== undefined) return (await this.#deliver(run, result, opts)) ? run : null;
      if (opts.waitMs <= 0 || this.#closed || opts.signal.aborted) return null;
    }
    return this.#wait(task, opts);
  }

  /** Completes a leased pop as a success. */
  async ack(task: string, token: string, result: JsonValue | undefined): Promise<HeldLease> {
    const held = await this.#held('ackTask', task, token);
    const now = await this.#store.now();
    const [status] = await this.#store.complete([{ token, outcome: 'success', result, startedAt: held.startedAt, durationMs: Math.max(0, now - held.startedAt) }]);
    this.#leases.delete(token);
    if (status !== 'ok') throw leaseLost(task, token);
    this.#observer?.acked(held);
    return held;
  }

  /** Fails a leased pop; retried at `retryAt` while attempts remain. */
  async nack(task: string, token: string, opts: NackOptions): Promise<NackResult> {
    const held = await this.#held('nackTask', task, token);
    const attempts = opts.retry === false ? held.attempt : typeof opts.retry === 'number' ? opts.retry : held.attempts;
    const now = await this.#store.now();
    const retryAt = held.attempt < attempts ? now + (opts.delayMs ?? retryDelay(NACK_BACKOFF, held.attempt)) : undefined;
    const [status] = await this.#store.complete([
      { token, outcome: 'failure', error: opts.error ?? 'failed (nackTask)', startedAt: held.startedAt, durationMs: Math.max(0, now - held.startedAt), retryAt },
    ]);
    this.#leases.delete(token);
    if (status !== 'ok') throw leaseLost(task, token);
    this.#observer?.nacked(held, retryAt !== undefined);
    return { lease: held, retryAt };
  }

  /** Extends a leased pop by `leaseMs` (default: the pop's lease) from now. */
  async renew(task: string, token: string, leaseMs?: number): Promise<HeldLease> {
    const held = await this.#held('renewTask', task, token);
    leaseMs ??= held.leaseMs;
    const [ok] = await this.#store.renew([token], leaseMs);
    if (ok !== true) {
      this.#leases.delete(token);
      throw leaseLost(task, token);
    }
    held.expiresAt = (await this.#store.now()) + leaseMs;
    return held;
  }

  /** Answers every waiting long poll with "nothing" and stops listening to the store. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    for (const wake of this.#wakes.values()) clearTimeout(wake.timer);
    this.#wakes.clear();
    for (const list of this.#waiters.values()) for (const w of [...list]) this.#finish(w, null);
    this.#waiters.clear();
  }

  // ------------------------------------------------------------------ internals

  /** Throws `SchedulerStoppedError` once stopping; opens the store on first use. */
  async ready(operation: string): Promise<void> {
    const state = this.#scheduler.state;
    if (this.#closed || state === 'stopping' || state === 'stopped') throw new SchedulerStoppedError(operation);
    // Opens the store through the scheduler, so a scheduler that was not started yet still
    // serves pops from its persisted state.
    await this.#scheduler.ready();
  }

  async #claim(task: string, opts: PopOptions): Promise<ClaimResult> {
    const leased = opts.leaseMs !== undefined;
    const policy: TaskPolicy = {
      overlap: 'skip',
      misfire: 'run-once',
      catchupWindow: 0,
      attempts: leased ? opts.attempts : 1,
      leaseMs: opts.leaseMs ?? DESTRUCTIVE_LEASE_MS,
      limit: 1,
    };
    const result = await this.#store.claim({ tasks: new Map([[task, policy]]), limit: 1, owner: opts.owner });
    this.#observer?.claimed(result);
    return result;
  }

  /**
   * Hands a claimed run to its worker: registers the lease, or completes a destructive pop.
   * A client that went away meanwhile gets nothing and the occurrence is given back (false).
   */
  async #deliver(run: ClaimedRun, result: ClaimResult, opts: PopOptions): Promise<boolean> {
    if (opts.signal.aborted || this.#closed) {
      await this.#store.complete([{ token: run.token, outcome: 'abandon', startedAt: result.now, durationMs: 0 }]);
      return false;
    }
    if (opts.leaseMs !== undefined) {
      this.#leases.set(run.token, {
        token: run.token,
        task: run.task,
        uid: run.uid,
        dueAt: run.dueAt,
        attempt: run.attempt,
        attempts: opts.attempts,
        leaseMs: opts.leaseMs,
        startedAt: result.now,
        expiresAt: run.leaseExpiresAt,
      });
    } else {
      await this.#store.complete([{ token: run.token, outcome: 'success', startedAt: result.now, durationMs: 0 }]);
    }
    this.#observer?.popped(run, result.now, opts.leaseMs !== undefined);
    return true;
  }

  #wait(task: string, opts: PopOptions): Promise<ClaimedRun | null> {
    this.#unsubscribe ??= this.#store.subscribe((dueAt) => this.#onNotify(dueAt));
    return new Promise<ClaimedRun | null>((resolve, reject) => {
      const onAbort = (): void => this.#finish(waiter, null);
      const timer = setTimeout(onAbort, opts.waitMs);
      const waiter: Waiter = { task, opts, resolve, reject, timer, onAbort, done: false };
      opts.signal.addEventListener('abort', onAbort, { once: true });
      let list = this.#waiters.get(task);
      if (list === undefined) {
        list = [];
        this.#waiters.set(task, list);
      }
      list.push(waiter);
      this.#pump(task);
    });
  }

  #finish(waiter: Waiter, run: ClaimedRun | null, error?: unknown): void {
    if (waiter.done) return;
    waiter.done = true;
    clearTimeout(waiter.timer);
    waiter.opts.signal.removeEventListener('abort', waiter.onAbort);
    const list = this.#waiters.get(waiter.task);
    if (list !== undefined) {
      const i = list.indexOf(waiter);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) {
        this.#waiters.delete(waiter.task);
        const wake = this.#wakes.get(waiter.task);
        if (wake !== undefined) clearTimeout(wake.timer);
        this.#wakes.delete(waiter.task);
        if (this.#waiters.size === 0) {
          this.#unsubscribe?.();
          this.#unsubscribe = undefined;
        }
      }
    }
    if (error !== undefined) waiter.reject(error);
    else waiter.resolve(run);
  }

  /** A store notification: something may be due at `dueAt` (store time). */
  #onNotify(dueAt: number): void {
    const now = Date.now();
    for (const task of this.#waiters.keys()) this.#arm(task, dueAt, now);
  }

  /** Arms the task's wake-up timer for `at` unless one is armed earlier. */
  #arm(task: string, at: number | null, now: number): void {
    if (this.#closed || !this.#waiters.has(task)) return;
    const delay = Math.min(RECHECK_MS, Math.max(at === null ? RECHECK_MS : at - now, 0));
    const target = now + delay;
    const wake = this.#wakes.get(task);
    if (wake !== undefined && wake.timer !== undefined && wake.at <= target) return;
    if (wake !== undefined) clearTimeout(wake.timer);
    const timer = setTimeout(() => {
      this.#wakes.delete(task);
      this.#pump(task);
    }, delay);
    this.#wakes.set(task, { timer, at: target });
  }

  /** Serves the task's waiting long polls in order while the store has due occurrences. */
  #pump(task: string): void {
    if (this.#pumping.has(task)) {
      this.#again.add(task);
      return;
    }
    this.#pumping.add(task);
    void this.#pumpLoop(task).finally(() => this.#pumping.delete(task));
  }

  async #pumpLoop(task: string): Promise<void> {
    do {
      this.#again.delete(task);
      for (;;) {
        if (this.#closed) return;
        const head = this.#waiters.get(task)?.[0];
        if (head === undefined) return;
        let result: ClaimResult;
        try {
          result = await this.#claim(task, head.opts);
        } catch (err) {
          // A store fault: every waiter of this task gets it (as a 500), none hangs.
          for (const w of [...(this.#waiters.get(task) ?? [])]) this.#finish(w, null, err);
          return;
        }
        const run = result.runs[0];
        if (run === undefined) {
          this.#arm(task, result.nextDueAt === null ? null : Math.max(result.nextDueAt, result.now + MIN_RECHECK_MS), result.now);
          break;
        }
        try {
          // The head may have timed out or gone while we claimed: then the run goes back.
          const delivered = await this.#deliver(run, result, head.done ? { ...head.opts, signal: AbortSignal.abort() } : head.opts);
          if (delivered) this.#finish(head, run);
        } catch (err) {
          this.#finish(head, null, err);
        }
      }
    } while (this.#again.has(task));
  }

  async #held(operation: string, task: string, token: string): Promise<HeldLease> {
    await this.ready(operation);
    this.#sweep();
    const held = this.#leases.get(token);
    if (held === undefined || held.task !== task) throw leaseLost(task, token);
    return held;
  }

  /** Forgets leases that expired long ago (bounded memory; the store already dropped them). */
  #sweep(): void {
    const now = Date.now();
    if (now - this.#lastSweep < 1000) return;
    this.#lastSweep = now;
    for (const [token, held] of this.#leases) if (held.expiresAt + LEASE_GRACE_MS < now) this.#leases.delete(token);
  }
}

function leaseLost(task: string, token: string): SchedkitError {
  return new SchedkitError(
    'ERR_LEASE_LOST',
    `task "${task}": no lease "${token}" is held (it expired and may have been redelivered, was already acknowledged, or never existed)`,
  );
}
