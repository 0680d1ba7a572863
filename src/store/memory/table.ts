import type { JsonValue } from '../../json.js';
import type { OccurrenceKind, RunRecord } from '../Store.js';
import type { ScheduleSpec } from '../../timing/spec.js';
import type { SlotKeys } from './heap.js';

/**
 * Schedules as a struct of arrays: one integer slot per schedule, its fields in typed arrays.
 * A million one-shot schedules then cost about a hundred heap bytes each (no object header,
 * no boxed due time) instead of the ~280 B of a `setTimeout`. Everything that only some
 * schedules need (recurring spec, reports, running runs) lives in a lazily made `Meta`.
 */
export const FLAG_ENABLED = 1;

/** An occurrence queued beside a schedule's scheduled one (trigger, retry, catch-up...). */
export interface ExtraOccurrence {
  readonly slot: number;
  readonly gen: number;
  readonly dueAt: number;
  /** When it may run (retry time; now for triggers). */
  readonly at: number;
  readonly seq: number;
  readonly attempt: number;
  readonly kind: OccurrenceKind;
}

export interface Meta {
  spec: ScheduleSpec | undefined; // undefined = once
  running: number;
  /** A one-shot whose occurrence has been claimed (it stays until that run settles). */
  claimed: boolean;
  /** Extra occurrences queued for this schedule (in the task's extra heap or `waiting`). */
  pending: number;
  /** Occurrences held back by the overlap policy until `running` drops to 0. */
  waiting: ExtraOccurrence[];
  lastExecutedAt: number | null;
  lastFinishedAt: number | null;
  lastResult: JsonValue | null;
  lastError: string | null;
  lastDurationMs: number | null;
  attempts: number;
  successes: number;
  failures: number;
  skips: number;
  history: RunRecord[];
}

export function newMeta(spec: ScheduleSpec | undefined): Meta {
  return {
    spec,
    running: 0,
    claimed: false,
    pending: 0,
    waiting: [],
    lastExecutedAt: null,
    lastFinishedAt: null,
    lastResult: null,
    lastError: null,
    lastDurationMs: null,
    attempts: 0,
    successes: 0,
    failures: 0,
    skips: 0,
    history: [],
  };
}

export class ScheduleTable implements SlotKeys {
  due = new Float64Array(0);
  seq = new Float64Array(0);
  pos = new Int32Array(0);
  /** The delay originally asked for (schedward's `timeout`). */
  timeout = new Float64Array(0);
  gen = new Uint32Array(0);
  task = new Int32Array(0);
  flags = new Uint8Array(0);
  uid: (string | undefined)[] = [];
  params: (JsonValue | undefined)[] = [];
  meta: (Meta | undefined)[] = [];
  #free: number[] = [];
  #next = 0;
  #capacity = 0;
  #live = 0;

  get live(): number {
    return this.#live;
  }

  /** Every slot that holds a schedule, in slot order. */
  *slots(): Generator<number> {
    for (let slot = 0; slot < this.#next; slot++) if (this.uid[slot] !== undefined) yield slot;
  }

  alloc(): number {
    let slot = this.#free.pop();
    if (slot === undefined) {
      if (this.#next === this.#capacity) this.#grow();
      slot = this.#next++;
    }
    this.pos[slot] = -1;
    this.gen[slot] = ((this.gen[slot] as number) + 1) >>> 0;
    this.#live++;
    return slot;
  }

  release(slot: number): void {
    this.uid[slot] = undefined;
    this.params[slot] = undefined;
    this.meta[slot] = undefined;
    this.due[slot] = Number.NaN;
    this.pos[slot] = -1;
    this.gen[slot] = ((this.gen[slot] as number) + 1) >>> 0;
    this.#free.push(slot);
    this.#live--;
  }

  reset(): void {
    this.#free = [];
    this.#next = 0;
    this.#live = 0;
    this.uid = [];
    this.params = [];
    this.meta = [];
    this.pos.fill(-1);
  }

  #grow(): void {
    const cap = this.#capacity === 0 ? 1024 : Math.ceil(this.#capacity * 1.5);
    const f64 = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.due = f64(this.due);
    this.seq = f64(this.seq);
    this.timeout = f64(this.timeout);
    const pos = new Int32Array(cap).fill(-1);
    pos.set(this.pos);
    this.pos = pos;
    const gen = new Uint32Array(cap);
    gen.set(this.gen);
    this.gen = gen;
    const task = new Int32Array(cap);
    task.set(this.task);
    this.task = task;
    const flags = new Uint8Array(cap);
    flags.set(this.flags);
    this.flags = flags;
    this.#capacity = cap;
  }
}

/**
 * `(task id, uid) -> slot`, open addressing with linear probing over an Int32Array. The keys
 * are the table's own `task`/`uid` columns, so an entry costs 4-8 bytes instead of a `Map`
 * entry's ~40, and a lookup hashes the uid once with FNV-1a seeded per process (so
 * precomputed colliding uids cannot be sent to degrade it). Deletion shifts entries back,
 * so no tombstones accumulate.
 */
export class SlotIndex {
  /**
   * Bucket `b` is `#buckets[2b]` = slot (-1 = empty) and `#buckets[2b + 1]` = the key's full
   * hash, side by side so a probe touches one cache line (at a million schedules the index is
   * 16 MB and nearly every first probe is a cache miss; two arrays made it two misses).
   */
  #buckets = SlotIndex.#empty(1024);
  #mask = 1023;
  #size = 0;
  readonly #seed = (Math.random() * 0x7fffffff) | 0;
  /** The latest key hashed: an upsert's `find` and `insert` hash the same uid once. */
  #lastUid: string | undefined;
  #lastTask = -1;
  #lastHash = 0;
  constructor(private readonly table: ScheduleTable) {}

