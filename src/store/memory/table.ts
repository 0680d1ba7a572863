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
