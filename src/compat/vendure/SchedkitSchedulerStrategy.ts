/**
 * A Vendure `SchedulerStrategy` on schedkit (RedisStore by default), so any number of Vendure
 * workers start each tick of a scheduled task once.
 *
 * Mapping: each Vendure task `id` is a schedkit task with one cron schedule `(id, 'cron')` in
 * the store. Its ticks are judged by the store's clock (Redis `TIME`) and claimed atomically,
 * so workers with skewed clocks cannot run a tick twice. A run holds a lease renewed by
 * heartbeat for as long as `execute()` runs: the task `timeout` fails the run but keeps it
 * counted as running until `execute()` settles, so `preventOverlap` (schedkit overlap `skip`;
 * `allow` when false) never lets a second run start beside it. `triggerTask` queues an
 * occurrence of its own, which runs on some worker as soon as one is free of that task:
 * never lost, even when it meets a running tick. A worker that dies loses its lease after
 * `lease` (default 30 s), and the next tick runs elsewhere: no stale-lock sweep is needed.
 *
 * Which processes execute: by default (`execute: 'auto'`) a process starts executing the first
 * time Vendure calls the function `executeTask()` returned with a cron `job`, which Vendure's
 * SchedulerService does only where tasks should run (the worker, unless
 * `runTasksInWorkerOnly: false`). Other processes only register, trigger, update and report.
 * Vendure's own croner jobs keep firing; each call merely confirms that this process executes.
 */
import { inspect } from 'node:util';
import { SchedkitError, ScheduleNotFoundError, ValidationError } from '../../errors.js';
import { Scheduler } from '../../scheduler.js';
import { RedisStore, type RedisStoreOptions } from '../../store/redis/RedisStore.js';
import type { Store } from '../../store/Store.js';
import { getCron } from '../../timing/cron.js';
import { parseDuration, type Duration } from '../../timing/duration.js';
import type { Lock, TaskReport as SchedkitReport } from '../../types.js';
import { handled } from '../shared.js';
import type { CronJob, Injector, ScheduledTask, SchedulerStrategy, TaskReport, UpdateScheduledTaskInput } from './types.js';

export interface SchedkitSchedulerStrategyOptions {
  /** A store of your own (any schedkit store). Default: a `RedisStore` made from `redis`. */
  store?: Store;
  /** `RedisStore` options. Default `{ prefix: 'vendure-scheduler' }` on `redis://127.0.0.1:6379`. */
  redis?: RedisStoreOptions;
  /**
   * Whether this process executes tasks. `'auto'` (default): as Vendure decides (the worker,
   * or every process when `runTasksInWorkerOnly` is false) when @vendure/core can be loaded,
   * otherwise from the first tick Vendure hands to `executeTask()`. `true`: from `init()`.
   * `false`: never (register, trigger, update and report only).
   */
  execute?: boolean | 'auto';
  /** How long a dead worker's run blocks its task (renewed while alive). Default `'30s'`. */
  lease?: Duration;
  /** Timeout of tasks that set none. Default 60 000 ms (Vendure's). */
  defaultTimeout?: Duration;
  /** IANA zone of the cron expressions. Default: the process's zone (as croner in Vendure). */
  timezone?: string;
  /**
   * The `cron-time-generator` default export, to evaluate function schedules
   * (`schedule: cron => cron.every(5).minutes()`) at registration. Without it, such a task is
   * registered from the pattern of the first croner job that ticks for it.
   */
  cronTime?: unknown;
  /** How long `destroy()` lets running tasks finish before giving them back. Default `'30s'`. */
  stopTimeout?: Duration;
  /** Called with background errors (store failures). Default: a process warning. */
  onError?: (err: Error) => void;
}

const UID = 'cron';
const DEFAULT_TIMEOUT_MS = 60_000;

export class SchedkitSchedulerStrategy implements SchedulerStrategy {
  readonly #store: Store;
  readonly #execute: boolean | 'auto';
  readonly #lease: number;
  readonly #defaultTimeout: number;
  readonly #stopTimeout: number;
  readonly #timezone: string | undefined;
  readonly #cronTime: unknown;
  readonly #onError: (err: Error) => void;
  readonly #tasks = new Map<string, ScheduledTask>();
  readonly #registrations = new Map<string, Promise<void>>();
  #injector: Injector | undefined;
  #producer: Scheduler | undefined;
  #executor: Scheduler | undefined;
  #executing: Promise<void> | undefined;
  #destroyed = false;

