/**
 * Network faults between executors and Redis, with real processes and a real redis-server:
 * - `CLIENT PAUSE <ms> ALL` longer than the leases: every command of every client waits, so
 *   leases expire meanwhile; fencing must refuse the stale completions and renewals, and the
 *   expired leases are redelivered;
 * - `CLIENT KILL TYPE normal|pubsub` during a stream: ioredis reconnects (and resends what it
 *   had in flight), the wake-up subscription comes back, nothing is lost.
 * Each executor process logs every run and event (tests/redis-harness.ts spawnFaultExecutor);
 * the test counts them. Waits are generous and only for correctness; no timing is asserted.
 */
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RedisStore, type Scheduler } from '../src/index.js';
import type { ClaimedRun, ClaimRequest, LostLease } from '../src/store/Store.js';
import { recordFault } from './fault-report.js';
import { countBy, sleep, waitFor } from './helpers.js';
import { randomPrefix, readFaultEvents, redisCommand, spawnFaultExecutor, useChildSandbox, useRedisServer, type FaultChild, type FaultChildConfig, type FaultEvent } from './redis-harness.js';

const redis = useRedisServer();
const sandbox = useChildSandbox('fault-net');

function executors(n: number, config: Omit<FaultChildConfig, 'url'>): Promise<FaultChild[]> {
  return sandbox.spawn(n, () => spawnFaultExecutor(sandbox.snapshot, { ...config, url: redis.url }));
}

/** A producer in this process (schedules, reports; runs nothing). */
function producer(prefix: string, partitions?: number): Promise<Scheduler> {
  return sandbox.producer({ url: redis.url, prefix, ...(partitions === undefined ? {} : { partitions }) });
}

/**
 * A TCP proxy in front of Redis that can lose one reply: armed with `skip`, it forwards that
 * many reply chunks, then drops the next one and cuts the connection, so the command was
 * executed but its client never hears so (and ioredis resends it after reconnecting).
 */
