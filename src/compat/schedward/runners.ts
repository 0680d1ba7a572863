/**
 * schedward's runner pool: n worker threads that only hold timers, as schedward's forked
 * runners did. The manager's thread keeps every pending timeout (task, uid, due time,
 * params) and hands each one's timer to runner `id % n`; a runner keeps a heap of
 * `(due, id)` with one armed timer and posts back the ids that came due. Listeners run in
 * the manager's thread, as in schedward.
 *
 * Because the manager's thread keeps the entries, a runner that crashes loses nothing (the
 * schedward bug): a fresh runner takes its place and re-arms that shard's timeouts.
 */
import { Worker } from 'node:worker_threads';
import { SchedkitError } from '../../errors.js';
import { setOwn, type JsonValue } from '../../json.js';
import type { RegistryDump, RegistryEntry, ScheduleInput } from '../../store/Store.js';
import { nextDue, type ScheduleSpec } from '../../timing/spec.js';

/** A pending timeout, owned by the manager's thread. */
export interface PendingTimeout {
  /** Unique per arming: a replaced or re-armed timeout gets a new id. */
  readonly id: number;
  readonly task: string;
  readonly uid: string;
  /** Due time (epoch ms). */
  readonly iat: number;
  /** The delay asked for (after a load: `max(0, iat - now)`); for `every`, the period. */
  readonly timeout: number;
  readonly params: JsonValue | undefined;
  readonly spec: ScheduleSpec;
  readonly enabled: boolean;
}

export interface RunnerStats {
  /** Runner threads alive. */
  readonly threads: number;
  /** Timers each runner holds, by runner index. */
  readonly timers: readonly number[];
  /** Runners replaced after they died. */
  readonly crashed: number;
}

/** Test hook: the live runner threads (not exported from the package). */
export const kRunnerThreads = Symbol('schedkit.schedward.runnerThreads');

