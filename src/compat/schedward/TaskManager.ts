/**
 * schedward's `TaskManager` over schedkit.
 *
 * schedward forks n runner processes that only hold timers; handlers run in the main
 * process. Here, by default, `launch(n)` starts n runner threads that only hold timers
 * (see runners.ts): this thread keeps every pending timeout and each runner arms the
 * timers of its share, so a runner that dies loses nothing — a fresh one re-arms its share.
 * `stop()` drops what was pending, as schedward does.
 *
 * With the `store` option (a `MemoryStore` with a `file`, or a `RedisStore`) the timeouts
 * live in that store instead and a `Scheduler` fires them (n is its concurrency): pending
 * timeouts survive `stop()` and crashes, and several managers on one store fire each once.
 * 'timeout' listeners run in this process either way, exactly as in schedward.
 *
 * schedward's commands are synchronous and fire-and-forget; schedkit's are async. Commands
 * go through one queue in call order (consecutive `timeout()` calls of one task are
 * written in one batch), so `timeout` → `clear` → `makeTaskRegistrySnapshot` see each
 * other's effects. Store failures are emitted as `error` on the manager (a process warning
 * when nobody listens); `flush()` resolves when every command issued so far is stored.
 */
import { EventEmitter } from 'node:events';
import { SchedkitError, ValidationError } from '../../errors.js';
import { Scheduler } from '../../scheduler.js';
import { loadRegistry } from '../../store/registry.js';
import type { RegistryDump, ScheduleInput, Store } from '../../store/Store.js';
import type { JsonValue } from '../../json.js';
import type { RunContext, SchedulerOptions } from '../../types.js';
import { MAX_DURATION_MS } from '../../timing/duration.js';
import { checkName } from '../../validate.js';
import { reportError } from '../shared.js';
import { kRunnerThreads, RunnerPool, type PendingTimeout, type RunnerStats } from './runners.js';
import type { Worker } from 'node:worker_threads';

/** schedward's message, kept word for word (callers match on it). */
export const IDLE_ERROR = 'Task manager is idle. Start a runners pool by using `launch()` method and wait for a callback';

/** Params of a timeout: any JSON object (schedward copies them through JSON). */
export type TimeoutParams = { [key: string]: unknown };

/** What every 'timeout' listener receives. */
export interface TimeoutResponse<P extends object = TimeoutParams> {
  task_uid: string;
  /** The delay asked for; after `loadTaskRegistry`, the recomputed `max(0, iat - now)`. */
  timeout: number;
  params?: P;
}

/** One entry of a registry snapshot: `iat` is the due time (epoch ms). */
export interface RegistryEntry {
  iat: number;
  timeout: number;
  params?: TimeoutParams;
  /** schedkit extensions, present only for recurring schedules (never for schedward's own). */
  every?: number;
  cron?: string;
  tz?: string;
  enabled?: boolean;
}

/** schedward's registry snapshot: `{ [task]: { [task_uid]: { iat, timeout, params? } } }`. */
export interface TaskRunnerRegistryDump {
  [task: string]: { [task_uid: string]: RegistryEntry };
}

export interface TaskManagerOptions {
  /**
   * Where timeouts live. Default: in this process, with `launch(n)`'s n runner threads
   * holding their timers (pending timeouts end with `stop()`, as in schedward). Pass a
   * persistent store (`MemoryStore({ file })`, `RedisStore`) to keep them across stops and
   * crashes; a `Scheduler` on that store then fires them.
   */
  store?: Store;
  /** Other `Scheduler` options (owner, defaults), used with `store` only. */
  scheduler?: Omit<SchedulerOptions, 'store'>;
}

export interface TaskManagerEvents {
  error: [Error];
}

interface TimeoutCommand {
  readonly kind: 'timeout';
  readonly task: string;
  readonly uid: string;
  /** The delay asked for (ms, >= 0). */
  readonly ms: number;
  /** When `timeout()` was called: the due time is `at + ms`. */
  readonly at: number;
  readonly params: JsonValue | undefined;
}

