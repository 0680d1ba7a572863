/**
 * `schedkit/compat/interval-scheduler`: interval-scheduler's `Task` and `Scheduler` on schedkit.
 * Change `require('interval-scheduler')` to `import { Task, Scheduler } from
 * 'schedkit/compat/interval-scheduler'`.
 *
 * Mapping: a task is the schedule `(taskName, task.id)` (one internal schedkit task, default
 * name `'interval-scheduler'`) whose params are `task.serialize()`. Its first due time is
 * `executeOn` rounded UP to a `taskIntervalSeconds` bucket (never early), and a recurring task
 * repeats every `onExecuteRescheduleTo` seconds rounded up to whole buckets (at least one: no
 * hot loop). `storage.instances` become RedisStore `instances` (one instance: `url`), where a
 * schedule's partition is a hash of its id, so the same id always lands in one place; locks
 * live on `storage.instances[masterIndex]`. A run holds a lease: when its process dies, the
 * occurrence is run again elsewhere (up to `attempts`), where interval-scheduler popped it
 * before executing and lost it.
 *
 * Kept, because the seed documents it: re-assigning an existing id updates its data at once
 * but its interval only after its next run (the pending due time is kept).
 */
import { EventEmitter } from 'node:events';
import { SchedkitError, ValidationError } from '../../errors.js';
import { Scheduler as CoreScheduler } from '../../scheduler.js';
import { RedisStore, type RedisStoreOptions } from '../../store/redis/RedisStore.js';
import type { Store } from '../../store/Store.js';
import { parseDuration, type Duration } from '../../timing/duration.js';
import type { RunContext } from '../../types.js';
import { checkInteger, checkName, checkObject } from '../../validate.js';
import { redisUrl } from '../shared.js';

/** Implement `serialize`, `executeOn` and `id`; `onExecuteRescheduleTo` (seconds) makes it recur. */
export class Task {
  /** What the executor receives (a string; any JSON value works). */
  serialize(): string {
    throw new Error('serialize not implemented');
  }

  /** Seconds between runs; falsy (the default) runs the task once. */
  get onExecuteRescheduleTo(): number | null | undefined {
    return undefined;
  }

  /** First execution time (epoch ms). */
  get executeOn(): number {
    throw new Error('executeOn not implemented');
  }

  /** Identifies the task globally: assigning the same id twice keeps one task. */
  get id(): string {
    throw new Error('id not implemented');
  }
}

/** The task shape the scheduler reads (a `Task` subclass, or any object with these members). */
export interface TaskLike {
  serialize(): unknown;
  readonly onExecuteRescheduleTo?: number | null | undefined;
  readonly executeOn: number;
  readonly id: string;
}

export interface InstanceOptions {
  host?: string;
  port?: number | string;
  db?: number | string;
}

export interface StorageOptions {
  /** Redis servers (`{ host, port, db }` or `redis://` URLs). Default: localhost:6379, db 0. */
  instances?: (InstanceOptions | string)[];
  /** The instance that keeps locks (and emits online/offline). Default 0. */
  masterIndex?: number;
  /** Seconds between reconnection attempts. Default 1. */
  reconnectIntervalSeconds?: number;
  /** Due times are rounded up to buckets of this many seconds. Default 60. */
  taskIntervalSeconds?: number;
  /** schedkit: key namespace. Default `'interval-scheduler'`. */
  prefix?: string;
  /** schedkit: RedisStore partitions. Default 16. */
  partitions?: number;
}

export interface SchedulerOptions {
  /** Accepted (integer 1..3600) for compatibility; schedkit wakes at due times and never polls. */
  checkTasksEverySeconds?: number;
  storage?: StorageOptions;
  /** schedkit: a store of your own instead of `storage.instances` (locks live there too). */
  store?: Store;
  /** schedkit: runs of an occurrence in all when its process dies or the executor rejects. Default 3 (1 = at-most-once). */
  attempts?: number;
  /** schedkit: a run's lease; a dead process's occurrence is redelivered after it. Default `'30s'`. */
  lease?: Duration;
  /** schedkit: executor calls at once in this process. Default 100. */
  concurrency?: number;
  /** schedkit: the internal task name. Default `'interval-scheduler'`. */
  taskName?: string;
}

