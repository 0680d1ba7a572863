/**
 * What only RedisStore has: its key layout, partition metadata, namespace isolation, the
 * precomputed cron due times (refill, exhaustion), one clock (TIME), bounded memory.
 */
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore, RedisStore, Scheduler } from '../src/index.js';
import type { ClaimedRun, ClaimRequest, Store, TaskPolicy } from '../src/store/index.js';
import { HISTORY_LIMIT } from '../src/store/index.js';
import { encodeId, Keys } from '../src/store/redis/keys.js';
import { scripts } from '../src/store/redis/scripts.js';
import { sleep, waitFor } from './helpers.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();
let raw: Redis;
const stores: RedisStore[] = [];
const schedulers: Scheduler[] = [];

beforeAll(() => {
  raw = new Redis(redis.url);
});
afterAll(async () => {
  await raw.quit();
});
afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.stop({ timeout: 2000 })));
  for (const s of stores.splice(0)) await s.close();
});

async function openStore(options: ConstructorParameters<typeof RedisStore>[0] = {}): Promise<RedisStore> {
  const store = new RedisStore({ url: redis.url, prefix: randomPrefix(), ...options });
  await store.open();
  stores.push(store);
  return store;
}

const policy = (over: Partial<TaskPolicy> = {}): TaskPolicy => ({ overlap: 'allow', misfire: 'run-once', catchupWindow: 3_600_000, attempts: 1, leaseMs: 30_000, limit: 100, ...over });
const request = (task: string, over: Partial<TaskPolicy> = {}, limit = 100): ClaimRequest => ({ tasks: new Map([[task, policy(over)]]), limit, owner: 'test' });

async function keysOf(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

describe('RedisStore keys and namespaces', () => {
  it('keeps (task, uid) pairs apart whatever characters they contain', async () => {
    const store = await openStore();
    const pairs: [string, string][] = [
      ['a:b', 'c'],
      ['a', 'b:c'],
      ['a', ':bc'],
      ['{x}', '}{'],
      ['*', '?[]'],
      ['ünï', 'cödé 🎉'],
      ['1:x', 'y'],
      ['1', ':xy'],
    ];
    for (const [task, uid] of pairs) await store.upsert({ task, uid, spec: { kind: 'once' }, first: { in: 3_600_000 }, params: { task, uid }, enabled: true, timeout: 0 });
    const listed = await store.list();
    expect(listed.map((s) => [s.task, s.uid]).sort()).toEqual([...pairs].sort());
    for (const [task, uid] of pairs) expect((await store.get(task, uid))?.params).toEqual({ task, uid });
    expect((await store.list({ task: 'a' })).map((s) => s.uid).sort()).toEqual([':bc', 'b:c']);
    expect((await store.list({ task: '*' })).map((s) => s.uid)).toEqual(['?[]']);
    expect(await store.remove('a', 'b:c')).toBe(true);
    expect(await store.get('a:b', 'c')).not.toBeNull();
    expect(encodeId('a:b', 'c')).not.toBe(encodeId('a', 'b:c'));
  });

  it('every key of a partition carries the partition hash tag, never user text', async () => {
    const store = await openStore({ partitions: 4 });
    for (let i = 0; i < 40; i++) await store.upsert({ task: '{evil}', uid: `u{${i}}`, spec: { kind: 'every', every: 60_000, anchor: 0 }, first: { in: 0 }, enabled: true, timeout: 0 });
    const keys = await keysOf(store.prefix);
    const tags = new Set(keys.map((k) => /\{([^}]*)\}/.exec(k)?.[1]));
    for (const tag of tags) expect(tag === store.prefix || /^test-[0-9a-f-]+:\d$/.test(tag ?? '')).toBe(true);
    // By hash, 40 schedules fill all 4 partitions.
    expect(new Set(keys.filter((k) => k.includes('}:s:')).map((k) => /:(\d)\}/.exec(k)?.[1])).size).toBe(4);
  });

  it('refuses to open a namespace with another partition count', async () => {
    const store = await openStore({ partitions: 8 });
    const other = new RedisStore({ url: redis.url, prefix: store.prefix, partitions: 4 });
    await expect(other.open()).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringMatching(/8 partitions/) as string });
    const same = new RedisStore({ url: redis.url, prefix: store.prefix, partitions: 8 });
    await same.open();
    await same.close();
  });

  it('rejects bad options with typed errors', () => {
    expect(() => new RedisStore({ prefix: 'a{b' })).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }) as Error);
    expect(() => new RedisStore({ partitions: 0 })).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }) as Error);
    expect(() => new RedisStore({ url: 'redis://x', instances: ['redis://y'] })).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }) as Error);
    expect(() => new RedisStore({ redisOptions: { keyPrefix: 'x:' } })).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }) as Error);
  });

  it('clear removes only its own namespace (SCAN, not KEYS)', async () => {
    const a = await openStore();
    const b = await openStore();
    await a.upsert({ task: 't', uid: '1', spec: { kind: 'once' }, first: { in: 60_000 }, enabled: true, timeout: 0 });
    await a.upsert({ task: 't', uid: '2', spec: { kind: 'cron', cron: '0 * * * *' }, first: { next: true }, enabled: true, timeout: 0 });
    await b.upsert({ task: 't', uid: '1', spec: { kind: 'once' }, first: { in: 60_000 }, enabled: true, timeout: 0 });
    expect(await a.acquireLock('k', 'tok', 60_000)).toBe(true);
    expect(await a.clear()).toBe(2);
    expect(await a.list()).toEqual([]);
    expect(await b.list()).toHaveLength(1);
    expect(await a.acquireLock('k', 'other', 60_000)).toBe(true);
  });

  it('errors of an unreachable server are StoreErrors', async () => {
    const store = new RedisStore({ url: 'redis://127.0.0.1:1', prefix: randomPrefix(), redisOptions: { retryStrategy: () => null } });
    await expect(store.open()).rejects.toMatchObject({ name: 'StoreError', code: 'ERR_STORE' });
  });
});

