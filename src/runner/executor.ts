import { LeaseLostError, RunTimeoutError, SchedkitError } from '../errors.js';
import { toJson, type JsonValue } from '../json.js';
import { retryDelay, type TaskConfig } from '../options.js';
import type { ClaimedRun, ClaimRequest, ClaimResult, Completion, CompletionStatus, Store, TaskPolicy } from '../store/Store.js';
import type { RunContext, RunEvent, SchedulerEvents, TaskHandler } from '../types.js';

export interface TaskDefinition {
  readonly name: string;
  readonly handler: TaskHandler<never>;
  readonly config: TaskConfig;
}

/** The events an executor emits: each has one payload. */
export type ExecutorEvent = { [K in keyof SchedulerEvents]: SchedulerEvents[K] extends [unknown] ? K : never }[keyof SchedulerEvents];
/** Emits one event with its payload (no rest arguments: this runs for every run). */
export type Emit = <K extends ExecutorEvent>(event: K, payload: SchedulerEvents[K][0]) => void;

/** Never wait longer than this between claims: engines misbehave after suspend, and a store's clock may jump. */
const MAX_WAIT_MS = 30_000;
/** A handler that took at most this long makes its task one claimed ahead (see Executor#ahead). */
const QUICK_MS = 10;

interface ActiveRun {
  readonly claim: ClaimedRun;
  readonly def: TaskDefinition;
  /** Made on first use (the handler reading `signal`, a timeout, a fence): most runs never need one. */
  controller: AbortController | undefined;
  /** Set when the lease is gone (lost, superseded, or given back at stop): never complete. */
  fenced: boolean;
  settled: Promise<void>;
  /** Whether the run still counts against its task's concurrency (until its handler is done). */
  slot: boolean;
  /** The handler's error (or its timeout), once it failed. */
  error: Error | undefined;
  /** Links of the executor's list of runs in progress. */
  prev: ActiveRun | null;
  next: ActiveRun | null;
}

/** `settled` of a run before its handler starts (one promise for all). */
const NOT_STARTED: Promise<void> = Promise.resolve();

/**
 * The completions of one turn: one store call, and one promise its runs await (each reads its
 * own status by index), not one promise and three closures per run.
 */
interface CompletionBatch {
  readonly items: Completion[];
  readonly done: Promise<readonly CompletionStatus[]>;
  readonly resolve: (statuses: readonly CompletionStatus[]) => void;
  readonly reject: (err: unknown) => void;
}

/** Whether a claim took all it asked for (all, or all of one task): more may be due. */
function isFull(request: ClaimRequest, result: ClaimResult): boolean {
  if (result.runs.length >= request.limit) return true;
  const perTask = new Map<string, number>();
  for (const run of result.runs) perTask.set(run.task, (perTask.get(run.task) ?? 0) + 1);
  for (const [task, policy] of request.tasks) if ((perTask.get(task) ?? 0) >= policy.limit) return true;
  return false;
}

function controllerOf(run: ActiveRun): AbortController {
  return (run.controller ??= new AbortController());
}

/**
 * What a handler gets. A class, not an object literal with a getter: this is built once per
 * run, and the literal (spread from the event) cost several microseconds each.
 */
class Context implements RunContext {
  readonly task: string;
  readonly uid: string;
  readonly params: JsonValue | undefined;
  readonly dueAt: Date;
  readonly attempt: number;
  readonly kind: RunContext['kind'];
  readonly #run: ActiveRun;

  constructor(run: ActiveRun) {
    const claim = run.claim;
    this.task = claim.task;
    this.uid = claim.uid;
    this.params = claim.params;
    this.dueAt = new Date(claim.dueAt);
    this.attempt = claim.attempt;
    this.kind = claim.kind;
    this.#run = run;
  }

