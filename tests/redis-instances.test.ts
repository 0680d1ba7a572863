/**
 * RedisStore sharded over two standalone servers (`instances`): partition p lives on
 * instances[p % 2]. The conformance suite passes, both servers hold partitions, and a
 * down instance does not block the partitions of the other.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, Scheduler, type RunContext } from '../src/index.js';
import { Keys } from '../src/store/redis/keys.js';
import { storeConformance } from './conformance.js';
import { waitFor } from './helpers.js';
import { randomPrefix, startRedis, type RedisServer } from './redis-harness.js';

let a: RedisServer | undefined;
let b: RedisServer | undefined;
const schedulers: Scheduler[] = [];
beforeAll(async () => {
  [a, b] = await Promise.all([startRedis(), startRedis()]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});
afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.stop({ timeout: 2000 })));
});

const urls = (): string[] => [a?.url ?? '', b?.url ?? ''];

storeConformance('RedisStore on 2 instances', () => new RedisStore({ instances: urls(), prefix: randomPrefix() }));

describe('RedisStore instances', () => {
  it('shards partitions over both servers; a down instance does not block the other', async () => {
    const prefix = randomPrefix();
    const partitionErrors: Error[] = [];
    const store = new RedisStore({ instances: urls(), prefix, partitions: 4, onError: (err) => partitionErrors.push(err), redisOptions: { maxRetriesPerRequest: 0, enableOfflineQueue: false } });
    const s = new Scheduler({ store });
    s.on('error', () => undefined);
    schedulers.push(s);
    const runs: RunContext[] = [];
    s.define('job', (run) => void runs.push(run));
    await s.start({ execute: false });
    const uids = Array.from({ length: 40 }, (_, i) => `u${i}`);
    await s.scheduleMany('job', uids.map((uid) => ({ uid, in: 1500 })));
    for (const server of [a, b]) {
      const raw = new Redis(server?.port ?? 0);
      expect((await raw.keys(`${prefix}:*}:s:*`)).length).toBeGreaterThan(0);
      await raw.quit();
    }
    const keys = new Keys(prefix, 4);
    const onB = new Set(uids.filter((uid) => keys.partitionOf('job', uid) % 2 === 1));
    expect(onB.size).toBeGreaterThan(0);
    // A store without onError: the started scheduler on it hears partition failures as 'error'.
    const heard: Error[] = [];
    const s3 = new Scheduler({ store: new RedisStore({ instances: urls(), prefix, partitions: 4, redisOptions: { maxRetriesPerRequest: 0, enableOfflineQueue: false } }) });
    s3.on('error', (err) => heard.push(err));
    schedulers.push(s3);
    s3.define('job', (run) => void runs.push(run));
    await s3.start();
    await b?.stop();
    const s2 = new Scheduler({ store });
    s2.on('error', () => undefined);
    schedulers.push(s2);
    s2.define('job', (run) => void runs.push(run));
    await s2.start();
    await waitFor(() => runs.length === uids.length - onB.size, 'the occurrences of the live instance', 20_000);
    expect(runs.every((r) => !onB.has(r.uid))).toBe(true);
    expect(partitionErrors.length).toBeGreaterThan(0);
    expect(partitionErrors[0]).toMatchObject({ code: 'ERR_STORE' });
    await waitFor(() => heard.some((err) => err.message.startsWith('RedisStore.claim:')), "a partition failure on the scheduler's error event", 20_000);
    expect(heard.find((err) => err.message.startsWith('RedisStore.claim:'))).toMatchObject({ code: 'ERR_STORE' });
  }, 60_000);
});