describe('RedisStore time and cron', () => {
  it('now() is the Redis server clock (TIME)', async () => {
    const store = await openStore();
    const [sec, usec] = await raw.time();
    const redisNow = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    const now = await store.now();
    expect(Math.abs(now - redisNow)).toBeLessThan(1000);
  });

  it('a cron schedule whose precomputed times ran out still fires (the refilling process died)', async () => {
    const store = await openStore({ cronLookahead: 2 });
    const due = await store.upsert({ task: 'c', uid: 'x', spec: { kind: 'cron', cron: '* * * * * *' }, first: { next: true }, enabled: true, timeout: 0 });
    expect(due).not.toBeNull();
    // Simulate a claimer that advanced the schedule and died before refilling: no times left.
    const key = (await keysOf(store.prefix)).find((k) => k.includes('}:s:'));
    expect(key).toBeDefined();
    await raw.hset(key as string, 'nx', '');
    const seen: number[] = [];
    for (let i = 0; i < 4 && seen.length < 3; ) {
      const r = await store.claim(request('c'));
      for (const run of r.runs) {
        seen.push(run.dueAt);
        await store.complete([{ token: run.token, outcome: 'success', startedAt: r.now, durationMs: 0 }]);
      }
      if (r.runs.length === 0) {
        i++;
        await sleep(Math.max(0, (r.nextDueAt ?? r.now + 100) - r.now) + 5);
      }
    }
    expect(seen.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < seen.length; i++) expect((seen[i] as number) - (seen[i - 1] as number)).toBe(1000);
    expect((await store.get('c', 'x'))?.nextRunAt).toBeGreaterThan(seen.at(-1) as number);
  });

  it('cron misfire policies after an outage: run-once, run-all (window), skip', async () => {
    const store = await openStore({ cronLookahead: 3 });
    const outage = async (uid: string): Promise<void> => {
      await store.upsert({ task: 'm', uid, spec: { kind: 'cron', cron: '* * * * * *' }, first: { next: true }, enabled: true, timeout: 0 });
    };
    await outage('once');
    await sleep(5200); // ~5 ticks missed, past the 3 precomputed times
    const once = await store.claim(request('m', { misfire: 'run-once' }));
    expect(once.runs).toHaveLength(1);
    expect(once.runs[0]?.dueAt).toBe(Math.floor(once.now / 1000) * 1000); // the latest missed tick
    expect(once.skipped).toEqual([]);
    await store.remove('m', 'once');

    await outage('all');
    await sleep(4200);
    const all = await store.claim(request('m', { misfire: 'run-all', catchupWindow: 60_000 }));
    const dues = all.runs.map((r) => r.dueAt).sort((a, b) => a - b);
    expect(dues.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < dues.length; i++) expect((dues[i] as number) - (dues[i - 1] as number)).toBe(1000);
    expect(all.runs.filter((r) => r.kind === 'catchup').length).toBe(dues.length - 1);
    await store.remove('m', 'all');

    await outage('skip');
    await sleep(2200);
    const skip = await store.claim(request('m', { misfire: 'skip' }));
    expect(skip.runs).toEqual([]);
    expect(skip.skipped).toMatchObject([{ task: 'm', uid: 'skip', reason: 'misfire' }]);
    expect((await store.get('m', 'skip'))?.nextRunAt).toBeGreaterThan(skip.now);
  });

  it('restores a cron schedule from a registry with its iat, and loads it twice without duplicates', async () => {
    const store = await openStore();
    const s = new Scheduler({ store });
    schedulers.push(s);
    await s.start({ execute: false });
    // A yearly cron: no tick of it can fall between iat and now, so the run is for iat itself
    // (with a frequent cron, a tick passed meanwhile would make run-once pick that tick).
    const iat = Date.now() - 3000;
    await s.load({ c: { x: { iat, timeout: 0, cron: '0 0 0 1 1 *', tz: 'UTC' } } });
    await s.load({ c: { x: { iat, timeout: 0, cron: '0 0 0 1 1 *', tz: 'UTC' } } });
    expect(await s.list()).toHaveLength(1);
    const r = await store.claim(request('c'));
    expect(r.runs).toHaveLength(1);
    expect(r.runs[0]?.dueAt).toBe(iat);
  });
});

describe('RedisStore memory stays bounded', () => {
  it('a finished one-shot leaves no key behind; history is capped', async () => {
    const store = await openStore({ partitions: 2 });
    const s = new Scheduler({ store });
    schedulers.push(s);
    let n = 0;
    s.define('t', () => void n++);
    s.define('r', () => void n++);
    await s.start();
    await s.scheduleMany('t', Array.from({ length: 50 }, (_, i) => ({ uid: `u${i}`, in: 0 })));
    await s.schedule('r', { uid: 'p', every: 5 });
    await waitFor(async () => ((await s.get('r', 'p'))?.successes ?? 0) >= HISTORY_LIMIT + 10, 'many recurring runs');
    await s.cancel('r', 'p');
    await waitFor(() => n >= 50 + HISTORY_LIMIT, 'the one-shots');
    await waitFor(async () => (await s.list()).length === 0, 'everything to be finished');
    await s.stop();
    // Left: per-partition counters, task names and running counts, and the namespace metadata.
    const keys = (await keysOf(store.prefix)).filter((k) => !/\}:(m|T|r|meta)$/.test(k));
    expect(keys).toEqual([]);
  });

  it('history lists are trimmed in Redis', async () => {
    const store = await openStore({ partitions: 1 });
    const s = new Scheduler({ store });
    schedulers.push(s);
    s.define('r', () => 1);
    await s.start();
    await s.schedule('r', { uid: 'p', every: 5 });
    await waitFor(async () => ((await s.get('r', 'p'))?.successes ?? 0) >= HISTORY_LIMIT + 5, 'many runs');
    const history = (await keysOf(store.prefix)).find((k) => k.includes('}:h:'));
    expect(await raw.llen(history as string)).toBeLessThanOrEqual(HISTORY_LIMIT);
  });
});

