/**
 * `schedkit/compat/schedule-mq`: schedule-mq's `createScheduler` on schedkit. Change
 * `import { createScheduler } from 'schedule-mq'` to
 * `import { createScheduler } from 'schedkit/compat/schedule-mq'`.
 *
 * Mapping: a `taskId` is a schedkit task. `register(taskId, { cronExpr })` keeps one cron
 * schedule `(taskId, 'cron')` in Redis, so any number of instances with the same config start
 * each tick once (the store's claim decides, by the Redis clock), and ticks missed while no
 * instance ran are caught up once (misfire `run-once`). `push(taskId)` schedules a one-shot
 * `(taskId, 'push:<uuid>')`, delayed by `delay`. A handler that returns a falsy value or
 * throws is run again after `retryTimeout` when `retry` is set, up to `maxAttempts` attempts
 * in all; a run whose process died is redelivered when its lease expires (if it asked for
 * retries). Handlers are awaited, at most `concurrency` at once per instance.
 *
 * Differences from schedule-mq (its bugs are not copied): `push(taskId)` works without
 * options; cron with `retry` works; retries stop after `maxAttempts`; nothing polls, so
 * `pollInterval` has no effect (no BRPOP read in the wrong unit); missed ticks are caught up.
 * A registered cron lives in Redis until `unregister(taskId)` (that is what lets a restarted
 * instance catch up); `stop()` keeps the connection for `push()`, `close()` ends it.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { SchedkitError, ValidationError } from '../../errors.js';
import { Scheduler as CoreScheduler } from '../../scheduler.js';
import { RedisStore, type RedisStoreOptions } from '../../store/redis/RedisStore.js';
import type { Store } from '../../store/Store.js';
import { getCron } from '../../timing/cron.js';
import { parseDuration, type Duration } from '../../timing/duration.js';
import type { RunContext } from '../../types.js';
import { checkInteger, checkName, checkNumber, checkObject } from '../../validate.js';
import { handled, redisUrl, reportError } from '../shared.js';

/** node-redis / ioredis style connection settings (or a `redis://` URL). */
export interface RedisConfig {
  host?: string;
  port?: number | string;
  password?: string;
  username?: string;
  db?: number | string;
  /** A `redis://` URL instead of host/port/db. */
  url?: string;
  /** TLS options (ioredis `tls`). */
  tls?: Record<string, unknown>;
}

export interface SchedulerOptions {
  redisConfig: RedisConfig | string;
  /** Namespace of every key. Default `'_schedule_mq:'`. */
  redisPrefix?: string;
  /** Accepted for compatibility; schedkit wakes by notification and never polls. Default 1000. */
  pollInterval?: number;
  /** schedkit: attempts in all for a run with `retry` (the first included). Default 5. */
  maxAttempts?: number;
  /** schedkit: handlers running at once in this instance. Default 10. */
  concurrency?: number;
  /** schedkit: a run's lease; a dead process's run is redelivered after it. Default `'30s'`. */
  lease?: Duration;
  /** schedkit: a store of your own instead of `redisConfig` (tests, MemoryStore). */
  store?: Store;
}

export interface ScheduleOptions {
  /** Cron, 5 fields or 6 with leading seconds, in the process's local zone. */
  cronExpr: string;
  retry?: boolean;
  /** Milliseconds before a failed run is tried again. Default 5000. */
  retryTimeout?: number;
  /** schedkit: overrides the scheduler's `maxAttempts` for this task's ticks. */
  maxAttempts?: number;
}

export interface PushOptions {
  /** Given to the handler (a string, as schedule-mq documents; any JSON value works). */
  data?: string;
  /** Milliseconds before the task is due. Default 0. */
  delay?: number;
  retry?: boolean;
  /** Milliseconds before a failed run is tried again. Default 5000. */
  retryTimeout?: number;
  /** schedkit: overrides the scheduler's `maxAttempts` for this push. */
  maxAttempts?: number;
}

/** Return true when done; false (or throw) to fail the run (retried when it asked to be). */
export type Handler = (data?: string) => boolean | Promise<boolean>;

