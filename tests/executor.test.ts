/**
 * The executor's pipelining: a run's slot frees when its handler is done, so the next claim
 * goes out while the store still works on the completion; completions in flight are bounded
 * by `concurrency`, and a run keeps its lease (and its place in stop()) until the store
 * has answered its completion.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../src/index.js';
import type { Completion, CompletionStatus } from '../src/store/index.js';
import { schedulerTracker, sleep, waitFor } from './helpers.js';

/** A MemoryStore whose completions wait until `release()` is called. */
class GatedStore extends MemoryStore {
  gated = true;
  pending = 0;
  readonly answered: string[] = [];
  #release: (() => void)[] = [];

  override async complete(completions: readonly Completion[]): Promise<CompletionStatus[]> {
    this.pending += completions.length;
    if (this.gated) await new Promise<void>((resolve) => this.#release.push(resolve));
    const out = await super.complete(completions);
    this.pending -= completions.length;
    this.answered.push(...completions.map((c) => c.token));
    return out;
  }

  release(): void {
    this.gated = false;
    for (const release of this.#release.splice(0)) release();
  }
}

describe('executor pipelining', () => {
  const track = schedulerTracker();
  const gates: GatedStore[] = [];
  // Registered after the tracker's hook, so it runs before it (vitest runs after-hooks as a
  // stack): a failed test must not leave completions gated while its scheduler stops.
  afterEach(() => {
    for (const g of gates.splice(0)) g.release();
  });

  it('claims the next runs while completions are unanswered, at most `concurrency` of them in flight', async () => {
    const store = new GatedStore();
    gates.push(store);
    const s = track({ store, concurrency: 2 });
    const started: string[] = [];
    const succeeded: string[] = [];
    s.define('job', (run) => {
      started.push(run.uid);
    });
    s.on('run:success', (e) => succeeded.push(e.uid));
    const at = Date.now() - 1000;
    await s.scheduleMany('job', ['a', 'b', 'c', 'd', 'e', 'f'].map((uid) => ({ uid, at })));
    await s.start();
    // Two slots: two handlers ran, their completion waits; two more were claimed and ran
    // meanwhile; then four completions are in flight (2 x concurrency) and claiming stops.
    await waitFor(() => started.length === 4 && store.pending === 4, '4 started, 4 completions in flight');
    await sleep(100);
    expect(started).toHaveLength(4);
    expect(succeeded).toEqual([]);
    expect(store.answered).toEqual([]);
    // Runs whose completion is unanswered still hold their lease in the store.
    const running = (await s.list({ task: 'job' })).filter((r) => r.running > 0).map((r) => r.uid);
    expect(running.sort()).toEqual([...started].sort());
    store.release();
    await waitFor(() => succeeded.length === 6, 'all six succeeded');
    expect([...started].sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(new Set(started).size).toBe(6);
  });

  it('stop() waits for completions in flight before it returns', async () => {
    const store = new GatedStore();
    gates.push(store);
    const s = track({ store, concurrency: 4 });
    let ran = 0;
    s.define('job', () => {
      ran++;
    });
    await s.scheduleMany('job', [{ uid: 'a', at: Date.now() - 1000 }]);
    await s.start();
    await waitFor(() => ran === 1 && store.pending === 1, 'the run is done, its completion in flight');
    let stopped = false;
    const stopping = s.stop({ timeout: 5_000 }).then(() => {
      stopped = true;
    });
    await sleep(100);
    expect(stopped).toBe(false);
    store.release();
    await stopping;
    expect(store.answered).toHaveLength(1);
  });
});
