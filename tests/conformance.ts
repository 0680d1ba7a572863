/**
 * The store conformance suite: every DESIGN.md guarantee that one process can show, run
 * against any `Store`. A store's test file calls `storeConformance(name, factory)`; the
 * factory returns a fresh, empty, isolated store (own namespace) for each test.
 */
import { describe, expect, it } from 'vitest';
import { HISTORY_LIMIT, type Store, type TaskPolicy } from '../src/store/index.js';
import { RunTimeoutError, type RunContext, type RunEvent } from '../src/index.js';
import { deferred, schedulerTracker, sleep, waitFor } from './helpers.js';

export type StoreFactory = () => Store | Promise<Store>;

const policy = (over: Partial<TaskPolicy> = {}): TaskPolicy => ({ overlap: 'allow', misfire: 'run-once', catchupWindow: 3_600_000, attempts: 1, leaseMs: 30_000, limit: 100, ...over });

export function storeConformance(name: string, factory: StoreFactory): void {
  describe(`store conformance: ${name}`, () => {
    const track = schedulerTracker();
    const make = async (opts: { concurrency?: number } = {}) => track({ store: await factory(), ...opts });

    describe('schedules', () => {
      it('runs a one-shot once, with params, and removes it afterwards', async () => {
        const s = await make();
        const runs: RunContext[] = [];
        s.define('once', (run) => {
          runs.push(run);
          return { got: run.params };
        });
        await s.start();
        const ref = await s.schedule('once', { uid: 'a', in: 50, params: { n: 1 } });
        expect(ref.uid).toBe('a');
        expect(ref.nextRunAt).toBeInstanceOf(Date);
        await waitFor(() => runs.length === 1, 'the one-shot to run');
        await sleep(150);
        expect(runs).toHaveLength(1);
        expect(runs[0]?.params).toEqual({ n: 1 });
        expect(runs[0]?.attempt).toBe(1);
        expect(runs[0]?.kind).toBe('scheduled');
        expect(runs[0]?.dueAt.getTime()).toBe(ref.nextRunAt?.getTime());
        await waitFor(async () => (await s.get('once', 'a')) === null, 'the finished one-shot to be removed');
      });

      it('generates and returns a uid when none is given', async () => {
        const s = await make();
        const a = await s.schedule('t', { in: '1h' });
        const b = await s.schedule('t', { in: '1h' });
        expect(a.uid).toMatch(/^[0-9a-f-]{36}$/);
        expect(a.uid).not.toBe(b.uid);
        expect((await s.list()).map((r) => r.uid).sort()).toEqual([a.uid, b.uid].sort());
      });

      it('replaces an existing (task, uid) instead of adding a second one', async () => {
        const s = await make();
        await s.schedule('t', { uid: 'x', in: '1h', params: { v: 1 } });
        const ref = await s.schedule('t', { uid: 'x', in: '2h', params: { v: 2 } });
        const all = await s.list();
        expect(all).toHaveLength(1);
        expect(all[0]?.params).toEqual({ v: 2 });
        expect(all[0]?.nextRunAt?.getTime()).toBe(ref.nextRunAt?.getTime());
      });

      it('params read back as their JSON on every store (-0 is 0, Dates are ISO strings)', async () => {
        const s = await make();
        await s.schedule('t', { uid: 'z', in: '1h', params: { z: -0, list: [-0, 1.5], when: new Date(0) } });
        const got = (await s.get('t', 'z'))?.params as { z: number; list: number[]; when: string } | undefined;
        expect(Object.is(got?.z, 0)).toBe(true);
        expect(Object.is(got?.list[0], 0)).toBe(true);
        expect(got).toEqual({ z: 0, list: [0, 1.5], when: '1970-01-01T00:00:00.000Z' });
      });

      it('replacing a one-shot that is due soon means it fires once, with the new params', async () => {
        const s = await make();
        const seen: unknown[] = [];
        s.define('t', (run) => void seen.push(run.params));
        await s.start();
        await s.schedule('t', { uid: 'x', in: 100, params: 'old' });
        await s.schedule('t', { uid: 'x', in: 150, params: 'new' });
        await waitFor(() => seen.length === 1, 'the replaced one-shot to run');
        await sleep(200);
        expect(seen).toEqual(['new']);
      });

      it('cancel removes a schedule; cancelling a missing one resolves false', async () => {
        const s = await make();
        let ran = 0;
        s.define('t', () => void ran++);
        await s.start();
        await s.schedule('t', { uid: 'x', in: 80 });
        expect(await s.cancel('t', 'x')).toBe(true);
        expect(await s.cancel('t', 'x')).toBe(false);
        await sleep(200);
        expect(ran).toBe(0);
        expect(await s.get('t', 'x')).toBeNull();
      });

      it('reports a recurring schedule with Vendure fields and more', async () => {
        const s = await make();
        s.define('r', (run) => ({ at: run.dueAt.getTime() }));
        await s.start();
        await s.schedule('r', { uid: 'p', every: 60 });
        await waitFor(async () => ((await s.get('r', 'p'))?.successes ?? 0) >= 2, 'two runs');
        const report = await s.get('r', 'p');
        expect(report).not.toBeNull();
        if (report === null) return;
        expect(report.id).toBe('r/p');
        expect(report.schedule).toEqual({ kind: 'every', every: 60 });
        expect(report.enabled).toBe(true);
        expect(report.lastExecutedAt).toBeInstanceOf(Date);
        expect(report.nextRunAt).toBeInstanceOf(Date);
        expect(typeof report.isRunning).toBe('boolean');
        expect(report.lastResult).toEqual({ at: expect.any(Number) as number });
        expect(report.lastError).toBeNull();
        expect(report.lastDurationMs).toBeGreaterThanOrEqual(0);
        expect(report.attempts).toBe(1);
        expect(report.history.length).toBeGreaterThanOrEqual(2);
        expect(report.history.every((h) => h.outcome === 'success')).toBe(true);
      });

      it('keeps history bounded', async () => {
        const s = await make();
        s.define('r', () => 1);
        await s.start();
        await s.schedule('r', { uid: 'p', every: 5 });
        await waitFor(async () => ((await s.get('r', 'p'))?.successes ?? 0) >= HISTORY_LIMIT + 10, 'many runs');
        const report = await s.get('r', 'p');
        expect(report?.history.length).toBe(HISTORY_LIMIT);
      });

      it('update: disable stops firing, enable resumes, params and schedule change', async () => {
        const s = await make();
        const seen: unknown[] = [];
        s.define('r', (run) => void seen.push(run.params));
        await s.start();
        await s.schedule('r', { uid: 'p', every: 40, params: 1 });
        await waitFor(() => seen.length >= 1, 'a first run');
        const disabled = await s.update('r', 'p', { enabled: false });
        expect(disabled.enabled).toBe(false);
        expect((await s.get('r', 'p'))?.enabled).toBe(false);
        await sleep(60);
        const count = seen.length;
        await sleep(200);
        expect(seen.length).toBe(count);
        await s.update('r', 'p', { enabled: true, params: 2, schedule: { every: 30 } });
        await waitFor(() => seen.at(-1) === 2, 'a run with the new params');
        expect((await s.get('r', 'p'))?.schedule).toEqual({ kind: 'every', every: 30 });
      });

      it('update and trigger of a missing schedule throw ScheduleNotFoundError', async () => {
        const s = await make();
        await expect(s.update('nope', 'x', { enabled: false })).rejects.toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
        await expect(s.trigger('nope', 'x')).rejects.toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
      });

      it('a producer (execute: false) schedules but runs nothing', async () => {
        const s = await make();
        let ran = 0;
        s.define('t', () => void ran++);
        await s.start({ execute: false });
        await s.schedule('t', { uid: 'x', in: 10 });
        await sleep(150);
        expect(ran).toBe(0);
        expect((await s.get('t', 'x'))?.nextRunAt).toBeInstanceOf(Date);
      });

      it('clear removes everything', async () => {
        const s = await make();
        await s.schedule('a', { uid: '1', in: '1h' });
        await s.schedule('b', { uid: '2', cron: '0 0 * * *' });
        expect(await s.clear()).toBe(2);
        expect(await s.list()).toEqual([]);
      });

      it('fires cron schedules with a seconds field', async () => {
        const s = await make();
        const dues: number[] = [];
        s.define('c', (run) => void dues.push(run.dueAt.getTime()));
        await s.start();
        await s.schedule('c', { uid: 'every-second', cron: '* * * * * *' });
        await waitFor(() => dues.length >= 2, 'two cron ticks', 5000);
        expect(dues.every((d) => d % 1000 === 0)).toBe(true);
        expect((dues[1] as number) - (dues[0] as number)).toBe(1000);
      });
    });

    describe('guarantee 1: start once', () => {
      it('two executors on one store start each of 300 one-shots exactly once', async () => {
        const store = await factory();
        const a = track({ store });
        const b = track({ store });
        const counts = new Map<string, number>();
        const handler = (run: RunContext) => void counts.set(run.uid, (counts.get(run.uid) ?? 0) + 1);
        a.define('job', handler);
        b.define('job', handler);
        await a.start();
        await b.start();
        await a.scheduleMany(
          'job',
          Array.from({ length: 300 }, (_, i) => ({ uid: `u${i}`, in: i % 50 })),
        );
        await waitFor(() => counts.size === 300, 'all 300 to run');
        await sleep(200);
        expect([...counts.values()].every((c) => c === 1)).toBe(true);
      });

      it('an expired lease is redelivered with attempt 2 while attempts remain', async () => {
        const store = await factory();
        const s = track({ store });
        await s.schedule('job', { uid: 'x', in: 0 });
        // A "crashed" executor: claims with a short lease and never renews or completes.
        await sleep(5);
        const claimed = await store.claim({ tasks: new Map([['job', policy({ attempts: 2, leaseMs: 200 })]]), limit: 10, owner: 'crashed' });
        expect(claimed.runs).toHaveLength(1);
        const runs: RunContext[] = [];
        const lost: unknown[] = [];
        s.on('run:lost', (e) => lost.push(e));
        s.define('job', (run) => void runs.push(run), { retry: { attempts: 2 }, lease: 200 });
        await s.start();
        await waitFor(() => runs.length === 1, 'the redelivery');
        expect(runs[0]?.attempt).toBe(2);
        expect(runs[0]?.kind).toBe('retry');
        expect(lost).toHaveLength(1);
        // The stale executor is fenced out: its completion is refused.
        expect(await store.complete([{ token: claimed.runs[0]?.token ?? '', outcome: 'success', startedAt: 0, durationMs: 1 }])).toEqual(['lease-lost']);
      });

      it('with attempts: 1 an expired lease is not redelivered (at-most-once) and lastError says why', async () => {
        const store = await factory();
        const s = track({ store });
        await s.schedule('job', { uid: 'x', every: '1h', in: 0 });
        await sleep(5);
        const claimed = await store.claim({ tasks: new Map([['job', policy({ attempts: 1, leaseMs: 150 })]]), limit: 10, owner: 'crashed' });
        expect(claimed.runs).toHaveLength(1);
        let ran = 0;
        s.define('job', () => void ran++, { lease: 150 });
        await s.start();
        await waitFor(async () => ((await s.get('job', 'x'))?.lastError ?? '').includes('lease expired'), 'the lost lease to be reported');
        await sleep(200);
        expect(ran).toBe(0);
        const report = await s.get('job', 'x');
        expect(report?.failures).toBe(1);
        expect(report?.history.at(-1)?.outcome).toBe('lost');
      });

      it('a lease renewed by heartbeat outlives its length while the handler runs', async () => {
        const s = await make();
        const done = deferred();
        const runs: RunContext[] = [];
        s.define('slow', async (run) => {
          runs.push(run);
          await done.promise;
        }, { lease: 150, retry: 3 });
        await s.start();
        await s.schedule('slow', { uid: 'x', in: 0 });
        await waitFor(() => runs.length === 1, 'the run to start');
        await sleep(600); // four lease lengths
        expect(runs).toHaveLength(1);
        expect(runs[0]?.signal.aborted).toBe(false);
        done.resolve();
        await waitFor(async () => (await s.get('slow', 'x')) === null, 'the run to finish');
      });
    });

    describe('guarantee 2: recurring schedules never double-fire and never stop', () => {
      it('three executors on one `every` schedule give one run per tick, no gaps', async () => {
        const store = await factory();
        const dues: number[] = [];
        for (let i = 0; i < 3; i++) {
          const s = track({ store });
          s.define('tick', (run) => void dues.push(run.dueAt.getTime()), { overlap: 'allow', misfire: 'run-all' });
          await s.start();
        }
        await track({ store }).schedule('tick', { uid: 'x', every: 40 });
        await waitFor(() => dues.length >= 15, '15 ticks');
        const sorted = [...dues].sort((a, b) => a - b);
        expect(new Set(sorted).size).toBe(sorted.length);
        for (let i = 1; i < sorted.length; i++) expect((sorted[i] as number) - (sorted[i - 1] as number)).toBe(40);
      });

      it('a throwing handler does not stop a recurring schedule', async () => {
        const s = await make();
        let n = 0;
        s.define('bad', () => {
          n++;
          throw new Error(`fail ${n}`);
        });
        await s.start();
        await s.schedule('bad', { uid: 'x', every: 30 });
        await waitFor(() => n >= 3, 'three failing runs');
        const report = await s.get('bad', 'x');
        expect(report?.lastError).toMatch(/^fail \d+$/);
        expect(report?.nextRunAt).toBeInstanceOf(Date);
      });
    });

    describe('retries', () => {
      it('retries a failing one-shot with backoff until it succeeds; attempts count up', async () => {
        const s = await make();
        const attempts: number[] = [];
        const retries: { nextAttempt: number }[] = [];
        s.on('run:retry', (e) => retries.push(e));
        s.define('flaky', (run) => {
          attempts.push(run.attempt);
          if (run.attempt < 3) throw new Error('not yet');
          return 'ok';
        }, { retry: { attempts: 5, backoff: 'exponential', delay: 20 } });
        const successes: unknown[] = [];
        s.on('run:success', (e) => successes.push(e.result));
        await s.start();
        await s.schedule('flaky', { uid: 'x', in: 0 });
        await waitFor(() => successes.length === 1, 'the third attempt to succeed');
        expect(attempts).toEqual([1, 2, 3]);
        expect(retries.map((r) => r.nextAttempt)).toEqual([2, 3]);
        expect(successes).toEqual(['ok']);
      });

      it('gives up after the last attempt', async () => {
        const s = await make();
        const failures: { willRetry: boolean; attempt: number }[] = [];
        s.on('run:failure', (e) => failures.push(e));
        s.define('bad', () => {
          throw new Error('always');
        }, { retry: { attempts: 2, backoff: 'fixed', delay: 10 } });
        await s.start();
        await s.schedule('bad', { uid: 'x', in: 0 });
        await waitFor(() => failures.length === 2, 'two failures');
        await sleep(100);
        expect(failures.map((f) => [f.attempt, f.willRetry])).toEqual([[1, true], [2, false]]);
        expect(await s.get('bad', 'x')).toBeNull();
      });
    });

    describe('guarantee 4: overlap policy and timeouts', () => {
      const overlapRun = async (overlap: 'skip' | 'allow' | 'buffer-one' | 'cancel-previous') => {
        const s = await make();
        let active = 0;
        let maxActive = 0;
        const starts: RunContext[] = [];
        const skipped: unknown[] = [];
        s.on('run:skipped', (e) => skipped.push(e));
        s.define('long', async (run) => {
          starts.push(run);
          active++;
          maxActive = Math.max(maxActive, active);
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 250);
            run.signal.addEventListener('abort', () => {
              clearTimeout(t);
              resolve();
            });
          });
          active--;
        }, { overlap });
        await s.start();
        await s.schedule('long', { uid: 'x', every: 50 });
        await sleep(700);
        await s.update('long', 'x', { enabled: false });
        return { s, starts, maxActive: () => maxActive, skipped };
      };

      it('skip: never two at once; overlapping ticks are skipped and reported', async () => {
        const { s, starts, maxActive, skipped } = await overlapRun('skip');
        expect(maxActive()).toBe(1);
        expect(starts.length).toBeGreaterThanOrEqual(2);
        expect(skipped.length).toBeGreaterThan(0);
        expect((await s.get('long', 'x'))?.skips).toBeGreaterThan(0);
      });

      it('allow: runs overlap', async () => {
        const { maxActive } = await overlapRun('allow');
        expect(maxActive()).toBeGreaterThan(1);
      });

      it('buffer-one: never two at once, the tick due meanwhile runs right after', async () => {
        const { starts, maxActive, skipped } = await overlapRun('buffer-one');
        expect(maxActive()).toBe(1);
        expect(starts.some((r) => r.kind === 'buffered')).toBe(true);
        expect(skipped.length).toBeGreaterThan(0);
      });

      it('cancel-previous: the running one is aborted when the next is due', async () => {
        const { starts } = await overlapRun('cancel-previous');
        expect(starts.length).toBeGreaterThanOrEqual(3);
        const aborted = starts.filter((r) => r.signal.aborted);
        expect(aborted.length).toBeGreaterThan(0);
        expect(String((aborted[0]?.signal.reason as Error).message)).toMatch(/cancel-previous/);
      });

      it('timeout aborts the signal; the run stays running until the handler settles, then fails', async () => {
        const s = await make();
        const release = deferred();
        let signal: AbortSignal | undefined;
        s.define('stuck', async (run) => {
          signal = run.signal;
          await release.promise;
        }, { timeout: 80 });
        const failures: Error[] = [];
        s.on('run:failure', (e) => failures.push(e.error));
        await s.start();
        await s.schedule('stuck', { uid: 'x', every: '1h', in: 0 });
        await waitFor(() => signal?.aborted === true, 'the timeout to abort the signal');
        expect(signal?.reason).toBeInstanceOf(RunTimeoutError);
        // Aborted but not settled: still counted as running (Vendure released the lock here).
        expect((await s.get('stuck', 'x'))?.isRunning).toBe(true);
        await s.trigger('stuck', 'x');
        await sleep(100);
        expect((await s.get('stuck', 'x'))?.running).toBe(1);
        release.resolve();
        await waitFor(() => failures.length >= 1, 'the timed-out run to fail');
        expect(failures[0]?.message).toMatch(/timed out after 80 ms/);
        // The trigger queued meanwhile ran only after the timed-out run settled.
        await waitFor(async () => ((await s.get('stuck', 'x'))?.history.length ?? 0) >= 2, 'the trigger to run');
        const history = (await s.get('stuck', 'x'))?.history ?? [];
        expect(history[0]).toMatchObject({ outcome: 'failure', kind: 'scheduled', error: expect.stringMatching(/timed out/) as string });
        expect(history[1]).toMatchObject({ outcome: 'success', kind: 'trigger' });
      });
    });

    describe('guarantee 5: misfire policy', () => {
      const outage = async (misfire: 'run-once' | 'run-all' | 'skip') => {
        const store = await factory();
        const producer = track({ store });
        await producer.start({ execute: false });
        await producer.schedule('m', { uid: 'x', every: 50 });
        await sleep(600); // ~12 ticks missed while no executor runs
        const runs: RunContext[] = [];
        const skipped: { reason: string }[] = [];
        const s = track({ store });
        s.on('run:skipped', (e) => skipped.push(e));
        const startedAt = Date.now();
        s.define('m', (run) => void runs.push(run), { misfire, overlap: 'allow', catchupWindow: '1h' });
        await s.start();
        await sleep(30);
        return { runs, skipped, startedAt, s };
      };

      it('run-once: one run for the whole outage (the latest missed tick), then on schedule', async () => {
        const { runs, startedAt } = await outage('run-once');
        await waitFor(() => runs.length >= 2, 'the catch-up run and the next tick');
        // None of the ~12 older ticks ran; the one catch-up run is for the latest of them.
        expect(runs.filter((r) => r.dueAt.getTime() < startedAt - 60)).toHaveLength(0);
        expect(runs.filter((r) => r.dueAt.getTime() <= startedAt).length).toBeLessThanOrEqual(1);
        expect(runs.every((r) => r.kind === 'scheduled')).toBe(true);
      });

      it('run-all: every missed tick runs (bounded by catchupWindow)', async () => {
        const { runs, startedAt } = await outage('run-all');
        await waitFor(() => runs.filter((r) => r.dueAt.getTime() <= startedAt).length >= 10, 'the catch-up runs');
        const dues = runs.map((r) => r.dueAt.getTime());
        expect(new Set(dues).size).toBe(dues.length);
        expect(runs.some((r) => r.kind === 'catchup')).toBe(true);
      });

      it('skip: no run for the missed ticks; the schedule goes on', async () => {
        const { runs, skipped, startedAt } = await outage('skip');
        await waitFor(() => skipped.some((e) => e.reason === 'misfire'), 'the misfire skip to be reported');
        expect(runs.filter((r) => r.dueAt.getTime() < startedAt - 50)).toHaveLength(0);
        await waitFor(() => runs.length >= 1, 'the next tick after the outage');
      });
    });

    describe('guarantee 6: manual trigger is never lost', () => {
      it('a trigger that meets a held lease runs once that run settles', async () => {
        const s = await make();
        const release = deferred();
        const runs: RunContext[] = [];
        s.define('t', async (run) => {
          runs.push(run);
          if (runs.length === 1) await release.promise;
        }, { overlap: 'skip' });
        await s.start();
        await s.schedule('t', { uid: 'x', every: '1h', in: 0 });
        await waitFor(() => runs.length === 1, 'the first run');
        await s.trigger('t', 'x');
        await s.trigger('t', 'x');
        await sleep(100);
        expect(runs).toHaveLength(1);
        expect((await s.get('t', 'x'))?.pending).toBe(2);
        release.resolve();
        await waitFor(() => runs.length === 3, 'both triggers to run');
        expect(runs.slice(1).map((r) => r.kind)).toEqual(['trigger', 'trigger']);
      });

      it('trigger runs a disabled schedule by hand and leaves it disabled', async () => {
        const s = await make();
        const runs: RunContext[] = [];
        s.define('t', (run) => void runs.push(run));
        await s.start();
        await s.schedule('t', { uid: 'x', cron: '0 0 1 1 *', enabled: false });
        await s.trigger('t', 'x');
        await waitFor(() => runs.length === 1, 'the trigger');
        expect((await s.get('t', 'x'))?.enabled).toBe(false);
      });
    });

    describe('snapshots (schedward registry)', () => {
      it('snapshot is schedward-shaped, with recurring fields and no empty tasks', async () => {
        const s = await make();
        const at = Date.now() + 3_600_000;
        await s.schedule('s1', { uid: 't1', at, params: { a: 1 } });
        await s.schedule('s2', { uid: 'c', cron: '0 0 9 * * *', tz: 'Europe/Berlin' });
        await s.schedule('s2', { uid: 'e', every: '1m', enabled: false });
        await s.schedule('s3', { uid: 'gone', in: '1h' });
        await s.cancel('s3', 'gone');
        const dump = await s.snapshot();
        expect(Object.keys(dump).sort()).toEqual(['s1', 's2']);
        expect(dump['s1']?.['t1']).toEqual({ iat: at, timeout: expect.any(Number) as number, params: { a: 1 } });
        expect(dump['s2']?.['c']).toMatchObject({ cron: '0 0 9 * * *', tz: 'Europe/Berlin' });
        expect(dump['s2']?.['e']).toMatchObject({ every: 60_000, enabled: false, timeout: 60_000 });
      });

      it('load keeps iat; a past-due entry runs at once with dueAt = iat; loading twice does not duplicate', async () => {
        const s = await make();
        const runs: RunContext[] = [];
        s.define('s1', (run) => void runs.push(run));
        const iat = Date.now() - 5000;
        const registry = { s1: { t1: { iat, timeout: 1000, params: { p: true } } } };
        await s.start({ execute: false });
        expect(await s.load(registry)).toBe(1);
        expect(await s.load(registry)).toBe(1);
        expect(await s.list()).toHaveLength(1);
        await s.stop();
        const e = track({ store: s.store });
        e.define('s1', (run) => void runs.push(run));
        await e.start();
        await waitFor(() => runs.length === 1, 'the past-due entry to run');
        await sleep(100);
        expect(runs).toHaveLength(1);
        expect(runs[0]?.dueAt.getTime()).toBe(iat);
        expect(runs[0]?.params).toEqual({ p: true });
      });

      it('a dump of this store loads into a fresh store and dumps the same', async () => {
        const a = await make();
        await a.schedule('x', { uid: '1', in: '1h', params: [1, 'two'] });
        await a.schedule('x', { uid: '2', every: '5m' });
        await a.schedule('y', { uid: '3', cron: '*/5 * * * *', tz: 'America/New_York' });
        const dump = await a.snapshot();
        const b = await make();
        await b.load(dump);
        expect(await b.snapshot()).toEqual(dump);
      });

      it('load validates the whole registry before changing anything', async () => {
        const s = await make();
        const bad = { ok: { a: { iat: Date.now(), timeout: 1 } }, broken: { b: { iat: 'soon', timeout: 1 } } };
        await expect(s.load(bad as never)).rejects.toMatchObject({ code: 'ERR_VALIDATION', message: expect.stringContaining('iat') as string });
        expect(await s.list()).toEqual([]);
      });
    });

    describe('locks', () => {
      it('lock is exclusive, release is compare-and-delete, expiry frees it', async () => {
        const s = await make();
        const a = await s.lock('invoice:7', { ttl: 150 });
        expect(a).not.toBeNull();
        expect(await s.lock('invoice:7')).toBeNull();
        // A stale holder's token cannot release someone else's lock.
        expect(await s.store.releaseLock('invoice:7', 'not-the-token')).toBe(false);
        await sleep(200);
        const b = await s.lock('invoice:7', { ttl: '1m' });
        expect(b).not.toBeNull();
        expect(await a?.release()).toBe(false); // expired: it no longer holds it
        expect(await b?.extend()).toBe(true);
        expect(await b?.release()).toBe(true);
        expect(await s.lock('invoice:7')).not.toBeNull();
      });

      it('withLock runs the function under the lock, keeps it alive, and releases it', async () => {
        const s = await make();
        const result = await s.withLock('k', async () => {
          await sleep(250); // longer than the ttl: the lock must be extended meanwhile
          expect(await s.lock('k')).toBeNull();
          return 42;
        }, { ttl: 100 });
        expect(result).toBe(42);
        expect(await s.lock('k')).not.toBeNull();
        await expect(s.withLock('k', () => 1)).rejects.toMatchObject({ code: 'ERR_LOCK_HELD' });
      });
    });

    describe('stop', () => {
      it('drains running work gracefully and then refuses commands', async () => {
        const s = await make();
        let finished = false;
        s.define('t', async () => {
          await sleep(150);
          finished = true;
        });
        await s.start();
        await s.schedule('t', { uid: 'x', in: 0 });
        await waitFor(() => s.running === 1, 'the run to start');
        await s.stop({ timeout: '5s' });
        expect(finished).toBe(true);
        await expect(s.schedule('t', { uid: 'y', in: 0 })).rejects.toMatchObject({ code: 'ERR_STOPPED' });
      });

      it('aborts what outlasts the stop timeout and gives it back for the next executor', async () => {
        const store = await factory();
        const s = track({ store });
        const signals: AbortSignal[] = [];
        s.define('t', (run) => {
          signals.push(run.signal);
          return new Promise(() => undefined); // never settles
        });
        await s.start();
        await s.schedule('t', { uid: 'x', in: 0 });
        await waitFor(() => signals.length === 1, 'the run to start');
        await s.stop({ timeout: 100 });
        expect(signals[0]?.aborted).toBe(true);
        const next = track({ store });
        const again: RunEvent[] = [];
        next.define('t', (run) => void again.push(run));
        await next.start();
        await waitFor(() => again.length === 1, 'the given-back occurrence to run again');
        expect(again[0]?.attempt).toBe(1);
      });
    });

    describe('concurrency', () => {
      it('per-task concurrency bounds parallel runs; the rest wait, none is lost', async () => {
        const s = await make();
        let active = 0;
        let max = 0;
        let done = 0;
        s.define('c', async () => {
          active++;
          max = Math.max(max, active);
          await sleep(20);
          active--;
          done++;
        }, { concurrency: 3 });
        await s.start();
        await s.scheduleMany('c', Array.from({ length: 30 }, () => ({ in: 0 })));
        await waitFor(() => done === 30, 'all 30 runs');
        expect(max).toBe(3);
      });

      it('the global concurrency bounds all tasks together', async () => {
        const s = await make({ concurrency: 2 });
        let active = 0;
        let max = 0;
        let done = 0;
        const body = async () => {
          active++;
          max = Math.max(max, active);
          await sleep(20);
          active--;
          done++;
        };
        s.define('a', body);
        s.define('b', body);
        await s.start();
        await s.scheduleMany('a', Array.from({ length: 10 }, () => ({ in: 0 })));
        await s.scheduleMany('b', Array.from({ length: 10 }, () => ({ in: 0 })));
        await waitFor(() => done === 20, 'all 20 runs');
        expect(max).toBe(2);
      });
    });
  });
}