describe('RedisStore plain one-shots (a due-set member, no hash)', () => {
  const once = (uid: string, at: number, over: Record<string, unknown> = {}) => ({ task: 'p', uid, spec: { kind: 'once' as const }, first: { at }, enabled: true, timeout: 0, ...over });
  const hashes = async (prefix: string): Promise<string[]> => (await keysOf(prefix)).filter((k) => k.includes('}:s:'));

  it('is stored as its due-set member only, and reads back like any schedule (get, list, snapshot, clear)', async () => {
    const store = await openStore({ partitions: 2 });
    const at = (await store.now()) + 3_600_000;
    for (let i = 0; i < 20; i++) await store.upsert(once(`u${i}`, at + i));
    // A schedule that needs a hash keeps one: params, a delay to report (`in`), disabled.
    await store.upsert(once('withParams', at, { params: { a: 1 } }));
    await store.upsert({ ...once('delayed', 0), first: { in: 60_000 }, timeout: 60_000 });
    await store.upsert(once('off', at, { enabled: false }));
    expect((await hashes(store.prefix)).map((k) => k.slice(k.lastIndexOf(':') + 1)).sort()).toEqual(['pdelayed', 'poff', 'pwithParams']);
    expect(await raw.zcard(new Keys(store.prefix, 2).due(new Keys(store.prefix, 2).partitionOf('p', 'u0'), 'p'))).toBeGreaterThan(0);

    const plain = await store.get('p', 'u3');
    expect(plain).toMatchObject({ task: 'p', uid: 'u3', spec: { kind: 'once' }, params: undefined, enabled: true, nextRunAt: at + 3, dueAt: at + 3, timeout: 0, pending: 0 });
    expect(plain?.report).toMatchObject({ lastExecutedAt: null, attempts: 0, running: 0, successes: 0, failures: 0, history: [] });
    expect(await store.get('p', 'nope')).toBeNull();

    const listed = await store.list({ task: 'p' });
    expect(listed.map((r) => r.uid).sort()).toEqual([...Array.from({ length: 20 }, (_, i) => `u${i}`), 'delayed', 'off', 'withParams'].sort());
    expect(listed.find((r) => r.uid === 'u7')?.nextRunAt).toBe(at + 7);
    expect(await store.list({ task: 'other' })).toEqual([]);

    const dump = await store.snapshot();
    expect(dump['p']?.['u5']).toEqual({ iat: at + 5, timeout: 0 });
    expect(dump['p']?.['withParams']).toEqual({ iat: at, timeout: 0, params: { a: 1 } });
    expect(Object.keys(dump['p'] ?? {})).toHaveLength(23);

    expect(await store.clear()).toBe(23);
    expect(await store.list()).toEqual([]);
  });

  it('becomes a hash when a run, an update or a trigger needs one; replacing and removing keep every rule', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    // Replaced by a plain one: still one schedule, at the new time.
    await store.upsert(once('a', now + 60_000));
    await store.upsert(once('a', now + 120_000));
    expect((await store.list()).map((r) => [r.uid, r.nextRunAt])).toEqual([['a', now + 120_000]]);
    // Replaced by one with params: the member goes, the hash carries it.
    await store.upsert(once('a', now + 90_000, { params: { v: 2 } }));
    expect(await store.list()).toHaveLength(1);
    expect(await store.get('p', 'a')).toMatchObject({ params: { v: 2 }, nextRunAt: now + 90_000 });

    // update(): the hash is made, the change applies.
    await store.upsert(once('b', now + 60_000));
    expect(await store.update('p', 'b', { enabled: false })).toMatchObject({ enabled: false, nextRunAt: now + 60_000 });
    expect(await store.update('p', 'missing', { enabled: false })).toBeNull();
    expect((await store.claim(request('p'))).runs).toEqual([]);

    // trigger(): an extra occurrence now; the scheduled one stays.
    await store.upsert(once('c', now + 60_000));
    expect(await store.trigger('p', 'c')).toBe(true);
    expect(await store.trigger('p', 'missing')).toBe(false);
    const claimed = await store.claim(request('p'));
    expect(claimed.runs.map((r) => [r.uid, r.kind])).toEqual([['c', 'trigger']]);
    await store.complete([{ token: claimed.runs[0]?.token ?? '', outcome: 'success', startedAt: claimed.now, durationMs: 1 }]);
    expect(await store.get('p', 'c')).toMatchObject({ nextRunAt: now + 60_000, report: { successes: 1 } });

    // remove(): true once, then false.
    await store.upsert(once('d', now + 60_000));
    expect(await store.remove('p', 'd')).toBe(true);
    expect(await store.remove('p', 'd')).toBe(false);
    expect(await store.get('p', 'd')).toBeNull();
  });

  it('a due one is claimed with a lease and fenced as before; replacing it while it runs fences the old run', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    await store.upsert(once('x', now - 10));
    await store.upsert(once('y', now - 5));
    const first = await store.claim(request('p'));
    expect(first.runs.map((r) => [r.uid, r.dueAt, r.attempt, r.kind])).toEqual([['x', now - 10, 1, 'scheduled'], ['y', now - 5, 1, 'scheduled']]);
    expect(await store.get('p', 'x')).toMatchObject({ nextRunAt: null, report: { running: 1, attempts: 1 } });
    // x replaced while it runs (a plain one again): the new one is its own incarnation.
    await store.upsert(once('x', now + 60_000));
    const [xRun, yRun] = first.runs;
    expect(await store.complete([
      { token: xRun?.token ?? '', outcome: 'success', startedAt: first.now, durationMs: 1 },
      { token: yRun?.token ?? '', outcome: 'success', startedAt: first.now, durationMs: 1 },
    ])).toEqual(['ok', 'ok']);
    expect(await store.get('p', 'x')).toMatchObject({ nextRunAt: now + 60_000, report: { running: 0 } });
    // y is finished: nothing of it is left.
    expect(await store.get('p', 'y')).toBeNull();
    expect((await hashes(store.prefix)).filter((k) => k.endsWith('py'))).toEqual([]);
    // A lease that expires redelivers the plain one-shot (attempts 2) and says it was lost.
    await store.upsert(once('z', now - 1));
    const z1 = await store.claim(request('p', { leaseMs: 50, attempts: 2 }));
    expect(z1.runs.map((r) => r.uid)).toEqual(['z']);
    await sleep(120);
    const z2 = await store.claim(request('p', { leaseMs: 50, attempts: 2 }));
    expect(z2.lost.map((l) => [l.uid, l.requeued])).toEqual([['z', true]]);
    expect(z2.runs.map((r) => [r.uid, r.attempt])).toEqual([['z', 2]]);
  });
});

