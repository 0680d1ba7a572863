/**
 * Exactly-once across real processes: executor processes (the built package, in child
 * node processes) share one redis-server. Each run appends a line to a file; the test
 * counts lines. No timing budgets: waits are generous and only for correctness.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Scheduler } from '../src/index.js';
import { countBy, sleep, waitFor } from './helpers.js';
import { randomPrefix, readRuns, spawnExecutor, useChildSandbox, useRedisServer, type Child, type ChildConfig } from './redis-harness.js';

const redis = useRedisServer();
const sandbox = useChildSandbox('mp');

function executors(n: number, config: Omit<ChildConfig, 'url'>, skews: readonly number[] = []): Promise<Child[]> {
  return sandbox.spawn(n, (i) => spawnExecutor(sandbox.snapshot, { ...config, url: redis.url, skewMs: skews[i] ?? 0 }));
}

/** A producer in this process (schedules, reports; runs nothing). */
function producer(prefix: string, cronLookahead?: number): Promise<Scheduler> {
  return sandbox.producer({ url: redis.url, prefix, ...(cronLookahead === undefined ? {} : { cronLookahead }) });
}

describe('RedisStore across processes', () => {
  it('4 executor processes run each of 5,000 one-shot occurrences exactly once', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    await executors(4, { prefix, out, tasks: { job: {} } });
    const p = await producer(prefix);
    const uids = Array.from({ length: 5000 }, (_, i) => `u${i}`);
    // Due over the next two seconds, in batches (so claims race with schedules).
    for (let i = 0; i < uids.length; i += 500) {
      await p.scheduleMany('job', uids.slice(i, i + 500).map((uid, j) => ({ uid, in: (i + j) % 2000 })));
    }
    await waitFor(() => new Set(readRuns(out).map((r) => r.uid)).size === uids.length, 'all 5,000 occurrences to run', 60_000);
    await sleep(1000);
    const runs = readRuns(out);
    const counts = countBy(runs, (r) => r.uid);
    expect([...counts.values()].filter((c) => c > 1)).toEqual([]);
    expect(uids.filter((u) => !counts.has(u))).toEqual([]);
    expect(runs).toHaveLength(uids.length);
    expect(new Set(runs.map((r) => r.pid)).size).toBeGreaterThan(1); // the work was shared
    expect(await p.list()).toEqual([]); // finished one-shots are deleted
  }, 120_000);

  it('4 executor processes on one `* * * * * *` cron for 20 s: every tick exactly once, no gaps', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    // A short cron look-ahead makes the executors refill the precomputed due times often.
    await executors(4, { prefix, out, cronLookahead: 3, tasks: { tick: { options: { overlap: 'allow', misfire: 'run-all' } } } });
    const p = await producer(prefix, 3);
    await p.schedule('tick', { uid: 'every-second', cron: '* * * * * *' });
    await sleep(20_000);
    await p.update('tick', 'every-second', { enabled: false });
    await sleep(1500); // let the last claimed tick finish
    const dues = readRuns(out).map((r) => r.dueAt);
    const counts = countBy(dues, String);
    expect([...counts].filter(([, c]) => c > 1)).toEqual([]);
    const sorted = [...new Set(dues)].sort((a, b) => a - b);
    expect(sorted.length).toBeGreaterThanOrEqual(15);
    for (let i = 1; i < sorted.length; i++) expect((sorted[i] as number) - (sorted[i - 1] as number)).toBe(1000);
    expect(new Set(readRuns(out).map((r) => r.pid)).size).toBeGreaterThan(1);
  }, 60_000);

  it('kill -9 of an executor during a run: redelivered after the lease with attempt 2', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    const config = { prefix, out, tasks: { slow: { hangFirstAttempt: true, options: { lease: 1500, retry: { attempts: 3, delay: 10 } } } } };
    const [victim] = await executors(1, config);
    const p = await producer(prefix);
    await p.schedule('slow', { uid: 'x', in: 0 });
    await waitFor(() => readRuns(out).length === 1, 'the first attempt to start', 20_000);
    await victim?.kill9();
    await executors(1, config);
    await waitFor(() => readRuns(out).length === 2, 'the redelivery', 20_000);
    const [first, second] = readRuns(out);
    expect(first).toMatchObject({ uid: 'x', attempt: 1, kind: 'scheduled', pid: victim?.pid });
    expect(second).toMatchObject({ uid: 'x', attempt: 2, kind: 'retry', dueAt: first?.dueAt });
    expect(second?.pid).not.toBe(victim?.pid);
    // The redelivery came only after the lease ran out (1.5 s after the claim, by Redis's clock).
    expect((second?.realNow ?? 0) - (first?.realNow ?? 0)).toBeGreaterThanOrEqual(1400);
    await waitFor(async () => (await p.get('slow', 'x')) === null, 'the one-shot to finish', 20_000);
  }, 60_000);

  it('executors whose Date.now() is skewed by ±5 s neither duplicate nor miss nor run early', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    await executors(4, { prefix, out, tasks: { job: {}, tick: { options: { overlap: 'allow', misfire: 'run-all' } } } }, [-5000, 5000, -2500, 2500]);
    const p = await producer(prefix);
    const uids = Array.from({ length: 400 }, (_, i) => `s${i}`);
    await p.scheduleMany('job', uids.map((uid, i) => ({ uid, in: 500 + (i % 40) * 100 })));
    await p.schedule('tick', { uid: 't', every: 250 });
    await waitFor(() => readRuns(out).filter((r) => r.task === 'job').length >= uids.length, 'all one-shots to run', 60_000);
    await p.update('tick', 't', { enabled: false });
    await sleep(1000);
    const runs = readRuns(out);
    const jobs = runs.filter((r) => r.task === 'job');
    const counts = countBy(jobs, (r) => r.uid);
    expect([...counts.values()].filter((c) => c > 1)).toEqual([]);
    expect(uids.filter((u) => !counts.has(u))).toEqual([]);
    // Due-ness is judged by Redis's clock (the real one here), not the skewed ones.
    expect(jobs.filter((r) => r.realNow < r.dueAt - 5)).toEqual([]);
    const ticks = [...new Set(runs.filter((r) => r.task === 'tick').map((r) => r.dueAt))].sort((a, b) => a - b);
    expect(runs.filter((r) => r.task === 'tick')).toHaveLength(ticks.length);
    expect(ticks.length).toBeGreaterThanOrEqual(10);
    for (let i = 1; i < ticks.length; i++) expect((ticks[i] as number) - (ticks[i - 1] as number)).toBe(250);
  }, 120_000);
});