// The runner's code, evaluated (no file to locate from src/ or dist/). Messages in:
// { set: Float64Array [id, due, id, due, ...], del: Float64Array [id, ...] }.
// Messages out: Float64Array of ids that came due, oldest first.
const RUNNER_CODE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const MAX_WAIT = 30000; // re-check at least this often (suspends, clock jumps)
const dues = [];
const ids = [];
const live = new Map(); // id -> due; heap entries not in it are dead
let timer = null;
let armedAt = Infinity;
function before(i, j) { return dues[i] < dues[j] || (dues[i] === dues[j] && ids[i] < ids[j]); }
function swap(i, j) {
  const d = dues[i]; dues[i] = dues[j]; dues[j] = d;
  const k = ids[i]; ids[i] = ids[j]; ids[j] = k;
}
function push(id, due) {
  dues.push(due); ids.push(id);
  let i = ids.length - 1;
  while (i > 0) { const p = (i - 1) >> 1; if (!before(i, p)) break; swap(i, p); i = p; }
}
function popTop() {
  const last = ids.length - 1;
  swap(0, last); dues.pop(); ids.pop();
  let i = 0;
  for (;;) {
    const l = 2 * i + 1, r = l + 1;
    let m = i;
    if (l < ids.length && before(l, m)) m = l;
    if (r < ids.length && before(r, m)) m = r;
    if (m === i) break;
    swap(i, m); i = m;
  }
}
function compact() {
  const entries = [...live.entries()];
  dues.length = 0; ids.length = 0;
  for (const [id, due] of entries) push(id, due);
}
function arm() {
  while (ids.length > 0 && live.get(ids[0]) !== dues[0]) popTop();
  if (ids.length === 0) {
    if (timer !== null) clearTimeout(timer);
    timer = null; armedAt = Infinity;
    return;
  }
  const at = dues[0];
  if (timer !== null && armedAt <= at) return;
  if (timer !== null) clearTimeout(timer);
  armedAt = at;
  timer = setTimeout(fire, Math.max(0, Math.min(MAX_WAIT, at - Date.now())));
}
function fire() {
  timer = null; armedAt = Infinity;
  const now = Date.now();
  const out = [];
  while (ids.length > 0 && dues[0] <= now) {
    const id = ids[0], due = dues[0];
    popTop();
    if (live.get(id) === due) { live.delete(id); out.push(id); }
  }
  if (out.length > 0) parentPort.postMessage(Float64Array.from(out));
  arm();
}
parentPort.on('message', (m) => {
  if (m.del) for (let i = 0; i < m.del.length; i++) live.delete(m.del[i]);
  if (m.set) for (let i = 0; i < m.set.length; i += 2) { live.set(m.set[i], m.set[i + 1]); push(m.set[i], m.set[i + 1]); }
  if (ids.length > 1024 && ids.length > 2 * live.size) compact();
  arm();
});
`;

interface Runner {
  readonly index: number;
  readonly worker: Worker;
  /** Armed timeouts this runner holds. */
  timers: number;
  set: number[];
  del: number[];
}

export class RunnerPool {
  readonly size: number;
  readonly #onFire: (timeout: PendingTimeout) => void;
  readonly #onError: (err: Error) => void;
  readonly #runners: Runner[] = [];
  readonly #byId = new Map<number, PendingTimeout>();
  readonly #byKey = new Map<string, Map<string, PendingTimeout>>();
  #nextId = 1;
  #flushQueued = false;
  #stopped = false;
  #crashed = 0;

  constructor(size: number, onFire: (timeout: PendingTimeout) => void, onError: (err: Error) => void) {
    this.size = size;
    this.#onFire = onFire;
    this.#onError = onError;
  }

  /** Starts the n runner threads; resolves when every one is online. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.size }, (_, i) => this.#spawn(i)));
  }

  /** Ends the runners; what was pending is dropped (snapshot first to keep it), as in schedward. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const workers = this.#runners.map((r) => r.worker);
    this.#runners.length = 0;
    this.#byId.clear();
    this.#byKey.clear();
    await Promise.all(workers.map((w) => w.terminate()));
  }

  get stats(): RunnerStats {
    return { threads: this.#runners.length, timers: this.#runners.map((r) => r.timers), crashed: this.#crashed };
  }

  get [kRunnerThreads](): readonly Worker[] {
    return this.#runners.map((r) => r.worker);
  }

  /** Sets a one-shot timeout (replacing the uid's pending one, wherever it was). */
  setTimeout(task: string, uid: string, iat: number, timeout: number, params: JsonValue | undefined): void {
    this.#put({ task, uid, iat, timeout, params, spec: ONCE, enabled: true });
  }

  /** Restores snapshot entries (validated by the caller); each replaces its uid's pending timeout. */
  load(inputs: readonly ScheduleInput[], now: number): void {
    for (const input of inputs) {
      const first = input.first;
      const iat = 'at' in first ? first.at : 'in' in first ? now + first.in : (nextDue(input.spec, now) ?? now);
      const spec: ScheduleSpec = input.spec.kind === 'every' ? { kind: 'every', every: input.spec.every, anchor: iat } : input.spec;
      this.#put({ task: input.task, uid: input.uid, iat, timeout: input.timeout, params: input.params, spec, enabled: input.enabled });
    }
  }

  clear(task: string, uid: string): void {
    const pending = this.#byKey.get(task)?.get(uid);
    if (pending !== undefined) this.#drop(pending);
  }

  /** Every pending timeout, schedward's format (tasks without any are left out). */
  snapshot(): RegistryDump {
    const dump: RegistryDump = {};
    for (const [task, entries] of this.#byKey) {
      if (entries.size === 0) continue;
      const out: RegistryDump[string] = {};
      for (const [uid, t] of entries) {
        const entry: RegistryEntry = { iat: t.iat, timeout: t.timeout };
        if (t.params !== undefined) entry.params = structuredClone(t.params);
        if (t.spec.kind === 'every') entry.every = t.spec.every;
        if (t.spec.kind === 'cron') {
          entry.cron = t.spec.cron;
          if (t.spec.tz !== undefined) entry.tz = t.spec.tz;
        }
        if (!t.enabled) entry.enabled = false;
        setOwn(out, uid, entry);
      }
      setOwn(dump, task, out);
    }
    return dump;
  }

  #put(fields: Omit<PendingTimeout, 'id'>): void {
    let entries = this.#byKey.get(fields.task);
    if (entries === undefined) {
      entries = new Map();
      this.#byKey.set(fields.task, entries);
    }
    const previous = entries.get(fields.uid);
    if (previous !== undefined) this.#disarm(previous);
    const pending: PendingTimeout = { ...fields, id: this.#nextId++ };
    entries.set(fields.uid, pending);
    this.#byId.set(pending.id, pending);
    if (pending.enabled) this.#arm(pending);
  }

  #drop(pending: PendingTimeout): void {
    this.#disarm(pending);
    const entries = this.#byKey.get(pending.task);
    if (entries?.get(pending.uid) === pending) {
      entries.delete(pending.uid);
      if (entries.size === 0) this.#byKey.delete(pending.task);
    }
  }

  #runnerOf(id: number): Runner | undefined {
    return this.#runners[id % this.size];
  }

  #arm(pending: PendingTimeout): void {
    const runner = this.#runnerOf(pending.id);
    if (runner === undefined) return;
    runner.set.push(pending.id, pending.iat);
    runner.timers++;
    this.#queueFlush();
  }

  #disarm(pending: PendingTimeout): void {
    if (!this.#byId.delete(pending.id) || !pending.enabled) return;
    const runner = this.#runnerOf(pending.id);
    if (runner === undefined) return;
    runner.del.push(pending.id);
    runner.timers--;
    this.#queueFlush();
  }

  /** Commands of one tick reach each runner as one message. */
  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      for (const runner of this.#runners) this.#flush(runner);
    });
  }

  #flush(runner: Runner): void {
    if (runner.set.length === 0 && runner.del.length === 0) return;
    const message: { set?: Float64Array<ArrayBuffer>; del?: Float64Array<ArrayBuffer> } = {};
    const transfer: ArrayBuffer[] = [];
    if (runner.set.length > 0) {
      const set = new Float64Array(runner.set);
      message.set = set;
      transfer.push(set.buffer);
      runner.set = [];
    }
    if (runner.del.length > 0) {
      const del = new Float64Array(runner.del);
      message.del = del;
      transfer.push(del.buffer);
      runner.del = [];
    }
    runner.worker.postMessage(message, transfer);
  }

  #fired(runner: Runner, ids: Float64Array): void {
    if (this.#runners[runner.index] !== runner) return; // replaced after a crash: its shard was re-armed
    const now = Date.now();
    for (const id of ids) {
      const pending = this.#byId.get(id);
      if (pending === undefined) continue; // cleared or replaced meanwhile
      this.#byId.delete(id);
      runner.timers--;
      const next = pending.spec.kind === 'once' ? null : nextDue(pending.spec, Math.max(pending.iat, now));
      if (next === null) {
        this.#drop(pending);
      } else {
        this.#put({ ...pending, iat: next, params: pending.params === undefined ? undefined : structuredClone(pending.params) });
      }
      try {
        this.#onFire(pending);
      } catch (err) {
        this.#onError(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  #spawn(index: number): Promise<void> {
    const worker = new Worker(RUNNER_CODE, { eval: true, name: `schedkit schedward runner ${index}` });
    const runner: Runner = { index, worker, timers: 0, set: [], del: [] };
    this.#runners[index] = runner;
    let failure: Error | undefined;
    worker.on('message', (ids: Float64Array) => this.#fired(runner, ids));
    worker.on('error', (err) => {
      failure = err;
    });
    worker.on('exit', (code) => {
      if (this.#stopped || this.#runners[index] !== runner) return;
      this.#crashed++;
      const why = failure === undefined ? `exited (code ${code})` : `failed (${failure.message})`;
      this.#onError(new SchedkitError('ERR_WORKER_CRASHED', `schedward runner ${index} ${why}; a new runner re-arms its ${runner.timers} timeout(s)`, { cause: failure }));
      this.#respawn(index);
    });
    return new Promise((resolve, reject) => {
      worker.once('online', () => resolve());
      worker.once('exit', (code) => reject(new SchedkitError('ERR_WORKER_CRASHED', `schedward runner ${index} exited (code ${code}) before it started`)));
    });
  }

  /** A fresh runner for shard `index`, holding every enabled timeout of that shard. */
  #respawn(index: number): void {
    this.#spawn(index).catch((err: unknown) => this.#onError(err instanceof Error ? err : new Error(String(err))));
    const runner = this.#runners[index] as Runner;
    for (const pending of this.#byId.values()) {
      if (pending.enabled && pending.id % this.size === index) {
        runner.set.push(pending.id, pending.iat);
        runner.timers++;
      }
    }
    this.#queueFlush();
  }
}

const ONCE: ScheduleSpec = { kind: 'once' };