describe('RedisStore lease groups (one expiry per task per claim call)', () => {
  const base = (prefix: string): string => `${prefix}:{${prefix}:0}`;

  it('runs claimed together share a group: renewed together, released one by one, the last takes the group with it', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    for (const uid of ['a', 'b', 'c']) await store.upsert({ task: 'g', uid, spec: { kind: 'once' }, first: { at: now - 10 }, enabled: true, timeout: 0 });
    const claim = await store.claim(request('g', { leaseMs: 5_000 }));
    const [a, b, c] = claim.runs;
    if (a === undefined || b === undefined || c === undefined) throw new Error(`claimed ${claim.runs.length} runs`);
    // A run's token is "<group>.<n>/<enc>" (lua/includes/lib.lua).
    const groupOf = (t: string): string => t.slice(0, t.lastIndexOf('.', t.indexOf('/')));
    const group = groupOf(a.token);
    expect([b.token, c.token].map(groupOf)).toEqual([group, group]);
    expect(claim.runs.map((r) => r.token.slice(r.token.indexOf('/') + 1))).toEqual(['a', 'b', 'c'].map((uid) => encodeId('g', uid)));
    expect(new Set(claim.runs.map((r) => r.token)).size).toBe(3);
    const B = base(store.prefix);
    expect(await raw.zrange(`${B}:L`, 0, -1)).toEqual([group]);
    // Plain one-shots: the group keeps their attempts and start, and (for the reaper) their list (lib: lift).
    expect(await raw.hgetall(`${B}:g`)).toEqual({ [group]: '3', [`${group}#`]: '3', [`${group}/`]: `1|${claim.now}`, [`${group}@`]: ['a', 'b', 'c'].map((uid) => encodeId('g', uid)).join('\x1e') });

    expect(await store.complete([{ token: a.token, outcome: 'success', startedAt: claim.now, durationMs: 1 }])).toEqual(['ok']);
    expect(await raw.hget(`${B}:g`, group)).toBe('2');
    // Renewing moves the group's one expiry; a released token no longer renews.
    const before = Number(await raw.zscore(`${B}:L`, group));
    await sleep(20);
    expect(await store.renew([b.token, c.token, a.token, `${group}.99`], 60_000)).toEqual([true, true, false, false]);
    expect(Number(await raw.zscore(`${B}:L`, group))).toBeGreaterThan(before + 50_000);
    // A completion given twice in one batch counts once.
    expect(await store.complete([
      { token: b.token, outcome: 'success', startedAt: claim.now, durationMs: 1 },
      { token: b.token, outcome: 'success', startedAt: claim.now, durationMs: 1 },
    ])).toEqual(['ok', 'lease-lost']);
    expect(await raw.hget(`${B}:g`, group)).toBe('1');
    expect(await store.complete([{ token: c.token, outcome: 'success', startedAt: claim.now, durationMs: 1 }])).toEqual(['ok']);
    expect(await raw.exists(`${B}:L`, `${B}:g`, `${B}:l`)).toBe(0);
    expect(await store.list({ task: 'g' })).toEqual([]);
  });

  it('an expired group is reaped whole: its unfinished runs are lost and redelivered, its finished ones stay done', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    for (const uid of ['a', 'b', 'c']) await store.upsert({ task: 'g', uid, spec: { kind: 'once' }, first: { at: now - 10 }, enabled: true, timeout: 0 });
    const first = await store.claim(request('g', { leaseMs: 100, attempts: 2 }));
    expect(first.runs).toHaveLength(3);
    const [a] = first.runs;
    expect(await store.complete([{ token: a?.token ?? '', outcome: 'success', startedAt: first.now, durationMs: 1 }])).toEqual(['ok']);
    await sleep(200);
    const second = await store.claim(request('g', { leaseMs: 30_000, attempts: 2 }));
    expect(second.lost.map((l) => [l.uid, l.attempt, l.requeued]).sort()).toEqual([['b', 1, true], ['c', 1, true]]);
    expect(second.runs.map((r) => [r.uid, r.attempt, r.kind]).sort()).toEqual([['b', 2, 'retry'], ['c', 2, 'retry']]);
    // The expired tokens are fenced: neither renews nor completes.
    const stale = first.runs.slice(1).map((r) => r.token);
    expect(await store.renew(stale, 30_000)).toEqual([false, false]);
    expect(await store.complete(stale.map((token) => ({ token, outcome: 'success' as const, startedAt: first.now, durationMs: 1 })))).toEqual(['lease-lost', 'lease-lost']);
    const b = await store.get('g', 'b');
    expect(b?.report).toMatchObject({ running: 1, attempts: 2 });
    expect(b?.report.lastError).toContain('lease expired');
    const B = base(store.prefix);
    expect(await raw.zcard(`${B}:L`)).toBe(1); // the second claim's group only
    expect(await store.complete(second.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: second.now, durationMs: 1 })))).toEqual(['ok', 'ok']);
    expect(await raw.exists(`${B}:L`, `${B}:g`, `${B}:l`)).toBe(0);
    expect(await store.list({ task: 'g' })).toEqual([]);
  });
});

describe('RedisStore large claims', () => {
  it('one claim takes 9,000 due one-shots of one partition (Lua unpack stops near 8,000 values: scripts work in chunks)', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    const s = new Scheduler({ store, concurrency: 10_000 });
    schedulers.push(s);
    s.define('big', () => undefined);
    await s.start({ execute: false });
    await s.scheduleMany('big', Array.from({ length: 9_000 }, (_, i) => ({ uid: `u${i}`, at: now - 10 })));
    const claim = await store.claim(request('big', { limit: 9_000 }, 9_000));
    expect(claim.runs).toHaveLength(9_000);
    expect(new Set(claim.runs.map((r) => r.uid)).size).toBe(9_000);
    const statuses = await store.complete(claim.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: claim.now, durationMs: 1 })));
    expect(statuses.filter((x) => x === 'ok')).toHaveLength(9_000);
    expect(await store.list({ task: 'big' })).toEqual([]);
  });
});

