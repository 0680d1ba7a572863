/**
 * Redis out of memory: a real redis-server with a small `maxmemory` and `noeviction`.
 *
 * How Redis 7 treats our scripts (EVALSHA, no `#!lua` shebang flags): over `maxmemory`, a
 * script is refused with an `OOM ...` error at its first write command that may grow memory
 * (HSET, HINCRBY, ZADD, SET...), provided it has written nothing before; a script whose first
 * write frees memory (DEL, HDEL, ZREM) runs to its end, even beyond the limit. Since a refused
 * script has written nothing, no script is left half-done. So, over the limit:
 * - upsert is refused (its first write is HINCRBY): `ERR_STORE_OOM`, nothing written;
 * - remove (cancel) works (ZREM first) and frees memory;
 * - a claim that leases something is refused (the lease's HSET), unless it first reaped an
 *   expired lease (HDEL), which lets that whole claim run;
 * - a one-shot's completion works (DEL first); a recurring schedule's completion and lease
 *   renewals are refused: those leases expire and are redelivered (or counted as failures).
 * Waits are generous and only for correctness; no timing is asserted.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, Scheduler, StoreError } from '../src/index.js';
import type { ClaimRequest } from '../src/store/Store.js';
import { recordFault } from './fault-report.js';
import { countBy, sleep, waitFor } from './helpers.js';
import { randomPrefix, readFaultEvents, redisCommand, spawnFaultExecutor, useChildSandbox, useRedisServer, type FaultChildConfig, type FaultEvent } from './redis-harness.js';

const redis = useRedisServer();
// Redis gets its memory back before the executors and schedulers stop.
const sandbox = useChildSandbox('fault-oom', { beforeStop: () => setMaxmemory(0) });

async function setMaxmemory(bytes: number): Promise<void> {
  expect(await redisCommand(redis.server.port, `CONFIG SET maxmemory ${bytes}`)).toBe('+OK\r\n');
}

async function usedMemory(): Promise<number> {
  const info = await redisCommand(redis.server.port, 'INFO memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

function scheduler(prefix: string): Scheduler {
  return sandbox.trackScheduler(new Scheduler({ store: new RedisStore({ url: redis.url, prefix }) }));
}

const occKey = (e: { task?: string; uid?: string; dueAt?: number }): string => `${e.task}|${e.uid}|${e.dueAt}`;
const runKey = (e: { task?: string; uid?: string; dueAt?: number; attempt?: number }): string => `${occKey(e)}|${e.attempt}`;

describe('Redis out of memory (maxmemory, noeviction)', () => {
  beforeAll(async () => {
    expect(await redisCommand(redis.server.port, 'CONFIG SET maxmemory-policy noeviction')).toBe('+OK\r\n');
  });

  it('schedule() rejects with StoreError ERR_STORE_OOM once Redis is full; nothing stored is lost; cancel frees memory; everything acknowledged runs once after', async () => {
    const prefix = randomPrefix();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const p = scheduler(prefix);
      const producerErrors: Error[] = [];
      p.on('error', (e) => producerErrors.push(e));
      await p.start({ execute: false });
      const limit = (await usedMemory()) + 2 * 1024 * 1024;
      await setMaxmemory(limit);

      // Schedule 20 at a time (1 KiB of params each) until Redis has refused 20.
      const params = { payload: 'x'.repeat(1024) };
      const acked: string[] = [];
      const refused: { uid: string; error: unknown }[] = [];
      for (let i = 0; refused.length < 20 && i < 50_000; ) {
        const batch = Array.from({ length: 20 }, () => `u${i++}`);
        const results = await Promise.allSettled(batch.map((uid) => p.schedule('job', { uid, in: 3000, params })));
        results.forEach((r, j) => {
          if (r.status === 'fulfilled') acked.push(batch[j] as string);
          else refused.push({ uid: batch[j] as string, error: r.reason });
        });
      }
      const fullAt = Date.now();
      expect(acked.length).toBeGreaterThan(0);
      expect(refused.length).toBeGreaterThanOrEqual(20); // the loop stopped because Redis refused, not at its cap
      // A clear, typed error: a StoreError with its own stable code, saying what happened.
      for (const { error } of refused) {
        expect(error).toBeInstanceOf(StoreError);
        expect(error).toMatchObject({ name: 'StoreError', code: 'ERR_STORE_OOM' });
        expect((error as Error).message).toMatch(/^RedisStore\.upsert: Redis is out of memory and refused a write \(OOM .*maxmemory/);
      }
      // A refused schedule wrote nothing; every acknowledged one is there (reads work when full).
      expect((await Promise.all(refused.map(({ uid }) => p.get('job', uid)))).filter((r) => r !== null)).toEqual([]);
      const listed = await p.list({ task: 'job' });
      expect(listed.map((r) => r.uid).sort()).toEqual([...acked].sort());
      expect(listed.every((r) => r.nextRunAt !== null && (r.params as { payload?: string }).payload?.length === 1024)).toBe(true);

      // Still full: another schedule is refused. Cancelling works (it frees memory)...
      await expect(p.schedule('job', { uid: 'still-full', in: 0 })).rejects.toMatchObject({ code: 'ERR_STORE_OOM' });
      const cancelled = acked.filter((_, i) => i % 4 === 0);
      expect(await Promise.all(cancelled.map((uid) => p.cancel('job', uid)))).toEqual(cancelled.map(() => true));
      // ...and then scheduling works again, under the same limit.
      const fresh = Array.from({ length: 10 }, (_, i) => `fresh${i}`);
      for (const uid of fresh) await p.schedule('job', { uid, in: 0, params });
      const freedAt = Date.now();
      expect(await usedMemory()).toBeLessThan(limit);

      // Raise the limit; an executor runs every acknowledged, uncancelled schedule exactly once.
      await setMaxmemory(0);
      const runs: { uid: string; at: number }[] = [];
      const ex = scheduler(prefix);
      ex.on('error', () => undefined);
      ex.define('job', (run) => void runs.push({ uid: run.uid, at: Date.now() }));
      await ex.start();
      const expected = [...acked.filter((u) => !cancelled.includes(u)), ...fresh];
      await waitFor(() => runs.length >= expected.length, 'every acknowledged schedule to run', 60_000);
      await sleep(500);
      const counts = countBy(runs, (r) => r.uid);
      expect([...counts].filter(([, n]) => n > 1)).toEqual([]);
      expect(expected.filter((u) => counts.get(u) !== 1)).toEqual([]);
      expect(runs.filter((r) => cancelled.includes(r.uid) || refused.some((x) => x.uid === r.uid))).toEqual([]);
      await waitFor(async () => (await p.list({ task: 'job' })).length === 0, 'finished one-shots to be removed', 20_000);
      expect(producerErrors).toEqual([]);
      expect(unhandled).toEqual([]);

      recordFault({
        fault: 'Redis out of memory (maxmemory = used + 2 MiB, noeviction): producer',
        setup: 'RedisStore, 1 redis-server, in-process producer, one-shots with 1 KiB params; then 1 in-process executor',
        injected: 1,
        occurrences: expected.length,
        lost: expected.filter((u) => counts.get(u) === undefined).length,
        duplicates: [...counts.values()].reduce((a, n) => a + n - 1, 0),
        explainedDuplicates: 0,
        recoveryMs: freedAt - fullAt,
        notes:
          `${acked.length} schedules acknowledged before Redis refused; ${refused.length} refusals, all StoreError ERR_STORE_OOM, none stored; ` +
          `cancelling ${cancelled.length} under OOM worked and scheduling worked again (recoveryMs: from the first refusal to scheduling working again, cancels included); ` +
          `after raising maxmemory every acknowledged schedule ran once`,
      });
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  }, 120_000);

  it('executors while Redis is out of memory for 3 s: no crash, typed errors, leases that could not be renewed are redelivered, nothing lost', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    const lease = 1000;
    const retry = { attempts: 3, delay: 50 };
    const config: Omit<FaultChildConfig, 'url'> = {
      prefix,
      out,
      tasks: {
        job: { options: { lease, retry } },
        slow: { sleepMs: 2500, options: { lease, retry } },
        // attempts: 1: a tick whose lease expired is counted as a failure, not run again.
        tick: { options: { lease } },
      },
    };
    const kids = await sandbox.spawn(2, () => spawnFaultExecutor(sandbox.snapshot, { ...config, url: redis.url }));
    const p = await sandbox.producer({ url: redis.url, prefix });
    await p.schedule('tick', { uid: 't', every: 300 });
    await p.scheduleMany('slow', ['s0', 's1'].map((uid) => ({ uid, in: 0 })));
    const started = (task: string): number => readFaultEvents(out).filter((e) => e.ev === 'start' && e.task === task).length;
    await waitFor(() => started('slow') === 2, 'the slow runs to start', 30_000);
    // One-shots falling due before, during and after the 3 s out of memory.
    const JOBS = 300;
    const jobs = Array.from({ length: JOBS }, (_, i) => `j${i}`);
    await p.scheduleMany('job', jobs.map((uid, i) => ({ uid, in: Math.floor((i * 5000) / JOBS) })));

    // The fault: maxmemory below what Redis uses, so every write that may grow memory is refused.
    const oomStart = Date.now();
    await setMaxmemory(1);
    await sleep(3000);
    await setMaxmemory(0);
    const oomEnd = Date.now();

    const succeeded = (task: string): Set<string | undefined> => new Set(readFaultEvents(out).filter((e) => e.ev === 'success' && e.task === task).map((e) => e.uid));
    await waitFor(() => jobs.every((u) => succeeded('job').has(u)) && succeeded('slow').size === 2, 'every one-shot to succeed', 60_000);
    await waitFor(() => readFaultEvents(out).filter((e) => e.ev === 'success' && e.task === 'tick' && e.realNow > oomEnd).length >= 3, 'ticks after the fault', 30_000);
    await p.update('tick', 't', { enabled: false });
    await sleep(1500); // the last claimed tick settles
    const tickReport = await p.get('tick', 't');
    const store = new RedisStore({ url: redis.url, prefix });
    await store.open();
    const depths = await store.depths();
    await store.close();
    expect(kids.every((k) => k.process.exitCode === null && k.process.signalCode === null)).toBe(true);
    await sandbox.stopChildren();

    const events = readFaultEvents(out);
    expect(events.filter((e) => e.ev === 'unhandled')).toEqual([]);
    // Every store error the executors saw was the typed out-of-memory one, and there were some.
    const errors = events.filter((e) => e.ev === 'error' || e.ev === 'partition-error');
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.filter((e) => e.code !== 'ERR_STORE_OOM' || !/Redis is out of memory/.test(e.message ?? ''))).toEqual([]);

    const starts = events.filter((e) => e.ev === 'start');
    const successes = events.filter((e) => e.ev === 'success');
    const reaped = events.filter((e) => e.ev === 'lost' && e.reason === 'lease expired');
    const startsBy = countBy(starts, occKey);
    const successBy = countBy(successes, occKey);
    const reapedBy = countBy(reaped, occKey);
    // Nothing lost, nothing doubled without cause: every one-shot succeeded exactly once, every
    // lease ended in a success or expired, and every extra start is the redelivery of an
    // expired lease (the next attempt).
    const oneShotSuccess = countBy(successes.filter((e) => e.task !== 'tick'), (e) => `${e.task}|${e.uid}`);
    expect([...jobs.map((u) => `job|${u}`), 'slow|s0', 'slow|s1'].filter((k) => oneShotSuccess.get(k) !== 1)).toEqual([]);
    for (const [key, n] of startsBy) expect({ key, starts: n }).toEqual({ key, starts: (successBy.get(key) ?? 0) + (reapedBy.get(key) ?? 0) });
    expect([...countBy(starts, runKey)].filter(([, n]) => n > 1)).toEqual([]);
    const duplicates = [...startsBy.values()].reduce((a, n) => a + n - 1, 0);
    const redeliveries = starts.filter((e) => (e.attempt ?? 1) > 1).length;
    expect(duplicates).toBe(redeliveries);
    expect(duplicates).toBe(reaped.filter((r) => r.requeued === true).length);
    // The slow runs could not renew their 1 s leases during the 3 s: both first attempts
    // expired and ran again (a second attempt started during the fault may expire too).
    expect(reaped.filter((e) => e.task === 'slow' && e.attempt === 1)).toHaveLength(2);
    expect(starts.filter((e) => e.task === 'slow')).toHaveLength(2 + reaped.filter((e) => e.task === 'slow').length);
    // The tick: each due time started once; its report counts what the executors saw (a tick
    // whose completion Redis refused expired and counts as a failure).
    const ticks = starts.filter((e) => e.task === 'tick');
    expect(new Set(ticks.map(occKey)).size).toBe(ticks.length);
    expect(tickReport?.successes).toBe(successes.filter((e) => e.task === 'tick').length);
    expect(tickReport?.failures).toBe(reaped.filter((e) => e.task === 'tick').length);
    expect(tickReport?.running).toBe(0);
    // No occurrence is left claimed but not leased: nothing runs, nothing is due.
    expect([...depths].filter(([, d]) => d.running !== 0 || d.due !== 0)).toEqual([]);
    expect(await p.list({ task: 'job' })).toEqual([]);

    const after = successes.filter((e) => e.realNow >= oomEnd).sort((x, y) => x.realNow - y.realNow);
    const duringOom = (e: FaultEvent): boolean => e.realNow >= oomStart && e.realNow < oomEnd;
    recordFault({
      fault: 'Redis out of memory for 3 s (CONFIG SET maxmemory 1, noeviction): executors',
      setup: 'RedisStore, 1 redis-server, 2 executor processes; 300 one-shots + 2 slow runs (2.5 s, lease 1 s, attempts 3) + an every-300ms tick (attempts 1)',
      injected: 1,
      occurrences: JOBS + 2 + new Set(ticks.map(occKey)).size,
      lost: [...jobs.map((u) => `job|${u}`), 'slow|s0', 'slow|s1'].filter((k) => oneShotSuccess.get(k) === undefined).length,
      duplicates,
      explainedDuplicates: redeliveries,
      recoveryMs: after.length > 0 ? (after[0] as FaultEvent).realNow - oomEnd : null,
      notes:
        `store errors seen by executors: ${errors.length}, all ERR_STORE_OOM (${errors.filter((e) => e.ev === 'partition-error').length} as partition errors of a claim that other partitions answered); ` +
        `during the fault: ${starts.filter(duringOom).length} runs started, ${successes.filter(duringOom).length} completed; ` +
        `leases expired: ${reaped.length} (${reaped.filter((r) => r.task === 'tick').length} ticks counted as failures, the rest redelivered)`,
    });
  }, 120_000);
  it('a claim refused by an out-of-memory Redis changes nothing, is reported, and asks to be called again later rather than at once', async () => {
    const prefix = randomPrefix();
    const partitionErrors: Error[] = [];
    const store = new RedisStore({ url: redis.url, prefix, partitions: 4, onError: (e) => partitionErrors.push(e) });
    await store.open();
    try {
      const p = await sandbox.producer({ url: redis.url, prefix, partitions: 4 });
      await p.schedule('job', { uid: 'x', in: 0 }); // due in one partition; the other three answer
      const request: ClaimRequest = {
        tasks: new Map([['job', { overlap: 'skip', misfire: 'run-once', catchupWindow: 0, attempts: 1, leaseMs: 5000, limit: 10 }]]),
        limit: 10,
        owner: 'fault-test',
      };
      await setMaxmemory(1);
      const refused = await store.claim(request);
      expect(refused.runs).toEqual([]);
      expect(partitionErrors).toHaveLength(1);
      expect(partitionErrors[0]).toMatchObject({ name: 'StoreError', code: 'ERR_STORE_OOM' });
      // Due work it could not claim must not make the executor claim again at once (a loop
      // while Redis is full): it comes back later (within a second), or at a notification.
      expect(refused.nextDueAt).not.toBeNull();
      expect(refused.nextDueAt as number).toBeGreaterThan(refused.now);
      expect((await p.get('job', 'x'))?.running).toBe(0);

      await setMaxmemory(0);
      const claimed = await store.claim(request);
      expect(claimed.runs.map((r) => [r.uid, r.attempt, r.kind])).toEqual([['x', 1, 'scheduled']]);
      expect(await store.complete(claimed.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: claimed.now, durationMs: 1 })))).toEqual(['ok']);
      expect(await p.list({ task: 'job' })).toEqual([]);
      expect(partitionErrors).toHaveLength(1);
    } finally {
      await store.close();
    }
  }, 60_000);
});
