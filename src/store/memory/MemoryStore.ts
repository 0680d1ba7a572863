import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StoreError } from '../../errors.js';
import { ownEntry, setOwn, type JsonValue } from '../../json.js';
import { parseDuration, type Duration } from '../../timing/duration.js';
import { dueTimesBetween, latestDueAtOrBefore, nextDue, type ScheduleSpec } from '../../timing/spec.js';
import { loadRegistry } from '../registry.js';
import {
  HISTORY_LIMIT,
  type ClaimRequest,
  type ClaimResult,
  type ClaimedRun,
  type Completion,
  type CompletionStatus,
  type FirstDue,
  type ListFilter,
  type LostLease,
  type OccurrenceKind,
  type RegistryDump,
  type RegistryEntry,
  type RunRecord,
  type ScheduleInput,
  type SchedulePatch,
  type ScheduleState,
  type SkippedOccurrence,
  type Store,
  type TaskPolicy,
} from '../Store.js';
import { ObjectHeap, SlotHeap } from './heap.js';
import { FLAG_ENABLED, newMeta, ScheduleTable, SlotIndex, type ExtraOccurrence, type Meta } from './table.js';

export interface MemoryStoreOptions {
  /**
   * Persist to this file: the registry is written atomically (temp file, fsync, rename)
   * every `persistInterval` while something changed, and on `close()`; it is read back on
   * `open()`. What can be lost on a crash: changes of the last `persistInterval`, queued
   * triggers and retries, and run reports (they are not persisted). A one-shot that was
   * running at the crash is in the file and runs again (at-least-once).
   */
  file?: string;
  /** How often a changed registry is written to `file`. Default `'1s'`. */
  persistInterval?: Duration;
  /** The store's clock; default `Date.now`. Tests inject one. */
  clock?: () => number;
}

interface TaskQueue {
  readonly id: number;
  readonly name: string;
  readonly heap: SlotHeap;
  readonly extra: ObjectHeap<ExtraOccurrence>;
}

interface Lease {
  readonly token: string;
  readonly slot: number;
  readonly gen: number;
  readonly task: string;
  readonly uid: string;
  readonly dueAt: number;
  readonly attempt: number;
  readonly kind: OccurrenceKind;
  readonly maxAttempts: number;
  readonly startedAt: number;
  expiresAt: number;
}

/**
 * Leases by token without a `Map`. A token starts with its lease's index in `#items`
 * (`"12.<uuid>"`), so a lookup is an array read plus a string compare, and an index is reused
 * once its lease is gone. Why not a Map: one lease is added and deleted per run, and V8 links
 * every hash table a Map outgrows or compacts to its successor (for live iterators); once one
 * of them is promoted, the whole chain and every lease and run it references survive minor
 * GCs until the next full GC (measured: ~1.6 KB promoted per run at 10k runs/s, 4-14 ms
 * scavenges, p99 fire lateness 10-17 ms).
 */
class LeaseTable {
  #items: (Lease | undefined)[] = [];
  #free: number[] = [];

  /** Live leases at their indexes, `undefined` in free ones. Deleting while looping is fine. */
  get items(): readonly (Lease | undefined)[] {
    return this.#items;
  }

  /** Adds the lease `make` builds around a fresh token. */
  add(make: (token: string) => Lease): Lease {
    const index = this.#free.pop() ?? this.#items.length;
    const lease = make(`${index}.${randomUUID()}`);
    this.#items[index] = lease;
    return lease;
  }

  get(token: string): Lease | undefined {
    const lease = this.#items[parseInt(token, 10)];
    return lease !== undefined && lease.token === token ? lease : undefined;
  }