describe('RedisStore completion batches (one string: runs split by \\x1e, token and completion by \\x1f)', () => {
  it('error texts holding the separators are kept (as U+FFFD), results holding them stay JSON; a foreign token with control characters is lease-lost alone', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    for (const uid of ['a', 'b', 'c']) await store.upsert({ task: 'sep', uid, spec: { kind: 'every', every: 3_600_000, anchor: now - 10 }, first: { at: now - 10 }, enabled: true, timeout: 0 });
    const claim = await store.claim(request('sep', { attempts: 1 }));
    const [a, b, c] = claim.runs;
    if (a === undefined || b === undefined || c === undefined) throw new Error(`claimed ${claim.runs.length} runs`);
    const statuses = await store.complete([
      { token: a.token, outcome: 'failure', error: 'bad\x1erecord\x1funit|pipe', startedAt: claim.now, durationMs: 3 },
      { token: `${a.token.slice(0, a.token.indexOf('.'))}.x\x1fy`, outcome: 'success', startedAt: claim.now, durationMs: 1 },
      { token: b.token, outcome: 'success', result: { text: 'x\x1ey\x1fz|' }, startedAt: claim.now, durationMs: 2 },
      { token: c.token, outcome: 'abandon', startedAt: 0, durationMs: 0 },
    ]);
    expect(statuses).toEqual(['ok', 'lease-lost', 'ok', 'ok']);
    const sa = await store.get('sep', 'a');
    expect(sa?.report).toMatchObject({ running: 0, failures: 1, lastError: 'bad\uFFFDrecord\uFFFDunit|pipe' });
    const sb = await store.get('sep', 'b');
    expect(sb?.report).toMatchObject({ running: 0, successes: 1, lastResult: { text: 'x\x1ey\x1fz|' } });
    // The abandoned run is due again, as it was.
    const again = await store.claim(request('sep'));
    expect(again.runs.map((r) => [r.uid, r.attempt])).toEqual([['c', 1]]);
  });
});

describe('RedisStore claim: batches of one due time mixing one-shots and recurring schedules', () => {
  it('each occurrence is claimed once, in member order; one-shots leave the due set, recurring ones advance in it', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    const t = now - 1000;
    const B = `${store.prefix}:{${store.prefix}:0}`;
    const dueSet = `${B}:d:${'q'}`;
    // Equal due times: the set orders them by member, i.e. by uid here.
    for (const uid of ['a1', 'a2', 'a3', 'a4']) await store.upsert({ task: 'q', uid, spec: { kind: 'once' }, first: { at: t }, enabled: true, timeout: 0 });
    // Every claim of 2 takes two plain one-shots off the front of the set.
    for (const expected of [['a1', 'a2'], ['a3', 'a4']]) {
      const claim = await store.claim(request('q', {}, 2));
      expect(claim.runs.map((r) => r.uid)).toEqual(expected);
    }
    expect(await raw.zcard(dueSet)).toBe(0);
    // A mix at one due time: plain one-shots (b, d, g), recurring ones (c, f: advanced an hour,
    // so their rank moves) and a one-shot with params (e: has a hash), claimed 3 at a time.
    const once = (uid: string, params?: { n: number }) => store.upsert({ task: 'q', uid, spec: { kind: 'once' }, first: { at: t }, params, enabled: true, timeout: 0 });
    const every = (uid: string) => store.upsert({ task: 'q', uid, spec: { kind: 'every', every: 3_600_000, anchor: t }, first: { at: t }, enabled: true, timeout: 0 });
    await once('b');
    await every('c');
    await once('d');
    await once('e', { n: 1 });
    await every('f');
    await once('g');
    const claimed: string[] = [];
    for (let i = 0; i < 5; i++) claimed.push(...(await store.claim(request('q', {}, 3))).runs.map((r) => r.uid));
    expect(claimed).toEqual(['b', 'c', 'd', 'e', 'f', 'g']);
    // Left: the two recurring schedules, an hour on; every one-shot is off the set.
    const left = await raw.zrange(dueSet, 0, -1, 'WITHSCORES');
    expect(left).toEqual([encodeId('q', 'c'), String(t + 3_600_000), encodeId('q', 'f'), String(t + 3_600_000)]);
    expect((await store.get('q', 'c'))?.nextRunAt).toBe(t + 3_600_000);
    expect((await store.get('q', 'g'))?.report.running).toBe(1);
  });
});

