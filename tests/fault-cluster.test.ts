/**
 * Fault: kill -9 of one master of a 3-master Redis Cluster (no replicas) under RedisStore
 * (issue 7, reliability). Schedules are placed in every one of the 16 partitions; the test
 * finds which master serves each partition (CLUSTER KEYSLOT of the partition's hash tag,
 * src/store/redis/keys.ts, against CLUSTER NODES) and kills one.
 *
 * 1. With `cluster-require-full-coverage no`: the schedules whose partitions live on the
 *    surviving masters keep firing (also after the cluster has marked the dead master FAIL),
 *    those on the dead master stop; the scheduler emits errors and does not crash.
 * 2. With Redis's default (`yes`): once the cluster marks the master FAIL it refuses every
 *    slot, so everything stops — recorded, not asserted (that is Redis's behaviour). When the
 *    master comes back (empty: the test cluster runs without persistence), every surviving
 *    schedule fires again.
 *
 * No timing budgets: waits are generous and only for correctness; gaps are recorded.
 */
import { describe, expect, it } from 'vitest';
import { RedisStore, Scheduler } from '../src/index.js';
import { Keys } from '../src/store/redis/keys.js';
import { recordFault } from './fault-report.js';
import { sleep, waitFor } from './helpers.js';
import { crashRedis, randomPrefix, redisCommand, useRedisCluster, type RedisCluster } from './redis-harness.js';

const redisCluster = useRedisCluster(3);

const PARTITIONS = 16;
const PER_PARTITION = 2;
const EVERY_MS = 250;
/** The harness's cluster-node-timeout: after it the survivors mark a silent master FAIL. */
const NODE_TIMEOUT_MS = 5000;

function theCluster(): RedisCluster {
  return redisCluster.cluster;
}

/** Master port -> its slot ranges, from CLUSTER NODES of a live node. */
async function slotOwners(port: number): Promise<{ port: number; ranges: [number, number][]; fail: boolean }[]> {
  const raw = await redisCommand(port, 'CLUSTER NODES', 5000);
  const body = raw.slice(raw.indexOf('\r\n') + 2);
  const out: { port: number; ranges: [number, number][]; fail: boolean }[] = [];
  for (const line of body.split('\n')) {
    const f = line.trim().split(' ');
    if (f.length < 8 || !(f[2] ?? '').includes('master')) continue;
    const nodePort = Number((f[1] ?? '').split('@')[0]?.split(':')[1]);
    const ranges = f.slice(8).filter((s) => /^\d+(-\d+)?$/.test(s)).map((s): [number, number] => {
      const [a, b] = s.split('-');
      return [Number(a), Number(b ?? a)];
    });
    out.push({ port: nodePort, ranges, fail: (f[2] ?? '').includes('fail') });
  }
  return out;
}

/** Partition -> port of the master that serves it. */
async function partitionMasters(prefix: string, via: number): Promise<number[]> {
  const keys = new Keys(prefix, PARTITIONS);
  const owners = await slotOwners(via);
  const out: number[] = [];
  for (let p = 0; p < PARTITIONS; p++) {
    const reply = await redisCommand(via, `CLUSTER KEYSLOT ${keys.partitionMeta(p)}`);
    const slot = Number(/^:(\d+)/.exec(reply)?.[1]);
    const owner = owners.find((o) => o.ranges.some(([a, b]) => slot >= a && slot <= b));
    if (owner === undefined) throw new Error(`no master serves slot ${slot}`);
    out.push(owner.port);
  }
  return out;
}

/** A fresh namespace whose 16 partitions fall on all 3 masters (a random one misses a master now and then). */
async function spreadPrefix(via: number): Promise<{ prefix: string; masters: number[] }> {
  for (;;) {
    const prefix = randomPrefix();
    const masters = await partitionMasters(prefix, via);
    if (new Set(masters).size === 3) return { prefix, masters };
  }
}