  get size(): number {
    return this.#size;
  }

  static #empty(buckets: number): Int32Array {
    const a = new Int32Array(buckets * 2);
    for (let b = 0; b < a.length; b += 2) a[b] = -1;
    return a;
  }

  #hash(taskId: number, uid: string): number {
    if (uid === this.#lastUid && taskId === this.#lastTask) return this.#lastHash;
    let h = (0x811c9dc5 ^ this.#seed ^ Math.imul(taskId, 0x9e3779b1)) | 0;
    for (let i = 0; i < uid.length; i++) {
      h ^= uid.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    this.#lastUid = uid;
    this.#lastTask = taskId;
    this.#lastHash = h;
    return h;
  }

  find(taskId: number, uid: string): number {
    const t = this.table;
    const buckets = this.#buckets;
    const h = this.#hash(taskId, uid);
    let i = h & this.#mask;
    for (;;) {
      const slot = buckets[2 * i] as number;
      if (slot === -1) return -1;
      if (buckets[2 * i + 1] === h && t.uid[slot] === uid && t.task[slot] === taskId) return slot;
      i = (i + 1) & this.#mask;
    }
  }

  /** Adds `slot` under its table key; the key must not be present. */
  insert(slot: number): void {
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#resize((this.#mask + 1) * 2);
    this.#place(slot, this.#hash(this.table.task[slot] as number, this.table.uid[slot] as string));
    this.#size++;
  }

  delete(slot: number): void {
    const buckets = this.#buckets;
    const mask = this.#mask;
    let i = this.#hash(this.table.task[slot] as number, this.table.uid[slot] as string) & mask;
    while (buckets[2 * i] !== slot) {
      if (buckets[2 * i] === -1) return;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: move later entries of the probe run into the hole.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const s = buckets[2 * j] as number;
      if (s === -1) break;
      const home = (buckets[2 * j + 1] as number) & mask;
      // Move s into the hole when its home is not in the cyclic range (hole, j].
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        buckets[2 * hole] = s;
        buckets[2 * hole + 1] = buckets[2 * j + 1] as number;
        hole = j;
      }
    }
    buckets[2 * hole] = -1;
    this.#size--;
  }

  clear(): void {
    this.#buckets = SlotIndex.#empty(1024);
    this.#mask = 1023;
    this.#size = 0;
    this.#lastUid = undefined;
  }

  #place(slot: number, h: number): void {
    const buckets = this.#buckets;
    let i = h & this.#mask;
    while (buckets[2 * i] !== -1) i = (i + 1) & this.#mask;
    buckets[2 * i] = slot;
    buckets[2 * i + 1] = h;
  }

  #resize(capacity: number): void {
    const old = this.#buckets;
    this.#buckets = SlotIndex.#empty(capacity);
    this.#mask = capacity - 1;
    for (let b = 0; b < old.length; b += 2) {
      const slot = old[b] as number;
      if (slot !== -1) this.#place(slot, old[b + 1] as number);
    }
  }
}
