/**
 * schedule-mq compatibility (`schedkit/compat/schedule-mq`) on a real redis-server: the seed
 * document's examples (only the import line and the server's port differ), the behaviours
 * SEEDS-NOTES.md lists, and one "does not copy bug" test per listed bug.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createScheduler, type Scheduler, type SchedulerOptions } from '../src/compat/schedule-mq/index.js';
import { sleep, waitFor } from './helpers.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();
const made: Scheduler[] = [];

/** A scheduler on the test server with a fresh prefix (closed after the test). */
function mq(options: Partial<SchedulerOptions> = {}): Scheduler {
  const s = createScheduler({ redisConfig: { host: '127.0.0.1', port: redis.server.port }, redisPrefix: `${randomPrefix()}:`, ...options });
  s.on('error', () => undefined);
  made.push(s);
  return s;
}

afterEach(async () => {
  await Promise.all(made.splice(0).map((s) => s.close()));
  vi.restoreAllMocks();
});

/** Due times (epoch ms) of the runs of `taskId`'s cron, from its report's history. */
async function tickRuns(s: Scheduler, taskId: string): Promise<number[]> {
  const report = await s.producer.get(taskId, 'cron');
  return (report?.history ?? []).filter((r) => r.outcome !== 'skipped').map((r) => r.dueAt);
}

// The seed's examples call start() and push() fire-and-forget, as schedule-mq's returned nothing.
/* eslint-disable @typescript-eslint/no-floating-promises */
describe('schedule-mq seed examples (002), run as written', () => {
  it('"Basic Usage": bind + register("*/10 * * * * *") + start runs the task on the next tick', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    vi.spyOn(console, 'warn').mockImplementation(() => undefined); // ioredis: "password was supplied" to a server without one
    const scheduler = createScheduler({
        redisConfig: {
            host: "127.0.0.1",
            port: redis.server.port,
            password: "dummy", // optional
            db: 0, // optional
        },
        redisPrefix: "_my_prefix:", // defaults to "_schedule_mq:"
        pollInterval: 2000,  // defaults to 1000, generally needn't be changed
    });
    made.push(scheduler);

    scheduler.bind("taskA", () => {
        console.log("task");
        return true;
    });
    scheduler.register("taskA", {
        cronExpr: "*/10 * * * * *"
    });

    scheduler.start();

    await waitFor(() => log.mock.calls.some((c) => c[0] === 'task'), 'the first */10 tick', 15_000);
    await scheduler.unregister('taskA');
  });

  it('"Even if we have two schedulers with the same taskA config, taskA will be executed only once every 10 seconds"', async () => {
    const scheduler = mq();
    const scheduler2 = createScheduler({ redisConfig: { host: '127.0.0.1', port: redis.server.port }, redisPrefix: (await prefixOf(scheduler)) });
    made.push(scheduler2);
    let runs = 0;
    for (const s of [scheduler, scheduler2]) s.bind('taskA', () => ++runs > 0);

    scheduler.register("taskA", {
        cronExpr: "*/10 * * * * *"
    });
    scheduler.start();

    scheduler2.register("taskA", {
        cronExpr: "*/10 * * * * *"
    });
    scheduler2.start();

    await waitFor(() => runs === 1, 'one */10 tick', 15_000);
    await sleep(1000);
    expect(runs).toBe(1);
    expect(new Set(await tickRuns(scheduler, 'taskA')).size).toBe(1);
  });

  it('"A registered task can also be configured to be automatically retried" is accepted and stored', async () => {
    const scheduler = mq();
    scheduler.register("taskA", {
        cronExpr: "* */10 * * * *",
        retry: true,
        retryTimeout: 10000,
    });
    await scheduler.start();
    const report = await scheduler.producer.get('taskA', 'cron');
    expect(report?.schedule).toEqual({ kind: 'cron', cron: '* */10 * * * *' });
    expect(report?.params).toMatchObject({ retry: true, retryTimeout: 10000 });
  });

  it('"Manually Push Task": push("taskA"), push with retry, and push with data and delay', async () => {
    const scheduler = mq();
    const a: unknown[] = [];
    const b: { data: unknown; at: number }[] = [];
    scheduler.bind('taskA', (data) => a.push(data) > 0);
    scheduler.bind("taskB", (data) => {
        console.log("received ", data);
        b.push({ data, at: Date.now() });
        return true;
    });
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    await scheduler.start();

    scheduler.push("taskA");
    scheduler.push("taskA", { retry: true, retryTimeout: 5000 });
    const pushedAt = Date.now();
    scheduler.push("taskB", { data: "im data", delay: 5000 });

    await waitFor(() => a.length === 2, 'both taskA pushes');
    expect(a).toEqual([undefined, undefined]);
    await waitFor(() => b.length === 1, 'the delayed taskB', 15_000);
    expect(b[0]?.data).toBe('im data');
    expect(b[0]?.at).toBeGreaterThanOrEqual(pushedAt + 5000);
  });
});

