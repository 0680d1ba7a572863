import { describe, expect, it } from 'vitest';
import { RedisStore } from '../src/index.js';
import { schedulerTracker, waitFor } from './helpers.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();
const jobs = new URL('./fixtures/pool-jobs.mjs', import.meta.url);

describe('worker-thread pool on RedisStore', () => {
  const track = schedulerTracker();

  it('a handler spinning the CPU for 3 s keeps its Redis lease (renewed throughout) and blocks no other schedule', async () => {
    const s = track({ store: new RedisStore({ url: redis.url, prefix: randomPrefix() }), pool: { size: 1 } });
    const lost: unknown[] = [];
    s.on('run:lost', (e) => lost.push(e));
    // A third of the spin: only heartbeats (every ~330 ms) keep it. Not shorter: a loaded
    // 2-core machine can starve this event loop for a few hundred ms, which is not a lost lease.
    s.define('spin', { module: jobs, export: 'spin' }, { lease: 1000 });
    const ticks: number[] = [];
    s.define('tick', () => void ticks.push(Date.now()), { overlap: 'allow', misfire: 'run-all' });
    const done: { attempt: number }[] = [];
    let spinStart = 0;
    let spinEnd = 0;
    s.on('run:start', (e) => {
      if (e.task === 'spin') spinStart = Date.now();
    });
    s.on('run:success', (e) => {
      if (e.task !== 'spin') return;
      spinEnd = Date.now();
      done.push(e);
    });
    await s.start();
    await s.schedule('spin', { uid: 'cpu', in: 0, params: { ms: 3000 } });
    await waitFor(() => s.pool?.busy === 1, 'the spin to occupy a thread');
    await s.schedule('tick', { uid: 't', every: 100 });
    await waitFor(() => done.length === 1, 'the spin to finish', 30_000);
    expect(done[0]?.attempt).toBe(1); // never redelivered: the lease held for the whole spin
    expect(lost).toEqual([]);
    // Ticks ran while the thread was pegged (a count, not a timing).
    expect(ticks.filter((t) => t >= spinStart && t <= spinEnd).length).toBeGreaterThanOrEqual(3);
    const report = await s.get('tick', 't');
    expect(report?.failures).toBe(0);
  });
});
