import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore, StoreError, type RunContext } from '../src/index.js';
import { runModule, schedulerTracker, sleep, waitFor } from './helpers.js';

describe('MemoryStore', () => {
  const track = schedulerTracker();
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'schedkit-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('file persistence', () => {
    it('writes the registry atomically and restores it on the next start', async () => {
      const file = join(dir, 'sub', 'registry.json');
      const a = track({ store: new MemoryStore({ file, persistInterval: 50 }) });
      await a.start({ execute: false });
      const at = Date.now() + 3_600_000;
      await a.schedule('mail', { uid: 'w42', at, params: { to: 'a@b.c' } });
      await a.schedule('report', { uid: 'daily', cron: '0 9 * * *', tz: 'Europe/Berlin' });
      await a.schedule('poll', { uid: 'p', every: '1m', enabled: false });
      // Written on the interval, before any stop.
      await waitFor(async () => (await readFile(file, 'utf8').catch(() => '')).includes('w42'), 'the interval write');
      await a.stop();
      const doc = JSON.parse(await readFile(file, 'utf8')) as { format: string; registry: Record<string, unknown> };
      expect(doc.format).toBe('schedkit-memory-store');
      expect(Object.keys(doc.registry).sort()).toEqual(['mail', 'poll', 'report']);
      expect((await readdir(join(dir, 'sub'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);

      const b = track({ store: new MemoryStore({ file }) });
      await b.start({ execute: false });
      const restored = await b.list();
      expect(restored.map((r) => `${r.task}/${r.uid}`)).toEqual(['mail/w42', 'poll/p', 'report/daily']);
      expect(restored[0]?.nextRunAt?.getTime()).toBe(at);
      expect(restored[0]?.params).toEqual({ to: 'a@b.c' });
      expect(restored[1]?.enabled).toBe(false);
      expect(restored[2]?.schedule).toEqual({ kind: 'cron', cron: '0 9 * * *', tz: 'Europe/Berlin' });
    });

    it('a schedule that came due while the process was down runs at start (iat rule)', async () => {
      const file = join(dir, 'r.json');
      const iat = Date.now() - 60_000;
      await writeFile(file, JSON.stringify({ format: 'schedkit-memory-store', version: 1, registry: { mail: { late: { iat, timeout: 1000 } } } }));
      const s = track({ store: new MemoryStore({ file }) });
      const runs: RunContext[] = [];
      s.define('mail', (run) => void runs.push(run));
      await s.start();
      await waitFor(() => runs.length === 1, 'the late one-shot');
      expect(runs[0]?.dueAt.getTime()).toBe(iat);
    });

    it('a corrupt file is a StoreError naming the file, not a silent empty start', async () => {
      const file = join(dir, 'bad.json');
      await writeFile(file, '{"format": "schedkit-memory-store", "registry": {"t": {"u": {"iat": "x"}}}}');
      const s = track({ store: new MemoryStore({ file }) });
      await expect(s.start()).rejects.toThrow(/iat/);
      await writeFile(file, '{not json');
      const s2 = track({ store: new MemoryStore({ file }) });
      const err = await s2.start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect((err as Error).message).toContain(file);
    });

    it('a failed load is retried by the next start (the store is not left half-open)', async () => {
      const file = join(dir, 'retry.json');
      await writeFile(file, '{not json');
      const store = new MemoryStore({ file });
      const s = track({ store });
      await expect(s.start()).rejects.toBeInstanceOf(StoreError);
      await writeFile(file, JSON.stringify({ format: 'schedkit-memory-store', version: 1, registry: { t: { u: { iat: Date.now() + 60_000, timeout: 60_000 } } } }));
      await s.start({ execute: false });
      expect((await s.list()).map((r) => r.uid)).toEqual(['u']);
    });

    it('reopening after stop keeps what is in memory (queued triggers too) instead of re-reading the file', async () => {
      const file = join(dir, 'reopen.json');
      const store = new MemoryStore({ file });
      const a = track({ store });
      await a.start({ execute: false });
      await a.schedule('t', { uid: 'x', every: '1h' });
      await a.trigger('t', 'x');
      await a.stop();
      const b = track({ store });
      const runs: string[] = [];
      b.define('t', (run) => void runs.push(run.kind));
      await b.start();
      await waitFor(() => runs.length === 1, 'the queued trigger');
      expect(runs).toEqual(['trigger']);
      expect(await b.list()).toHaveLength(1);
    });

    it('rejects a bad persistInterval naming the option', () => {
      expect(() => new MemoryStore({ persistInterval: 0 })).toThrow(/MemoryStore\.persistInterval: must be greater than zero/);
    });
  });

  describe('one clock: the store judges due-ness', () => {
    it.each([
      ['ahead by 5 s', 5000],
      ['behind by 5 s', -5000],
    ])('a store clock %s still fires `in: 200` about 200 ms later, once', async (_label, skew) => {
      const store = new MemoryStore({ clock: () => Date.now() + skew });
      const s = track({ store });
      const fired: number[] = [];
      s.define('t', () => void fired.push(Date.now()));
      await s.start();
      const before = Date.now();
      await s.schedule('t', { uid: 'x', in: 200 });
      await waitFor(() => fired.length === 1, 'the run');
      await sleep(100);
      expect(fired).toHaveLength(1);
      const waited = (fired[0] as number) - before;
      expect(waited).toBeGreaterThanOrEqual(195); // not early (skew did not make it due)
      expect(waited).toBeLessThan(4000); // and not late by the skew
    });
  });

  it('arms ONE timer however many schedules it holds', async () => {
    // Track live setTimeout handles (unref'd timers are invisible to getActiveResourcesInfo).
    const live = new Set<unknown>();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    const setSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const handle = realSet(() => {
        live.delete(handle);
        fn(...args);
      }, ms);
      live.add(handle);
      return handle;
    }) as unknown as typeof setTimeout);
    const clearSpy = vi.spyOn(globalThis, 'clearTimeout').mockImplementation(((handle?: NodeJS.Timeout) => {
      live.delete(handle);
      realClear(handle);
    }) as typeof clearTimeout);
    try {
      const s = track();
      s.define('t', () => undefined);
      await s.start();
      await s.scheduleMany('t', Array.from({ length: 5000 }, (_, i) => ({ uid: `u${i}`, in: 60_000 + i })));
      for (let i = 0; i < 100; i++) await s.schedule('t', { uid: `v${i}`, in: 30_000 - i });
      await new Promise((resolve) => setImmediate(resolve));
      expect(live.size).toBe(1);
      expect((await s.list()).length).toBe(5100);
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
    }
  });

  it('an executing scheduler keeps its process alive until stop(); keepAlive: false does not', async () => {
    const script = (keepAlive: boolean) => `
      import { Scheduler } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const s = new Scheduler();
      s.define('t', async () => {
        console.log('ran');
        await s.stop();
      });
      await s.start({ keepAlive: ${keepAlive} });
      await s.schedule('t', { uid: 'later', in: 300 });
    `;
    const kept = await runModule(script(true), { killAfterMs: 15_000 });
    expect(kept.out).toContain('ran');
    expect(kept.code).toBe(0);
    const notKept = await runModule(script(false), { killAfterMs: 15_000 });
    expect(notKept.out).not.toContain('ran'); // nothing held the process for the run
    expect(notKept.code).toBe(0);
  });

  it('a process exits by itself after stop() (nothing left holding it open)', async () => {
    const script = `
      import { Scheduler, MemoryStore } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const s = new Scheduler({ store: new MemoryStore({ file: ${JSON.stringify(join(dir, 'exit.json'))} }) });
      s.define('t', async () => {});
      await s.start();
      await s.schedule('t', { uid: 'soon', in: 10 });
      await s.schedule('t', { uid: 'later', every: '1h' });
      await s.schedule('t', { uid: 'c', cron: '* * * * * *' });
      await new Promise((r) => setTimeout(r, 300));
      await s.stop();
      console.log('stopped');
    `;
    const { code, out } = await runModule(script, { killAfterMs: 15_000 });
    expect(out).toContain('stopped');
    expect(code).toBe(0);
  });
});
