import { describe, expect, it } from 'vitest';
import { RedisStore, type RunContext } from '../src/index.js';
import { schedulerTracker, waitFor } from './helpers.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();
const jobs = new URL('./fixtures/pool-jobs.mjs', import.meta.url);

describe('worker-thread pool on RedisStore', () => {
  const track = schedulerTracker();

  it('a handler spinning the CPU for 2 s keeps its Redis lease (renewed throughout) and delays no other schedule', async () => {
    const s = track({ store: new RedisStore({ url: redis.url, prefix: randomPrefix() }), pool: { size: 1 } });
    const lost: unknown[] = [];
    s.on('run:lost', (e) => lost.push(e));
    s.define('spin', { module: jobs, export: 'spin' }, { lease: 400 }); // a fifth of the spin
    const lateness: number[] = [];
    s.define('tick', (run: RunContext) => void lateness.push(Date.now() - run.dueAt.getTime()), { overlap: 'allow', misfire: 'run-all' });
    const done: { attempt: number }[] = [];
    s.on('run:success', (e) => e.task === 'spin' && done.push(e));
    await s.start();
    await s.schedule('spin', { uid: 'cpu', in: 0, params: { ms: 2000 } });
    await waitFor(() => s.pool?.busy === 1, 'the spin to occupy a thread');
    await s.schedule('tick', { uid: 't', every: 100 });
    await waitFor(() => done.length === 1, 'the spin to finish');
    expect(done[0]?.attempt).toBe(1); // never redelivered: the lease held for the whole 2 s
    expect(lost).toEqual([]);
    expect(lateness.length).toBeGreaterThanOrEqual(8);
    expect(Math.max(...lateness)).toBeLessThan(1000);
    const report = await s.get('tick', 't');
    expect(report?.failures).toBe(0);
  });
});