type Command =
  | TimeoutCommand
  | { readonly kind: 'clear'; readonly task: string; readonly uid: string }
  | { readonly kind: 'load'; readonly inputs: readonly ScheduleInput[] }
  | { readonly kind: 'snapshot'; readonly done: (dump: TaskRunnerRegistryDump) => void; readonly fail: (err: unknown) => void };

interface Queued {
  readonly backend: Backend;
  readonly started: Promise<boolean>;
  readonly command: Command;
}

/** Where a launched manager keeps its timeouts: its runner threads, or a store. */
interface Backend {
  readonly scheduler: Scheduler | undefined;
  readonly runners: RunnerStats | null;
  start(): Promise<void>;
  stop(): Promise<void>;
  define(name: string, schedule: TaskSchedule): void;
  timeouts(task: string, commands: readonly TimeoutCommand[]): Promise<void> | void;
  clear(task: string, uid: string): Promise<void> | void;
  load(inputs: readonly ScheduleInput[]): Promise<void> | void;
  snapshot(): Promise<RegistryDump> | RegistryDump;
}

/** Timeouts per store call when consecutive `timeout()` calls are batched. */
const BATCH = 1000;

type TimeoutListener<P extends object> = (e: TimeoutResponse<P>) => void;
type AnyListener = (...args: unknown[]) => void;
type ImplListener = (...args: never[]) => void;

/**
 * The object `manager.task(name)` returns: an EventEmitter that emits 'timeout' with
 * `{ task_uid, timeout, params }` to every listener, created once per name and kept across
 * `stop()`/`launch()`.
 */
export class TaskSchedule extends EventEmitter {
  readonly #manager: TaskManager;
  readonly #name: string;

  /** @internal Made by `TaskManager.task()`. */
  constructor(manager: TaskManager, name: string) {
    super();
    this.#manager = manager;
    this.#name = name;
  }

  get name(): string {
    return this.#name;
  }

  /**
   * (Re)schedules `task_uid` to fire after `timeout` ms: an existing timeout of the same
   * uid is replaced, wherever it was. `params` are copied through JSON, as schedward does.
   */
  timeout<P extends object>(task_uid: string, timeout: number, params?: P): void {
    this.#manager.enqueueTimeout(this.#name, task_uid, timeout, params);
  }

  /** Cancels `task_uid`; does nothing when there is no such timeout. */
  clear(task_uid: string): void {
    this.#manager.enqueueClear(this.#name, task_uid);
  }

  override on<P extends object = TimeoutParams>(event: 'timeout', listener: TimeoutListener<P>): this;
  override on(event: string | symbol, listener: AnyListener): this;
  override on(event: string | symbol, listener: ImplListener): this {
    return super.on(event, listener as AnyListener);
  }

  override addListener<P extends object = TimeoutParams>(event: 'timeout', listener: TimeoutListener<P>): this;
  override addListener(event: string | symbol, listener: AnyListener): this;
  override addListener(event: string | symbol, listener: ImplListener): this {
    return super.addListener(event, listener as AnyListener);
  }

  override once<P extends object = TimeoutParams>(event: 'timeout', listener: TimeoutListener<P>): this;
  override once(event: string | symbol, listener: AnyListener): this;
  override once(event: string | symbol, listener: ImplListener): this {
    return super.once(event, listener as AnyListener);
  }

  override off<P extends object = TimeoutParams>(event: 'timeout', listener: TimeoutListener<P>): this;
  override off(event: string | symbol, listener: AnyListener): this;
  override off(event: string | symbol, listener: ImplListener): this {
    return super.off(event, listener as AnyListener);
  }

  override removeListener<P extends object = TimeoutParams>(event: 'timeout', listener: TimeoutListener<P>): this;
  override removeListener(event: string | symbol, listener: AnyListener): this;
  override removeListener(event: string | symbol, listener: ImplListener): this {
    return super.removeListener(event, listener as AnyListener);
  }
}

export class TaskManager extends EventEmitter<TaskManagerEvents> {
  readonly #options: TaskManagerOptions;
  readonly #schedules = new Map<string, TaskSchedule>();
  #backend: Backend | undefined;
  #running = false;
  #workers = 0;
  /** Start and stop, in call order: a `launch()` made while stopping waits for the stop. */
  #lifecycle: Promise<void> = Promise.resolve();
  #started: Promise<boolean> = Promise.resolve(false);
  #commands: Queued[] = [];
  #draining: Promise<void> | undefined;

