/**
 * schedward's `TaskManager` over schedkit's `Scheduler`.
 *
 * schedward forks n runner processes that only hold timers; handlers run in the main
 * process. Here the timers live in the scheduler's store (one armed timer for the earliest
 * due time, never one per timeout), so `launch(n)` starts the scheduler and records n as
 * `numWorkers`; 'timeout' listeners run in this process, exactly as in schedward. With the
 * `store` option (a `MemoryStore` with a `file`, or a `RedisStore`) pending timeouts survive
 * `stop()` and crashes; without it each `launch()` gets a fresh in-memory store, and
 * `stop()` drops what was pending, as schedward does.
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
import { MemoryStore } from '../../store/memory/MemoryStore.js';
import { loadRegistry } from '../../store/registry.js';
import type { RegistryDump, Store } from '../../store/Store.js';
import type { RunContext, ScheduleOptions, SchedulerOptions } from '../../types.js';
import { checkName } from '../../validate.js';
import { reportError } from '../shared.js';

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
   * Where timeouts live. Default: a new `MemoryStore()` for each `launch()` (pending
   * timeouts end with `stop()`, as in schedward). Pass a persistent store to keep them.
   */
  store?: Store;
  /** Other `Scheduler` options (concurrency, owner, defaults). */
  scheduler?: Omit<SchedulerOptions, 'store'>;
}

export interface TaskManagerEvents {
  error: [Error];
}

type Command =
  | { readonly kind: 'timeout'; readonly task: string; readonly options: ScheduleOptions }
  | { readonly kind: 'clear'; readonly task: string; readonly uid: string }
  | { readonly kind: 'load'; readonly dump: RegistryDump }
  | { readonly kind: 'snapshot'; readonly done: (dump: TaskRunnerRegistryDump) => void; readonly fail: (err: unknown) => void };