/** PER_PARTITION uids of task `tick` in each partition. */
function uidsByPartition(prefix: string): string[][] {
  const keys = new Keys(prefix, PARTITIONS);
  const out: string[][] = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 0; out.some((l) => l.length < PER_PARTITION); i++) {
    const list = out[keys.partitionOf('tick', `u${i}`)] as string[];
    if (list.length < PER_PARTITION) list.push(`u${i}`);
  }
  return out;
}

async function setFullCoverage(ports: readonly number[], value: 'yes' | 'no'): Promise<void> {
  for (const port of ports) expect(await redisCommand(port, `CONFIG SET cluster-require-full-coverage ${value}`, 5000)).toMatch(/^\+OK/);
}

interface Fired {
  readonly uid: string;
  readonly dueAt: number;
  readonly at: number;
}

async function startScheduler(prefix: string): Promise<{ s: Scheduler; fired: Fired[]; errors: Error[]; partial: Error[] }> {
  const fired: Fired[] = [];
  const errors: Error[] = [];
  const partial: Error[] = [];
  const s = new Scheduler({ store: new RedisStore({ cluster: theCluster().nodes, prefix, partitions: PARTITIONS, onError: (e) => partial.push(e) }) });
  s.on('error', (e) => errors.push(e));
  s.define('tick', (run) => void fired.push({ uid: run.uid, dueAt: run.dueAt.getTime(), at: Date.now() }), { lease: 2000 });
  await s.start();
  return { s, fired, errors, partial };
}

/**
 * A fresh namespace spread over every master (via `via`), PER_PARTITION every-EVERY_MS schedules
 * in each partition, and a scheduler in this process that has fired each twice. The caller
 * stops the scheduler (it is stopped here if that does not come about).
 */
async function startTicking(via: number): Promise<{ masters: number[]; byPartition: string[][]; all: string[]; s: Scheduler; fired: Fired[]; errors: Error[]; partial: Error[] }> {
  const { prefix, masters } = await spreadPrefix(via);
  const byPartition = uidsByPartition(prefix);
  const started = await startScheduler(prefix);
  const all = byPartition.flat();
  try {
    await started.s.scheduleMany('tick', all.map((uid) => ({ uid, every: EVERY_MS })));
    await waitFor(() => all.every((u) => started.fired.filter((f) => f.uid === u).length >= 2), 'every schedule to fire twice', 30_000);
  } catch (err) {
    await started.s.stop({ timeout: 2000 });
    throw err;
  }
  return { masters, byPartition, all, ...started };
}

/** The longest time between consecutive runs of any of `uids` among those fired in [from, to] (local clock). */
function maxGap(fired: readonly Fired[], uids: readonly string[], from: number, to: number): number {
  let worst = 0;
  for (const uid of uids) {
    const times = [from, ...fired.filter((f) => f.uid === uid && f.at >= from && f.at <= to).map((f) => f.at), to].sort((a, b) => a - b);
    for (let i = 1; i < times.length; i++) worst = Math.max(worst, (times[i] as number) - (times[i - 1] as number));
  }
  return worst;
}