  constructor(options: TaskManagerOptions = {}) {
    super();
    if (typeof options !== 'object' || options === null) throw new ValidationError('TaskManager options', 'must be an object');
    this.#options = options;
  }

  /**
   * Starts a pool of n runners; `callback` runs once all are ready. Without a `store`, the
   * runners are n worker threads holding the timers; with one, a `Scheduler` on it with
   * concurrency n. Throws for `n <= 0` and when already running.
   */
  launch(concurrency: number, callback?: () => void): void {
    this.launchAsync(concurrency).then(
      () => callback?.(),
      (err: unknown) => reportError(this, err, 'schedward TaskManager.launch'),
    );
  }

  /** Stops the runners once queued commands are applied; `callback` runs when they have stopped. */
  stop(callback?: () => void): void {
    if (!this.#running) {
      // Like schedward: stopping an idle manager calls back at once.
      callback?.();
      return;
    }
    this.stopAsync().then(
      () => callback?.(),
      (err: unknown) => reportError(this, err, 'schedward TaskManager.stop'),
    );
  }

  /** The schedule object of task `name`, created on first use and kept for the manager's life. */
  task(name: string): TaskSchedule {
    let schedule = this.#schedules.get(name);
    if (schedule === undefined) {
      checkName(name, 'task.name');
      schedule = new TaskSchedule(this, name);
      this.#schedules.set(name, schedule);
      this.#backend?.define(name, schedule);
    }
    return schedule;
  }

  /**
   * Restores a snapshot: each entry fires at its `iat` (at once when that passed) with
   * `timeout` recomputed as `max(0, iat - now)`; `iat` is kept. Entries replace timeouts of
   * the same uid, so loading into a busy manager never duplicates. Synchronous like
   * schedward's; the whole registry is validated before anything changes.
   */
  loadTaskRegistry(registry: TaskRunnerRegistryDump): void {
    this.#assertRunning();
    const now = Date.now();
    const inputs = loadRegistry(registry, 'loadTaskRegistry.registry').map((input) =>
      input.spec.kind === 'once' ? { ...input, timeout: 'at' in input.first ? Math.max(0, input.first.at - now) : input.timeout } : input,
    );
    for (const input of inputs) this.task(input.task);
    this.#enqueue({ kind: 'load', inputs });
  }

  /** Calls back with a snapshot of every pending timeout (tasks without any are left out). */
  makeTaskRegistrySnapshot(callback: (registry: TaskRunnerRegistryDump) => void): void {
    this.snapshotAsync().then(
      (registry) => callback(registry),
      (err: unknown) => reportError(this, err, 'schedward TaskManager.makeTaskRegistrySnapshot'),
    );
  }

