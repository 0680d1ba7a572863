/**
 * Binary min-heaps used by MemoryStore. `SlotHeap` orders integer slots by keys kept in
 * typed arrays owned by the caller (no object per entry); `ObjectHeap` orders small
 * objects (extra occurrences, which are rare) by `(at, seq)`.
 */
export interface SlotKeys {
  /** Primary key per slot (due time). */
  readonly due: Float64Array;
  /** Tie-break per slot (insertion sequence: FIFO among equal due times). */
  readonly seq: Float64Array;
  /** Where each slot sits in its heap, -1 when in none. Maintained by the heap. */
  readonly pos: Int32Array;
}

export class SlotHeap {
  #items = new Int32Array(16);
  #size = 0;
  constructor(private keys: () => SlotKeys) {}

  get size(): number {
    return this.#size;
  }

  peek(): number {
    return this.#size === 0 ? -1 : (this.#items[0] as number);
  }

  push(slot: number): void {
    if (this.#size === this.#items.length) {
      const grown = new Int32Array(this.#items.length * 2);
      grown.set(this.#items);
      this.#items = grown;
    }
    this.#items[this.#size] = slot;
    this.keys().pos[slot] = this.#size;
    this.#size++;
    this.#up(this.#size - 1);
  }

  pop(): number {
    const top = this.peek();
    if (top !== -1) this.remove(top);
    return top;
  }

  remove(slot: number): void {
    const k = this.keys();
    const i = k.pos[slot] as number;
    if (i < 0) return;
    k.pos[slot] = -1;
    this.#size--;
    if (i === this.#size) return;
    const last = this.#items[this.#size] as number;
    this.#items[i] = last;
    k.pos[last] = i;
    this.#up(i);
    this.#down(k.pos[last]);
  }

  /** Empties the heap (slots' positions are reset by the caller's table). */
  clear(): void {
    this.#size = 0;
  }

  #less(a: number, b: number, k: SlotKeys): boolean {
    const da = k.due[a] as number;
    const db = k.due[b] as number;
    return da < db || (da === db && (k.seq[a] as number) < (k.seq[b] as number));
  }

  #up(i: number): void {
    const k = this.keys();
    const items = this.#items;
    const slot = items[i] as number;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as number;
      if (!this.#less(slot, p, k)) break;
      items[i] = p;
      k.pos[p] = i;
      i = parent;
    }
    items[i] = slot;
    k.pos[slot] = i;
  }

  #down(i: number): void {
    const k = this.keys();
    const items = this.#items;
    const n = this.#size;
    const slot = items[i] as number;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && this.#less(items[right] as number, items[child] as number, k)) child = right;
      const c = items[child] as number;
      if (!this.#less(c, slot, k)) break;
      items[i] = c;
      k.pos[c] = i;
      i = child;
    }
    items[i] = slot;
    k.pos[slot] = i;
  }
}

export interface Timed {
  readonly at: number;
  readonly seq: number;
}

export class ObjectHeap<T extends Timed> {
  #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  push(item: T): void {
    const items = this.#items;
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as T;
      if (!less(item, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = item;
  }

  pop(): T | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    const n = items.length;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && less(items[right] as T, items[child] as T)) child = right;
      const c = items[child] as T;
      if (!less(c, last)) break;
      items[i] = c;
      i = child;
    }
    items[i] = last;
    return top;
  }

  /** Keeps only items for which `keep` is true. */
  filter(keep: (item: T) => boolean): void {
    const kept = this.#items.filter(keep);
    this.#items = [];
    for (const item of kept) this.push(item);
  }

  values(): readonly T[] {
    return this.#items;
  }
}

function less(a: Timed, b: Timed): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