  /** Made on first use: most runs never need an AbortController. */
  get signal(): AbortSignal {
    return controllerOf(this.#run).signal;
  }
}

/**
 * Claims due occurrences from the store and runs their handlers in this process.
 * ONE timer, armed for the earliest due time the store reports (capped at 30 s, unref'd);
 * a store notification re-arms it when an earlier occurrence appears.
 */
export class Executor {
  readonly #store: Store;
  readonly #tasks: ReadonlyMap<string, TaskDefinition>;
  readonly #concurrency: number;
  readonly #owner: string;
  readonly #emit: Emit;
  /** Whether anyone listens to an event: the hot path builds event objects only for listeners. */
  readonly #wants: (event: keyof SchedulerEvents) => boolean;
  /**
   * Runs in progress, as an intrusive list rather than a Map keyed by token: one add and one
   * delete per run would make V8 replace the Map's hash table every few runs and chain the
   * old tables to the new ones, so every run object would survive minor GCs (see LeaseTable).
   */
  #head: ActiveRun | null = null;
  #count = 0;
  /** Runs whose handler is running: what `concurrency` bounds. */
  #busy = 0;
  readonly #runningByTask = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #armedAt = Infinity;
  #heartbeat: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #claiming = false;
  /** The claim loop running (or the last one): stop() waits for it. It never rejects. */
  #loop: Promise<void> = Promise.resolve();
  #again = false;
  #stopped = true;
  /**
   * The store's clock at the latest claim and `performance.now()` when its answer came: the
   * store's time is estimated on the monotonic clock, so a jump of this host's wall clock
   * between claims moves neither timers nor retry times (in-process stores tell it exactly).
   */
  #claimNow = Date.now();
  #claimMono = performance.now();
  /** Completions waiting for #flush (undefined: none). */
  #batch: CompletionBatch | undefined;
  /**
   * Runs whose handler is done and whose completion the store has not answered yet. They keep
   * their lease (renewed, fenced) until the store answers, but not their slot: the next claim
   * goes out right behind their completion, so the store works on one batch while this
   * process runs the next. At most `concurrency` of them at once, so a slow store bounds how
   * far ahead we claim.
   */
  #completing = 0;
  #flushing = false;
  /**
   * A claim sent ahead. While a backlog lasts and handlers finish within a claim's round trip
   * (none is running when a claim answers), the next claim goes out as soon as one answers,
   * before its runs start: the store works on it while this process runs them, instead of
   * each waiting for the other. It asks only for tasks whose latest handler took at most
   * QUICK_MS. Whoever takes it from here owns its runs.
   */
  #ahead: { request: ClaimRequest; result: Promise<ClaimResult> } | undefined;
  /**
   * Runs claimed ahead that found no free slot (the executor's or their task's): they hold
   * their lease (renewed) and start, oldest first, as slots free. With them an executor holds
   * at most 3 x concurrency leases: running, completing, and claimed ahead.
   */
  #queued: ClaimedRun[] = [];
  /** Tasks whose latest run's handler took at most QUICK_MS: only they are claimed ahead. */
  readonly #quick = new Set<string>();

  constructor(store: Store, tasks: ReadonlyMap<string, TaskDefinition>, concurrency: number, owner: string, emit: Emit, wants: (event: keyof SchedulerEvents) => boolean = () => true) {
    this.#store = store;
    this.#tasks = tasks;
    this.#concurrency = concurrency;
    this.#owner = owner;
    this.#emit = emit;
    this.#wants = wants;
  }

  get running(): number {
    return this.#count;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#unsubscribe = this.#store.subscribe((dueAt) => this.#onNotify(dueAt));
    this.refresh();
  }