  /** schedkit extension: resolves when every command issued so far has been applied. */
  async flush(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  /** n of the running `launch(n)`; 0 when stopped. */
  get numWorkers(): number {
    return this.#workers;
  }

  /** True from `launch()` until `stop()`; commands throw the idle error otherwise. */
  get running(): boolean {
    return this.#running;
  }

  /** Names of the tasks made with `task()` (or restored by `loadTaskRegistry`). */
  get taskList(): string[] {
    return [...this.#schedules.keys()];
  }

  /** With the `store` option: the underlying schedkit scheduler while running (events, reports, locks). */
  get scheduler(): Scheduler | undefined {
    return this.#backend?.scheduler;
  }

  /** schedkit extension: the runner threads (threads alive, timers each holds, crashes); null with a `store` or when stopped. */
  get runners(): RunnerStats | null {
    return this.#backend?.runners ?? null;
  }

  /** @internal Test hook: the live runner threads. */
  get [kRunnerThreads](): readonly Worker[] {
    return this.#backend instanceof RunnerBackend ? this.#backend.threads : [];
  }

  // ------------------------------------------------------------ promise-based core

  protected launchAsync(concurrency: number): Promise<void> {
    if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency <= 0) {
      throw new SchedkitError('ERR_VALIDATION', '`concurrency` parameter must be a positive integer');
    }
    if (this.#running) throw new SchedkitError('ERR_ALREADY_RUNNING', 'TaskManager already running');
    if (concurrency > MAX_RUNNERS && this.#options.store === undefined) {
      throw new SchedkitError('ERR_VALIDATION', `\`concurrency\` parameter must be at most ${MAX_RUNNERS} (runner threads)`);
    }
    const onError = (err: Error): void => reportError(this, err, 'schedward TaskManager');
    const backend: Backend =
      this.#options.store === undefined
        ? new RunnerBackend(concurrency, this.#schedules, onError)
        : new StoreBackend(new Scheduler({ concurrency, ...this.#options.scheduler, store: this.#options.store }), onError);
    for (const [name, schedule] of this.#schedules) backend.define(name, schedule);
    this.#backend = backend;
    this.#running = true;
    this.#workers = concurrency;
    const start = this.#lifecycle.then(() => backend.start());
    this.#lifecycle = start.catch(() => undefined);
    this.#started = start.then(
      () => true,
      () => {
        if (this.#backend === backend) {
          this.#backend = undefined;
          this.#running = false;
          this.#workers = 0;
        }
        return false;
      },
    );
    return start;
  }

  protected stopAsync(): Promise<void> {
    const backend = this.#backend;
    if (!this.#running || backend === undefined) return this.#lifecycle;
    this.#running = false;
    const stop = this.#lifecycle.then(async () => {
      await this.flush();
      await backend.stop();
      if (this.#backend === backend) {
        this.#backend = undefined;
        this.#workers = 0;
      }
    });
    this.#lifecycle = stop.catch(() => undefined);
    return stop;
  }

  protected snapshotAsync(): Promise<TaskRunnerRegistryDump> {
    this.#assertRunning();
    return new Promise((resolve, reject) => this.#enqueue({ kind: 'snapshot', done: resolve, fail: reject }));
  }

  // ------------------------------------------------------------ commands

  /** @internal Called by `TaskSchedule.timeout`. */
  enqueueTimeout(task: string, uid: string, timeout: number, params: object | undefined): void {
    this.#assertRunning();
    checkName(uid, 'timeout.task_uid');
    if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw new ValidationError('timeout.timeout', 'must be a number of milliseconds');
    // Like setTimeout, a negative delay fires at once.
    const ms = Math.min(MAX_DURATION_MS, Math.max(0, Math.ceil(timeout)));
    // schedward copies params through JSON (`if (params)`: falsy params pass as they are).
    const copied = params === undefined ? undefined : params ? (JSON.parse(JSON.stringify(params)) as JsonValue) : (params as JsonValue);
    this.#enqueue({ kind: 'timeout', task, uid, ms, at: Date.now(), params: copied });
  }

  /** @internal Called by `TaskSchedule.clear`. */
  enqueueClear(task: string, uid: string): void {
    this.#assertRunning();
    checkName(uid, 'clear.task_uid');
    this.#enqueue({ kind: 'clear', task, uid });
  }

  #assertRunning(): void {
    if (!this.#running || this.#backend === undefined) throw new SchedkitError('ERR_IDLE', IDLE_ERROR);
  }

  #enqueue(command: Command): void {
    this.#commands.push({ backend: this.#backend as Backend, started: this.#started, command });
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  async #drain(): Promise<void> {
    while (this.#commands.length > 0) {
      const head = this.#commands[0] as Queued;
      // A batch: consecutive timeouts of one task for one backend go in one call.
      let n = 1;
      if (head.command.kind === 'timeout') {
        while (n < this.#commands.length && n < BATCH) {
          const next = this.#commands[n] as Queued;
          if (next.backend !== head.backend || next.command.kind !== 'timeout' || next.command.task !== head.command.task) break;
          n++;
        }
      }
      const batch = this.#commands.splice(0, n);
      try {
        if (!(await head.started)) throw new SchedkitError('ERR_IDLE', `${IDLE_ERROR} (the runners failed to start)`);
        await this.#run(head.backend, batch.map((b) => b.command));
      } catch (err) {
        const cmd = head.command;
        if (cmd.kind === 'snapshot') cmd.fail(err);
        else reportError(this, err, `schedward ${cmd.kind}`);
      }
    }
  }

  async #run(backend: Backend, commands: Command[]): Promise<void> {
    const head = commands[0] as Command;
    switch (head.kind) {
      case 'timeout':
        await backend.timeouts(head.task, commands as TimeoutCommand[]);
        return;
      case 'clear':
        await backend.clear(head.task, head.uid);
        return;
      case 'load':
        await backend.load(head.inputs);
        return;
      case 'snapshot': {
        const dump = (await backend.snapshot()) as TaskRunnerRegistryDump;
        // Called outside the queue: a callback that stops or reloads must not wait on itself.
        setImmediate(() => head.done(dump));
        return;
      }
    }
  }
}

/** Runner threads at most (each is a V8 isolate of a few MB). */
const MAX_RUNNERS = 256;

/** Default: this thread keeps the timeouts, n runner threads hold their timers. */
class RunnerBackend implements Backend {
  readonly scheduler = undefined;
  readonly #pool: RunnerPool;

  constructor(n: number, schedules: ReadonlyMap<string, TaskSchedule>, onError: (err: Error) => void) {
    this.#pool = new RunnerPool(
      n,
      (t: PendingTimeout) => {
        const response: TimeoutResponse = { task_uid: t.uid, timeout: t.timeout };
        if (t.params !== undefined) response.params = t.params as TimeoutParams;
        schedules.get(t.task)?.emit('timeout', response);
      },
      onError,
    );
  }

  get runners(): RunnerStats {
    return this.#pool.stats;
  }

  get threads(): readonly Worker[] {
    return this.#pool[kRunnerThreads];
  }

  start(): Promise<void> {
    return this.#pool.start();
  }

  stop(): Promise<void> {
    return this.#pool.stop();
  }

  define(): void {
    // Listeners are looked up by task name when a timeout fires.
  }

  timeouts(task: string, commands: readonly TimeoutCommand[]): void {
    for (const c of commands) this.#pool.setTimeout(task, c.uid, c.at + c.ms, c.ms, c.params);
  }

  clear(task: string, uid: string): void {
    this.#pool.clear(task, uid);
  }

  load(inputs: readonly ScheduleInput[]): void {
    this.#pool.load(inputs, Date.now());
  }

  snapshot(): RegistryDump {
    return this.#pool.snapshot();
  }
}

/** With the `store` option: a `Scheduler` on that store fires the timeouts. */
class StoreBackend implements Backend {
  readonly scheduler: Scheduler;
  readonly runners = null;

  constructor(scheduler: Scheduler, onError: (err: Error) => void) {
    this.scheduler = scheduler;
    scheduler.on('error', onError);
  }

  async start(): Promise<void> {
    await this.scheduler.start();
  }

  stop(): Promise<void> {
    return this.scheduler.stop();
  }

  define(name: string, schedule: TaskSchedule): void {
    const scheduler = this.scheduler;
    scheduler.define(name, async (run: RunContext) => {
      const timeout = await timeoutOf(scheduler, run);
      const response: TimeoutResponse = { task_uid: run.uid, timeout };
      if (run.params !== undefined) response.params = structuredClone(run.params) as TimeoutParams;
      schedule.emit('timeout', response);
    });
  }

  async timeouts(task: string, commands: readonly TimeoutCommand[]): Promise<void> {
    await this.scheduler.scheduleMany(
      task,
      commands.map((c) => (c.params === undefined ? { uid: c.uid, in: c.ms } : { uid: c.uid, in: c.ms, params: c.params })),
    );
  }

  async clear(task: string, uid: string): Promise<void> {
    await this.scheduler.cancel(task, uid);
  }

  async load(inputs: readonly ScheduleInput[]): Promise<void> {
    await this.scheduler.ready();
    await this.scheduler.store.upsertMany(inputs);
  }

  snapshot(): Promise<RegistryDump> {
    return this.scheduler.snapshot();
  }
}

/** The delay the fired timeout was set with (kept on the schedule by the store). */
async function timeoutOf(scheduler: Scheduler, run: RunContext): Promise<number> {
  const state = await scheduler.store.get(run.task, run.uid);
  return state?.timeout ?? Math.max(0, run.dueAt.getTime() - Date.now());
}