  delete(lease: Lease): void {
    const index = parseInt(lease.token, 10);
    if (this.#items[index] !== lease) return;
    this.#items[index] = undefined;
    this.#free.push(index);
  }

  clear(): void {
    this.#items = [];
    this.#free = [];
  }
}

const ONCE: ScheduleSpec = Object.freeze({ kind: 'once' });
/** `run-all` never queues more than this many catch-up occurrences at once. */
export const MAX_CATCHUP = 1000;
const FILE_FORMAT = 'schedkit-memory-store';

/**
 * The embedded store: everything in this process's memory, optionally persisted to a file.
 * Per task, a heap of schedule slots by due time and a small heap of extra occurrences;
 * the executor arms ONE timer for the earliest of them (`ClaimResult.nextDueAt`).
 */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  readonly #table = new ScheduleTable();
  readonly #index = new SlotIndex(this.#table);
  readonly #queues = new Map<string, TaskQueue>();
  readonly #queueById: TaskQueue[] = [];
  readonly #leases = new LeaseTable();
  readonly #locks = new Map<string, { token: string; expiresAt: number }>();
  /** An array, not a Set: #notify runs on every upsert and must not allocate an iterator. */
  #listeners: ((dueAt: number) => void)[] = [];
  readonly #clock: () => number;
  readonly #file: string | undefined;
  readonly #persistMs: number;
  #seq = 0;
  #opened = false;
  #loaded = false;
  #refs = 0;
  #dirty = false;
  #persistTimer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? Date.now;
    this.#file = options.file;
    this.#persistMs = parseDuration(options.persistInterval ?? 1000, 'MemoryStore.persistInterval', { allowZero: false });
  }

  /**
   * Reference-counted: several schedulers may share one store; the last `close()` persists.
   * The file is read on the first open only: a store reopened after `close()` keeps what it
   * holds in memory (reading the file again would replace live schedules and drop queued
   * triggers).
   */
  async open(): Promise<void> {
    if (this.#opened) {
      this.#refs++;
      return;
    }
    if (this.#file !== undefined && !this.#loaded) await this.#load(this.#file);
    this.#loaded = true;
    this.#opened = true;
    this.#refs++;
    if (this.#file !== undefined) {
      this.#persistTimer = setInterval(() => {
        if (this.#dirty) void this.#persist().catch(() => undefined);
      }, this.#persistMs);
      this.#persistTimer.unref();
    }
  }

  async #load(file: string): Promise<void> {
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new StoreError(`MemoryStore: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    let inputs: ScheduleInput[];
    try {
      const doc = JSON.parse(text) as { format?: unknown; registry?: unknown };
      if (doc.format !== FILE_FORMAT || typeof doc.registry !== 'object' || doc.registry === null) {
        throw new Error(`not a ${FILE_FORMAT} file`);
      }
      // A well-formed file with a bad entry is corrupt too (a StoreError, as documented).
      inputs = loadRegistry(doc.registry, file);
    } catch (err) {
      throw new StoreError(`MemoryStore: ${file} is corrupt: ${(err as Error).message}`, { cause: err });
    }
    await this.upsertMany(inputs);
    this.#dirty = false;
  }

  async close(): Promise<void> {
    if (!this.#opened) return;
    if (this.#refs > 0) this.#refs--;
    if (this.#refs > 0) return;
    this.#opened = false;
    clearInterval(this.#persistTimer);
    this.#persistTimer = undefined;
    if (this.#file !== undefined) {
      await this.#writing;
      if (this.#dirty) await this.#persist();
    }
  }

  /** Writes the registry now if it changed (also done on the interval and on close). */
  async flush(): Promise<void> {
    await this.#writing;
    if (this.#dirty) await this.#persist();
  }

  #persist(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return Promise.resolve();
    this.#dirty = false;
    const body = JSON.stringify({ format: FILE_FORMAT, version: 1, savedAt: this.#clock(), registry: this.#dump() });
    const write = (async (): Promise<void> => {
      const tmp = `${file}.${process.pid}.tmp`;
      try {
        await mkdir(dirname(file), { recursive: true });
        const handle = await open(tmp, 'w');
        try {
          await handle.writeFile(body);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(tmp, file);
        const dir = await open(dirname(file), 'r');
        try {
          await dir.sync();
        } finally {
          await dir.close();
        }
      } catch (err) {
        this.#dirty = true;
        throw new StoreError(`MemoryStore: cannot write ${file}: ${(err as Error).message}`, { cause: err });
      }
    })();
    const settled: Promise<void> = write.then(
      () => this.#doneWriting(settled),
      () => this.#doneWriting(settled),
    );
    this.#writing = settled;
    return write;
  }

  #doneWriting(which: Promise<void>): void {
    if (this.#writing === which) this.#writing = undefined;
  }

  now(): Promise<number> {
    return Promise.resolve(this.#clock());
  }

  nowSync(): number {
    return this.#clock();
  }

  // ---------------------------------------------------------------- schedules

  upsert(input: ScheduleInput): Promise<number | null> {
    return Promise.resolve(this.upsertNow(input));
  }

  upsertNow(input: ScheduleInput): number | null {
    const slot = this.#upsert(input, this.#clock());
    const due = this.#table.due[slot] as number;
    return Number.isNaN(due) ? null : due;
  }

  upsertMany(inputs: readonly ScheduleInput[]): Promise<void> {
    const now = this.#clock();
    for (const input of inputs) this.#upsert(input, now);
    return Promise.resolve();
  }

  #upsert(input: ScheduleInput, now: number): number {
    const t = this.#table;
    const q = this.#queue(input.task);
    let slot = this.#index.find(q.id, input.uid);
    let carried: Meta | undefined;
    if (slot !== -1) {
      // Replace: fence out the old definition's runs and queued occurrences (new gen),
      // keep its report and history.
      q.heap.remove(slot);
      carried = t.meta[slot];
      this.#index.delete(slot);
      t.release(slot);
    }
    const due = resolveFirst(input.first, input.spec, now);
    slot = t.alloc();
    t.task[slot] = q.id;
    t.uid[slot] = input.uid;
    t.due[slot] = due ?? Number.NaN;
    t.seq[slot] = this.#seq++;
    t.timeout[slot] = input.timeout;
    t.flags[slot] = input.enabled ? FLAG_ENABLED : 0;
    t.params[slot] = input.params;
    const spec = input.spec.kind === 'every' ? { ...input.spec, anchor: due ?? now } : input.spec;
    if (spec.kind !== 'once' || carried !== undefined) {
      const meta = newMeta(spec.kind === 'once' ? undefined : spec);
      if (carried !== undefined) copyReport(carried, meta);
      t.meta[slot] = meta;
    }
    this.#index.insert(slot);
    if (input.enabled && due !== null) {
      q.heap.push(slot);
      this.#notify(due);
    }
    this.#dirty = true;
    return slot;
  }

  remove(task: string, uid: string): Promise<boolean> {
    const q = this.#queues.get(task);
    const slot = this.#find(q, uid);
    if (q === undefined || slot === -1) return Promise.resolve(false);
    this.#delete(q, slot);
    return Promise.resolve(true);
  }

  #delete(q: TaskQueue, slot: number): void {
    q.heap.remove(slot);
    this.#index.delete(slot);
    const hadExtra = (this.#table.meta[slot]?.pending ?? 0) > 0;
    this.#table.release(slot);
    if (hadExtra) q.extra.filter((o) => o.slot !== slot || o.gen === this.#table.gen[slot]);
    this.#dirty = true;
  }

  get(task: string, uid: string): Promise<ScheduleState | null> {
    const slot = this.#find(this.#queues.get(task), uid);
    return Promise.resolve(slot === -1 ? null : this.#state(slot));
  }

  list(filter: ListFilter = {}): Promise<ScheduleState[]> {
    const out: ScheduleState[] = [];
    const only = filter.task === undefined ? undefined : this.#queues.get(filter.task);
    if (filter.task !== undefined && only === undefined) return Promise.resolve(out);
    for (const slot of this.#table.slots()) {
      if (only === undefined || this.#table.task[slot] === only.id) out.push(this.#state(slot));
    }
    return Promise.resolve(out);
  }

  update(task: string, uid: string, patch: SchedulePatch): Promise<ScheduleState | null> {
    const q = this.#queues.get(task);
    const slot = this.#find(q, uid);
    if (q === undefined || slot === -1) return Promise.resolve(null);
    const t = this.#table;
    const now = this.#clock();
    if (patch.params !== undefined || 'params' in patch) t.params[slot] = patch.params;
    if (patch.timeout !== undefined) t.timeout[slot] = patch.timeout;
    if (patch.spec !== undefined) {
      const due = resolveFirst(patch.first ?? { next: true }, patch.spec, now);
      const spec = patch.spec.kind === 'every' ? { ...patch.spec, anchor: due ?? now } : patch.spec;
      const meta = this.#meta(slot);
      meta.spec = spec.kind === 'once' ? undefined : spec;
      meta.claimed = false;
      q.heap.remove(slot);
      t.due[slot] = due ?? Number.NaN;
    }
    if (patch.enabled !== undefined) t.flags[slot] = patch.enabled ? FLAG_ENABLED : 0;
    q.heap.remove(slot);
    const due = t.due[slot] as number;
    if (((t.flags[slot] as number) & FLAG_ENABLED) !== 0 && !Number.isNaN(due) && !this.#onceClaimed(slot)) {
      q.heap.push(slot);
      this.#notify(due);
    }
    this.#dirty = true;
    return Promise.resolve(this.#state(slot));
  }

  /** A one-shot whose occurrence was already claimed keeps its due time only for snapshots. */
  #onceClaimed(slot: number): boolean {
    const meta = this.#table.meta[slot];
    return meta !== undefined && meta.spec === undefined && meta.claimed;
  }

  trigger(task: string, uid: string): Promise<boolean> {
    const q = this.#queues.get(task);
    const slot = this.#find(q, uid);
    if (q === undefined || slot === -1) return Promise.resolve(false);
    const now = this.#clock();
    this.#pushExtra(q, slot, now, now, 1, 'trigger');
    return Promise.resolve(true);
  }

  depths(): Promise<Map<string, { due: number; scheduled: number; running: number }>> {
    const now = this.#clock();
    const t = this.#table;
    const counts = this.#queueById.map(() => ({ due: 0, scheduled: 0, running: 0 }));
    for (const slot of t.slots()) {
      const c = counts[t.task[slot] as number];
      if (c === undefined) continue;
      c.running += t.meta[slot]?.running ?? 0;
      if ((t.pos[slot] as number) >= 0) {
        if ((t.due[slot] as number) <= now) c.due++;
        else c.scheduled++;
      }
    }
    const out = new Map<string, { due: number; scheduled: number; running: number }>();
    for (const q of this.#queues.values()) {
      const c = counts[q.id] as { due: number; scheduled: number; running: number };
      for (const o of q.extra.values()) {
        if (o.gen !== t.gen[o.slot]) continue;
        if (o.at <= now) c.due++;
        else c.scheduled++;
      }
      out.set(q.name, c);
    }
    return Promise.resolve(out);
  }

  // ---------------------------------------------------------------- claiming

  claim(request: ClaimRequest): Promise<ClaimResult> {
    const now = this.#clock();
    const lost = this.#expireLeases(now);
    const runs: ClaimedRun[] = [];
    const skipped: SkippedOccurrence[] = [];
    let budget = request.limit;
    for (const [task, policy] of request.tasks) {
      if (budget <= 0) break;
      const q = this.#queues.get(task);
      if (q === undefined) continue;
      const limit = Math.min(budget, policy.limit);
      const before = runs.length;
      this.#claimTask(q, policy, now, limit, runs, skipped);
      budget -= runs.length - before;
    }
    if (runs.length > 0 || skipped.length > 0 || lost.length > 0) this.#dirty = true;
    return Promise.resolve({ runs, skipped, lost, nextDueAt: this.#nextDue(request), now });
  }

  #claimTask(q: TaskQueue, policy: TaskPolicy, now: number, limit: number, runs: ClaimedRun[], skipped: SkippedOccurrence[]): void {
    const t = this.#table;
    let taken = 0;
    while (taken < limit) {
      const slot = q.heap.peek();
      const mainAt = slot === -1 ? Infinity : (t.due[slot] as number);
      let occ = q.extra.peek();
      while (occ !== undefined && occ.gen !== t.gen[occ.slot]) {
        q.extra.pop(); // fenced: its schedule was replaced or removed
        occ = q.extra.peek();
      }
      const extraAt = occ === undefined ? Infinity : occ.at;
      if (mainAt > now && extraAt > now) return;
      const run =
        mainAt <= extraAt
          ? this.#takeScheduled(q, slot, policy, now, skipped)
          : this.#takeExtra(q.extra.pop() as ExtraOccurrence, policy, now);
      if (run !== null) {
        runs.push(run);
        taken++;
      }
    }
  }

  /** Pops a schedule's due occurrence, advances a recurring schedule, applies policies. */
  #takeScheduled(q: TaskQueue, slot: number, policy: TaskPolicy, now: number, skipped: SkippedOccurrence[]): ClaimedRun | null {
    const t = this.#table;
    q.heap.remove(slot);
    const due = t.due[slot] as number;
    const meta = this.#meta(slot);
    const spec = meta.spec;
    const uid = t.uid[slot] as string;
    let runDue = due;
    if (spec === undefined) {
      meta.claimed = true;
    } else {
      let next = nextDue(spec, due);
      if (next !== null && next <= now) {
        // Missed occurrences (nothing claimed them in time): the misfire policy decides.
        if (policy.misfire === 'skip') {
          next = nextDue(spec, now);
          this.#advance(q, slot, next);
          this.#skip(meta, q.name, uid, due, now, 'misfire', skipped);
          return null;
        }
        if (policy.misfire === 'run-all') {
          const from = due >= now - policy.catchupWindow ? due : nextDue(spec, now - policy.catchupWindow - 1);
          const times = from === null ? [] : dueTimesBetween(spec, from, now, MAX_CATCHUP);
          if (times.length > 0) {
            runDue = times[0] as number;
            for (let i = 1; i < times.length; i++) this.#pushExtra(q, slot, times[i] as number, now, 1, 'catchup');
          } else {
            runDue = latestDueAtOrBefore(spec, due, now);
          }
        } else {
          runDue = latestDueAtOrBefore(spec, due, now);
        }
        next = nextDue(spec, now);
      }
      this.#advance(q, slot, next);
    }
    if (meta.running > 0 && policy.overlap !== 'allow' && policy.overlap !== 'cancel-previous') {
      if (spec === undefined) {
        this.#wait(meta, slot, runDue, now, 1, 'scheduled');
        return null;
      }
      if (policy.overlap === 'buffer-one' && !meta.waiting.some((o) => o.kind === 'buffered')) {
        this.#wait(meta, slot, runDue, now, 1, 'buffered');
        return null;
      }
      this.#skip(meta, q.name, uid, runDue, now, 'overlap', skipped);
      return null;
    }
    return this.#lease(slot, runDue, 1, 'scheduled', policy, now);
  }

  #takeExtra(occ: ExtraOccurrence, policy: TaskPolicy, now: number): ClaimedRun | null {
    const meta = this.#meta(occ.slot);
    if (meta.running > 0 && policy.overlap !== 'allow' && policy.overlap !== 'cancel-previous') {
      meta.waiting.push(occ); // still pending: released when the running run settles
      return null;
    }
    meta.pending--;
    return this.#lease(occ.slot, occ.dueAt, occ.attempt, occ.kind, policy, now);
  }

  #advance(q: TaskQueue, slot: number, next: number | null): void {
    const t = this.#table;
    t.due[slot] = next ?? Number.NaN;
    t.seq[slot] = this.#seq++;
    if (next !== null && ((t.flags[slot] as number) & FLAG_ENABLED) !== 0) q.heap.push(slot);
  }

  #skip(meta: Meta, task: string, uid: string, dueAt: number, now: number, reason: 'overlap' | 'misfire', skipped: SkippedOccurrence[]): void {
    meta.skips++;
    pushHistory(meta, { dueAt, attempt: 1, kind: 'scheduled', outcome: 'skipped', startedAt: null, finishedAt: now, durationMs: null, error: `skipped (${reason})` });
    skipped.push({ task, uid, dueAt, reason });
  }

  #wait(meta: Meta, slot: number, dueAt: number, now: number, attempt: number, kind: OccurrenceKind): void {
    meta.pending++;
    meta.waiting.push({ slot, gen: this.#table.gen[slot] as number, dueAt, at: now, seq: this.#seq++, attempt, kind });
  }

  #lease(slot: number, dueAt: number, attempt: number, kind: OccurrenceKind, policy: TaskPolicy, now: number): ClaimedRun {
    const t = this.#table;
    const meta = this.#meta(slot);
    const supersedes: string[] = [];
    if (meta.running > 0 && policy.overlap === 'cancel-previous') {
      for (const lease of this.#leases.items) {
        if (lease !== undefined && lease.slot === slot && lease.gen === t.gen[slot]) {
          this.#leases.delete(lease);
          meta.running--;
          pushHistory(meta, { dueAt: lease.dueAt, attempt: lease.attempt, kind: lease.kind, outcome: 'lost', startedAt: lease.startedAt, finishedAt: now, durationMs: now - lease.startedAt, error: 'cancelled by a newer occurrence (overlap: cancel-previous)' });
          supersedes.push(lease.token);
        }
      }
    }
    const task = this.#queueById[t.task[slot] as number]?.name as string;
    const uid = t.uid[slot] as string;
    const lease = this.#leases.add((token) => ({ token, slot, gen: t.gen[slot] as number, task, uid, dueAt, attempt, kind, maxAttempts: policy.attempts, startedAt: now, expiresAt: now + policy.leaseMs }));
    const token = lease.token;
    meta.running++;
    meta.lastExecutedAt = now;
    meta.attempts = attempt;
    return { token, task, uid, params: t.params[slot], dueAt, attempt, kind, leaseExpiresAt: lease.expiresAt, supersedes };
  }

  #expireLeases(now: number): LostLease[] {
    const lost: LostLease[] = [];
    for (const lease of this.#leases.items) {
      if (lease === undefined || lease.expiresAt > now) continue;
      this.#leases.delete(lease);
      const t = this.#table;
      if (lease.gen !== t.gen[lease.slot]) continue;
      const meta = this.#meta(lease.slot);
      const q = this.#queueById[t.task[lease.slot] as number] as TaskQueue;
      const requeued = lease.attempt < lease.maxAttempts;
      meta.running--;
      const error = 'lease expired: the executor stopped renewing it (crashed, stalled or lost its connection)';
      pushHistory(meta, { dueAt: lease.dueAt, attempt: lease.attempt, kind: lease.kind, outcome: 'lost', startedAt: lease.startedAt, finishedAt: now, durationMs: null, error });
      meta.lastError = error;
      meta.lastFinishedAt = now;
      if (requeued) this.#pushExtra(q, lease.slot, lease.dueAt, now, lease.attempt + 1, 'retry');
      else meta.failures++;
      lost.push({ token: lease.token, task: lease.task, uid: lease.uid, dueAt: lease.dueAt, attempt: lease.attempt, kind: lease.kind, requeued });
      this.#settled(q, lease.slot, meta, now);
    }
    return lost;
  }

  #nextDue(request: ClaimRequest): number | null {
    let next = Infinity;
    const t = this.#table;
    for (const task of request.tasks.keys()) {
      const q = this.#queues.get(task);
      if (q === undefined) continue;
      const slot = q.heap.peek();
      if (slot !== -1) next = Math.min(next, t.due[slot] as number);
      const occ = q.extra.peek();
      if (occ !== undefined) next = Math.min(next, occ.at);
    }
    for (const lease of this.#leases.items) if (lease !== undefined) next = Math.min(next, lease.expiresAt);
    return next === Infinity ? null : next;
  }

  renew(tokens: readonly string[], leaseMs: number): Promise<boolean[]> {
    const now = this.#clock();
    return Promise.resolve(
      tokens.map((token) => {
        const lease = this.#leases.get(token);
        if (lease === undefined || lease.expiresAt <= now) return false;
        lease.expiresAt = now + leaseMs;
        return true;
      }),
    );
  }

  complete(completions: readonly Completion[]): Promise<CompletionStatus[]> {
    const now = this.#clock();
    const t = this.#table;
    const out = completions.map((c): CompletionStatus => {
      const lease = this.#leases.get(c.token);
      if (lease === undefined || lease.expiresAt <= now) return 'lease-lost';
      this.#leases.delete(lease);
      if (lease.gen !== t.gen[lease.slot]) return 'ok'; // schedule replaced or removed meanwhile
      const meta = this.#meta(lease.slot);
      const q = this.#queueById[t.task[lease.slot] as number] as TaskQueue;
      meta.running--;
      if (c.outcome === 'abandon') {
        this.#pushExtra(q, lease.slot, lease.dueAt, now, lease.attempt, lease.kind);
      } else {
        const error = c.outcome === 'failure' ? (c.error ?? 'failed') : null;
        meta.lastFinishedAt = now;
        meta.lastDurationMs = c.durationMs;
        meta.lastError = error;
        if (c.outcome === 'success') {
          meta.successes++;
          meta.lastResult = c.result ?? null;
        } else if (c.retryAt === undefined) {
          meta.failures++;
        }
        pushHistory(meta, { dueAt: lease.dueAt, attempt: lease.attempt, kind: lease.kind, outcome: c.outcome, startedAt: c.startedAt, finishedAt: now, durationMs: c.durationMs, error });
        if (c.outcome === 'failure' && c.retryAt !== undefined) {
          this.#pushExtra(q, lease.slot, lease.dueAt, c.retryAt, lease.attempt + 1, 'retry');
        }
      }
      this.#settled(q, lease.slot, meta, now);
      return 'ok';
    });
    this.#dirty = true;
    return Promise.resolve(out);
  }

  /** After a run ends: release held-back occurrences; drop a one-shot that has nothing left. */
  #settled(q: TaskQueue, slot: number, meta: Meta, now: number): void {
    if (meta.running > 0) return;
    if (meta.waiting.length > 0) {
      const waiting = meta.waiting;
      meta.waiting = [];
      for (const o of waiting) q.extra.push({ ...o, at: Math.min(o.at, now) });
      this.#notify(now);
      return;
    }
    const t = this.#table;
    const finished = meta.pending === 0 && (t.pos[slot] as number) < 0 && (meta.spec === undefined ? meta.claimed : Number.isNaN(t.due[slot]));
    if (finished) this.#delete(q, slot);
  }

  #pushExtra(q: TaskQueue, slot: number, dueAt: number, at: number, attempt: number, kind: OccurrenceKind): void {
    const meta = this.#meta(slot);
    meta.pending++;
    q.extra.push({ slot, gen: this.#table.gen[slot] as number, dueAt, at, seq: this.#seq++, attempt, kind });
    this.#dirty = true;
    this.#notify(at);
  }

  subscribe(listener: (dueAt: number) => void): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  #notify(dueAt: number): void {
    const listeners = this.#listeners;
    for (let i = 0; i < listeners.length; i++) (listeners[i] as (dueAt: number) => void)(dueAt);
  }

  // ---------------------------------------------------------------- locks

  acquireLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock();
    const held = this.#locks.get(key);
    if (held !== undefined && held.expiresAt > now) return Promise.resolve(false);
    this.#locks.set(key, { token, expiresAt: now + ttlMs });
    return Promise.resolve(true);
  }

  releaseLock(key: string, token: string): Promise<boolean> {
    const held = this.#locks.get(key);
    if (held === undefined || held.token !== token || held.expiresAt <= this.#clock()) return Promise.resolve(false);
    this.#locks.delete(key);
    return Promise.resolve(true);
  }

  extendLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock();
    const held = this.#locks.get(key);
    if (held === undefined || held.token !== token || held.expiresAt <= now) return Promise.resolve(false);
    held.expiresAt = now + ttlMs;
    return Promise.resolve(true);
  }

  // ---------------------------------------------------------------- snapshots

  snapshot(): Promise<RegistryDump> {
    return Promise.resolve(this.#dump());
  }

  #dump(): RegistryDump {
    const t = this.#table;
    // Only tasks with entries appear: no empty `task: {}` (schedward's bug).
    const out: RegistryDump = {};
    for (const slot of t.slots()) {
      const due = t.due[slot] as number;
      if (Number.isNaN(due)) continue;
      const entry: RegistryEntry = { iat: due, timeout: t.timeout[slot] as number };
      const params = t.params[slot];
      if (params !== undefined) entry.params = params;
      const spec = t.meta[slot]?.spec;
      if (spec?.kind === 'every') entry.every = spec.every;
      if (spec?.kind === 'cron') {
        entry.cron = spec.cron;
        if (spec.tz !== undefined) entry.tz = spec.tz;
      }
      if (((t.flags[slot] as number) & FLAG_ENABLED) === 0) entry.enabled = false;
      const task = this.#queueById[t.task[slot] as number]?.name as string;
      setOwn(ownEntry(out, task, () => ({})), t.uid[slot] as string, entry);
    }
    return out;
  }

  clear(): Promise<number> {
    const count = this.#table.live;
    for (const q of this.#queues.values()) {
      q.heap.clear();
      q.extra.filter(() => false);
    }
    this.#table.reset();
    this.#index.clear();
    this.#leases.clear();
    this.#locks.clear();
    this.#dirty = true;
    return Promise.resolve(count);
  }

  // ---------------------------------------------------------------- helpers

  #queue(task: string): TaskQueue {
    let q = this.#queues.get(task);
    if (q === undefined) {
      const table = this.#table;
      q = { id: this.#queueById.length, name: task, heap: new SlotHeap(() => table), extra: new ObjectHeap() };
      this.#queues.set(task, q);
      this.#queueById.push(q);
    }
    return q;
  }

  #find(q: TaskQueue | undefined, uid: string): number {
    return q === undefined ? -1 : this.#index.find(q.id, uid);
  }

  #meta(slot: number): Meta {
    let meta = this.#table.meta[slot];
    if (meta === undefined) {
      meta = newMeta(undefined);
      this.#table.meta[slot] = meta;
    }
    return meta;
  }

  #state(slot: number): ScheduleState {
    const t = this.#table;
    const meta = t.meta[slot];
    const spec = meta?.spec ?? ONCE;
    const due = t.due[slot] as number;
    const claimed = meta?.claimed === true;
    const enabled = ((t.flags[slot] as number) & FLAG_ENABLED) !== 0;
    return {
      task: this.#queueById[t.task[slot] as number]?.name as string,
      uid: t.uid[slot] as string,
      spec,
      params: t.params[slot],
      enabled,
      nextRunAt: Number.isNaN(due) || claimed ? null : due,
      dueAt: Number.isNaN(due) ? null : due,
      timeout: t.timeout[slot] as number,
      pending: meta?.pending ?? 0,
      report: {
        lastExecutedAt: meta?.lastExecutedAt ?? null,
        lastFinishedAt: meta?.lastFinishedAt ?? null,
        lastResult: meta?.lastResult ?? null,
        lastError: meta?.lastError ?? null,
        lastDurationMs: meta?.lastDurationMs ?? null,
        attempts: meta?.attempts ?? 0,
        running: meta?.running ?? 0,
        successes: meta?.successes ?? 0,
        failures: meta?.failures ?? 0,
        skips: meta?.skips ?? 0,
        history: meta === undefined ? [] : meta.history.slice(),
      },
    };
  }
}

function resolveFirst(first: FirstDue, spec: ScheduleSpec, now: number): number | null {
  if ('at' in first) return first.at;
  if ('in' in first) return now + first.in;
  if (spec.kind === 'every') return now + spec.every;
  return nextDue(spec, now);
}

function pushHistory(meta: Meta, record: RunRecord): void {
  meta.history.push(record);
  if (meta.history.length > HISTORY_LIMIT) meta.history.splice(0, meta.history.length - HISTORY_LIMIT);
}

function copyReport(from: Meta, to: Meta): void {
  to.lastExecutedAt = from.lastExecutedAt;
  to.lastFinishedAt = from.lastFinishedAt;
  to.lastResult = from.lastResult;
  to.lastError = from.lastError;
  to.lastDurationMs = from.lastDurationMs;
  to.attempts = from.attempts;
  to.successes = from.successes;
  to.failures = from.failures;
  to.skips = from.skips;
  to.history = from.history;
}

export type { JsonValue };