  constructor(options: SchedkitSchedulerStrategyOptions = {}) {
    if (options.store !== undefined && options.redis !== undefined) throw new ValidationError('SchedkitSchedulerStrategy', 'takes `store` or `redis`, not both');
    this.#store = options.store ?? new RedisStore({ prefix: 'vendure-scheduler', ...options.redis });
    const execute = options.execute ?? 'auto';
    if (execute !== true && execute !== false && execute !== 'auto') throw new ValidationError('SchedkitSchedulerStrategy.execute', 'must be true, false or "auto"');
    this.#execute = execute;
    this.#lease = parseDuration(options.lease ?? '30s', 'SchedkitSchedulerStrategy.lease', { allowZero: false });
    this.#defaultTimeout = parseDuration(options.defaultTimeout ?? DEFAULT_TIMEOUT_MS, 'SchedkitSchedulerStrategy.defaultTimeout', { allowZero: false });
    this.#stopTimeout = parseDuration(options.stopTimeout ?? '30s', 'SchedkitSchedulerStrategy.stopTimeout');
    this.#timezone = options.timezone;
    this.#cronTime = options.cronTime;
    this.#onError = options.onError ?? ((err) => process.emitWarning(`schedkit vendure strategy: ${err.message}`, { code: 'SCHEDKIT_COMPAT_ERROR' }));
  }

  async init(injector: Injector): Promise<void> {
    this.#injector = injector;
    const execute = this.#execute === 'auto' ? await vendureSaysExecute(injector) : this.#execute;
    if (execute === true) await this.#startExecuting();
  }