/* eslint-enable @typescript-eslint/no-floating-promises */

async function prefixOf(s: Scheduler): Promise<string> {
  await s.producer.ready();
  return (s.producer.store as unknown as { prefix: string }).prefix;
}

describe('schedule-mq behaviours (SEEDS-NOTES 002)', () => {
  it('defaults: redisPrefix "_schedule_mq:" and pollInterval 1000 are accepted; a redis:// URL works as redisConfig', async () => {
    const s = createScheduler({ redisConfig: { host: '127.0.0.1', port: redis.server.port } });
    made.push(s);
    expect(await prefixOf(s)).toBe('_schedule_mq:');
    const t = createScheduler({ redisConfig: redis.url, redisPrefix: `${randomPrefix()}:` });
    made.push(t);
    const got: unknown[] = [];
    t.bind('viaUrl', (d) => got.push(d) > 0);
    await t.start();
    await t.push('viaUrl', { data: 'x' });
    await waitFor(() => got.length === 1, 'the pushed task');
  });

  it('bind, register and clear are refused while started, and allowed again after stop()', async () => {
    const s = mq();
    s.bind('t', () => true);
    await s.start();
    expect(() => s.bind('u', () => true)).toThrow('Can only bind when Scheduler is not running');
    expect(() => s.register('u', { cronExpr: '* * * * *' })).toThrow('Can only register when Scheduler is not running');
    expect(() => s.clear()).toThrow('Can only clear when Scheduler is not running');
    await s.stop();
    s.bind('u', () => true);
    s.register('u', { cronExpr: '* * * * *' });
    s.clear();
  });

  it('a bad cron expression is refused by register()', () => {
    const s = mq();
    expect(() => s.register('t', { cronExpr: 'every tuesday' })).toThrow(/cronExpr/);
  });

  it('a handler returning false or throwing is run again after retryTimeout when the push asked for retry', async () => {
    const s = mq();
    const calls: string[] = [];
    s.bind('falsy', (d) => {
      calls.push(`falsy:${d}`);
      return calls.filter((c) => c.startsWith('falsy')).length >= 2;
    });
    s.bind('throws', (d) => {
      calls.push(`throws:${d}`);
      if (calls.filter((c) => c.startsWith('throws')).length < 2) throw new Error('boom');
      return true;
    });
    s.bind('noRetry', (d) => {
      calls.push(`noRetry:${d}`);
      return false;
    });
    await s.start();
    await s.push('falsy', { data: 'a', retry: true, retryTimeout: 50 });
    await s.push('throws', { data: 'b', retry: true, retryTimeout: 50 });
    await s.push('noRetry', { data: 'c' });
    await waitFor(() => calls.length === 5, 'two attempts each of the retried pushes');
    await sleep(300);
    expect(calls.sort()).toEqual(['falsy:a', 'falsy:a', 'noRetry:c', 'throws:b', 'throws:b']);
  });

  it('many instances with the same cron fire once per tick (3 instances, every second)', async () => {
    const first = mq();
    const prefix = await prefixOf(first);
    const all = [first, ...[1, 2].map(() => mq({ redisPrefix: prefix }))];
    let runs = 0;
    for (const s of all) {
      s.bind('tick', () => {
        runs++;
        return true;
      });
      s.register('tick', { cronExpr: '* * * * * *' });
    }
    await Promise.all(all.map((s) => s.start()));
    await waitFor(() => runs >= 4, 'four ticks', 15_000);
    await Promise.all(all.map((s) => s.stop()));
    const dues = await tickRuns(first, 'tick');
    expect(dues.length).toBe(runs);
    expect(new Set(dues).size).toBe(dues.length);
  });

  it('push works before start() and after stop(): another instance that binds the task runs it', async () => {
    const producer = mq();
    const consumer = mq({ redisPrefix: await prefixOf(producer) });
    const got: unknown[] = [];
    consumer.bind('job', (d) => got.push(d) > 0);
    await producer.push('job', { data: 'before' });
    await consumer.start();
    await producer.start();
    await producer.stop();
    await producer.push('job', { data: 'after' });
    await waitFor(() => got.length === 2, 'both pushes');
    expect(got.sort()).toEqual(['after', 'before']);
  });
});

