/**
 * Durability is Redis's: with `--appendonly yes` (here `appendfsync always`) schedules come
 * back after a restart and fire; an executor survives the restart (errors, no crash, no
 * lost schedule).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, Scheduler, type RunContext } from '../src/index.js';
import { sleep, waitFor } from './helpers.js';
import { randomPrefix, startRedis, type RedisServer } from './redis-harness.js';

let server: RedisServer;
const schedulers: Scheduler[] = [];

beforeAll(async () => {
  server = await startRedis({ appendonly: true });
});
afterAll(async () => {
  await server.stop();
});
afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.stop({ timeout: 2000 })));
});

function scheduler(prefix: string): Scheduler {
  const s = new Scheduler({ store: new RedisStore({ url: server.url, prefix }) });
  s.on('error', () => undefined);
  schedulers.push(s);
  return s;
}

describe('RedisStore durability', () => {
  it('restarted with --appendonly yes: all schedules come back and fire', async () => {
    const prefix = randomPrefix();
    const producer = scheduler(prefix);
    await producer.start({ execute: false });
    await producer.scheduleMany('job', Array.from({ length: 200 }, (_, i) => ({ uid: `u${i}`, in: 1500 + (i % 10) * 50, params: { i } })));
    await producer.schedule('poll', { uid: 'p', every: 300 });
    await producer.schedule('tick', { uid: 'c', cron: '* * * * * *' });
    await producer.schedule('off', { uid: 'd', every: '1h', enabled: false });
    const before = await producer.snapshot();
    await producer.stop();

    await server.restart();

    // Compared before anything executes: an executing scheduler would advance the recurring
    // schedules (the cron ticks every second) before the snapshot is read.
    const reader = scheduler(prefix);
    await reader.start({ execute: false });
    expect(await reader.snapshot()).toEqual(before);
    await reader.stop();

    const s = scheduler(prefix);
    const runs: RunContext[] = [];
    for (const task of ['job', 'poll', 'tick', 'off']) s.define(task, (run) => void runs.push(run));
    await s.start();
    await waitFor(() => runs.filter((r) => r.task === 'job').length === 200, 'the 200 one-shots', 20_000);
    await waitFor(() => runs.some((r) => r.task === 'poll') && runs.some((r) => r.task === 'tick'), 'the recurring schedules', 20_000);
    const jobs = runs.filter((r) => r.task === 'job');
    expect(new Set(jobs.map((r) => r.uid)).size).toBe(200);
    expect(jobs.find((r) => r.uid === 'u7')?.params).toEqual({ i: 7 });
    expect(runs.some((r) => r.task === 'off')).toBe(false);
    expect((await s.get('off', 'd'))?.enabled).toBe(false);
  }, 60_000);

  it('an executor survives a Redis restart: errors are emitted, nothing is lost, recurring goes on', async () => {
    const prefix = randomPrefix();
    const s = new Scheduler({ store: new RedisStore({ url: server.url, prefix }) });
    schedulers.push(s);
    const errors: Error[] = [];
    s.on('error', (err) => errors.push(err));
    const runs: RunContext[] = [];
    s.define('job', (run) => void runs.push(run));
    s.define('poll', (run) => void runs.push(run), { overlap: 'allow' });
    await s.start();
    await s.scheduleMany('job', Array.from({ length: 100 }, (_, i) => ({ uid: `u${i}`, in: 2500 + (i % 10) * 50 })));
    await s.schedule('poll', { uid: 'p', every: 200 });
    await waitFor(() => runs.some((r) => r.task === 'poll'), 'a first poll');
    await server.restart();
    const restartedAt = Date.now();
    await waitFor(() => runs.filter((r) => r.task === 'job').length === 100, 'the one-shots due after the restart', 30_000);
    await waitFor(() => runs.some((r) => r.task === 'poll' && r.dueAt.getTime() > restartedAt + 500), 'polls after the restart', 30_000);
    const jobs = runs.filter((r) => r.task === 'job');
    expect(new Set(jobs.map((r) => r.uid)).size).toBe(100);
    expect(errors.every((e) => (e as { code?: string }).code === 'ERR_STORE')).toBe(true);
    expect(s.state).toBe('started');
    await sleep(100);
  }, 60_000);
});