export interface SchedulerEvents {
  /** Store failures behind fire-and-forget calls, and errors thrown by handlers. */
  error: [Error];
}

/** What a schedule carries in its params. */
interface Execution {
  readonly data?: unknown;
  readonly retry: boolean;
  readonly retryTimeout: number;
  readonly maxAttempts: number;
  /** Attempt number this occurrence starts at (retries carry it on). */
  readonly attempt?: number;
  /** The uid of the first run of the chain (`cron@<due>` for ticks). */
  readonly origin?: string;
}

export const DEFAULT_PREFIX = '_schedule_mq:';
const CRON_UID = 'cron';
const DEFAULT_RETRY_TIMEOUT = 5000;

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly #store: Store;
  readonly #maxAttempts: number;
  readonly #concurrency: number;
  readonly #lease: number;
  readonly #bindMap = new Map<string, Handler>();
  readonly #registerMap = new Map<string, Required<Omit<ScheduleOptions, 'maxAttempts'>> & { maxAttempts: number }>();
  #producer: CoreScheduler | undefined;
  #executor: CoreScheduler | undefined;
  #running = false;
  /** Start, stop and close in call order. */
  #lifecycle: Promise<void> = Promise.resolve();

  constructor(options: SchedulerOptions) {
    super();
    const opts = checkObject(options, 'createScheduler options') as unknown as SchedulerOptions;
    if (opts.pollInterval !== undefined) checkNumber(opts.pollInterval, 'createScheduler.pollInterval', 1, 86_400_000);
    this.#maxAttempts = opts.maxAttempts === undefined ? 5 : checkInteger(opts.maxAttempts, 'createScheduler.maxAttempts', 1, 1_000_000);
    this.#concurrency = opts.concurrency === undefined ? 10 : checkInteger(opts.concurrency, 'createScheduler.concurrency', 1, 100_000);
    this.#lease = parseDuration(opts.lease ?? '30s', 'createScheduler.lease', { allowZero: false });
    if (opts.store !== undefined) {
      this.#store = opts.store;
    } else {
      this.#store = new RedisStore({ ...redisTarget(opts.redisConfig), prefix: opts.redisPrefix ?? DEFAULT_PREFIX });
    }
  }

  /** Handles `taskId` in this instance once started. Refused while started. */
  bind(taskId: string, handler: Handler): void {
    this.#assertStopped('bind');
    checkName(taskId, 'bind.taskId');
    if (typeof handler !== 'function') throw new ValidationError('bind.handler', 'must be a function');
    this.#bindMap.set(taskId, handler);
  }

  /** Schedules `taskId` by cron from `start()` on (one run per tick across instances). Refused while started. */
  register(taskId: string, options: ScheduleOptions): void {
    this.#assertStopped('register');
    checkName(taskId, 'register.taskId');
    const o = checkObject(options, 'register.options');
    if (typeof o['cronExpr'] !== 'string') throw new ValidationError('register.options.cronExpr', 'must be a cron expression string');
    getCron(o['cronExpr'], undefined, 'register.options.cronExpr');
    const retry = o['retry'] === undefined ? false : Boolean(o['retry']);
    const retryTimeout = o['retryTimeout'] === undefined ? DEFAULT_RETRY_TIMEOUT : checkNumber(o['retryTimeout'], 'register.options.retryTimeout', 0, 86_400_000 * 365);
    const maxAttempts = o['maxAttempts'] === undefined ? this.#maxAttempts : checkInteger(o['maxAttempts'], 'register.options.maxAttempts', 1, 1_000_000);
    this.#registerMap.set(taskId, { cronExpr: o['cronExpr'], retry, retryTimeout, maxAttempts });
  }

  /**
   * Queues one run of `taskId` (after `delay` ms), for whichever instance binds it. Works
   * whether this instance is started or not. Resolves once stored; failures are also
   * emitted as `error`, so ignoring the promise (schedule-mq's `push` returned nothing) is safe.
   */
  push(taskId: string, options: PushOptions = {}): Promise<void> {
    checkName(taskId, 'push.taskId');
    const o = checkObject(options, 'push.options');
    const delay = o['delay'] === undefined ? 0 : checkNumber(o['delay'], 'push.options.delay', 0, 86_400_000 * 365);
    const execution: Execution = {
      ...(o['data'] === undefined ? {} : { data: o['data'] }),
      retry: o['retry'] === undefined ? false : Boolean(o['retry']),
      retryTimeout: o['retryTimeout'] === undefined ? DEFAULT_RETRY_TIMEOUT : checkNumber(o['retryTimeout'], 'push.options.retryTimeout', 0, 86_400_000 * 365),
      maxAttempts: o['maxAttempts'] === undefined ? this.#maxAttempts : checkInteger(o['maxAttempts'], 'push.options.maxAttempts', 1, 1_000_000),
    };
    const work = this.#producerScheduler()
      .schedule(taskId, { uid: `push:${randomUUID()}`, in: Math.ceil(delay), params: execution })
      .then(() => undefined);
    return handled(work, (err) => reportError(this, err, `schedule-mq push("${taskId}")`));
  }

  /** Registers the crons in Redis (unchanged ones are left as they are) and runs bound tasks. */
  start(): Promise<void> {
    if (this.#running) return this.#lifecycle;
    this.#running = true;
    const work = this.#lifecycle.then(() => this.#start());
    this.#lifecycle = work.catch(() => {
      this.#running = false;
    });
    return handled(work, (err) => reportError(this, err, 'schedule-mq start'));
  }

  /** Stops running tasks (running handlers finish first); `push()` keeps working. */
  stop(): Promise<void> {
    this.#running = false;
    const work = this.#lifecycle.then(async () => {
      const executor = this.#executor;
      this.#executor = undefined;
      await executor?.stop();
    });
    this.#lifecycle = work.catch(() => undefined);
    return handled(work, (err) => reportError(this, err, 'schedule-mq stop'));
  }

  /** Forgets every bind and register of this instance. Refused while started (as in schedule-mq). */
  clear(): void {
    if (this.#running) throw new SchedkitError('ERR_RUNNING', 'Can only clear when Scheduler is not running');
    this.#bindMap.clear();
    this.#registerMap.clear();
  }

  /** schedkit: removes `taskId`'s registered cron from Redis (for every instance). */
  async unregister(taskId: string): Promise<boolean> {
    checkName(taskId, 'unregister.taskId');
    this.#registerMap.delete(taskId);
    return this.#producerScheduler().cancel(taskId, CRON_UID);
  }

  /** schedkit: `stop()`, then closes the Redis connections (a later call opens them again). */
  close(): Promise<void> {
    const stopping = this.stop();
    const work = stopping.then(async () => {
      const producer = this.#producer;
      this.#producer = undefined;
      await producer?.stop();
    });
    this.#lifecycle = work.catch(() => undefined);
    return work;
  }

  get running(): boolean {
    return this.#running;
  }

  /** The schedkit scheduler running this instance's tasks while started (events, reports). */
  get scheduler(): CoreScheduler | undefined {
    return this.#executor;
  }

  /** The schedkit scheduler used for `push()`, `register` and reports. */
  get producer(): CoreScheduler {
    return this.#producerScheduler();
  }

  async #start(): Promise<void> {
    const producer = this.#producerScheduler();
    await producer.ready();
    for (const [taskId, config] of this.#registerMap) await this.#reconcile(producer, taskId, config);
    const executor = new CoreScheduler({ store: this.#store, concurrency: this.#concurrency });
    executor.on('error', (err) => reportError(this, err, 'schedule-mq'));
    for (const [taskId, handler] of this.#bindMap) {
      executor.define(taskId, (run: RunContext) => this.#run(taskId, handler, run), {
        // A lost lease (dead process) is redelivered while attempts remain; #run decides.
        retry: { attempts: this.#maxAttempts, backoff: 'fixed', delay: 0 },
        lease: this.#lease,
        // schedule-mq queued every tick whatever was running; catch up one missed tick.
        overlap: 'allow',
        misfire: 'run-once',
      });
    }
    await executor.start();
    this.#executor = executor;
  }

  /** Writes the cron schedule unless an identical one is there (keeping its due time and catch-up). */
  async #reconcile(producer: CoreScheduler, taskId: string, config: { cronExpr: string; retry: boolean; retryTimeout: number; maxAttempts: number }): Promise<void> {
    const params: Execution = { retry: config.retry, retryTimeout: config.retryTimeout, maxAttempts: config.maxAttempts };
    const existing = await producer.get(taskId, CRON_UID);
    if (
      existing !== null &&
      existing.schedule.kind === 'cron' &&
      existing.schedule.cron === config.cronExpr &&
      existing.schedule.tz === undefined &&
      JSON.stringify(existing.params) === JSON.stringify(params)
    ) {
      return;
    }
    await producer.schedule(taskId, { uid: CRON_UID, cron: config.cronExpr, params });
  }

  async #run(taskId: string, handler: Handler, run: RunContext): Promise<unknown> {
    const exec = executionOf(run.params, this.#maxAttempts);
    // Redeliveries after a lost lease count as attempts too.
    const attempt = (exec.attempt ?? 1) + run.attempt - 1;
    if (run.attempt > 1 && !exec.retry) return { ok: false, attempt, skipped: 'redelivered, but the run did not ask for retries' };
    if (attempt > exec.maxAttempts) return { ok: false, attempt, skipped: 'no attempts left' };
    let ok = false;
    try {
      ok = Boolean(await (handler as (data?: unknown) => boolean | Promise<boolean>)(exec.data));
    } catch (err) {
      reportError(this, err, `schedule-mq handler of "${taskId}"`);
    }
    if (ok) return { ok: true, attempt };
    if (!exec.retry || attempt >= exec.maxAttempts) return { ok: false, attempt };
    const origin = exec.origin ?? (run.uid === CRON_UID ? `cron@${run.dueAt.getTime()}` : run.uid);
    const next: Execution = { ...exec, attempt: attempt + 1, origin };
    await this.#producerScheduler().schedule(taskId, { uid: `retry:${origin}:${attempt + 1}`, in: Math.ceil(exec.retryTimeout), params: next });
    return { ok: false, attempt, retryIn: exec.retryTimeout };
  }

  #producerScheduler(): CoreScheduler {
    if (this.#producer === undefined) {
      this.#producer = new CoreScheduler({ store: this.#store });
      this.#producer.on('error', (err) => reportError(this, err, 'schedule-mq'));
    }
    return this.#producer;
  }

  #assertStopped(operation: string): void {
    if (this.#running) throw new SchedkitError('ERR_RUNNING', `Can only ${operation} when Scheduler is not running`);
  }
}