export interface Logger {
  debug?(message: string): void;
  info?(message: string): void;
  warn?(message: string): void;
  error?(message: string): void;
  fatal?(message: string): void;
}

/** A lock taken by `tryLock`, released by `unlock`. */
export interface SchedulerLock {
  readonly key: string;
  readonly lockerId: string;
}

/** Receives what `task.serialize()` returned; may return a promise (awaited). */
export type Executor = (serializedTask: string) => unknown;

export interface SchedulerEvents {
  online: [];
  offline: [];
  /** `host:port` of the Redis instance. */
  'db-disconnect': [string];
  'db-reconnect': [string];
  error: [Error];
}

const LOCK_TTL_MS = 24 * 60 * 60 * 1000;

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly config: SchedulerOptions;
  readonly #logger: Logger | undefined;
  readonly #store: Store;
  readonly #lockStore: Store;
  readonly #taskName: string;
  readonly #bucketMs: number;
  readonly #attempts: number;
  readonly #lease: number;
  readonly #concurrency: number;
  readonly #masterName: string | undefined;
  #producer: CoreScheduler | undefined;
  #locks: CoreScheduler | undefined;
  #executor: CoreScheduler | undefined;
  #execute: ((data: unknown) => unknown) | undefined;
  #accepting = false;
  #executing = false;
  #online = false;
  #connecting: Promise<void> | undefined;
  #watched = false;
  /** startTaskExecute / stopTaskExecute in call order. */
  #lifecycle: Promise<void> = Promise.resolve();

  constructor(options: SchedulerOptions = {}, logger?: Logger) {
    super();
    const opts = checkObject(options, 'Scheduler options') as SchedulerOptions;
    if (opts.checkTasksEverySeconds !== undefined) checkInteger(opts.checkTasksEverySeconds, 'checkTasksEverySeconds', 1, 3600);
    const storage = (opts.storage === undefined ? {} : checkObject(opts.storage, 'storage')) as StorageOptions;
    const bucket = storage.taskIntervalSeconds === undefined ? 60 : checkInteger(storage.taskIntervalSeconds, 'storage.taskIntervalSeconds', 1, 3600);
    const reconnect = storage.reconnectIntervalSeconds === undefined ? 1 : checkInteger(storage.reconnectIntervalSeconds, 'storage.reconnectIntervalSeconds', 1, 3600);
    this.config = { ...opts, checkTasksEverySeconds: opts.checkTasksEverySeconds ?? 10 };
    this.#logger = logger;
    this.#bucketMs = bucket * 1000;
    this.#taskName = opts.taskName === undefined ? 'interval-scheduler' : checkName(opts.taskName, 'taskName');
    this.#attempts = opts.attempts === undefined ? 3 : checkInteger(opts.attempts, 'attempts', 1, 1000);
    this.#lease = parseDuration(opts.lease ?? '30s', 'lease', { allowZero: false });
    this.#concurrency = opts.concurrency === undefined ? 100 : checkInteger(opts.concurrency, 'concurrency', 1, 100_000);
    if (opts.store !== undefined) {
      if (opts.storage?.instances !== undefined) throw new ValidationError('Scheduler options', 'take `store` or `storage.instances`, not both');
      this.#store = opts.store;
      this.#lockStore = opts.store;
      return;
    }
    const urls = (storage.instances ?? [{ host: 'localhost', port: 6379, db: 0 }]).map((inst, i) =>
      typeof inst === 'string' ? inst : redisUrl(checkObject(inst, `storage.instances[${i}]`)['host'] as string | undefined, inst.port, inst.db),
    );
    if (urls.length === 0) throw new ValidationError('storage.instances', 'must not be empty');
    const master = storage.masterIndex === undefined ? 0 : checkInteger(storage.masterIndex, 'storage.masterIndex', 0, urls.length - 1);
    const prefix = storage.prefix ?? 'interval-scheduler';
    const redisOptions: NonNullable<RedisStoreOptions['redisOptions']> = {
      // Reconnect every reconnectIntervalSeconds, as interval-scheduler does.
      retryStrategy: () => reconnect * 1000,
      // With several servers, a down one must fail fast, not stall claims on the others.
      ...(urls.length > 1 ? { enableOfflineQueue: false } : {}),
    };
    const partitions = storage.partitions === undefined ? {} : { partitions: storage.partitions };
    this.#store = urls.length === 1 ? new RedisStore({ url: urls[0], prefix, redisOptions, ...partitions }) : new RedisStore({ instances: urls, prefix, redisOptions, ...partitions });
    this.#lockStore = new RedisStore({ url: urls[master], prefix: `${prefix}-locks`, partitions: 1, redisOptions });
    this.#masterName = nameOf(urls[master] as string);
  }

  /** Connects (once) and accepts `assignTask` / `removeTask`. */
  async startTaskAccept(): Promise<void> {
    if (this.#accepting) return;
    await this.#connect();
    this.#accepting = true;
    this.#logger?.info?.('starting task accept..');
  }

  async stopTaskAccept(): Promise<void> {
    this.#accepting = false;
    this.#logger?.info?.('stopping task accept..');
    return Promise.resolve();
  }

  /**
   * Schedules the task; resolves true when it was new, false when an existing task of the
   * same id was updated (its data at once, its interval after its next run). Rejects with
   * 'not accepting tasks' while not accepting.
   */
  async assignTask(task: TaskLike): Promise<boolean> {
    if (!this.#accepting) throw new SchedkitError('ERR_NOT_ACCEPTING', 'not accepting tasks');
    const id = checkName(task.id, 'task.id');
    const data = task.serialize();
    const executeOn = Number(task.executeOn);
    if (!Number.isFinite(executeOn)) throw new ValidationError('task.executeOn', 'must be epoch milliseconds');
    const interval = task.onExecuteRescheduleTo;
    if (interval !== undefined && interval !== null && (typeof interval !== 'number' || !(interval >= 0))) throw new ValidationError('task.onExecuteRescheduleTo', 'must be a number of seconds');
    const period = interval ? this.#roundUp(interval * 1000, true) : undefined;
    const producer = this.#producerScheduler();
    const existing = await producer.get(this.#taskName, id);
    if (existing !== null && existing.nextRunAt !== null) {
      const at = existing.nextRunAt;
      await producer.update(this.#taskName, id, { params: data, schedule: period === undefined ? { at } : { every: period, at } });
      return false;
    }
    const at = this.#roundUp(executeOn, false);
    await producer.schedule(this.#taskName, { uid: id, params: data, at, ...(period === undefined ? {} : { every: period }) });
    return true;
  }

  /** Removes the task (a task object or its id); resolves whether there was one. */
  async removeTask(task: TaskLike | string): Promise<boolean> {
    if (!this.#accepting) throw new SchedkitError('ERR_NOT_ACCEPTING', 'not accepting tasks');
    const id = checkName(typeof task === 'string' ? task : task.id, 'task.id');
    return this.#producerScheduler().cancel(this.#taskName, id);
  }

  /** The serialized data of a scheduled task, or null. */
  async isScheduled(taskId: string): Promise<unknown> {
    await this.#connect();
    const report = await this.#producerScheduler().get(this.#taskName, checkName(taskId, 'taskId'));
    return report === null ? null : report.params;
  }

  /**
   * Starts running due tasks: `executor(serializedTask)` is awaited; a rejection is logged and
   * the occurrence is tried again while `attempts` remain. Rejects 'already executing tasks'.
   */
  async startTaskExecute(executor: Executor): Promise<void> {
    if (this.#executing) throw new SchedkitError('ERR_ALREADY_EXECUTING', 'already executing tasks');
    if (typeof executor !== 'function') throw new ValidationError('startTaskExecute.executor', 'must be a function');
    this.#executing = true;
    this.#execute = executor as (data: unknown) => unknown;
    this.#logger?.info?.('starting task execute..');
    const start = this.#lifecycle.then(async () => {
      await this.#connect();
      const core = new CoreScheduler({ store: this.#store, concurrency: this.#concurrency });
      core.on('error', (err) => this.#error(err));
      core.define(this.#taskName, (run: RunContext) => this.#run(run), {
        retry: { attempts: this.#attempts, backoff: 'fixed', delay: this.#bucketMs },
        lease: this.#lease,
        overlap: 'skip',
        misfire: 'run-once',
      });
      this.#executor = core;
      await core.start();
    });
    this.#lifecycle = start.catch(() => {
      this.#executing = false;
      this.#executor = undefined;
    });
    return start;
  }

  /** Stops running tasks; resolves when running executor calls have finished. Tasks are still accepted. */
  async stopTaskExecute(): Promise<void> {
    this.#logger?.info?.('stopping task execution..');
    this.#executing = false;
    // After a start still in progress (the seed's example stops right after starting).
    const stop = this.#lifecycle.then(async () => {
      const core = this.#executor;
      this.#executor = undefined;
      await core?.stop();
    });
    this.#lifecycle = stop.catch(() => undefined);
    return stop;
  }

  get acceptingTasks(): boolean {
    return this.#accepting;
  }

  get executingTasks(): boolean {
    return this.#executing;
  }

  /** True while the master instance is connected. */
  get online(): boolean {
    return this.#online;
  }

  /** Removes every task (SCAN-based); resolves how many there were. Locks are kept. */
  async clearAllTasks(): Promise<number> {
    await this.#connect();
    return this.#producerScheduler().clear();
  }

  /** Takes a lock released only by expiry after `autoReleaseSeconds`; resolves whether it was free. */
  async tryAutoLock(lockId: string, autoReleaseSeconds: number): Promise<boolean> {
    // Like interval-scheduler, the id is used as text (its examples lock `task.id` of a parsed object, i.e. "undefined").
    lockId = checkName(String(lockId), 'lockId');
    const seconds = checkInteger(autoReleaseSeconds, 'autoReleaseSeconds', 1, 365 * 24 * 3600);
    await this.#connect();
    return (await this.#lockScheduler().lock(`auto:${lockId}`, { ttl: seconds * 1000 })) !== null;
  }

  /** Takes a lock until `unlock` (or 24 hours); resolves it, or false when held. */
  async tryLock(lockId: string): Promise<SchedulerLock | false> {
    lockId = checkName(String(lockId), 'lockId');
    await this.#connect();
    const lock = await this.#lockScheduler().lock(`lock:${lockId}`, { ttl: LOCK_TTL_MS });
    return lock === null ? false : { key: lock.key, lockerId: lock.token };
  }

  /** Compare-and-delete: false when the lock expired or is held by someone else. */
  async unlock(lock: SchedulerLock): Promise<boolean> {
    const l = checkObject(lock, 'lock');
    if (typeof l['key'] !== 'string' || typeof l['lockerId'] !== 'string') throw new ValidationError('lock', 'must be a lock from tryLock()');
    await this.#connect();
    return this.#lockStore.releaseLock(l['key'], l['lockerId']);
  }

  /** schedkit: stops executing and accepting, and closes every connection. */
  async close(): Promise<void> {
    this.#accepting = false;
    this.#watched = false; // closing our own connections is not a disconnect
    await this.stopTaskExecute();
    await this.#connecting?.catch(() => undefined);
    const producer = this.#producer;
    const locks = this.#locks;
    this.#producer = undefined;
    this.#locks = undefined;
    this.#connecting = undefined;
    await producer?.stop();
    await locks?.stop();
    if (this.#online) {
      this.#online = false;
      this.emit('offline');
    }
  }

  /** The schedkit scheduler executing tasks while `executingTasks` (events, reports). */
  get scheduler(): CoreScheduler | undefined {
    return this.#executor;
  }

  /** schedkit: the scheduler used to assign, remove and report tasks. */
  get producer(): CoreScheduler {
    return this.#producerScheduler();
  }

  async #run(run: RunContext): Promise<void> {
    const execute = this.#execute;
    if (execute === undefined) throw new SchedkitError('ERR_STOPPED', 'not executing tasks');
    try {
      await execute(run.params);
    } catch (err) {
      this.#logger?.error?.(`got error: ${err instanceof Error ? err.message : String(err)} during execute for task: ${JSON.stringify(run.params)}`);
      throw err;
    }
  }

  /** Epoch ms (or a period) rounded UP to a bucket; a period is at least one bucket. */
  #roundUp(ms: number, isPeriod: boolean): number {
    const rounded = Math.ceil(ms / this.#bucketMs) * this.#bucketMs;
    return isPeriod ? Math.max(this.#bucketMs, rounded) : rounded;
  }

  #connect(): Promise<void> {
    this.#connecting ??= (async () => {
      await this.#producerScheduler().ready();
      if (this.#lockStore !== this.#store) await this.#lockScheduler().ready();
      this.#watch();
      if (!this.#online) {
        this.#online = true;
        this.emit('online');
      }
    })().catch((err: unknown) => {
      this.#connecting = undefined;
      throw err;
    });
    return this.#connecting;
  }

  /** Connection events of the store's own clients: db-disconnect/db-reconnect per server, offline/online for the master. */
  #watch(): void {
    if (this.#watched || !(this.#store instanceof RedisStore)) return;
    this.#watched = true;
    const store = this.#store;
    const seen = new Set<unknown>();
    for (let p = 0; p < store.partitions; p++) {
      const client = store.clientFor(p);
      if (seen.has(client)) continue;
      seen.add(client);
      const o = client.options as { host?: string; port?: number };
      const name = `${o.host ?? 'localhost'}:${o.port ?? 6379}`;
      let up = true;
      client.on('close', () => {
        if (!up || !this.#watched) return;
        up = false;
        this.#logger?.warn?.(`redis ${name} disconnected`);
        this.emit('db-disconnect', name);
      });
      client.on('ready', () => {
        if (up || !this.#watched) return;
        up = true;
        this.#logger?.info?.(`redis ${name} reconnected`);
        this.emit('db-reconnect', name);
      });
    }
    if (this.#lockStore instanceof RedisStore) {
      const master = this.#lockStore.clientFor(0);
      master.on('close', () => {
        if (!this.#online || !this.#watched) return;
        this.#online = false;
        this.#logger?.fatal?.(`master redis ${this.#masterName ?? ''} is offline`);
        this.emit('offline');
      });
      master.on('ready', () => {
        if (this.#online || !this.#watched) return;
        this.#online = true;
        this.emit('online');
      });
    }
  }

  #producerScheduler(): CoreScheduler {
    if (this.#producer === undefined) {
      this.#producer = new CoreScheduler({ store: this.#store });
      this.#producer.on('error', (err) => this.#error(err));
    }
    return this.#producer;
  }

  #lockScheduler(): CoreScheduler {
    if (this.#lockStore === this.#store) return this.#producerScheduler();
    if (this.#locks === undefined) {
      this.#locks = new CoreScheduler({ store: this.#lockStore });
      this.#locks.on('error', (err) => this.#error(err));
    }
    return this.#locks;
  }

  #error(err: Error): void {
    this.#logger?.error?.(err.message);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

function nameOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port === '' ? '6379' : u.port}`;
  } catch {
    return url;
  }
}