async function replyDroppingProxy(port: number): Promise<{ port: number; arm(skip: number): void; readonly dropped: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let armed: { skip: number } | null = null;
  let dropped = 0;
  const server = createServer((client) => {
    const upstream = createConnection({ port, host: '127.0.0.1' });
    sockets.add(client);
    sockets.add(upstream);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (armed !== null && armed.skip-- <= 0) {
        armed = null;
        dropped++;
        close();
        return;
      }
      client.write(chunk);
    });
    for (const socket of [client, upstream]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    arm: (skip: number) => {
      armed = { skip };
    },
    get dropped() {
      return dropped;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const occKey = (e: { task?: string; uid?: string; dueAt?: number }): string => `${e.task}|${e.uid}|${e.dueAt}`;
const runKey = (e: { task?: string; uid?: string; dueAt?: number; attempt?: number }): string => `${occKey(e)}|${e.attempt}`;

/** The runs and lease outcomes of a log, by occurrence. */
function analyse(events: readonly FaultEvent[]) {
  const starts = events.filter((e) => e.ev === 'start');
  const successes = events.filter((e) => e.ev === 'success');
  // A lease the store found expired and took back (reported to the executor whose claim reaped it).
  const reaped = events.filter((e) => e.ev === 'lost' && e.reason === 'lease expired');
  // The owner of an expired lease: its completion was refused, or it was fenced while running.
  const stale = events.filter((e) => e.ev === 'lost' && e.reason === 'lease lost before completion');
  const fenced = events.filter((e) => e.ev === 'failure' && e.code === 'ERR_LEASE_LOST');
  // A refused completion of a lease that never expired: the store applied its first send,
  // whose reply was lost with the connection; ioredis sent it again after reconnecting, and
  // the lease was gone by then. The run did succeed (the store recorded it).
  const reapedRuns = new Set(reaped.map(runKey));
  const resent = stale.filter((e) => !reapedRuns.has(runKey(e)));
  const startsBy = countBy(starts, occKey);
  const successBy = countBy(successes, occKey);
  const reapedBy = countBy(reaped, occKey);
  // Extra starts of an occurrence beyond its first. A redelivery carries the next attempt
  // number, and an attempt > 1 of a handler that never fails exists only because the lease of
  // the attempt before expired: those duplicates are explained. Two starts of one attempt
  // would be a double claim.
  let duplicates = 0;
  let explained = 0;
  for (const n of startsBy.values()) duplicates += Math.max(0, n - 1);
  const attemptsBy = countBy(starts, runKey);
  const doubleClaims = [...attemptsBy].filter(([, n]) => n > 1).map(([key]) => key);
  for (const [key, n] of startsBy) {
    if (n <= 1) continue;
    const redeliveries = starts.filter((e) => occKey(e) === key && (e.attempt ?? 1) > 1).length;
    explained += Math.min(n - 1, redeliveries);
  }
  return { starts, successes, reaped, stale, resent, fenced, startsBy, successBy, reapedBy, duplicates, explained, doubleClaims };
}

/**
 * The end of a stream: the report of tick 't', then the executors (every one still alive) are
 * stopped; their log, analysed, with no unhandled rejection in it.
 */
async function finish(p: Scheduler, kids: readonly FaultChild[], out: string) {
  const tickReport = await p.get('tick', 't');
  expect(kids.every((k) => k.process.exitCode === null && k.process.signalCode === null)).toBe(true);
  await sandbox.stopChildren();

  const events = readFaultEvents(out);
  const a = analyse(events);
  expect(events.filter((e) => e.ev === 'unhandled')).toEqual([]);
  return { tickReport, events, a };
}

describe('network faults between executors and Redis', () => {
  it('CLIENT PAUSE ALL for 3 s with 1 s leases: stale completions are refused, expired leases redelivered, every occurrence succeeds once', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    const lease = 1000;
    const retry = { attempts: 3, delay: 50 };
    const kids = await executors(3, {
      prefix,
      out,
      tasks: {
        job: { options: { lease, retry } },
        slow: { sleepMs: 2000, options: { lease, retry } },
        hang: { hangFirstAttempt: true, options: { lease, retry } },
        // attempts: 1, so a tick whose lease expired is reported as a failure, not re-run.
        tick: { options: { lease } },
      },
    });
    const p = await producer(prefix);
    const JOBS = 600;
    const jobs = Array.from({ length: JOBS }, (_, i) => `j${i}`);
    // A stream of one-shots due over the next 8 s: some before, many during, some after the pause.
    await p.scheduleMany('job', jobs.map((uid, i) => ({ uid, in: 500 + Math.floor((i * 8000) / JOBS) })));
    await p.schedule('tick', { uid: 't', every: 500 });
    await sleep(1500);
    const slows = ['s0', 's1', 's2', 's3'];
    const hangs = ['h0', 'h1', 'h2', 'h3'];
    await p.scheduleMany('hang', hangs.map((uid) => ({ uid, in: 0 })));
    await p.scheduleMany('slow', slows.map((uid) => ({ uid, in: 0 })));
    const started = (task: string): number => readFaultEvents(out).filter((e) => e.ev === 'start' && e.task === task).length;
    await waitFor(() => started('slow') === 4 && started('hang') === 4, 'the slow and hanging runs to start', 30_000);

    // The fault: every client (executors and producer) is paused for 3 s; leases are 1 s.
    const PAUSE_MS = 3000;
    const pauseStart = Date.now();
    expect(await redisCommand(redis.server.port, `CLIENT PAUSE ${PAUSE_MS} ALL`)).toBe('+OK\r\n');
    const pauseEnd = Date.now() + PAUSE_MS; // it ends PAUSE_MS after Redis ran the command (at the latest now)
    await sleep(PAUSE_MS);

    const done = (uids: readonly string[], task: string): boolean => {
      const ok = new Set(readFaultEvents(out).filter((e) => e.ev === 'success' && e.task === task).map((e) => e.uid));
      return uids.every((u) => ok.has(u));
    };
    await waitFor(() => done(jobs, 'job') && done(slows, 'slow') && done(hangs, 'hang'), 'every one-shot to succeed', 60_000);
    await waitFor(() => readFaultEvents(out).filter((e) => e.ev === 'success' && e.task === 'tick' && e.realNow > pauseEnd).length >= 3, 'ticks after the pause', 30_000);
    await p.update('tick', 't', { enabled: false });
    await sleep(1500); // the last claimed tick settles
    const { tickReport, events, a } = await finish(p, kids, out);

    // Every one-shot succeeded exactly once (a finished one-shot is deleted: a second success is impossible).
    const oneShots = [...jobs.map((u) => `job|${u}`), ...slows.map((u) => `slow|${u}`), ...hangs.map((u) => `hang|${u}`)];
    const successByUid = countBy(a.successes.filter((e) => e.task !== 'tick'), (e) => `${e.task}|${e.uid}`);
    expect(oneShots.filter((k) => successByUid.get(k) !== 1)).toEqual([]);
    expect(await p.list({ task: 'job' })).toEqual([]);

    // Every lease ended in a success or was found expired by the store: starts = successes + reaped.
    for (const [key, n] of a.startsBy) expect({ key, starts: n }).toEqual({ key, starts: (a.successBy.get(key) ?? 0) + (a.reapedBy.get(key) ?? 0) });
    // Each duplicate is a redelivery of a lease that expired during the pause: it was granted
    // before the pause ended and taken back after the pause began.
    expect(a.doubleClaims).toEqual([]);
    expect(a.duplicates).toBe(a.explained);
    expect(a.duplicates).toBe(a.reaped.filter((r) => r.requeued === true).length);
    const startAt = new Map(a.starts.map((e) => [runKey(e), e.realNow]));
    for (const r of a.reaped) {
      expect(startAt.get(runKey(r)) ?? 0).toBeLessThan(pauseEnd);
      expect(r.realNow).toBeGreaterThanOrEqual(pauseStart);
    }
    // ...and its owner was told: its completion was refused (lease-lost) or it was fenced while running.
    const ownerSide = countBy([...a.stale, ...a.fenced], runKey);
    expect(a.reaped.filter((r) => ownerSide.get(runKey(r)) !== 1)).toEqual([]);
    expect(a.stale.length + a.fenced.length).toBe(a.reaped.length);
    expect(a.resent).toEqual([]); // no connection was lost: no completion was sent twice

    // The hanging runs were freed only by the lost lease (fenced), then ran again (attempt 2).
    const hangStarts = a.starts.filter((e) => e.task === 'hang');
    expect(hangStarts).toHaveLength(8);
    expect(a.fenced.filter((e) => e.task === 'hang')).toHaveLength(4);
    expect(a.successes.filter((e) => e.task === 'hang').every((e) => e.attempt === 2)).toBe(true);
    // The slow runs finished during the pause: their completions reached Redis after their
    // leases had expired and were refused; each ran again.
    expect(a.starts.filter((e) => e.task === 'slow')).toHaveLength(8);
    expect(a.stale.filter((e) => e.task === 'slow')).toHaveLength(4);

    // The tick: each due time started at most once, on its 500 ms cadence, and kept going after
    // the pause; its report counts what the executors saw.
    const ticks = a.starts.filter((e) => e.task === 'tick');
    const tickDues = [...new Set(ticks.map((e) => e.dueAt as number))].sort((x, y) => x - y);
    expect(ticks).toHaveLength(tickDues.length);
    for (const d of tickDues) expect(((d - (tickDues[0] as number)) % 500 + 500) % 500).toBe(0);
    expect(tickReport?.successes).toBe(a.successes.filter((e) => e.task === 'tick').length);
    expect(tickReport?.failures).toBe(a.reaped.filter((e) => e.task === 'tick').length);
    expect(tickReport?.skips).toBe(events.filter((e) => e.ev === 'skipped' && e.task === 'tick').length);

    const afterPause = a.successes.filter((e) => e.realNow >= pauseEnd).sort((x, y) => x.realNow - y.realNow);
    const recoveryMs = afterPause.length > 0 ? Math.max(0, (afterPause[0] as FaultEvent).realNow - pauseEnd) : null;
    const occurrences = oneShots.length + tickDues.length;
    const lost = oneShots.filter((k) => successByUid.get(k) === undefined).length;
    const errors = events.filter((e) => e.ev === 'error' || e.ev === 'partition-error');
    recordFault({
      fault: 'CLIENT PAUSE 3000 ALL (leases 1 s)',
      setup: 'RedisStore, 1 redis-server, 3 executor processes; 608 one-shots (retry attempts 3) + an every-500ms tick (attempts 1)',
      injected: 1,
      occurrences,
      lost,
      duplicates: a.duplicates,
      explainedDuplicates: a.explained,
      recoveryMs,
      notes:
        `leases expired during the pause: ${a.reaped.length} (${a.reaped.filter((r) => r.requeued === true).length} redelivered, ` +
        `${a.reaped.filter((r) => r.requeued !== true).length} tick runs counted as failures); completions refused as stale (lease-lost): ${a.stale.length}; ` +
        `runs fenced while running: ${a.fenced.length}; store errors seen by executors: ${errors.length}`,
    });
  }, 120_000);

  it('CLIENT KILL of normal and pub/sub connections during a stream: executors reconnect, nothing is lost, wake-ups keep working', async () => {
    const prefix = randomPrefix();
    const out = join(sandbox.tmp, `${prefix}.log`);
    const lease = 2000;
    // A lease granted by a claim whose reply was lost counts as an attempt (the store cannot
    // tell it from a run that crashed): under a kill every 50 ms a few occurrences lose several
    // in a row, so retries are generous here.
    const retry = { attempts: 10, delay: 50 };
    const N = 3;
    const kids = await executors(N, { prefix, out, tasks: { job: { options: { lease, retry } }, tick: { options: { lease, retry } }, probe: {} } });
    const p = await producer(prefix);
    const numsub = async (): Promise<number> => {
      const reply = await redisCommand(redis.server.port, `PUBSUB NUMSUB ${prefix}:wake`);
      return Number(/:(\d+)\r\n$/.exec(reply)?.[1] ?? -1);
    };
    // Each executor subscribes to the wake-up channel once it has connected.
    await waitFor(async () => (await numsub()) >= N, 'the executors to subscribe', 30_000);
    const subscribers = await numsub();

    await p.schedule('tick', { uid: 't', every: 300 });
    // The stream: 3,000 one-shots falling due over 6 s while the normal connections (the
    // executors' and the producer's) are killed every ~50 ms and the pub/sub ones at every 20th
    // kill. A command whose reply is lost with its connection is resent by ioredis once it has
    // reconnected; one caught by three kills in a row fails (maxRetriesPerRequest: 2).
    // The producer schedules them all first: scheduling again after a failed call is a replace
    // (the caller's choice), which would blur what the executors do.
    const JOBS = 3000;
    const jobs = Array.from({ length: JOBS }, (_, i) => `j${i}`);
    await p.scheduleMany('job', jobs.map((uid, i) => ({ uid, in: 1000 + Math.floor((i * 6000) / JOBS) })));
    const stormStart = Date.now();
    let injected = 0;
    let killed = 0;
    let lastKill = 0;
    while (Date.now() - stormStart < 7000) {
      await sleep(50);
      const reply = await redisCommand(redis.server.port, injected % 20 === 19 ? 'CLIENT KILL TYPE pubsub' : 'CLIENT KILL TYPE normal');
      killed += Number(/^:(\d+)/.exec(reply)?.[1] ?? 0);
      injected++;
      lastKill = Date.now();
    }
    // Leases are 2 s: a one-shot still in the store 30 s after the stream is lost, not late.
    // The producer's connection was killed too: a listing refused while it reconnects
    // (maxRetriesPerRequest) is asked again, not taken for the end of the wait (it was, and
    // the one-shots still running then were reported as stranded).
    await waitFor(async () => (await p.list({ task: 'job' }).catch(() => null))?.length === 0, 'every one-shot to finish', 30_000).catch(() => undefined);
    const left = await p.list({ task: 'job' });
    expect(left.map((r) => ({ uid: r.uid, running: r.running, nextRunAt: r.nextRunAt, attempts: r.attempts, history: r.history.length }))).toEqual([]);
    await waitFor(() => readFaultEvents(out).filter((e) => e.ev === 'success' && e.task === 'tick' && e.realNow > lastKill).length >= 3, 'ticks after the last kill', 30_000);
    await p.update('tick', 't', { enabled: false });
    await waitFor(async () => (await numsub()) === subscribers, 'every wake-up subscriber to be back', 30_000);

    // Wake-ups after reconnecting: with only a far-away schedule pending, an idle executor
    // waits up to 30 s before it asks Redis again; kill the subscribers once more, let them
    // come back and settle, then a schedule due at once must fire (the notification wakes the
    // executors; the 20 s wait is a bound for correctness only, below that 30 s idle poll).
    await p.schedule('probe', { uid: 'later', in: '10m' });
    const reply = await redisCommand(redis.server.port, 'CLIENT KILL TYPE pubsub');
    killed += Number(/^:(\d+)/.exec(reply)?.[1] ?? 0);
    injected++;
    await waitFor(async () => (await numsub()) === subscribers, 'the wake-up subscribers to be back', 30_000);
    await sleep(1500);
    const probeAt = Date.now();
    await p.schedule('probe', { uid: 'now', in: 0 });
    await waitFor(() => readFaultEvents(out).some((e) => e.ev === 'success' && e.task === 'probe' && e.uid === 'now'), 'the probe to run, woken by the notification', 20_000);
    const probeMs = (readFaultEvents(out).find((e) => e.ev === 'start' && e.uid === 'now')?.realNow ?? probeAt) - probeAt;
    await sleep(1000);
    const { tickReport, events, a } = await finish(p, kids, out);
    // Nothing lost: every one-shot started, and the store finished it (it deletes a one-shot
    // only once a completion succeeded, or when its last attempt's lease expired: none did).
    const startedJobs = new Set(a.starts.filter((e) => e.task === 'job').map((e) => e.uid));
    expect(jobs.filter((u) => !startedJobs.has(u))).toEqual([]);
    expect(a.reaped.filter((e) => e.requeued !== true)).toEqual([]);
    // Nothing doubled: no one-shot completed twice, and every extra start is the redelivery of
    // a lease the store found expired.
    const completedBy = countBy([...a.successes, ...a.resent].filter((e) => e.task === 'job'), (e) => e.uid as string);
    expect([...completedBy].filter(([, n]) => n > 1)).toEqual([]);
    expect(a.doubleClaims).toEqual([]);
    expect(a.duplicates).toBe(a.explained);
    expect(a.starts.filter((e) => e.task === 'probe')).toHaveLength(1);
    // Each tick due time completed at most once; the tick kept its 300 ms cadence.
    const tickDone = countBy([...a.successes, ...a.resent].filter((e) => e.task === 'tick'), occKey);
    expect([...tickDone.values()].filter((n) => n > 1)).toEqual([]);
    const tickDues = [...new Set(a.starts.filter((e) => e.task === 'tick').map((e) => e.dueAt as number))].sort((x, y) => x - y);
    for (const d of tickDues) expect((((d - (tickDues[0] as number)) % 300) + 300) % 300).toBe(0);
    // The report counts every completion the store applied: those the executors saw succeed,
    // those whose resent completion was refused, and any whose reply never came back at all
    // (the call failed after ioredis gave up on it: see the store errors).
    const tickSeen = [...a.successes, ...a.resent].filter((e) => e.task === 'tick').length;
    expect(tickReport?.successes).toBeGreaterThanOrEqual(tickSeen);
    expect(tickReport?.failures).toBe(0);

    const afterKill = a.successes.filter((e) => e.realNow >= lastKill).sort((x, y) => x.realNow - y.realNow);
    const recoveryMs = afterKill.length > 0 ? (afterKill[0] as FaultEvent).realNow - lastKill : null;
    // Leases whose claim reply was lost with its connection: granted, never started, redelivered.
    const startedRuns = new Set(a.starts.map(runKey));
    const unstarted = a.reaped.filter((r) => !startedRuns.has(runKey(r))).length;
    const errors = events.filter((e) => e.ev === 'error' || e.ev === 'partition-error');
    recordFault({
      fault: 'CLIENT KILL TYPE normal (every ~50 ms) and TYPE pubsub (every 20th kill)',
      setup: `RedisStore, 1 redis-server, ${N} executor processes; 3,000 one-shots due during the kills (retry attempts 10, lease 2 s) + an every-300ms tick`,
      injected,
      occurrences: jobs.length + new Set(a.starts.filter((e) => e.task === 'tick').map(occKey)).size + 1,
      lost: jobs.filter((u) => !startedJobs.has(u)).length + left.length,
      duplicates: a.duplicates,
      explainedDuplicates: a.explained,
      recoveryMs,
      notes:
        `connections killed: ${killed}; leases taken back after expiry: ${a.reaped.length} (of which granted by a claim whose reply was lost and never started: ${unstarted}); ` +
        `completions applied whose reply was lost, refused when resent (executor reports run:lost): ${a.resent.length}; ` +
        `one-shots whose completion outcome the executor never learned (call failed, store applied it): ${jobs.filter((u) => !completedBy.has(u)).length}; ` +
        `tick completions applied but unseen: ${(tickReport?.successes ?? 0) - tickSeen}; ` +
        `store errors seen by executors: ${errors.length} (${errors.filter((e) => /max retries/.test(e.message ?? '')).length} "max retries per request"); ` +
        `a schedule due at once after the subscribers reconnected started ${probeMs} ms later`,
    });
  }, 120_000);
  it('a claim whose reply is lost with its connection is resent by ioredis: the leases of its first execution are not overwritten, they expire and are redelivered', async () => {
    const prefix = randomPrefix();
    const proxy = await replyDroppingProxy(redis.server.port);
    // One partition: every occurrence is in the claim's partition.
    const store = new RedisStore({ url: `redis://127.0.0.1:${proxy.port}`, prefix, partitions: 1 });
    await store.open();
    try {
      const p = await producer(prefix, 1);
      const uids = ['a', 'b', 'c', 'd', 'e', 'f'];
      await p.scheduleMany('job', uids.map((uid) => ({ uid, in: 0 })));
      const policy = { overlap: 'allow', misfire: 'run-once', catchupWindow: 0, attempts: 2, leaseMs: 1000, limit: 3 } as const;
      const request: ClaimRequest = { tasks: new Map([['job', policy]]), limit: 3, owner: 'fault-test' };
      const settle = async (runs: readonly ClaimedRun[]): Promise<string[]> =>
        store.complete(runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: 0, durationMs: 1 })));

      // claim() probes (limit 0), then claims 3 of the 6 due: that reply is lost, ioredis
      // reconnects and sends the same command again, which claims 3 more.
      proxy.arm(1);
      const first = await store.claim(request);
      expect(proxy.dropped).toBe(1);
      expect(first.runs).toHaveLength(3);
      expect(await settle(first.runs)).toEqual(['ok', 'ok', 'ok']);
      const heard = new Set(first.runs.map((r) => r.uid));
      // The 3 leased by the lost execution run for nobody: after their lease they come back.
      const redelivered: ClaimedRun[] = [];
      const lost: LostLease[] = [];
      await waitFor(
        async () => {
          const r = await store.claim(request);
          lost.push(...r.lost);
          redelivered.push(...r.runs);
          if (r.runs.length > 0) await settle(r.runs);
          return redelivered.length >= 3;
        },
        'the leases of the lost reply to expire and be redelivered',
        20_000,
      );
      const unheard = uids.filter((u) => !heard.has(u));
      expect(lost.map((l) => `${l.uid}:${l.attempt}:${l.requeued}`).sort()).toEqual(unheard.map((u) => `${u}:1:true`));
      expect(redelivered.map((r) => `${r.uid}:${r.attempt}:${r.kind}`).sort()).toEqual(unheard.map((u) => `${u}:2:retry`));
      expect(await p.list({ task: 'job' })).toEqual([]);
      recordFault({
        fault: 'claim reply lost with its connection (TCP proxy), command resent by ioredis',
        setup: 'RedisStore (1 partition) through a reply-dropping proxy, 6 one-shots, claims of 3, lease 1 s, attempts 2',
        injected: 1,
        occurrences: uids.length,
        lost: uids.length - new Set([...first.runs, ...redelivered].map((r) => r.uid)).size,
        duplicates: 0,
        recoveryMs: null,
        notes: `the ${unheard.length} occurrences leased by the lost execution were redelivered (attempt 2) after their lease; before the fix in claim-1.lua the resent claim minted the same lease tokens and they stayed "running" forever`,
      });
    } finally {
      await store.close();
      await proxy.close();
    }
  }, 60_000);
});