describe('schedule-mq bugs not copied (SEEDS-NOTES 002)', () => {
  it('does not copy bug: push(taskId) without options throws', async () => {
    const s = mq();
    const got: unknown[] = [];
    s.bind('bare', (d) => got.push(d) > 0);
    await s.start();
    expect(() => void s.push('bare')).not.toThrow();
    await waitFor(() => got.length === 1, 'the bare push');
    expect(got).toEqual([undefined]);
  });

  it('does not copy bug: cron with retry never works (a failed tick is retried after retryTimeout)', async () => {
    const s = mq();
    const calls: number[] = [];
    s.bind('cronRetry', () => {
      calls.push(Date.now());
      return calls.length >= 2; // the tick's first run fails, its retry succeeds
    });
    s.register('cronRetry', { cronExpr: '0 0 1 1 *', retry: true, retryTimeout: 100 }); // never due during the test
    await s.start();
    await s.producer.trigger('cronRetry', 'cron'); // run a tick now
    await waitFor(() => calls.length === 2, 'the retry of the failed tick');
    expect((calls[1] ?? 0) - (calls[0] ?? 0)).toBeGreaterThanOrEqual(100);
    const retries = (await s.producer.list({ task: 'cronRetry' })).filter((r) => r.uid.startsWith('retry:'));
    expect(retries).toEqual([]); // the retry was a one-shot and is done
  });

  it('does not copy bug: retries never stop (maxAttempts bounds them)', async () => {
    const s = mq({ maxAttempts: 3 });
    let calls = 0;
    s.bind('hopeless', () => {
      calls++;
      return false;
    });
    await s.start();
    await s.push('hopeless', { retry: true, retryTimeout: 20 });
    await waitFor(() => calls === 3, 'three attempts');
    await sleep(500); // 25 retry periods
    expect(calls).toBe(3);
    // A per-push bound overrides the scheduler's.
    let once = 0;
    await s.stop();
    s.bind('once', () => ++once < 0);
    await s.start();
    await s.push('once', { retry: true, retryTimeout: 20, maxAttempts: 1 });
    await waitFor(() => once === 1, 'the single attempt');
    await sleep(300);
    expect(once).toBe(1);
  });

  it('does not copy bug: BRPOP timeout given in ms but read as seconds (pollInterval 60000 delays nothing; stop() returns)', async () => {
    const s = mq({ pollInterval: 60_000 });
    const got: unknown[] = [];
    s.bind('prompt', (d) => got.push(d) > 0);
    await s.start();
    await sleep(200); // idle: an implementation blocked in a 60 000 s BRPOP would now hold the connection
    await s.push('prompt', { data: '1' });
    await waitFor(() => got.length === 1, 'the push to run without waiting a poll interval');
    await s.stop(); // resolves: nothing is left blocking
    expect(s.running).toBe(false);
  });

  it('does not copy bug: handlers not awaited, so concurrency is unbounded (concurrency 2 → at most 2 at once)', async () => {
    const s = mq({ concurrency: 2 });
    let inFlight = 0;
    let peak = 0;
    let done = 0;
    const gates: (() => void)[] = [];
    s.bind('slow', async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise<void>((resolve) => gates.push(resolve));
      inFlight--;
      done++;
      return true;
    });
    await s.start();
    for (let i = 0; i < 6; i++) await s.push('slow');
    await waitFor(() => inFlight === 2, 'two handlers running');
    await sleep(300);
    expect(inFlight).toBe(2); // the other four wait for a slot
    while (done < 6) {
      gates.splice(0).forEach((g) => g());
      await sleep(20);
    }
    expect(peak).toBe(2);
  });

  it('does not copy bug: missed ticks are never caught up (a restarted instance runs the missed tick once)', async () => {
    const a = mq();
    const prefix = await prefixOf(a);
    let aRuns = 0;
    a.bind('tick', () => ++aRuns > 0);
    a.register('tick', { cronExpr: '* * * * * *' });
    await a.start();
    await waitFor(() => aRuns >= 1, 'a first tick');
    await a.stop();
    const aDues = new Set(await tickRuns(a, 'tick'));
    await a.close();
    await sleep(2500); // at least two ticks pass with no instance running
    const b = mq({ redisPrefix: prefix });
    const bCalls: number[] = [];
    b.bind('tick', () => bCalls.push(Date.now()) > 0);
    b.register('tick', { cronExpr: '* * * * * *' });
    const bStart = Date.now();
    await b.start();
    await waitFor(() => bCalls.length >= 1, 'the catch-up run');
    await b.stop();
    const bDues = (await tickRuns(b, 'tick')).filter((d) => !aDues.has(d));
    // Ticks due before B started were missed by everyone: one catch-up run for them
    // (misfire run-once) — not none (schedule-mq's bug), and not one per missed tick.
    expect(bDues.filter((d) => d < bStart)).toHaveLength(1);
  });
});
