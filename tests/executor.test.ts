/**
 * The executor's pipelining: a run's slot frees when its handler is done, so the next claim
 * goes out while the store still works on the completion; completions in flight are bounded
 * by `concurrency`, and a run keeps its lease (and its place in stop()) until the store
 * has answered its completion.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore, type Scheduler } from '../src/index.js';
import type { ClaimRequest, ClaimResult, Completion, CompletionStatus } from '../src/store/index.js';
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

/** stop() on `s` is still pending 100 ms on; it returns once `release()` lets the store answer. */
async function stopWaitsFor(s: Scheduler, release: () => void): Promise<void> {
  let stopped = false;
  const stopping = s.stop({ timeout: 5_000 }).then(() => {
    stopped = true;
  });
  await sleep(100);
  expect(stopped).toBe(false);
  release();
  await stopping;
}

describe('executor pipelining', () => {
  const track = schedulerTracker();
  const gates: GatedStore[] = [];
  // Registered after the tracker's hook, so it runs before it (vitest runs after-hooks as a
  // stack): a failed test must not leave completions gated while its scheduler stops.
  afterEach(() => {
    for (const g of gates.splice(0)) g.release();
  });

  it('claims the next runs while completions are unanswered, at most 3 x `concurrency` leases held', async () => {
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
    const uids = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    await s.scheduleMany('job', uids.map((uid) => ({ uid, at })));
    await s.start();
    // Two slots: two handlers ran, their completion waits; more were claimed (ahead, since a
    // backlog lasts and handlers are quick) and ran meanwhile, until the executor holds
    // 3 x concurrency leases, all of runs done but not yet recorded; then claiming stops.
    await waitFor(() => started.length === 6 && store.pending > 0, '6 started, completions in flight');
    await sleep(100);
    expect(started).toHaveLength(6);
    expect(succeeded).toEqual([]);
    expect(store.answered).toEqual([]);
    // Runs whose completion is unanswered still hold their lease in the store.
    const running = (await s.list({ task: 'job' })).filter((r) => r.running > 0).map((r) => r.uid);
    expect(running.sort()).toEqual([...started].sort());
    store.release();
    await waitFor(() => succeeded.length === 8, 'all eight succeeded');
    expect([...started].sort()).toEqual(uids);
    expect(new Set(started).size).toBe(8);
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
    await stopWaitsFor(s, () => store.release());
    expect(store.answered).toHaveLength(1);
  });

  it('stop() waits for a claim in flight and gives its runs back before it returns', async () => {
    class SlowClaims extends MemoryStore {
      waiting = 0;
      #release: (() => void)[] = [];
      override async claim(request: ClaimRequest): Promise<ClaimResult> {
        this.waiting++;
        await new Promise<void>((resolve) => this.#release.push(resolve));
        return super.claim(request);
      }
      release(): void {
        for (const release of this.#release.splice(0)) release();
      }
    }
    const store = new SlowClaims();
    const s = track({ store, concurrency: 4 });
    let ran = 0;
    s.define('job', () => {
      ran++;
    });
    const at = Date.now() - 1000;
    await s.scheduleMany('job', ['a', 'b', 'c'].map((uid) => ({ uid, at })));
    await s.start();
    await waitFor(() => store.waiting === 1, 'a claim in flight');
    await stopWaitsFor(s, () => store.release());
    // The claim took all three; stopping, it gave them back: none ran, none is held.
    expect(ran).toBe(0);
    const states = await store.list({ task: 'job' });
    expect(states.map((x) => [x.uid, x.report.running, x.nextRunAt ?? x.dueAt]).sort()).toEqual([
      ['a', 0, at],
      ['b', 0, at],
      ['c', 0, at],
    ]);
  });

  describe('claiming ahead', () => {
    /** A handler per uid that waits until `open(uid)`; records what runs at once. */
    function gate(): { handler: (run: { uid: string }) => Promise<void>; open: (...uids: string[]) => void; started: string[]; max: () => number } {
      const waits = new Map<string, () => void>();
      const opened = new Set<string>();
      const started: string[] = [];
      let now = 0;
      let max = 0;
      return {
        started,
        max: () => max,
        open: (...uids) => {
          for (const uid of uids) {
            opened.add(uid);
            waits.get(uid)?.();
          }
        },
        handler: async (run) => {
          started.push(run.uid);
          max = Math.max(max, ++now);
          if (!opened.has(run.uid)) await new Promise<void>((resolve) => waits.set(run.uid, resolve));
          now--;
        },
      };
    }

    /** Starts `s` and runs one quick occurrence ('w') of task 'job': only quick tasks are claimed ahead. */
    async function warmUp(s: ReturnType<typeof track>, g: ReturnType<typeof gate>): Promise<void> {
      g.open('w');
      await s.schedule('job', { uid: 'w', at: Date.now() - 1000 });
      await s.start();
      await waitFor(() => g.started.includes('w') && s.running === 0, 'the warm-up run is done');
    }

    it('runs claimed ahead wait for a slot, keep their lease meanwhile, and start as slots free', async () => {
      const store = new MemoryStore();
      const s = track({ store, concurrency: 2 });
      const g = gate();
      const lost: string[] = [];
      s.on('run:lost', (e) => lost.push(e.uid));
      // A lease of 300 ms: runs waiting longer than that must be renewed, or they are redelivered.
      s.define('job', g.handler, { lease: '300ms' });
      await warmUp(s, g);
      const at = Date.now() - 1000;
      await s.scheduleMany('job', ['a', 'b', 'c', 'd', 'e', 'f'].map((uid, i) => ({ uid, at: at + i })));
      // The claim answered with nothing running, and the task is quick (its warm-up run was):
      // the next claim went out ahead, and its runs found both slots taken.
      await waitFor(async () => (await s.list({ task: 'job' })).filter((r) => r.running > 0).length === 4, 'a, b running and c, d claimed ahead');
      expect(g.started).toEqual(['w', 'a', 'b']);
      await sleep(1000);
      expect(g.started).toEqual(['w', 'a', 'b']);
      expect(g.max()).toBe(2);
      expect(lost).toEqual([]);
      const held = (await s.list({ task: 'job' })).filter((r) => r.running > 0).map((r) => r.uid);
      expect(held.sort()).toEqual(['a', 'b', 'c', 'd']);
      g.open('a');
      await waitFor(() => g.started.includes('c'), 'c starts in the slot a left');
      expect(g.started).toEqual(['w', 'a', 'b', 'c']);
      g.open('b', 'c', 'd', 'e', 'f');
      await waitFor(() => g.started.length === 7 && s.running === 0, 'every run done');
      expect([...g.started].sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'w']);
      expect(g.max()).toBe(2);
      expect(lost).toEqual([]);
    });

    it('a task never runs more at once than its own concurrency, whatever was claimed ahead', async () => {
      const store = new MemoryStore();
      const s = track({ store, concurrency: 4 });
      const g = gate();
      s.define('one', g.handler, { concurrency: 1 });
      const at = Date.now() - 1000;
      await s.scheduleMany('one', ['a', 'b', 'c'].map((uid, i) => ({ uid, at: at + i })));
      await s.start();
      await waitFor(() => g.started.length === 1, 'a started');
      await sleep(200);
      expect(g.started).toEqual(['a']);
      g.open('a');
      await waitFor(() => g.started.length === 2, 'b started');
      g.open('b', 'c');
      await waitFor(() => g.started.length === 3 && s.running === 0, 'every run done');
      expect(g.started).toEqual(['a', 'b', 'c']);
      expect(g.max()).toBe(1);
    });

    it("a run waiting for its task's slot holds back no other task, and a slow task is not claimed ahead", async () => {
      const store = new MemoryStore();
      const s = track({ store, concurrency: 4 });
      const g = gate();
      const fast: string[] = [];
      s.define('slow', g.handler, { concurrency: 1 });
      s.define('fast', (run) => {
        fast.push(run.uid);
      });
      const at = Date.now() - 1000;
      await s.scheduleMany('slow', ['s1', 's2'].map((uid, i) => ({ uid, at: at + i })));
      await s.scheduleMany('fast', Array.from({ length: 12 }, (_, i) => ({ uid: `f${i}`, at: at + 2 + i })));
      await s.start();
      // s1 holds the slow task's only slot; every fast run goes by meanwhile.
      await waitFor(() => fast.length === 12, 'all fast runs done while s1 runs');
      expect(g.started).toEqual(['s1']);
      // s2 was not claimed (nor claimed ahead) while it could not start here.
      expect((await s.get('slow', 's2'))?.running).toBe(0);
      g.open('s1', 's2');
      await waitFor(() => g.started.length === 2 && s.running === 0, 's2 ran after s1');
      expect(g.started).toEqual(['s1', 's2']);
      expect(g.max()).toBe(1);
    });

    it('stop() gives runs claimed ahead back at once: they run elsewhere, each once', async () => {
      const store = new MemoryStore();
      const s = track({ store, concurrency: 2 });
      const g = gate();
      s.define('job', g.handler);
      await warmUp(s, g);
      const at = Date.now() - 1000;
      await s.scheduleMany('job', ['a', 'b', 'c', 'd'].map((uid, i) => ({ uid, at: at + i })));
      await waitFor(async () => (await s.list({ task: 'job' })).filter((r) => r.running > 0).length === 4, 'a, b running and c, d claimed ahead');
      const stopping = s.stop({ timeout: 10_000 });
      // While stop() waits for a and b, c and d are already back in the store, due.
      await waitFor(async () => (await store.list({ task: 'job' })).filter((r) => r.report.running > 0).length === 2, 'c and d given back');
      const other = track({ store, concurrency: 2 });
      const ran: string[] = [];
      other.define('job', (run) => {
        ran.push(`${run.uid}/${run.attempt}`);
      });
      await other.start();
      await waitFor(() => ran.length === 2, 'c and d ran on the other scheduler');
      expect(ran.sort()).toEqual(['c/1', 'd/1']);
      g.open('a', 'b');
      await stopping;
      expect(g.started).toEqual(['w', 'a', 'b']);
      await sleep(100);
      expect(ran).toHaveLength(2);
    });
  });
});