  /** Call after tasks were defined: re-times the heartbeat for the shortest lease and claims. */
  refresh(): void {
    if (this.#stopped) return;
    clearInterval(this.#heartbeat);
    // Renew at a third of the shortest lease, so two missed beats still keep it.
    const beatMs = Math.max(20, Math.min(1000, Math.floor(this.#minLease() / 3)));
    this.#heartbeat = setInterval(() => void this.#renew(), beatMs);
    this.#heartbeat.unref();
    this.wake();
  }

  /** Stops claiming, lets running work finish within `timeoutMs`, then aborts and gives back the rest. */
  async stop(timeoutMs: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe?.();
    this.#clearTimer();
    await this.#giveBackAhead();
    // A claim in flight gives its runs back when it answers (#claimLoop): wait for that.
    await this.#loop;
    const all = (): Promise<unknown> => Promise.allSettled(this.#runs().map((r) => r.settled));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      const giveBack: Completion[] = [];
      for (const run of this.#runs()) {
        run.fenced = true;
        controllerOf(run).abort(new SchedkitError('ERR_STOPPED', 'the scheduler is stopping'));
        giveBack.push({ token: run.claim.token, outcome: 'abandon', startedAt: 0, durationMs: 0 });
      }
      if (giveBack.length > 0) await this.#store.complete(giveBack).catch((err: unknown) => this.#error(err));
    }
    await this.#flush();
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  /** Claims now (coalesced: one claim in flight, another right after when asked meanwhile). */
  wake(): void {
    if (this.#stopped) return;
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    this.#claiming = true;
    this.#loop = this.#claimLoop()
      .catch((err: unknown) => this.#error(err))
      .finally(() => {
        this.#claiming = false;
        // A notification that came after the loop's last check, but before this point, only
        // set #again: honour it, or that wake-up would wait for the next timer (up to 30 s).
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  async #claimLoop(): Promise<void> {
    do {
      this.#again = false;
      let request: ClaimRequest;
      let pending: Promise<ClaimResult>;
      const ahead = this.#ahead;
      if (ahead !== undefined) {
        this.#ahead = undefined;
        request = ahead.request;
        pending = ahead.result;
      } else {
        const busy = this.#count - this.#completing;
        if (busy > this.#concurrency - busy) {
          // Nearly full: runs started in this turn may be about to finish. Let them reach their
          // completion first, so #request sees those slots coming and claims once with them.
          await new Promise<void>((resolve) => setImmediate(resolve));
          if (this.#stopped) return;
        }
        const next = this.#request();
        if (next === null) return; // at capacity or nothing defined: a finishing run wakes us
        request = next;
        pending = this.#store.claim(request);
      }
      let result;
      try {
        result = await pending;
      } catch (err) {
        this.#error(err);
        this.#arm(this.#storeNow() + 1000); // retry the store later, no hot loop
        return;
      }
      if (this.#stopped) {
        await this.#giveBack(result.runs); // claimed while stopping
        return;
      }
      this.#claimNow = result.now;
      this.#claimMono = performance.now();
      if (result.lost.length > 0 || result.skipped.length > 0) this.#reportLostAndSkipped(result);
      const full = isFull(request, result);
      if (full && result.runs.length > 0 && this.#busy === 0 && this.#queued.length === 0) {
        const next = this.#aheadRequest(result.runs.length);
        if (next !== null) {
          this.#ahead = { request: next, result: this.#store.claim(next) };
          this.#ahead.result.catch(() => undefined); // its taker handles a failure
        }
      }
      const late: ClaimedRun[] = [];
      for (const claim of result.runs) {
        // A handler may stop the scheduler while this batch starts: the rest goes back.
        if (this.#stopped) late.push(claim);
        else this.#admit(claim);
      }
      if (late.length > 0) {
        await this.#giveBack(late);
        return;
      }
      if (full && result.runs.length > 0) {
        // More may be due: yield to I/O, then claim again.
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.#again = true;
      } else {
        this.#arm(result.nextDueAt, result.now);
      }
    } while (this.#again && !this.#stopped);
  }

  /** Leases a claim found expired (their runs are fenced here) and occurrences it skipped. */
  #reportLostAndSkipped(result: ClaimResult): void {
    for (const lost of result.lost) {
      this.#emit('run:lost', { task: lost.task, uid: lost.uid, dueAt: new Date(lost.dueAt), attempt: lost.attempt, kind: lost.kind, requeued: lost.requeued, reason: 'lease expired' });
      const active = this.#find(lost.token);
      if (active !== undefined) this.#fence(active, 'lease expired');
      this.#unqueue(lost.token);
    }
    for (const skip of result.skipped) {
      this.#emit('run:skipped', { task: skip.task, uid: skip.uid, dueAt: new Date(skip.dueAt), reason: skip.reason });
    }
  }

  #request(): ClaimRequest | null {
    // Slots are held by handlers still running and promised to queued runs that can start as
    // soon as one frees (those waiting for their task's slot take none yet); completions in
    // flight bound how far ahead we claim (each wakes us when the store answers it).
    let startable = 0;
    const queuedByTask = new Map<string, number>();
    for (const q of this.#queued) {
      queuedByTask.set(q.task, (queuedByTask.get(q.task) ?? 0) + 1);
      if (this.#taskHasSlot(q.task)) startable++;
    }
    const free = Math.min(this.#concurrency - this.#busy - startable, 2 * this.#concurrency - this.#count - this.#queued.length);
    if (free <= 0) return null;
    const tasks = new Map<string, TaskPolicy>();
    for (const def of this.#tasks.values()) {
      const c = def.config;
      const limit = c.concurrency - (this.#runningByTask.get(def.name) ?? 0) - (queuedByTask.get(def.name) ?? 0);
      if (limit <= 0) continue;
      tasks.set(def.name, { overlap: c.overlap, misfire: c.misfire, catchupWindow: c.catchupWindow, attempts: c.retry.attempts, leaseMs: c.leaseMs, limit });
    }
    if (tasks.size === 0) return null;
    return { tasks, limit: free, owner: this.#owner };
  }

  /**
   * The claim sent ahead while `incoming` runs just claimed are about to start: at most
   * `concurrency` runs, and at most 3 x concurrency leases held in all. Each task may take up
   * to its concurrency: runs that find their task's slots taken wait in #queued.
   */
  #aheadRequest(incoming: number): ClaimRequest | null {
    const free = Math.min(this.#concurrency, 3 * this.#concurrency - this.#count - incoming - this.#queued.length);
    if (free <= 0) return null;
    const tasks = new Map<string, TaskPolicy>();
    for (const def of this.#tasks.values()) {
      const c = def.config;
      // Only tasks seen to be quick: a run claimed ahead of a slow task would hold its lease
      // while it waits, where another process could have run it.
      if (!this.#quick.has(def.name)) continue;
      tasks.set(def.name, { overlap: c.overlap, misfire: c.misfire, catchupWindow: c.catchupWindow, attempts: c.retry.attempts, leaseMs: c.leaseMs, limit: Math.min(free, c.concurrency) });
    }
    if (tasks.size === 0) return null;
    return { tasks, limit: free, owner: this.#owner };
  }

  /** Starts a claimed run if a slot is free (the executor's and its task's), else queues it. */
  #admit(claim: ClaimedRun): void {
    for (const token of claim.supersedes) {
      const prev = this.#find(token);
      if (prev !== undefined) this.#fence(prev, 'cancelled by a newer occurrence (overlap: cancel-previous)');
      this.#unqueue(token);
    }
    // A run queued for its task's slot does not hold back the runs of other tasks.
    if (this.#hasSlot(claim.task)) this.#start(claim);
    else this.#queued.push(claim);
  }

  #hasSlot(task: string): boolean {
    return this.#busy < this.#concurrency && this.#taskHasSlot(task);
  }

  #taskHasSlot(task: string): boolean {
    const def = this.#tasks.get(task);
    if (def === undefined) return true; // #start drops it
    return (this.#runningByTask.get(task) ?? 0) < def.config.concurrency;
  }

  /** Starts queued runs, oldest first, while slots are free (a run whose task is full waits). */
  #startQueued(): void {
    if (this.#stopped || this.#queued.length === 0) return;
    const waiting = this.#queued;
    this.#queued = [];
    for (const claim of waiting) {
      if (this.#hasSlot(claim.task)) this.#start(claim);
      else this.#queued.push(claim);
    }
  }

  /** Drops a queued run whose lease is gone (lost or superseded): the store redelivers it. */
  #unqueue(token: string): boolean {
    if (this.#queued.length === 0) return false;
    const i = this.#queued.findIndex((q) => q.token === token);
    if (i < 0) return false;
    this.#queued.splice(i, 1);
    return true;
  }

  /** At stop: runs claimed ahead or queued never started; they go back to the store as they were. */
  async #giveBackAhead(): Promise<void> {
    const ahead = this.#ahead;
    this.#ahead = undefined;
    const back = this.#queued.splice(0);
    if (ahead !== undefined) back.push(...(await ahead.result.then((r) => r.runs, () => [])));
    await this.#giveBack(back);
  }

  /** Gives claimed runs back to the store as they were (they never started). */
  async #giveBack(claims: readonly ClaimedRun[]): Promise<void> {
    if (claims.length === 0) return;
    await this.#store.complete(claims.map((r) => ({ token: r.token, outcome: 'abandon' as const, startedAt: 0, durationMs: 0 }))).catch((err: unknown) => this.#error(err));
  }

  /** The store's time now: exact for in-process stores, else estimated from the latest claim. */
  #storeNow(): number {
    return this.#store.nowSync?.() ?? this.#claimNow + (performance.now() - this.#claimMono);
  }

  /** Arms the one timer for store time `at` (null = nothing pending; still wake within 30 s). */
  #arm(at: number | null, storeNow = this.#storeNow()): void {
    this.#clearTimer();
    if (this.#stopped) return;
    const target = at ?? storeNow + MAX_WAIT_MS;
    const delay = Math.min(Math.max(target - storeNow, 0), MAX_WAIT_MS);
    this.#armedAt = storeNow + delay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#armedAt = Infinity;
      this.wake();
    }, delay);
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #onNotify(dueAt: number): void {
    if (this.#stopped || dueAt >= this.#armedAt) return;
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    this.#arm(dueAt);
  }

  #start(claim: ClaimedRun): void {
    const def = this.#tasks.get(claim.task);
    if (def === undefined) return; // cannot happen: we only claim defined tasks
    const run: ActiveRun = { claim, def, controller: undefined, fenced: false, settled: NOT_STARTED, slot: true, error: undefined, prev: null, next: this.#head };
    if (this.#head !== null) this.#head.prev = run;
    this.#head = run;
    this.#count++;
    this.#busy++;
    this.#runningByTask.set(claim.task, (this.#runningByTask.get(claim.task) ?? 0) + 1);
    run.settled = this.#execute(run);
  }

  /** The run's handler is done: its task may start another (its lease lasts until the store answers). */
  #freeSlot(run: ActiveRun): void {
    if (!run.slot) return;
    run.slot = false;
    this.#busy--;
    this.#runningByTask.set(run.claim.task, (this.#runningByTask.get(run.claim.task) ?? 1) - 1);
    this.#startQueued();
  }

  #fence(run: ActiveRun, reason: string): void {
    if (run.fenced) return;
    run.fenced = true;
    controllerOf(run).abort(new LeaseLostError(run.claim.task, run.claim.uid, reason));
  }


  /** The fields every run event has (built only for the rare events: the common ones are built field by field). */
  #eventOf(ctx: Context): RunEvent {
    return { task: ctx.task, uid: ctx.uid, dueAt: ctx.dueAt, attempt: ctx.attempt, kind: ctx.kind };
  }

  /**
   * The handler, then the completion; then the run leaves the list and we claim again. Kept
   * small: V8 compiles an async function whole, and the branches of what is rare (a timeout, a
   * fenced run, a failure) live in the sync methods below.
   */
  async #execute(run: ActiveRun): Promise<void> {
    try {
      const ctx = new Context(run);
      const started = this.#storeNow();
      const startedMono = performance.now();
      const timer = run.def.config.timeout === undefined ? undefined : this.#timeoutOf(run, run.def.config.timeout);
      // Event objects are built field by field: an object spread cost ~3 us per run here.
      if (this.#wants('run:start')) this.#emit('run:start', { task: ctx.task, uid: ctx.uid, dueAt: ctx.dueAt, attempt: ctx.attempt, kind: ctx.kind, startedAt: new Date(started) });
      let result: JsonValue | null = null;
      let error: Error | undefined;
      try {
        const value: unknown = await (run.def.handler as TaskHandler)(ctx);
        if (value !== undefined) result = toJson(value, `task "${ctx.task}" result`);
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
      if (timer !== undefined) clearTimeout(timer);
      const durationMs = Math.round(performance.now() - startedMono);
      const completion = this.#completionOf(run, ctx, result, error, started, durationMs);
      if (completion === null) return;
      let status: CompletionStatus;
      this.#completing++;
      this.#freeSlot(run);
      try {
        const batch = this.#enqueue(completion);
        const index = batch.items.length - 1;
        status = (await batch.done)[index] ?? 'lease-lost';
      } catch (err) {
        this.#error(err);
        return;
      } finally {
        this.#completing--;
      }
      if (status === 'ok' && completion.outcome === 'success') {
        if (this.#wants('run:success')) this.#emit('run:success', { task: ctx.task, uid: ctx.uid, dueAt: ctx.dueAt, attempt: ctx.attempt, kind: ctx.kind, result, durationMs });
      } else {
        this.#reportOther(run, ctx, completion, status, durationMs);
      }
    } finally {
      this.#unlink(run);
      this.#freeSlot(run);
      this.wake();
    }
  }

  #timeoutOf(run: ActiveRun, timeout: number): NodeJS.Timeout {
    const timer = setTimeout(() => controllerOf(run).abort(new RunTimeoutError(run.claim.task, timeout)), timeout);
    timer.unref();
    return timer;
  }

  /** What to tell the store about a run whose handler is done; null (and a `run:failure`) when its lease is gone. */
  #completionOf(run: ActiveRun, ctx: Context, result: JsonValue | null, handlerError: Error | undefined, startedAt: number, durationMs: number): Completion | null {
    const { claim, def } = run;
    let error = handlerError;
    const reason: unknown = run.controller?.signal.reason;
    if (error === undefined && run.controller?.signal.aborted === true && reason instanceof RunTimeoutError) error = reason;
    if (durationMs <= QUICK_MS) this.#quick.add(claim.task);
    else this.#quick.delete(claim.task);
    if (run.fenced) {
      if (error === undefined && reason instanceof Error) error = reason;
      this.#emit('run:failure', { ...this.#eventOf(ctx), error: error ?? new Error('lease lost'), durationMs, willRetry: false });
      return null;
    }
    if (error === undefined) return { token: claim.token, outcome: 'success', result, startedAt, durationMs };
    const retry = def.config.retry;
    const willRetry = claim.attempt < retry.attempts;
    const retryAt = willRetry ? this.#storeNow() + retryDelay(retry, claim.attempt) : undefined;
    run.error = error;
    return { token: claim.token, outcome: 'failure', error: error.message, startedAt, durationMs, retryAt };
  }

  /** The events of a completion that was not a plain success: lease lost, failure, retry. */
  #reportOther(run: ActiveRun, ctx: Context, completion: Completion, status: CompletionStatus, durationMs: number): void {
    const event = this.#eventOf(ctx);
    if (status === 'lease-lost') {
      this.#emit('run:lost', { ...event, requeued: false, reason: 'lease lost before completion' });
      return;
    }
    if (completion.outcome !== 'failure') return;
    const error = run.error ?? new Error(completion.error ?? 'failed');
    this.#emit('run:failure', { ...event, error, durationMs, willRetry: completion.retryAt !== undefined });
    if (completion.retryAt !== undefined) {
      this.#emit('run:retry', { ...event, error, retryAt: new Date(completion.retryAt - this.#storeNow() + Date.now()), nextAttempt: ctx.attempt + 1 });
    }
  }

  /** Completions are batched: all that finish in one turn go to the store in one call. */
  #enqueue(completion: Completion): CompletionBatch {
    let batch = this.#batch;
    if (batch === undefined) {
      let resolve: (statuses: readonly CompletionStatus[]) => void = () => undefined;
      let reject: (err: unknown) => void = () => undefined;
      const done = new Promise<readonly CompletionStatus[]>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      batch = { items: [], done, resolve, reject };
      this.#batch = batch;
      setImmediate(() => void this.#flush());
    }
    batch.items.push(completion);
    return batch;
  }

  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (let batch = this.#batch; batch !== undefined; batch = this.#batch) {
        this.#batch = undefined;
        try {
          batch.resolve(await this.#store.complete(batch.items));
        } catch (err) {
          batch.reject(err);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #renew(): Promise<void> {
    if (this.#count === 0 && this.#queued.length === 0) return;
    const byLease = new Map<number, { tokens: string[]; lost: ((reason: string) => void)[] }>();
    const add = (leaseMs: number, token: string, lost: (reason: string) => void): void => {
      let group = byLease.get(leaseMs);
      if (group === undefined) byLease.set(leaseMs, (group = { tokens: [], lost: [] }));
      group.tokens.push(token);
      group.lost.push(lost);
    };
    for (const run of this.#runs()) {
      if (!run.fenced) add(run.def.config.leaseMs, run.claim.token, (reason) => this.#fence(run, reason));
    }
    for (const claim of this.#queued) {
      const def = this.#tasks.get(claim.task);
      if (def === undefined) continue;
      add(def.config.leaseMs, claim.token, (reason) => {
        // Queued when renewed; it may have started since.
        if (!this.#unqueue(claim.token)) {
          const run = this.#find(claim.token);
          if (run !== undefined) this.#fence(run, reason);
        }
      });
    }
    for (const [leaseMs, { tokens, lost }] of byLease) {
      try {
        const ok = await this.#store.renew(tokens, leaseMs);
        lost.forEach((fence, i) => {
          if (ok[i] !== true) fence('lease could not be renewed');
        });
      } catch (err) {
        this.#error(err);
      }
    }
  }

  #unlink(run: ActiveRun): void {
    if (run.prev !== null) run.prev.next = run.next;
    else if (this.#head === run) this.#head = run.next;
    else return; // not in the list
    if (run.next !== null) run.next.prev = run.prev;
    run.prev = null;
    run.next = null;
    this.#count--;
  }

  /** Snapshot of the runs in progress. */
  #runs(): ActiveRun[] {
    const out: ActiveRun[] = [];
    for (let r = this.#head; r !== null; r = r.next) out.push(r);
    return out;
  }

  /** The run holding `token` (a scan: only lost and superseded leases look runs up). */
  #find(token: string): ActiveRun | undefined {
    for (let r = this.#head; r !== null; r = r.next) if (r.claim.token === token) return r;
    return undefined;
  }

  #minLease(): number {
    let min = 30_000;
    for (const def of this.#tasks.values()) min = Math.min(min, def.config.leaseMs);
    return min;
  }

  #error(err: unknown): void {
    this.#emit('error', err instanceof Error ? err : new Error(String(err)));
  }
}