describe('fault: kill -9 of a Redis Cluster master', () => {
  it('require-full-coverage no: schedules on the surviving masters keep firing; the scheduler emits errors and does not crash', async () => {
    const c = theCluster();
    const ports = c.nodes.map((n) => n.port);
    await setFullCoverage(ports, 'no');
    const { masters, byPartition, all, s, fired, errors, partial } = await startTicking(ports[0] as number);
    try {
      await sleep(2000);
      const readyAt = Date.now() - 2000;

      // The victim: the second node (every master serves some partitions, see spreadPrefix).
      const victim = ports[1] as number;
      const deadUids = byPartition.filter((_, p) => masters[p] === victim).flat();
      const liveUids = byPartition.filter((_, p) => masters[p] !== victim).flat();
      const deadPartitions = masters.filter((m) => m === victim).length;
      const errorsBefore = errors.length + partial.length;
      const killAt = Date.now();
      await crashRedis(victim);
      const killedAt = Date.now();

      // After the node timeout the survivors mark the dead master FAIL; with full coverage off
      // they keep serving their slots: every surviving schedule fires after that.
      const survivor = ports.find((p) => p !== victim) as number;
      await waitFor(async () => (await slotOwners(survivor)).find((o) => o.port === victim)?.fail === true, 'the survivors to mark the killed master FAIL', 60_000);
      const failAt = Date.now();
      await waitFor(() => liveUids.every((u) => fired.some((f) => f.uid === u && f.dueAt > failAt + 1000)), 'every surviving schedule to fire after the FAIL', 90_000);
      const observedUntil = Date.now();
      const state = await redisCommand(survivor, 'CLUSTER INFO', 5000);
      const runsAfterKill = fired.filter((f) => f.dueAt > killedAt);
      const deadRunsAfterKill = runsAfterKill.filter((f) => deadUids.includes(f.uid));
      const gapAfter = maxGap(fired, liveUids, killedAt, observedUntil);
      const gapBefore = maxGap(fired, liveUids, readyAt, killAt);
      const figures = {
        victim: `127.0.0.1:${victim}`,
        deadPartitions,
        deadSchedules: deadUids.length,
        liveSchedules: liveUids.length,
        liveRunsAfterKill: runsAfterKill.length - deadRunsAfterKill.length,
        deadRunsAfterKill: deadRunsAfterKill.length,
        errorEvents: errors.length + partial.length - errorsBefore,
        schedulerErrors: errors.length,
        partitionErrors: partial.length,
        failDetectedMs: failAt - killedAt,
        clusterOk: state.includes('cluster_state:ok'),
        maxGapBeforeMs: gapBefore,
        maxGapAfterMs: gapAfter,
        observedMs: observedUntil - killedAt,
        sampleError: (errors[errors.length - 1] ?? partial[partial.length - 1])?.message,
      };
      console.log('fault-cluster (coverage no)', JSON.stringify(figures));
      recordFault({
        fault: 'kill -9 of a Redis Cluster master (cluster-require-full-coverage no)',
        setup: `RedisStore on a 3-master cluster (no replicas, node timeout ${NODE_TIMEOUT_MS / 1000} s), 16 partitions, ${all.length} every-${EVERY_MS}ms schedules, 1 in-process executor`,
        injected: 1,
        occurrences: figures.liveRunsAfterKill,
        lost: 0,
        duplicates: 0,
        recoveryMs: gapAfter,
        notes:
          `${deadPartitions} of 16 partitions (${deadUids.length} schedules) were on the killed master and stopped; the ${liveUids.length} others kept firing ` +
          `(${figures.liveRunsAfterKill} runs in ${Math.round(figures.observedMs / 1000)} s after the kill; the survivors marked the master FAIL after ${figures.failDetectedMs} ms and still served their slots); ` +
          `${figures.errorEvents} error events (${figures.schedulerErrors} on scheduler 'error', ${figures.partitionErrors} partition errors on the store's onError, e.g. "${figures.sampleError ?? ''}"), no crash; ` +
          `recovery = longest gap of a surviving schedule after the kill (before: ${gapBefore} ms)`,
      });

      expect(state).toContain('cluster_state:ok');
      expect(deadRunsAfterKill).toEqual([]);
      expect(figures.errorEvents).toBeGreaterThan(0);
      expect(s.state).toBe('started');
    } finally {
      await s.stop({ timeout: 2000 });
    }
  }, 150_000);

  it('default require-full-coverage yes: the cluster refuses every slot once the master is FAIL; all schedules fire again when it is back', async () => {
    const c = theCluster();
    // The master killed above comes back (empty: no persistence) and rejoins with its slots.
    const ports = c.nodes.map((n) => n.port);
    const dead = [];
    for (const port of ports) if (!(await redisCommand(port, 'PING').then((r) => r.startsWith('+PONG')).catch(() => false))) dead.push(port);
    for (const port of dead) await (c.servers.find((sv) => sv.port === port) as (typeof c.servers)[number]).restart();
    await waitFor(async () => (await Promise.all(ports.map((p) => redisCommand(p, 'CLUSTER INFO').catch(() => '')))).every((i) => i.includes('cluster_state:ok')), 'the cluster to be ok again', 60_000);
    await setFullCoverage(ports, 'yes');

    const { masters, byPartition, all, s, fired, errors, partial } = await startTicking(ports[0] as number);
    try {
      const victim = ports[2] as number;
      const victimServer = c.servers.find((sv) => sv.port === victim) as (typeof c.servers)[number];
      const deadUids = byPartition.filter((_, p) => masters[p] === victim).flat();
      const liveUids = byPartition.filter((_, p) => masters[p] !== victim).flat();
      const survivor = ports[0] as number;
      const killedAt = Date.now();
      await crashRedis(victim);
      // Wait until the survivors report the cluster down (FAIL detected), then a little longer.
      await waitFor(async () => (await redisCommand(survivor, 'CLUSTER INFO', 5000)).includes('cluster_state:fail'), 'the cluster to report cluster_state:fail', 60_000);
      const downAt = Date.now();
      await sleep(3000);
      const stalledFrom = downAt + 500;
      const liveRunsWhileDown = fired.filter((f) => liveUids.includes(f.uid) && f.at > stalledFrom && f.at < Date.now()).length;
      await victimServer.restart();
      const upAt = Date.now();
      await waitFor(async () => (await Promise.all(ports.map((p) => redisCommand(p, 'CLUSTER INFO').catch(() => '')))).every((i) => i.includes('cluster_state:ok')), 'the cluster to be ok again', 60_000);
      const okAt = Date.now();
      await waitFor(() => liveUids.every((u) => fired.some((f) => f.uid === u && f.at > okAt)), 'every surviving schedule to fire again', 90_000);
      const firstAgain = Math.min(...fired.filter((f) => liveUids.includes(f.uid) && f.at > upAt).map((f) => f.at));
      // The killed master's schedules were in memory only (the test cluster has no persistence).
      const deadSurvived = (await Promise.all(deadUids.map((u) => s.get('tick', u)))).filter((r) => r !== null).length;
      const figures = {
        detectMs: downAt - killedAt,
        liveRunsWhileDown,
        recoveryMs: firstAgain - upAt,
        okAfterRestartMs: okAt - upAt,
        deadSchedules: deadUids.length,
        deadSurvived,
        errors: errors.length + partial.length,
        sampleError: errors[errors.length - 1]?.message,
      };
      console.log('fault-cluster (coverage yes)', JSON.stringify(figures));
      recordFault({
        fault: 'kill -9 of a Redis Cluster master (Redis default: full coverage required)',
        setup: `RedisStore on a 3-master cluster (no replicas, no persistence, node timeout ${NODE_TIMEOUT_MS / 1000} s), ${all.length} every-${EVERY_MS}ms schedules, 1 in-process executor; master restarted`,
        injected: 1,
        occurrences: fired.filter((f) => f.at > upAt).length,
        lost: deadUids.length - deadSurvived,
        duplicates: 0,
        recoveryMs: figures.recoveryMs,
        notes:
          `cluster_state:fail ${figures.detectMs} ms after the kill; then ${liveRunsWhileDown} runs on the surviving masters (the cluster refuses every slot); ` +
          `after the master restarted, every schedule on the survivors fired again (recovery = restart to first run); ` +
          `the ${deadUids.length} schedules of the killed master were lost with it (no persistence, no replica); ${figures.errors} error events, no crash`,
      });

      expect(s.state).toBe('started');
      expect(figures.errors).toBeGreaterThan(0);
    } finally {
      await s.stop({ timeout: 2000 });
    }
  }, 180_000);
});