describe('RedisStore plain one-shots run without a hash (lib: lift)', () => {
  const once = (uid: string, at: number) => ({ task: 'q', uid, spec: { kind: 'once' as const }, first: { at }, enabled: true, timeout: 0 });
  const base = (prefix: string): string => `${prefix}:{${prefix}:0}`;
  const running = async (store: RedisStore): Promise<number> => (await store.depths()).get('q')?.running ?? 0;
  const ok = (token: string, now: number) => ({ token, outcome: 'success' as const, startedAt: now, durationMs: 1 });

  it('a claimed one is a B:o entry, read back as running by get, list, snapshot and clear; its success leaves nothing', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    await store.upsert(once('a', now - 10));
    await store.upsert(once('b', now - 5));
    const claim = await store.claim(request('q'));
    expect(claim.runs.map((r) => r.uid)).toEqual(['a', 'b']);
    const B = base(store.prefix);
    // Its B:o entry "<lease token>|<dueAt>" is its whole lease: no lease info in B:l. Field "~"
    // keeps B:o a hash table while runs are in it (lib: hashtable).
    const leaseOf = (uid: string): string => {
      const t = claim.runs.find((r) => r.uid === uid)?.token ?? '';
      return t.slice(0, t.indexOf('/'));
    };
    expect(await raw.hgetall(`${B}:o`)).toEqual({ '~': '~'.repeat(80), [encodeId('q', 'a')]: `${leaseOf('a')}|${now - 10}`, [encodeId('q', 'b')]: `${leaseOf('b')}|${now - 5}` });
    expect(await raw.object('ENCODING', `${B}:o`)).toBe('hashtable');
    expect(await raw.exists(`${B}:l`)).toBe(0);
    expect(await raw.exists(`${B}:s:${encodeId('q', 'a')}`)).toBe(0);
    const a = await store.get('q', 'a');
    expect(a).toMatchObject({ nextRunAt: null, dueAt: now - 10, report: { running: 1, attempts: 1, lastExecutedAt: claim.now } });
    expect((await store.list({ task: 'q' })).map((s) => [s.uid, s.report.running]).sort()).toEqual([['a', 1], ['b', 1]]);
    expect(await store.list({ task: 'other' })).toEqual([]);
    expect((await store.snapshot())['q']).toEqual({ a: { iat: now - 10, timeout: 0 }, b: { iat: now - 5, timeout: 0 } });
    expect(await running(store)).toBe(2);
    expect(await store.complete([ok(claim.runs[0]?.token ?? '', claim.now)])).toEqual(['ok']);
    expect(await store.get('q', 'a')).toBeNull();
    expect(await running(store)).toBe(1);
    // A failure with no retry left ends it too.
    expect(await store.complete([{ token: claim.runs[1]?.token ?? '', outcome: 'failure', error: 'x', startedAt: claim.now, durationMs: 1 }])).toEqual(['ok']);
    expect(await running(store)).toBe(0);
    expect(await keysOf(store.prefix)).not.toContain(`${B}:o`);
    expect(await store.list()).toEqual([]);
    // clear() counts those still running.
    await store.upsert(once('c', now - 1));
    expect((await store.claim(request('q'))).runs).toHaveLength(1);
    expect(await store.clear()).toBe(1);
  });

  it('update, trigger, replace and remove lift a running one into a hash and keep every rule', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    for (const uid of ['u', 't', 'r', 'x']) await store.upsert(once(uid, now - 10));
    const claim = await store.claim(request('q'));
    const token = (uid: string): string => claim.runs.find((r) => r.uid === uid)?.token ?? '';
    expect(claim.runs).toHaveLength(4);
    const B = base(store.prefix);
    // update: now a hash (running, claimed) with the new params; its run still completes it.
    expect(await store.update('q', 'u', { params: { v: 2 } })).toMatchObject({ params: { v: 2 }, report: { running: 1 } });
    expect(await raw.hexists(`${B}:o`, encodeId('q', 'u'))).toBe(0);
    expect(await raw.hget(`${B}:s:${encodeId('q', 'u')}`, 'tk')).toBe(token('u').slice(0, token('u').indexOf('/')));
    // Its lease moved to B:l with it.
    expect(await raw.hexists(`${B}:l`, token('u').slice(0, token('u').indexOf('/')))).toBe(1);
    // trigger: the manual occurrence waits for the running run's completion, then runs.
    expect(await store.trigger('q', 't')).toBe(true);
    // replace: the old run is fenced (accepted, changes nothing); the new one is due later.
    await store.upsert(once('r', now + 60_000));
    // remove: gone at once; its run's completion changes nothing.
    expect(await store.remove('q', 'x')).toBe(true);
    expect(await store.get('q', 'x')).toBeNull();
    expect(await running(store)).toBe(2); // u and t; r and x were fenced out
    expect(await store.complete(['u', 't', 'r', 'x'].map((uid) => ok(token(uid), claim.now)))).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(await running(store)).toBe(0);
    expect(await store.get('q', 'u')).toBeNull();
    expect(await store.get('q', 'x')).toBeNull();
    expect(await store.get('q', 'r')).toMatchObject({ nextRunAt: now + 60_000, report: { running: 0 } });
    const next = await store.claim(request('q'));
    expect(next.runs.map((r) => [r.uid, r.kind])).toEqual([['t', 'trigger']]);
    expect(await store.complete([ok(next.runs[0]?.token ?? '', next.now)])).toEqual(['ok']);
    expect(await store.get('q', 't')).toBeNull();
    expect(await raw.exists(`${B}:o`, `${B}:l`, `${B}:L`, `${B}:g`)).toBe(0);
  });

  it('a retry, an abandon and an expired lease lift it too: redelivered with the right attempt', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    for (const [uid, ago] of [['f', 30], ['g', 20], ['e', 10]] as const) await store.upsert(once(uid, now - ago));
    const first = await store.claim(request('q', { attempts: 3, leaseMs: 30_000 }, 2));
    expect(first.runs.map((r) => r.uid)).toEqual(['f', 'g']);
    const [f, g] = first.runs;
    expect(await store.complete([
      { token: f?.token ?? '', outcome: 'failure', error: 'boom', startedAt: first.now, durationMs: 1, retryAt: first.now },
      { token: g?.token ?? '', outcome: 'abandon', startedAt: 0, durationMs: 0 },
    ])).toEqual(['ok', 'ok']);
    expect(await store.get('q', 'f')).toMatchObject({ report: { running: 0, failures: 0, lastError: 'boom' } });
    const expiring = await store.claim(request('q', { attempts: 3, leaseMs: 100 }, 1));
    expect(expiring.runs.map((r) => r.uid)).toEqual(['e']);
    await sleep(200);
    const again = await store.claim(request('q', { attempts: 3, leaseMs: 30_000 }));
    expect(again.lost.map((l) => [l.uid, l.requeued])).toEqual([['e', true]]);
    expect(again.runs.map((r) => [r.uid, r.attempt, r.kind]).sort()).toEqual([['e', 2, 'retry'], ['f', 2, 'retry'], ['g', 1, 'scheduled']]);
    expect((await store.get('q', 'e'))?.report.lastError).toContain('lease expired');
    expect(await store.complete(again.runs.map((r) => ok(r.token, again.now)))).toEqual(['ok', 'ok', 'ok']);
    expect(await store.list()).toEqual([]);
    expect(await running(store)).toBe(0);
  });
});

