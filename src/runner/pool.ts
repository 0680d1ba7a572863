import { availableParallelism } from 'node:os';
import { Worker, type ResourceLimits } from 'node:worker_threads';
import { RunTimeoutError, SchedkitError } from '../errors.js';
import type { RunContext } from '../types.js';

/**
 * A pool of worker threads that run module handlers (`define(task, { module })`). The main
 * thread keeps every timer and lease, so a handler that blocks its thread — even forever —
 * delays nothing else and cannot stop heartbeats. A timeout terminates the thread (a hard
 * stop an in-process `AbortSignal` cannot give); a thread that crashes (throws outside the
 * handler, calls `process.exit`, runs out of memory under `resourceLimits`) fails only its
 * own run; a fresh thread takes its place when work needs one.
 */
export interface PoolOptions {
  /** Worker threads at most. Default: `os.availableParallelism()`. */
  size?: number;
  /** Replace a thread after it ran this many runs (leaky handlers). Default: never. */
  maxRunsPerWorker?: number;
  /** Passed to each `Worker` (e.g. `maxOldGenerationSizeMb`). */
  resourceLimits?: ResourceLimits;
}

export interface PoolStats {
  readonly size: number;
  /** Threads alive now. */
  readonly threads: number;
  readonly busy: number;
  /** Runs waiting for a free thread. */
  readonly queued: number;
  /** Threads that died under a run (crash, exit, out of memory) or were terminated by a timeout. */
  readonly crashed: number;
  readonly completed: number;
}

export interface PooledModule {
  /** A file URL string (resolved at define time). */
  readonly url: string;
  readonly exportName: string;
}

/** Errors a handler threw in a worker thread come back with this name, message and stack. */
export class WorkerRunError extends SchedkitError {
  constructor(message: string, name: string, stack: string | undefined) {
    super('ERR_WORKER_RUN', message);
    this.name = name;
    if (stack !== undefined) this.stack = stack;
  }
}

/** The thread itself died (crash, `process.exit`, out of memory). */
export class WorkerCrashError extends SchedkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_WORKER_CRASHED', message, options);
    this.name = 'WorkerCrashError';
  }
}

// The worker's code, evaluated (no file to locate from src/ or dist/). Handlers are loaded by
// dynamic import of their file URL and cached per thread.
const WORKER_CODE = `
const { parentPort } = require('node:worker_threads');
const modules = new Map();
let current = null;
parentPort.on('message', async (msg) => {
  if (msg.type === 'abort') {
    if (current !== null && current.id === msg.id) {
      const reason = new Error(msg.message);
      reason.name = msg.name;
      reason.code = msg.code;
      current.controller.abort(reason);
    }
    return;
  }
  const { id, url, exportName, ctx } = msg;
  const controller = new AbortController();
  current = { id, controller };
  try {
    let mod = modules.get(url);
    if (mod === undefined) {
      mod = await import(url);
      modules.set(url, mod);
    }
    const fn = mod[exportName];
    if (typeof fn !== 'function') throw new TypeError('module ' + url + ' has no exported function "' + exportName + '"');
    const result = await fn({ ...ctx, dueAt: new Date(ctx.dueAt), signal: controller.signal });
    try {
      parentPort.postMessage({ id, ok: true, result });
    } catch (err) {
      parentPort.postMessage({ id, ok: false, error: { name: 'DataCloneError', message: 'the result cannot be sent back from the worker thread (structured clone failed): ' + (err && err.message) } });
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    parentPort.postMessage({ id, ok: false, error: { name: e.name, message: e.message, stack: e.stack } });
  } finally {
    current = null;
  }
});
`;

interface Job {
  readonly id: number;
  readonly mod: PooledModule;
  readonly run: RunContext;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  onAbort?: () => void;
}

interface Thread {
  readonly worker: Worker;
  job: Job | undefined;
  runs: number;
  /** Set when we end it on purpose (timeout, recycle, close): its exit is not a crash of a run. */
  ending: boolean;
}

type Answer = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { name: string; message: string; stack?: string } };

export class WorkerPool {
  readonly #size: number;
  readonly #maxRuns: number;
  readonly #limits: ResourceLimits | undefined;
  readonly #threads = new Set<Thread>();
  readonly #queue: Job[] = [];
  #nextId = 1;
  #crashed = 0;
  #completed = 0;
  #closed = false;

  constructor(options: PoolOptions = {}) {
    this.#size = options.size ?? availableParallelism();
    this.#maxRuns = options.maxRunsPerWorker ?? Infinity;
    this.#limits = options.resourceLimits;
  }

