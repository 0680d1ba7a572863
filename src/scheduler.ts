import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DuplicateTaskError, ScheduleNotFoundError, SchedkitError, SchedulerStoppedError, UnknownTaskError, ValidationError } from './errors.js';
import { toOptionalJson, type JsonValue } from './json.js';
import { normalizeSchedule, normalizeTiming, onceInput, taskConfig, type NormalizedSchedule } from './options.js';
import { Executor, type ExecutorEvent, type TaskDefinition } from './runner/executor.js';
import { WorkerPool, type PooledModule, type PoolOptions, type PoolStats } from './runner/pool.js';
import { MemoryStore } from './store/memory/MemoryStore.js';
import { loadRegistry } from './store/registry.js';
import type { RegistryDump, ScheduleInput, SchedulePatch, ScheduleState, Store } from './store/Store.js';
import { parseDuration } from './timing/duration.js';
import type {
  Lock,
  LockOptions,
  ModuleHandler,
  ScheduledRef,
  ScheduleInfo,
  ScheduleOptions,
  SchedulerEvents,
  SchedulerOptions,
  StartOptions,
  StopOptions,
  TaskHandler,
  TaskOptions,
  TaskReport,
  UpdateOptions,
} from './types.js';
import { checkInteger, checkKeys, checkName, checkObject } from './validate.js';

type State = 'idle' | 'started' | 'stopping' | 'stopped';

/**
 * The facade: defines tasks, schedules them in the store, and (when started with
 * `execute`) runs due occurrences through its executor. Every command is validated here;
 * the store enforces "start once".
 */