describe('RedisStore scripts (EVALSHA, loaded again on NOSCRIPT)', () => {
  it('after SCRIPT FLUSH every script loads itself again: upsert, claim, renew, complete, trigger and remove still work', async () => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    await store.upsert({ task: 's', uid: 'a', spec: { kind: 'once' }, first: { at: now - 10 }, enabled: true, timeout: 0 });
    const sha = (name: 'upsert' | 'claim') => scripts().get(name)?.sha ?? '';
    await raw.script('FLUSH');
    expect(await raw.script('EXISTS', sha('upsert'), sha('claim'))).toEqual([0, 0]);
    await store.upsert({ task: 's', uid: 'b', spec: { kind: 'every', every: 60_000, anchor: now - 10 }, first: { at: now - 10 }, enabled: true, timeout: 0 });
    await raw.script('FLUSH');
    const claim = await store.claim(request('s'));
    expect(claim.runs.map((r) => r.uid).sort()).toEqual(['a', 'b']);
    expect(await raw.script('EXISTS', sha('upsert'), sha('claim'))).toEqual([0, 1]);
    await raw.script('FLUSH');
    expect(await store.renew(claim.runs.map((r) => r.token), 30_000)).toEqual([true, true]);
    await raw.script('FLUSH');
    expect(await store.complete(claim.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: claim.now, durationMs: 1 })))).toEqual(['ok', 'ok']);
    await raw.script('FLUSH');
    expect(await store.trigger('s', 'b')).toBe(true);
    await raw.script('FLUSH');
    expect(await store.remove('s', 'b')).toBe(true);
    expect(await store.list({ task: 's' })).toEqual([]);
  });
});

describe('RedisStore claim: bulk due times (names read by rank when many share the first score)', () => {
  it('random mixes of due times (runs of 1 to 40 equal ones), one-shots with and without a hash and recurring schedules: each due occurrence claimed once, in due order', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ size: fc.integer({ min: 1, max: 40 }), kinds: fc.array(fc.constantFrom('plain', 'params', 'every'), { minLength: 1, maxLength: 3 }), trigger: fc.boolean() }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 8 }),
        async (groups, limits) => {
          const store = await openStore({ partitions: 1 });
          const task = `m${n++}`;
          const now = await store.now();
          const expected = new Map<string, number>();
          let t = now - 10_000;
          let u = 0;
          const toTrigger: string[] = [];
          for (const g of groups) {
            t += 7;
            for (let i = 0; i < g.size; i++) {
              const kind = g.kinds[i % g.kinds.length];
              const uid = `u${String(u++).padStart(4, '0')}`;
              if (kind === 'every' && g.trigger && !toTrigger.some((x) => expected.get(x) === t)) toTrigger.push(uid);
              if (kind === 'every') await store.upsert({ task, uid, spec: { kind: 'every', every: 3_600_000, anchor: t }, first: { at: t }, enabled: true, timeout: 0 });
              else await store.upsert({ task, uid, spec: { kind: 'once' }, first: { at: t }, params: kind === 'params' ? { i } : undefined, enabled: true, timeout: 0 });
              expected.set(uid, t);
            }
          }
          // Triggered runs of recurring schedules (one per group that asks): extra occurrences
          // due now, after all of the above.
          const triggered: string[] = [];
          for (const uid of toTrigger) {
            expect(await store.trigger(task, uid)).toBe(true);
            triggered.push(uid);
          }
          const total = expected.size + triggered.length;
          const seen = new Map<string, number>();
          const seenTriggers: string[] = [];
          let last = -Infinity;
          for (let c = 0; c < 500 && seen.size + seenTriggers.length < total; c++) {
            const limit = limits[c % limits.length] ?? 1;
            const claim = await store.claim(request(task, {}, limit));
            expect(claim.runs.length).toBe(Math.min(limit, total - seen.size - seenTriggers.length));
            for (const r of claim.runs) {
              // Oldest first: every scheduled occurrence before the triggers (due now).
              expect(r.dueAt).toBeGreaterThanOrEqual(last);
              last = r.dueAt;
              if (r.kind === 'trigger') {
                seenTriggers.push(r.uid);
                continue;
              }
              expect(seen.has(r.uid)).toBe(false);
              expect(r.dueAt).toBe(expected.get(r.uid));
              seen.set(r.uid, r.dueAt);
            }
            expect(await store.complete(claim.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: claim.now, durationMs: 1 })))).toEqual(claim.runs.map(() => 'ok'));
          }
          expect(seen.size).toBe(expected.size);
          expect(seenTriggers.sort()).toEqual(triggered.sort());
          expect((await store.claim(request(task, {}, 100))).runs).toEqual([]);
          // What is left due: the recurring schedules only, an hour on.
          const B = `${store.prefix}:{${store.prefix}:0}`;
          const left = await raw.zrange(`${B}:d:${task}`, 0, -1);
          expect(left.length).toBe((await store.list({ task })).filter((x) => x.nextRunAt !== null).length);
          await store.clear();
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('RedisStore claim: a cron schedule held for a refill at the front of the due set', () => {
  it('the one-shots claimed behind it leave the set, it stays (and fires once refilled)', async () => {
    const store = await openStore({ partitions: 1, cronLookahead: 2 });
    const now = await store.now();
    await store.upsert({ task: 'h', uid: 'cron', spec: { kind: 'cron', cron: '* * * * * *' }, first: { next: true }, enabled: true, timeout: 0 });
    // A claimer advanced it an hour ago and died before refilling: due, and no times left.
    const B = `${store.prefix}:{${store.prefix}:0}`;
    const cronEnc = encodeId('h', 'cron');
    await raw.hset(`${B}:s:${cronEnc}`, 'nx', '', 'd', String(now - 3_600_000));
    await raw.zadd(`${B}:d:h`, now - 3_600_000, cronEnc);
    for (let i = 0; i < 20; i++) await store.upsert({ task: 'h', uid: `p${String(i).padStart(2, '0')}`, spec: { kind: 'once' }, first: { at: now - 1000 }, enabled: true, timeout: 0 });
    const seen: string[] = [];
    for (let c = 0; c < 10 && seen.filter((u) => u.startsWith('p')).length < 20; c++) {
      const claim = await store.claim(request('h', { misfire: 'skip' }, 7));
      seen.push(...claim.runs.map((r) => r.uid));
      await store.complete(claim.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: claim.now, durationMs: 1 })));
    }
    const plain = seen.filter((u) => u.startsWith('p'));
    expect(plain.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `p${String(i).padStart(2, '0')}`));
    // The cron schedule is still scheduled, refilled, in the future.
    const cron = await store.get('h', 'cron');
    expect(cron?.nextRunAt).toBeGreaterThan(now - 1000);
    expect(await raw.zscore(`${B}:d:h`, cronEnc)).not.toBeNull();
    expect(await raw.zcard(`${B}:d:h`)).toBe(1);
  });
});