interface Queued {
  readonly scheduler: Scheduler;
  readonly started: Promise<boolean>;
  readonly command: Command;
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
  #scheduler: Scheduler | undefined;
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
   * Starts the scheduler; `callback` runs once it is ready. `n` is recorded as `numWorkers`
   * (schedward's runner count): timers live in the store, and listeners run in this process
   * either way. Throws for `n <= 0` and when already running.
   */
  launch(concurrency: number, callback?: () => void): void {
    this.launchAsync(concurrency).then(
      () => callback?.(),
      (err: unknown) => reportError(this, err, 'schedward TaskManager.launch'),
    );
  }

  /** Stops the scheduler once queued commands are stored; `callback` runs when it has stopped. */
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
      if (this.#scheduler !== undefined) this.#define(this.#scheduler, name, schedule);
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
    loadRegistry(registry, 'loadTaskRegistry.registry');
    const now = Date.now();
    const dump: RegistryDump = {};
    for (const [task, entries] of Object.entries(registry)) {
      this.task(task);
      const out: RegistryDump[string] = {};
      for (const [uid, entry] of Object.entries(entries)) {
        const recurring = entry.every !== undefined || entry.cron !== undefined;
        out[uid] = { ...(entry as RegistryDump[string][string]), timeout: recurring ? entry.timeout : Math.max(0, entry.iat - now) };
      }
      dump[task] = out;
    }
    this.#enqueue({ kind: 'load', dump });
  }

  /** Calls back with a snapshot of every pending timeout (tasks without any are left out). */
  makeTaskRegistrySnapshot(callback: (registry: TaskRunnerRegistryDump) => void): void {
    this.snapshotAsync().then(
      (registry) => callback(registry),
      (err: unknown) => reportError(this, err, 'schedward TaskManager.makeTaskRegistrySnapshot'),
    );
  }

  /** schedkit extension: resolves when every command issued so far has reached the store. */
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

  /** The underlying schedkit scheduler while running (events, reports, locks). */
  get scheduler(): Scheduler | undefined {
    return this.#scheduler;
  }

  // ------------------------------------------------------------ promise-based core

  protected launchAsync(concurrency: number): Promise<void> {
    if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency <= 0) {
      throw new SchedkitError('ERR_VALIDATION', '`concurrency` parameter must be a positive integer');
    }
    if (this.#running) throw new SchedkitError('ERR_ALREADY_RUNNING', 'TaskManager already running');
    const scheduler = new Scheduler({ ...this.#options.scheduler, store: this.#options.store ?? new MemoryStore() });
    scheduler.on('error', (err) => reportError(this, err, 'schedward TaskManager'));
    for (const [name, schedule] of this.#schedules) this.#define(scheduler, name, schedule);
    this.#scheduler = scheduler;
    this.#running = true;
    this.#workers = concurrency;
    const start = this.#lifecycle.then(() => scheduler.start());
    this.#lifecycle = start.catch(() => undefined);
    this.#started = start.then(
      () => true,
      () => {
        if (this.#scheduler === scheduler) {
          this.#scheduler = undefined;
          this.#running = false;
          this.#workers = 0;
        }
        return false;
      },
    );
    return start;
  }

  protected stopAsync(): Promise<void> {
    const scheduler = this.#scheduler;
    if (!this.#running || scheduler === undefined) return this.#lifecycle;
    this.#running = false;
    const stop = this.#lifecycle.then(async () => {
      await this.flush();
      await scheduler.stop();
      if (this.#scheduler === scheduler) {
        this.#scheduler = undefined;
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
    const ms = Math.max(0, Math.ceil(timeout));
    const options: ScheduleOptions = { uid, in: ms };
    // schedward copies params through JSON (`if (params)`: falsy params pass as they are).
    if (params !== undefined) options.params = params ? (JSON.parse(JSON.stringify(params)) as unknown) : params;
    this.#enqueue({ kind: 'timeout', task, options });
  }

  /** @internal Called by `TaskSchedule.clear`. */
  enqueueClear(task: string, uid: string): void {
    this.#assertRunning();
    checkName(uid, 'clear.task_uid');
    this.#enqueue({ kind: 'clear', task, uid });
  }

  #assertRunning(): void {
    if (!this.#running || this.#scheduler === undefined) throw new SchedkitError('ERR_IDLE', IDLE_ERROR);
  }

  #enqueue(command: Command): void {
    this.#commands.push({ scheduler: this.#scheduler as Scheduler, started: this.#started, command });
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  async #drain(): Promise<void> {
    while (this.#commands.length > 0) {
      const head = this.#commands[0] as Queued;
      // A batch: consecutive timeouts of one task for one scheduler go in one store call.
      let n = 1;
      if (head.command.kind === 'timeout') {
        while (n < this.#commands.length && n < BATCH) {
          const next = this.#commands[n] as Queued;
          if (next.scheduler !== head.scheduler || next.command.kind !== 'timeout' || next.command.task !== head.command.task) break;
          n++;
        }
      }
      const batch = this.#commands.splice(0, n);
      try {
        if (!(await head.started)) throw new SchedkitError('ERR_IDLE', `${IDLE_ERROR} (the scheduler failed to start)`);
        await this.#run(head.scheduler, batch.map((b) => b.command));
      } catch (err) {
        const cmd = head.command;
        if (cmd.kind === 'snapshot') cmd.fail(err);
        else reportError(this, err, `schedward ${cmd.kind}`);
      }
    }
  }

  async #run(scheduler: Scheduler, commands: Command[]): Promise<void> {
    const head = commands[0] as Command;
    switch (head.kind) {
      case 'timeout':
        await scheduler.scheduleMany(
          head.task,
          commands.map((c) => (c as Extract<Command, { kind: 'timeout' }>).options),
        );
        return;
      case 'clear':
        await scheduler.cancel(head.task, head.uid);
        return;
      case 'load':
        await scheduler.load(head.dump);
        return;
      case 'snapshot': {
        const dump = (await scheduler.snapshot()) as TaskRunnerRegistryDump;
        // Called outside the queue: a callback that stops or reloads must not wait on itself.
        setImmediate(() => head.done(dump));
        return;
      }
    }
  }

  #define(scheduler: Scheduler, name: string, schedule: TaskSchedule): void {
    scheduler.define(name, async (run: RunContext) => {
      const timeout = await timeoutOf(scheduler, run);
      const params = run.params === undefined ? undefined : (structuredClone(run.params) as TimeoutParams);
      schedule.emit('timeout', { task_uid: run.uid, timeout, params } satisfies TimeoutResponse);
    });
  }
}

/** The delay the fired timeout was set with (kept on the schedule by the store). */
async function timeoutOf(scheduler: Scheduler, run: RunContext): Promise<number> {
  const state = await scheduler.store.get(run.task, run.uid);
  return state?.timeout ?? Math.max(0, run.dueAt.getTime() - Date.now());
}