/** schedule-mq's entry point. */
export function createScheduler(options: SchedulerOptions): Scheduler {
  return new Scheduler(options);
}

function executionOf(params: unknown, maxAttempts: number): Execution {
  const p = (typeof params === 'object' && params !== null ? params : {}) as Partial<Execution>;
  return {
    ...(p.data === undefined ? {} : { data: p.data }),
    retry: p.retry === true,
    retryTimeout: typeof p.retryTimeout === 'number' ? p.retryTimeout : DEFAULT_RETRY_TIMEOUT,
    maxAttempts: typeof p.maxAttempts === 'number' ? p.maxAttempts : maxAttempts,
    ...(typeof p.attempt === 'number' ? { attempt: p.attempt } : {}),
    ...(typeof p.origin === 'string' ? { origin: p.origin } : {}),
  };
}

function redisTarget(config: RedisConfig | string | undefined): Pick<RedisStoreOptions, 'url' | 'redisOptions'> {
  if (config === undefined) return { url: redisUrl(undefined, undefined, undefined) };
  if (typeof config === 'string') return { url: config };
  const c = checkObject(config, 'createScheduler.redisConfig') as RedisConfig;
  const redisOptions: NonNullable<RedisStoreOptions['redisOptions']> = {};
  if (c.password !== undefined) redisOptions.password = c.password;
  if (c.username !== undefined) redisOptions.username = c.username;
  if (c.tls !== undefined) redisOptions.tls = c.tls;
  return { url: c.url ?? redisUrl(c.host, c.port, c.db), redisOptions };
}