  /** Stops executing (running tasks get `stopTimeout` to finish) and closes the store. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    await this.#executing?.catch(() => undefined);
    const executor = this.#executor;
    const producer = this.#producer;
    this.#executor = undefined;
    this.#producer = undefined;
    await executor?.stop({ timeout: this.#stopTimeout });
    await producer?.stop();
  }

  /** Keeps the task and writes its cron schedule to the store (unless the same one is there). */
  registerTask(task: ScheduledTask): void {
    this.#tasks.set(task.id, task);
    if (this.#executor !== undefined && !this.#executor.tasks.includes(task.id)) this.#define(this.#executor, task);
    const pattern = this.#patternOf(task);
    if (pattern !== undefined) this.#register(task.id, pattern);
  }

  /**
   * The function Vendure's croner job calls on each tick. With a `job` it only makes sure
   * this process executes (the store decides which worker runs the tick); without one (a
   * manual call) it queues a run like `triggerTask`.
   */
  executeTask(task: ScheduledTask): (job?: CronJob) => Promise<void> {
    return (job?: CronJob) => {
      if (job === undefined) return this.triggerTask(task);
      if (!this.#tasks.has(task.id)) this.registerTask(task);
      if (!this.#registrations.has(task.id)) {
        const pattern = job.getPattern();
        if (pattern !== undefined) this.#register(task.id, pattern);
      }
      if (this.#execute === 'auto') return handled(this.#startExecuting(), (err) => this.#error(err));
      return Promise.resolve();
    };
  }

  /** Reports of every task registered in the store (by any worker). */
  async getTasks(): Promise<TaskReport[]> {
    await this.ready();
    const reports = await this.#producerScheduler().list();
    return reports.filter((r) => r.uid === UID).map(toVendureReport);
  }

  async getTask(id: string): Promise<TaskReport | undefined> {
    await this.#registrations.get(id);
    const report = await this.#producerScheduler().get(id, UID);
    return report === null ? undefined : toVendureReport(report);
  }

  /** Queues a run of the task at the soonest opportunity, on whichever worker is free for it. */
  async triggerTask(task: ScheduledTask): Promise<void> {
    if (!this.#tasks.has(task.id)) this.registerTask(task);
    await this.#registrations.get(task.id);
    await this.#producerScheduler().trigger(task.id, UID);
  }

  /** Enables or disables a task for every worker (a disabled task keeps its next due time). */
  async updateTask(input: UpdateScheduledTaskInput): Promise<TaskReport> {
    await this.#registrations.get(input.id);
    const producer = this.#producerScheduler();
    const report = input.enabled === undefined || input.enabled === null ? await producer.get(input.id, UID) : await producer.update(input.id, UID, { enabled: input.enabled });
    if (report === null) throw new ScheduleNotFoundError(input.id, UID);
    return toVendureReport(report);
  }

  /** schedkit: resolves once every registered task's schedule is in the store. */
  async ready(): Promise<void> {
    await Promise.all(this.#registrations.values());
  }

  /** schedkit: the scheduler that executes tasks in this process (null until it does). */
  get scheduler(): Scheduler | null {
    return this.#executor ?? null;
  }

  /** schedkit: the scheduler used for registration, triggers, updates and reports. */
  get producer(): Scheduler {
    return this.#producerScheduler();
  }

  #register(id: string, pattern: string): void {
    getCron(pattern, this.#timezone, `task "${id}" schedule`);
    const work = (this.#registrations.get(id) ?? Promise.resolve()).then(async () => {
      const producer = this.#producerScheduler();
      // Processes registering the same task at once would all find no schedule and all create
      // it; a later creation replaces the earlier one and drops what was queued on it (a
      // trigger from another process). So: one registration of a task at a time, everywhere.
      const lock = await registrationLock(producer, id);
      try {
        const existing = await producer.get(id, UID);
        if (existing !== null && existing.schedule.kind === 'cron' && existing.schedule.cron === pattern && existing.schedule.tz === this.#timezone) return;
        // An update keeps `enabled` (set by updateTask on any worker) and queued triggers.
        const timing = { cron: pattern, ...(this.#timezone === undefined ? {} : { tz: this.#timezone }) };
        if (existing !== null) await producer.update(id, UID, { schedule: timing });
        else await producer.schedule(id, { uid: UID, ...timing });
      } finally {
        await lock?.release();
      }
    });
    this.#registrations.set(
      id,
      work.catch((err: unknown) => this.#error(err)),
    );
  }

  #patternOf(task: ScheduledTask): string | undefined {
    const schedule = task.options.schedule;
    if (typeof schedule === 'string') return schedule;
    if (typeof schedule === 'function' && this.#cronTime !== undefined) {
      const pattern = (schedule as (cronTime: unknown) => unknown)(this.#cronTime);
      if (typeof pattern !== 'string') throw new ValidationError(`task "${task.id}" schedule`, 'the schedule function must return a cron expression');
      return pattern;
    }
    if (typeof schedule !== 'function') throw new ValidationError(`task "${task.id}" schedule`, 'must be a cron expression or a function');
    return undefined; // registered from the first croner job's pattern
  }

  #startExecuting(): Promise<void> {
    if (this.#destroyed) return Promise.reject(new SchedkitError('ERR_STOPPED', 'the strategy was destroyed'));
    this.#executing ??= (async () => {
      const executor = new Scheduler({ store: this.#store });
      executor.on('error', (err) => this.#error(err));
      // Visible before it starts, so tasks registered meanwhile are defined on it too.
      this.#executor = executor;
      for (const task of this.#tasks.values()) this.#define(executor, task);
      await executor.start();
    })();
    return this.#executing;
  }

  #define(executor: Scheduler, task: ScheduledTask): void {
    const timeout = task.options.timeout === undefined ? this.#defaultTimeout : parseDuration(task.options.timeout, `task "${task.id}" timeout`, { allowZero: false });
    executor.define(
      task.id,
      async () => {
        // Vendure's tasks ignore signals: a timed-out execute() keeps its lease until it settles.
        const current = this.#tasks.get(task.id) ?? task;
        const result = await current.execute(this.#injector as Injector);
        return toJsonResult(result);
      },
      { timeout, lease: this.#lease, overlap: task.options.preventOverlap === false ? 'allow' : 'skip', retry: 1 },
    );
  }

  #producerScheduler(): Scheduler {
    if (this.#producer === undefined) {
      this.#producer = new Scheduler({ store: this.#store });
      this.#producer.on('error', (err) => this.#error(err));
    }
    return this.#producer;
  }

  #error(err: unknown): void {
    this.#onError(err instanceof Error ? err : new Error(String(err)));
  }
}

/**
 * In a Vendure process, the same decision as Vendure's DefaultSchedulerStrategy: execute on
 * the worker, or everywhere when `runTasksInWorkerOnly` is false. @vendure/core is loaded
 * from the application at run time (it is not a dependency of schedkit); undefined when it
 * is not there, and the first tick decides instead.
 */
async function vendureSaysExecute(injector: Injector): Promise<boolean | undefined> {
  const name = '@vendure/core';
  let core: { ProcessContext?: unknown; ConfigService?: unknown };
  try {
    core = (await import(name)) as typeof core;
  } catch {
    return undefined;
  }
  try {
    const context = injector.get<{ isWorker?: unknown } | undefined>(core.ProcessContext);
    const config = injector.get<{ schedulerOptions?: { runTasksInWorkerOnly?: unknown } } | undefined>(core.ConfigService);
    if (context === undefined || typeof context.isWorker !== 'boolean') return undefined;
    return config?.schedulerOptions?.runTasksInWorkerOnly === false || context.isWorker;
  } catch {
    return undefined;
  }
}

/** Vendure's report from schedkit's: a failed latest run reports `{ error }` as Vendure does. */
function toVendureReport(r: SchedkitReport): TaskReport {
  const last = r.history[r.history.length - 1];
  const failed = last !== undefined && (last.outcome === 'failure' || last.outcome === 'lost');
  return {
    id: r.task,
    lastExecutedAt: r.lastExecutedAt,
    isRunning: r.isRunning,
    lastResult: failed ? { error: last.error ?? r.lastError ?? 'Unknown error' } : r.lastResult,
    enabled: r.enabled,
  };
}

/** Vendure keeps `result ?? ''` as JSON; anything JSON cannot hold becomes its string form. */
function toJsonResult(result: unknown): unknown {
  if (result === undefined || result === null) return '';
  try {
    return JSON.parse(JSON.stringify(result)) as unknown;
  } catch {
    return inspect(result, { depth: 2, breakLength: Infinity });
  }
}

/**
 * The lock that serializes registrations of task `id` across processes: waits for it (a
 * holder that died frees it within its 10 s ttl), and after 15 s goes on without it.
 */
async function registrationLock(producer: Scheduler, id: string): Promise<Lock | null> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const lock = await producer.lock(`vendure-register:${id}`, { ttl: '10s' });
    if (lock !== null || Date.now() > deadline) return lock;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