export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly store: Store;
  readonly #tasks = new Map<string, TaskDefinition>();
  readonly #options: SchedulerOptions;
  readonly #concurrency: number;
  readonly #owner: string;
  readonly #executor: Executor;
  #state: State = 'idle';
  #opened: Promise<void> | undefined;
  #isOpen = false;
  #executing = false;
  #pool: WorkerPool | undefined;
  /** Stops relaying the store's background errors (set while started). */
  #unlistenStore: (() => void) | undefined;
  #lastTask: string | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  readonly #poolOptions: PoolOptions;

  constructor(options: SchedulerOptions = {}) {
    super();
    const opts = checkObject(options, 'Scheduler options') as SchedulerOptions;
    this.#options = opts;
    this.store = opts.store ?? new MemoryStore();
    this.#concurrency = opts.concurrency === undefined ? 100 : checkInteger(opts.concurrency, 'Scheduler options.concurrency', 1);
    if (opts.defaults !== undefined) taskConfig(opts.defaults, undefined, this.#concurrency, 'Scheduler options.defaults');
    this.#owner = opts.owner ?? `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
    this.#poolOptions = poolOptions(opts.pool);
    this.#executor = new Executor(
      this.store,
      this.#tasks,
      this.#concurrency,
      this.#owner,
      (event, payload) => this.#emitOne(event, payload),
      (event) => this.listenerCount(event) > 0,
    );
  }

  /** The worker-thread pool's figures; null until a module handler is defined. */
  get pool(): PoolStats | null {
    return this.#pool?.stats ?? null;
  }

  #workerPool(): WorkerPool {
    this.#pool ??= new WorkerPool(this.#poolOptions);
    return this.#pool;
  }

  /** `'idle'` before start, `'started'`, `'stopping'`, `'stopped'`. */
  get state(): State {
    return this.#state;
  }

  /** Runs in progress in this process. */
  get running(): number {
    return this.#executor.running;
  }

  /** Names of the tasks defined here. */
  get tasks(): string[] {
    return [...this.#tasks.keys()];
  }

  /**
   * Defines a task's handler: a function run in this process, or `{ module, export? }` run in
   * the pool of worker threads (see `SchedulerOptions.pool`).
   */
  define<P = JsonValue | undefined>(task: string, handler: TaskHandler<P> | ModuleHandler, options?: TaskOptions): this {
    checkName(task, 'define.task');
    if (this.#tasks.has(task)) throw new DuplicateTaskError(task);
    let run: TaskHandler<never>;
    if (typeof handler === 'function') {
      run = handler;
    } else if (typeof handler === 'object' && handler !== null && 'module' in handler) {
      const mod = resolveModule(handler);
      run = (ctx) => this.#workerPool().run(mod, ctx);
    } else {
      throw new ValidationError('define.handler', 'must be a function or { module, export? }');
    }
    const config = taskConfig(options, this.#options.defaults, this.#concurrency, `define("${task}").options`);
    this.#tasks.set(task, { name: task, handler: run, config });
    if (this.#executing) this.#executor.refresh();
    return this;
  }

  async start(options: StartOptions = {}): Promise<void> {
    const opts = checkObject(options, 'start options');
    if (this.#state === 'started') return;
    if (this.#state === 'stopping') throw new SchedulerStoppedError('start');
    await this.#open();
    this.#state = 'started';
    this.#unlistenStore ??= this.store.onBackgroundError?.((err) => this.#emitOne('error', err));
    this.#executing = opts['execute'] !== false;
    if (this.#executing) {
      this.#executor.start();
      // Every timer is unref'd; this one ref'd handle keeps an executing scheduler's process
      // alive until stop(), as a listening server would (start({ keepAlive: false }) opts out).
      if (opts['keepAlive'] !== false) this.#keepAlive = setInterval(() => undefined, 2 ** 30);
    }
    this.#emitLifecycle('start');
  }

  /** Stops claiming, drains running work (aborting what outlasts `timeout`), closes the store. */
  async stop(options: StopOptions = {}): Promise<void> {
    const opts = checkObject(options, 'stop options');
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    const timeout = parseDuration(opts['timeout'] ?? '30s', 'stop.timeout');
    this.#state = 'stopping';
    try {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
      await this.#executor.stop(timeout);
      this.#executing = false;
      // Runs that outlasted the timeout were aborted (pooled ones terminated) by the executor.
      await this.#pool?.close(0);
      this.#pool = undefined;
      if (this.#opened !== undefined) {
        this.#opened = undefined;
        this.#isOpen = false;
        await this.store.close();
      }
    } finally {
      this.#unlistenStore?.();
      this.#unlistenStore = undefined;
      this.#state = 'stopped';
      this.#emitLifecycle('stop');
    }
  }

  /** Creates or replaces the schedule `(task, uid)`. */
  schedule(task: string, options: ScheduleOptions): Promise<ScheduledRef> {
    // Hot path once the store is open: no async frame of our own. A million awaited calls
    // otherwise spend more on promise machinery than on the schedules themselves.
    if (!this.#isOpen || this.#state === 'stopped' || this.#state === 'stopping') return this.#scheduleAfterOpen(task, options);
    let input: ScheduleInput;
    try {
      input = this.#scheduleInput(task, options);
      // In-process stores upsert synchronously: one promise per schedule instead of three.
      if (this.store.upsertNow !== undefined) return Promise.resolve(new Ref(task, input.uid, this.store.upsertNow(input)));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.store.upsert(input).then((due) => new Ref(task, input.uid, due));
  }

  async #scheduleAfterOpen(task: string, options: ScheduleOptions): Promise<ScheduledRef> {
    await this.#ready('schedule');
    const input = this.#scheduleInput(task, options);
    return new Ref(task, input.uid, await this.store.upsert(input));
  }

  #scheduleInput(task: string, options: ScheduleOptions): ScheduleInput {
    if (task !== this.#lastTask) {
      checkName(task, 'schedule.task');
      this.#lastTask = task; // loops schedule one task many times: validate its name once
    }
    if (this.#options.strictTasks === true && !this.#tasks.has(task)) throw new UnknownTaskError(task);
    return onceInput(task, options) ?? toInput(task, normalizeSchedule(options, 'schedule'));
  }

  /** Many schedules of one task in one store call; resolves their uids in order. */
  async scheduleMany(task: string, list: readonly ScheduleOptions[]): Promise<string[]> {
    await this.#ready('scheduleMany');
    checkName(task, 'scheduleMany.task');
    const items: unknown = list;
    if (!Array.isArray(items)) throw new ValidationError('scheduleMany.list', 'must be an array');
    if (this.#options.strictTasks === true && !this.#tasks.has(task)) throw new UnknownTaskError(task);
    const inputs = (items as readonly ScheduleOptions[]).map((options, i) => onceInput(task, options) ?? toInput(task, normalizeSchedule(options, `scheduleMany[${i}]`)));
    await this.store.upsertMany(inputs);
    return inputs.map((i) => i.uid);
  }

  /** Removes a schedule; false when there was none. A run in progress finishes. */
  async cancel(task: string, uid: string): Promise<boolean> {
    await this.#ready('cancel');
    return this.store.remove(checkName(task, 'cancel.task'), checkName(uid, 'cancel.uid'));
  }

  /** Queues a run now as its own occurrence (never lost, whatever holds the lease). */
  async trigger(task: string, uid: string): Promise<void> {
    await this.#ready('trigger');
    if (!(await this.store.trigger(checkName(task, 'trigger.task'), checkName(uid, 'trigger.uid')))) throw new ScheduleNotFoundError(task, uid);
  }

  async update(task: string, uid: string, changes: UpdateOptions): Promise<TaskReport> {
    await this.#ready('update');
    checkName(task, 'update.task');
    checkName(uid, 'update.uid');
    const opts = checkObject(changes, 'update');
    for (const key of Object.keys(opts)) {
      if (!['enabled', 'params', 'schedule'].includes(key)) throw new ValidationError(`update.${key}`, 'is not a known option (known: enabled, params, schedule)');
    }
    let patch: SchedulePatch = {};
    if (opts['enabled'] !== undefined) {
      if (typeof opts['enabled'] !== 'boolean') throw new ValidationError('update.enabled', 'must be true or false');
      patch = { ...patch, enabled: opts['enabled'] };
    }
    if ('params' in opts) patch = { ...patch, params: toOptionalJson(opts['params'], 'update.params') };
    if (opts['schedule'] !== undefined) {
      const timing = normalizeTiming(checkObject(opts['schedule'], 'update.schedule'), 'update.schedule');
      patch = { ...patch, spec: timing.spec, first: timing.first, timeout: timing.timeout };
    }
    const state = await this.store.update(task, uid, patch);
    if (state === null) throw new ScheduleNotFoundError(task, uid);
    return toReport(state);
  }

  async get(task: string, uid: string): Promise<TaskReport | null> {
    await this.#ready('get');
    const state = await this.store.get(checkName(task, 'get.task'), checkName(uid, 'get.uid'));
    return state === null ? null : toReport(state);
  }

  async list(filter: { task?: string } = {}): Promise<TaskReport[]> {
    await this.#ready('list');
    const f = checkObject(filter, 'list');
    const task = f['task'] === undefined ? undefined : checkName(f['task'], 'list.task');
    const states = await this.store.list(task === undefined ? {} : { task });
    return states.map(toReport).sort((a, b) => (a.task === b.task ? (a.uid < b.uid ? -1 : 1) : a.task < b.task ? -1 : 1));
  }

  /** schedward's `TaskRunnerRegistryDump` (with recurring fields) of everything pending. */
  async snapshot(): Promise<RegistryDump> {
    await this.#ready('snapshot');
    return this.store.snapshot();
  }

  /**
   * Restores a dump: each entry replaces the schedule of the same `(task, uid)` (so loading
   * twice never duplicates); entries whose `iat` passed run at once. Validates the whole
   * dump before changing anything. Resolves how many schedules were loaded.
   */
  async load(registry: RegistryDump): Promise<number> {
    await this.#ready('load');
    const inputs = loadRegistry(registry);
    await this.store.upsertMany(inputs);
    return inputs.length;
  }

  /** Takes a lock; null when someone else holds it. */
  async lock(key: string, options: LockOptions = {}): Promise<Lock | null> {
    await this.#ready('lock');
    checkName(key, 'lock.key');
    const ttl = parseDuration(checkObject(options, 'lock options')['ttl'] ?? '30s', 'lock.ttl', { allowZero: false });
    const token = randomUUID();
    if (!(await this.store.acquireLock(key, token, ttl))) return null;
    const store = this.store;
    return {
      key,
      token,
      release: () => store.releaseLock(key, token),
      extend: (more?: unknown) => store.extendLock(key, token, more === undefined ? ttl : parseDuration(more, 'lock.extend.ttl', { allowZero: false })),
    };
  }

  /**
   * Runs `fn` while holding `key`, extending the lock at half its ttl; throws
   * `SchedkitError` with code `ERR_LOCK_HELD` when another holds it.
   */
  async withLock<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    const lock = await this.lock(key, options);
    if (lock === null) throw new SchedkitError('ERR_LOCK_HELD', `withLock: lock "${key}" is held by another owner`);
    const ttl = parseDuration(options.ttl ?? '30s', 'lock.ttl');
    const keepAlive = setInterval(() => void lock.extend().catch(() => undefined), Math.max(10, Math.floor(ttl / 2)));
    keepAlive.unref();
    try {
      return await fn(lock);
    } finally {
      clearInterval(keepAlive);
      await lock.release();
    }
  }

  /** Removes every schedule, lock and lease of this store's namespace. */
  async clear(): Promise<number> {
    await this.#ready('clear');
    return this.store.clear();
  }

  /** Opens the store (idempotent; commands do it on first use); throws `SchedulerStoppedError` once stopping. */
  async ready(): Promise<void> {
    await this.#ready('ready');
  }

  /** Throws after stop; opens the store on first use. Synchronous once the store is open (hot path). */
  #ready(operation: string): Promise<void> | undefined {
    if (this.#state === 'stopped' || this.#state === 'stopping') throw new SchedulerStoppedError(operation);
    return this.#isOpen ? undefined : this.#open();
  }

  #open(): Promise<void> {
    this.#opened ??= this.store.open().then(
      () => {
        this.#isOpen = true;
      },
      (err: unknown) => {
        this.#opened = undefined;
        throw err;
      },
    );
    return this.#opened;
  }

  /**
   * Emits an event with its payload (every event but start and stop has one; no rest-argument
   * arrays: this runs for every run). An `error` with no listener is reported as a process
   * warning instead of throwing; a throwing listener becomes an `error` event.
   */
  #emitOne<K extends ExecutorEvent>(event: K, payload: SchedulerEvents[K][0]): void {
    if (event === 'error' && this.listenerCount('error') === 0) {
      process.emitWarning(`schedkit: ${(payload as Error).message}`, { code: 'SCHEDKIT_ERROR' });
      return;
    }
    try {
      (this.emit as (e: K, p: SchedulerEvents[K][0]) => boolean)(event, payload);
    } catch (err) {
      // A throwing listener must not break the scheduler's loop.
      if (event !== 'error') this.#emitOne('error', err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** `start` and `stop` (no payload), as #emitOne does the others. */
  #emitLifecycle(event: 'start' | 'stop'): void {
    try {
      this.emit(event);
    } catch (err) {
      this.#emitOne('error', err instanceof Error ? err : new Error(String(err)));
    }
  }
}

function poolOptions(input: PoolOptions | undefined): PoolOptions {
  if (input === undefined) return {};
  const o = checkObject(input, 'Scheduler options.pool');
  checkKeys(o, ['size', 'maxRunsPerWorker', 'resourceLimits'], 'Scheduler options.pool');
  const out: PoolOptions = {};
  if (o['size'] !== undefined) out.size = checkInteger(o['size'], 'Scheduler options.pool.size', 1, 1024);
  if (o['maxRunsPerWorker'] !== undefined) out.maxRunsPerWorker = checkInteger(o['maxRunsPerWorker'], 'Scheduler options.pool.maxRunsPerWorker', 1);
  if (o['resourceLimits'] !== undefined) out.resourceLimits = checkObject(o['resourceLimits'], 'Scheduler options.pool.resourceLimits');
  return out;
}

function resolveModule(handler: ModuleHandler): PooledModule {
  const field = 'define.handler.module';
  const exportName: unknown = handler.export === undefined ? 'default' : handler.export;
  if (typeof exportName !== 'string' || exportName === '') throw new ValidationError('define.handler.export', 'must be a non-empty string');
  let url: URL;
  if (handler.module instanceof URL) url = handler.module;
  else if (typeof handler.module === 'string' && handler.module.startsWith('file:')) url = new URL(handler.module);
  else if (typeof handler.module === 'string' && handler.module !== '') url = pathToFileURL(resolvePath(process.cwd(), handler.module));
  else throw new ValidationError(field, 'must be a file path, a file: URL string or a URL');
  if (url.protocol !== 'file:') throw new ValidationError(field, `must be a file URL, got ${url.protocol}`);
  if (!existsSync(fileURLToPath(url))) throw new ValidationError(field, `no such file: ${fileURLToPath(url)}`);
  return { url: url.href, exportName };
}

function toInput(task: string, s: NormalizedSchedule): ScheduleInput {
  return { task, uid: s.uid, spec: s.spec, first: s.first, params: s.params, enabled: s.enabled, timeout: s.timeout };
}

/** What `schedule()` resolves; `nextRunAt` is made on first read (a Date per call is measurable at a million). */
class Ref implements ScheduledRef {
  readonly #due: number | null;
  #date: Date | null | undefined;
  constructor(
    readonly task: string,
    readonly uid: string,
    due: number | null,
  ) {
    this.#due = due;
  }

  get nextRunAt(): Date | null {
    return (this.#date ??= toDate(this.#due));
  }

  toJSON(): { task: string; uid: string; nextRunAt: Date | null } {
    return { task: this.task, uid: this.uid, nextRunAt: this.nextRunAt };
  }

  /** `console.log(ref)` shows `nextRunAt` too. */
  [Symbol.for('nodejs.util.inspect.custom')](): { task: string; uid: string; nextRunAt: Date | null } {
    return this.toJSON();
  }
}

function toDate(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

export function toReport(s: ScheduleState): TaskReport {
  const schedule: ScheduleInfo =
    s.spec.kind === 'once' ? { kind: 'once' } : s.spec.kind === 'every' ? { kind: 'every', every: s.spec.every } : s.spec.tz === undefined ? { kind: 'cron', cron: s.spec.cron } : { kind: 'cron', cron: s.spec.cron, tz: s.spec.tz };
  const r = s.report;
  return {
    id: `${s.task}/${s.uid}`,
    task: s.task,
    uid: s.uid,
    schedule,
    params: s.params,
    enabled: s.enabled,
    nextRunAt: toDate(s.nextRunAt),
    lastExecutedAt: toDate(r.lastExecutedAt),
    lastFinishedAt: toDate(r.lastFinishedAt),
    isRunning: r.running > 0,
    running: r.running,
    lastResult: r.lastResult,
    lastError: r.lastError,
    lastDurationMs: r.lastDurationMs,
    attempts: r.attempts,
    successes: r.successes,
    failures: r.failures,
    skips: r.skips,
    pending: s.pending,
    history: r.history,
  };
}