  get stats(): PoolStats {
    let busy = 0;
    for (const t of this.#threads) if (t.job !== undefined) busy++;
    return { size: this.#size, threads: this.#threads.size, busy, queued: this.#queue.length, crashed: this.#crashed, completed: this.#completed };
  }

  /** Runs `mod` for `run` on a thread; settles with the handler's result or error. */
  run(mod: PooledModule, run: RunContext): Promise<unknown> {
    if (this.#closed) return Promise.reject(new SchedkitError('ERR_STOPPED', 'worker pool: closed'));
    return new Promise((resolve, reject) => {
      const job: Job = { id: this.#nextId++, mod, run, resolve, reject };
      if (run.signal.aborted) {
        reject(asError(run.signal.reason));
        return;
      }
      job.onAbort = () => this.#abort(job);
      run.signal.addEventListener('abort', job.onAbort, { once: true });
      this.#queue.push(job);
      this.#dispatch();
    });
  }

  /**
   * Lets running jobs finish for up to `timeoutMs`, then terminates every thread; queued jobs
   * are rejected at once.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) this.#settle(job, new SchedkitError('ERR_STOPPED', 'worker pool: closed before the run started'));
    const busy = [...this.#threads].filter((t) => t.job !== undefined);
    if (busy.length > 0) {
      await Promise.race([
        Promise.allSettled(busy.map((t) => new Promise<void>((resolve) => t.worker.once('exit', () => resolve()).once('message', () => resolve())))),
        new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
      ]);
    }
    await Promise.all([...this.#threads].map((t) => this.#end(t)));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let thread: Thread | undefined;
      for (const t of this.#threads) {
        if (t.job === undefined && !t.ending) {
          thread = t;
          break;
        }
      }
      if (thread === undefined) {
        if (this.#threads.size >= this.#size) return;
        thread = this.#spawn();
      }
      const job = this.#queue.shift() as Job;
      thread.job = job;
      thread.runs++;
      const { task, uid, params, dueAt, attempt, kind } = job.run;
      try {
        thread.worker.postMessage({ id: job.id, url: job.mod.url, exportName: job.mod.exportName, ctx: { task, uid, params, dueAt: dueAt.getTime(), attempt, kind } });
      } catch (err) {
        thread.job = undefined;
        this.#settle(job, new SchedkitError('ERR_WORKER_RUN', `params cannot be sent to the worker thread: ${(err as Error).message}`));
      }
    }
  }

  #spawn(): Thread {
    const worker = new Worker(WORKER_CODE, { eval: true, ...(this.#limits === undefined ? {} : { resourceLimits: this.#limits }) });
    const thread: Thread = { worker, job: undefined, runs: 0, ending: false };
    this.#threads.add(thread);
    worker.on('message', (answer: Answer) => this.#answer(thread, answer));
    worker.on('error', (err: Error) => this.#died(thread, err));
    worker.on('exit', (code) => this.#died(thread, new WorkerCrashError(`the worker thread exited with code ${code} during the run`)));
    return thread;
  }

  #answer(thread: Thread, answer: Answer): void {
    const job = thread.job;
    if (job === undefined || job.id !== answer.id) return;
    thread.job = undefined;
    this.#completed++;
    if (answer.ok) this.#settle(job, undefined, answer.result);
    else this.#settle(job, new WorkerRunError(answer.error.message, answer.error.name, answer.error.stack));
    if (thread.runs >= this.#maxRuns) void this.#end(thread);
    this.#dispatch();
  }

  /** The thread is gone: fail its run (if any), forget it, and let a new one take the work. */
  #died(thread: Thread, err: Error): void {
    if (!this.#threads.delete(thread)) return;
    const job = thread.job;
    thread.job = undefined;
    if (job !== undefined && !thread.ending) {
      this.#crashed++;
      const reason = err.message.includes('out of memory') || (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY' ? `the worker thread ran out of memory (${err.message})` : err.message;
      this.#settle(job, new WorkerCrashError(`worker thread crashed: ${reason}`, { cause: err }));
    }
    if (!this.#closed) this.#dispatch();
  }

  #abort(job: Job): void {
    const queued = this.#queue.indexOf(job);
    if (queued !== -1) {
      this.#queue.splice(queued, 1);
      this.#settle(job, asError(job.run.signal.reason));
      return;
    }
    const thread = [...this.#threads].find((t) => t.job === job);
    if (thread === undefined) return;
    const reason: unknown = job.run.signal.reason;
    const hard = reason instanceof RunTimeoutError || (reason instanceof SchedkitError && reason.code === 'ERR_STOPPED');
    if (hard) {
      // A hard stop: the handler may be stuck in a loop that never looks at its signal.
      this.#crashed++;
      thread.job = undefined;
      this.#settle(job, reason instanceof RunTimeoutError ? new RunTimeoutError(reason.task, reason.timeoutMs, 'its worker thread was terminated') : reason);
      void this.#end(thread).then(() => this.#dispatch());
      return;
    }
    const r = reason instanceof Error ? reason : new Error(String(reason));
    thread.worker.postMessage({ type: 'abort', id: job.id, name: r.name, message: r.message, code: (r as SchedkitError).code });
  }

  #settle(job: Job, err: unknown, result?: unknown): void {
    if (job.onAbort !== undefined) job.run.signal.removeEventListener('abort', job.onAbort);
    if (err === undefined) job.resolve(result);
    else job.reject(err);
  }

  async #end(thread: Thread): Promise<void> {
    thread.ending = true;
    this.#threads.delete(thread);
    await thread.worker.terminate();
  }
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