describe('RedisStore plain one-shots at scale: a group of 9,000 reaped or given back whole', () => {
  // lift reads its group's "<group>/" entry once per run: that entry must not grow with the
  // group (it held the group's whole enc list once, and reaping 9,000 runs with 100-character
  // uids blocked Redis for 12 s).
  for (const mode of ['reaped', 'given back'] as const) {
    it(`${mode}: every run is redelivered once, with the right attempt; nothing is left of the leases`, async () => {
      const store = await openStore({ partitions: 1 });
      const now = await store.now();
      const uid = (i: number): string => `${String(i).padStart(6, '0')}${'u'.repeat(94)}`;
      const N = 9_000;
      await store.upsertMany(Array.from({ length: N }, (_, i) => ({ task: 'big', uid: uid(i), spec: { kind: 'once' as const }, first: { at: now - 10 }, enabled: true, timeout: 0 })));
      const first = await store.claim(request('big', { attempts: 2, leaseMs: mode === 'reaped' ? 200 : 30_000, limit: N }, N));
      expect(first.runs).toHaveLength(N);
      const B = `${store.prefix}:{${store.prefix}:0}`;
      const token = first.runs[0]?.token ?? '';
      const group = token.slice(0, token.lastIndexOf('.', token.indexOf('/')));
      expect(await raw.hget(`${B}:g`, `${group}/`)).toBe(`2|${first.now}`);
      if (mode === 'reaped') {
        await sleep(300);
        const reap = await store.claim(request('big', { attempts: 2, limit: N }, 0));
        expect(reap.lost).toHaveLength(N);
        expect(reap.lost.every((l) => l.requeued && l.attempt === 1)).toBe(true);
      } else {
        const statuses = await store.complete(first.runs.map((r) => ({ token: r.token, outcome: 'abandon' as const, startedAt: 0, durationMs: 0 })));
        expect(statuses.filter((x) => x === 'ok')).toHaveLength(N);
      }
      // (A claim right after another that took everything may trust its backlog hint, which
      // says nothing is left: claim until all are back, as an executor woken by the store would.)
      const again = { runs: [] as ClaimedRun[], now: 0 };
      for (let c = 0; c < 10 && again.runs.length < N; c++) {
        const r = await store.claim(request('big', { attempts: 2, limit: N }, N - again.runs.length));
        again.runs.push(...r.runs);
        again.now = r.now;
      }
      expect(again.runs).toHaveLength(N);
      expect(new Set(again.runs.map((r) => r.uid)).size).toBe(N);
      expect(again.runs.every((r) => r.attempt === (mode === 'reaped' ? 2 : 1))).toBe(true);
      const done = await store.complete(again.runs.map((r) => ({ token: r.token, outcome: 'success' as const, startedAt: again.now, durationMs: 1 })));
      expect(done.filter((x) => x === 'ok')).toHaveLength(N);
      expect(await raw.exists(`${B}:o`, `${B}:l`, `${B}:L`, `${B}:g`)).toBe(0);
      expect(await store.list({ task: 'big' })).toEqual([]);
    }, 60_000);
  }

  it.each([1, 2])('get() does not report a run that finished between its reads of B:o and of its lease group (a group of %i)', async (size) => {
    const store = await openStore({ partitions: 1 });
    const now = await store.now();
    for (const uid of ['a', 'b'].slice(0, size)) await store.upsert({ task: 'q', uid, spec: { kind: 'once' }, first: { at: now - 10 }, enabled: true, timeout: 0 });
    const claim = await store.claim(request('q'));
    expect(claim.runs.map((r) => r.uid)).toEqual(['a', 'b'].slice(0, size));
    const token = claim.runs[0]?.token ?? '';
    // Complete the run right before the store reads the lease group (HMGET of B:g).
    const proto = Redis.prototype as unknown as { hmget: (...args: unknown[]) => Promise<unknown> };
    const hmget = proto.hmget;
    let fired = false;
    proto.hmget = async function (this: Redis, ...args: unknown[]): Promise<unknown> {
      if (!fired && typeof args[0] === 'string' && args[0].endsWith(':g')) {
        fired = true;
        await store.complete([{ token, outcome: 'success', startedAt: claim.now, durationMs: 1 }]);
      }
      return hmget.apply(this, args);
    };
    try {
      expect(await store.get('q', 'a')).toBeNull();
      expect(fired).toBe(true);
    } finally {
      proto.hmget = hmget;
    }
    // The other run of the group is still reported running.
    if (size === 2) expect(await store.get('q', 'b')).toMatchObject({ report: { running: 1 } });
  });
});

describe('RedisStore claim: extra occurrences behind a batch of one due time', () => {
  it('16 one-shots due at t0, one at t0+1, a trigger due now: a claim of 17 takes the one at t0+1, as MemoryStore does', async () => {
    const run = async (store: Store, now: number): Promise<string[]> => {
      const t0 = now - 1000;
      for (let i = 0; i < 16; i++) await store.upsert({ task: 'o', uid: `a${String(i).padStart(2, '0')}`, spec: { kind: 'once' }, first: { at: t0 }, enabled: true, timeout: 0 });
      await store.upsert({ task: 'o', uid: 'b', spec: { kind: 'once' }, first: { at: t0 + 1 }, enabled: true, timeout: 0 });
      await store.upsert({ task: 'o', uid: 'x', spec: { kind: 'once' }, first: { at: now + 3_600_000 }, params: { v: 1 }, enabled: true, timeout: 0 });
      await sleep(5);
      expect(await store.trigger('o', 'x')).toBe(true);
      await sleep(5);
      return (await store.claim(request('o', {}, 17))).runs.map((r) => `${r.uid}@${r.dueAt - t0}`);
    };
    const memory = new MemoryStore();
    await memory.open();
    expect((await run(memory, await memory.now())).slice(16)).toEqual(['b@1']);
    const redisStore = await openStore({ partitions: 1 });
    expect((await run(redisStore, await redisStore.now())).slice(16)).toEqual(['b@1']);
    await memory.close();
  });
});
