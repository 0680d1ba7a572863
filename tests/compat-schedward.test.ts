/**
 * schedward compatibility (`schedkit/compat/schedward`, `schedkit/compat/schedward/async`):
 * the seed document's examples as written (apart from the import line), the behaviours
 * SEEDS-NOTES.md lists, and one "does not copy bug" test per listed bug.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TaskManager, IDLE_ERROR, type TaskRunnerRegistryDump, type TimeoutResponse } from '../src/compat/schedward/index.js';
import { TaskManager as AsyncTaskManager } from '../src/compat/schedward/async/index.js';
import { MemoryStore, RedisStore, SchedkitError } from '../src/index.js';
import { sleep, waitFor } from './helpers.js';
import { makeTmpDir, randomPrefix, removeTmpDir, snapshotDist, useRedisServer } from './redis-harness.js';
import { spawnCompatChild } from './fixtures/compat-spawn.js';
import { kRunnerThreads } from '../src/compat/schedward/runners.js';

const managers: TaskManager[] = [];
function manager(options?: ConstructorParameters<typeof TaskManager>[0]): TaskManager {
  const m = new TaskManager(options);
  managers.push(m);
  return m;
}
function asyncManager(options?: ConstructorParameters<typeof AsyncTaskManager>[0]): AsyncTaskManager {
  const m = new AsyncTaskManager(options);
  managers.push(m);
  return m;
}
const launched = (m: TaskManager, n = 8): Promise<void> => new Promise((resolve) => m.launch(n, resolve));
const stopped = (m: TaskManager): Promise<void> => new Promise((resolve) => m.stop(resolve));
const snapshotOf = (m: TaskManager): Promise<TaskRunnerRegistryDump> => new Promise((resolve) => m.makeTaskRegistrySnapshot(resolve));

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => stopped(m)));
  vi.restoreAllMocks();
});

describe('schedward seed examples (000), run as written', () => {
  it('"Making registry snapshot (dump)": the callback gets { s1: { t1 }, s2: { t1, t2 } } with iat and timeout', async () => {
    const manager = new TaskManager();
    managers.push(manager);
    await launched(manager);
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const before = Date.now();

    manager.task('s1').timeout('t1', 1000)
    manager.task('s2').timeout('t1', 1000)
    manager.task('s2').timeout('t2', 1000)

    manager.makeTaskRegistrySnapshot((reg) => console.log(reg))

    await waitFor(() => log.mock.calls.length === 1, 'the snapshot callback');
    const reg = log.mock.calls[0]?.[0] as TaskRunnerRegistryDump;
    expect(Object.keys(reg).sort()).toEqual(['s1', 's2']);
    expect(Object.keys(reg['s2'] ?? {}).sort()).toEqual(['t1', 't2']);
    for (const entry of [reg['s1']?.['t1'], reg['s2']?.['t1'], reg['s2']?.['t2']]) {
      expect(entry).toEqual({ iat: expect.any(Number) as number, timeout: 1000 });
      expect(entry?.iat).toBeGreaterThanOrEqual(before + 1000); // iat is the due time
    }
  });

  it('"Making registry snapshot" from schedward/async resolves the registry', async () => {
    const manager = asyncManager();
    await manager.launch(8);
    manager.task('s1').timeout('t1', 1000)
    manager.task('s2').timeout('t1', 1000)
    manager.task('s2').timeout('t2', 1000)
    const reg = await manager.makeTaskRegistrySnapshot();
    expect(Object.keys(reg).sort()).toEqual(['s1', 's2']);
    expect(reg['s2']?.['t2']?.timeout).toBe(1000);
  });

  it('"A full cycle of dump & restore": every timeout fires after launch → snapshot → stop → launch → load', async () => {
    const manager = new TaskManager();
    managers.push(manager);
    const fired: string[] = [];
    for (const name of ['s1', 's2']) manager.task(name).on('timeout', (e) => fired.push(`${name}/${e.task_uid}`));
    let reloaded = false;

    manager.launch(8, () => {

        manager.task('s1').timeout('t1', 1000)
        manager.task('s2').timeout('t1', 1000)
        manager.task('s2').timeout('t2', 1000)

        manager.makeTaskRegistrySnapshot(reg => {

            manager.stop(() => {

                manager.launch(8, () => {

                    manager.loadTaskRegistry(reg)
                    reloaded = true

                })

            })

        })

    })

    await waitFor(() => fired.length === 3, 'the three restored timeouts');
    expect(reloaded).toBe(true);
    expect(fired.sort()).toEqual(['s1/t1', 's2/t1', 's2/t2']);
    await sleep(300);
    expect(fired).toHaveLength(3);
  });
});

describe('schedward behaviours (SEEDS-NOTES 000)', () => {
  it('launch(n) records n as numWorkers and sets running; stop() resets both and calls back', async () => {
    const m = manager();
    expect(m.running).toBe(false);
    expect(m.numWorkers).toBe(0);
    m.launch(8);
    expect(m.numWorkers).toBe(8); // at once, as schedward's test expects
    expect(m.running).toBe(true);
    await m.flush();
    await stopped(m);
    expect(m.running).toBe(false);
    expect(m.numWorkers).toBe(0);
    let called = false;
    m.stop(() => (called = true)); // stopping an idle manager calls back at once
    expect(called).toBe(true);
  });

  it('launch throws for n <= 0 and when already running', async () => {
    const m = manager();
    expect(() => m.launch(0)).toThrow('`concurrency` parameter must be a positive integer');
    expect(() => m.launch(-3)).toThrow(SchedkitError);
    await launched(m, 2);
    expect(() => m.launch(2)).toThrow('TaskManager already running');
  });

  it('commands while idle throw schedward\'s idle error, before launch and after stop', async () => {
    const m = manager();
    const idle = (fn: () => void): void => {
      expect(fn).toThrow(IDLE_ERROR);
      try {
        fn();
      } catch (err) {
        expect((err as SchedkitError).code).toBe('ERR_IDLE');
      }
    };
    expect(IDLE_ERROR).toBe('Task manager is idle. Start a runners pool by using `launch()` method and wait for a callback');
    idle(() => m.task('t').timeout('u', 10));
    idle(() => m.task('t').clear('u'));
    idle(() => m.loadTaskRegistry({}));
    idle(() => m.makeTaskRegistrySnapshot(() => undefined));
    await launched(m);
    await stopped(m);
    idle(() => m.task('t').timeout('u', 10));
  });

  it('task(name) is created lazily, is one object per name, and keeps its listeners across stop/launch', async () => {
    const m = manager();
    const a = m.task('kept');
    expect(m.task('kept')).toBe(a);
    expect(m.taskList).toEqual(['kept']);
    const fired: string[] = [];
    a.on('timeout', (e) => fired.push(e.task_uid));
    await launched(m);
    a.timeout('first', 10);
    await waitFor(() => fired.length === 1, 'the first fire');
    await stopped(m);
    await launched(m);
    m.task('kept').timeout('second', 10);
    await waitFor(() => fired.length === 2, 'a fire after relaunch');
    expect(fired).toEqual(['first', 'second']);
  });

  it('every listener gets every fire with { task_uid, timeout, params }; on/addListener/once/off/removeListener', async () => {
    const m = manager();
    await launched(m);
    const s = m.task('fan');
    const a: TimeoutResponse[] = [];
    const b: TimeoutResponse<{ foo: string }>[] = [];
    const once: TimeoutResponse[] = [];
    const removed: TimeoutResponse[] = [];
    const offed: TimeoutResponse[] = [];
    s.on('timeout', (e) => a.push(e));
    s.addListener<{ foo: string }>('timeout', (e) => b.push(e));
    s.once('timeout', (e) => once.push(e));
    const r = (e: TimeoutResponse): number => removed.push(e);
    const o = (e: TimeoutResponse): number => offed.push(e);
    s.on('timeout', r);
    s.addListener('timeout', o);
    s.removeListener('timeout', r);
    s.off('timeout', o);
    s.timeout('x', 20, { foo: 'bar' });
    s.timeout('y', 40);
    await waitFor(() => a.length === 2 && b.length === 2, 'both fires on both listeners');
    expect(a.find((e) => e.task_uid === 'x')).toEqual({ task_uid: 'x', timeout: 20, params: { foo: 'bar' } });
    expect(a.find((e) => e.task_uid === 'y')).toEqual({ task_uid: 'y', timeout: 40, params: undefined });
    expect(b.find((e) => e.task_uid === 'x')?.params?.foo).toBe('bar');
    expect(once).toHaveLength(1);
    expect(removed).toEqual([]);
    expect(offed).toEqual([]);
  });

  it('timeout(uid) replaces an existing timeout of the same uid: one fire, with the new delay and params', async () => {
    const m = manager();
    await launched(m);
    const fired: TimeoutResponse[] = [];
    m.task('rep').on('timeout', (e) => fired.push(e));
    m.task('rep').timeout('u', 60_000, { v: 1 });
    m.task('rep').timeout('u', 30, { v: 2 });
    await waitFor(() => fired.length === 1, 'the replacing timeout');
    expect(fired[0]).toEqual({ task_uid: 'u', timeout: 30, params: { v: 2 } });
    // A fired timeout leaves the registry once its run completes (at-least-once until then).
    await waitFor(async () => Object.keys(await snapshotOf(m)).length === 0, 'an empty registry');
    await sleep(200);
    expect(fired).toHaveLength(1);
  });

  it('clear(uid) cancels; clearing a missing uid is silent', async () => {
    const m = manager();
    const errors: Error[] = [];
    m.on('error', (e) => errors.push(e));
    await launched(m);
    const fired: string[] = [];
    m.task('c').on('timeout', (e) => fired.push(e.task_uid));
    m.task('c').timeout('gone', 100);
    m.task('c').timeout('stays', 150);
    m.task('c').clear('gone');
    m.task('c').clear('never-was');
    await waitFor(() => fired.length === 1, 'the uncleared timeout');
    await sleep(200);
    expect(fired).toEqual(['stays']);
    expect(errors).toEqual([]);
  });

  it('params are copied through JSON like schedward (Dates become strings, functions vanish)', async () => {
    const m = manager();
    await launched(m);
    const fired: TimeoutResponse[] = [];
    m.task('p').on('timeout', (e) => fired.push(e));
    const params = { when: new Date(0), fn: () => 1, nested: { n: 1 } };
    m.task('p').timeout('u', 10, params);
    params.nested.n = 2; // a later change to the caller's object does not reach the timeout
    await waitFor(() => fired.length === 1, 'the fire');
    expect(fired[0]?.params).toEqual({ when: '1970-01-01T00:00:00.000Z', nested: { n: 1 } });
  });

  it('loadTaskRegistry: the iat rule — a passed iat fires at once with timeout 0, a future one with max(0, iat - now); iat is kept', async () => {
    const m = manager();
    await launched(m);
    const fired: TimeoutResponse[] = [];
    m.task('dumped').on('timeout', (e) => fired.push(e));
    const now = Date.now();
    const reg: TaskRunnerRegistryDump = {
      dumped: {
        past: { iat: now - 60_000, timeout: 1000, params: { foo: 'bar' } },
        future: { iat: now + 400, timeout: 5000 },
        later: { iat: now + 60_000, timeout: 90_000 },
      },
    };
    m.loadTaskRegistry(reg);
    await waitFor(() => fired.length === 2, 'the passed and the near entries');
    const past = fired.find((e) => e.task_uid === 'past');
    const future = fired.find((e) => e.task_uid === 'future');
    expect(past).toEqual({ task_uid: 'past', timeout: 0, params: { foo: 'bar' } });
    expect(future?.timeout).toBeGreaterThan(0);
    expect(future?.timeout).toBeLessThanOrEqual(400);
    const snap = await snapshotOf(m);
    expect(snap['dumped']?.['later']?.iat).toBe(now + 60_000); // kept, not recomputed from the load time
    expect(snap['dumped']?.['later']?.timeout).toBeLessThanOrEqual(60_000);
  });

  it('loadTaskRegistry validates the whole registry first and throws synchronously on bad input', async () => {
    const m = manager();
    await launched(m);
    expect(() => m.loadTaskRegistry({ t: { ok: { iat: Date.now(), timeout: 1 }, bad: { iat: 'soon', timeout: 1 } } } as unknown as TaskRunnerRegistryDump)).toThrow(/iat/);
    expect(await snapshotOf(m)).toEqual({});
  });

  it('the store option gives persistence: pending timeouts survive stop/launch and reach another manager on the same store', async () => {
    const store = new MemoryStore();
    const m = manager({ store });
    await launched(m);
    m.task('persist').timeout('u', 60_000, { keep: true });
    await stopped(m);
    await launched(m);
    expect((await snapshotOf(m))['persist']?.['u']).toMatchObject({ timeout: 60_000, params: { keep: true } });
    // Without a store, stop() drops what was pending, as schedward does.
    const plain = manager();
    await launched(plain);
    plain.task('drop').timeout('u', 60_000);
    await stopped(plain);
    await launched(plain);
    expect(await snapshotOf(plain)).toEqual({});
  });

  it('store failures reach the manager\'s error event instead of crashing', async () => {
    const m = manager({ store: new MemoryStore() });
    const errors: Error[] = [];
    m.on('error', (e) => errors.push(e));
    await launched(m);
    await m.scheduler?.stop(); // the store is gone under the manager
    m.task('x').timeout('u', 10);
    await waitFor(() => errors.length === 1, 'the reported error');
    expect((errors[0] as SchedkitError).code).toBe('ERR_STOPPED');
  });
});

describe('schedward runner pool: launch(n) starts n runner threads that hold the timers', () => {
  it('n real threads share the timers (id % n) and every timeout fires once, in due order per runner', async () => {
    const m = manager();
    await launched(m, 4);
    const threads = m[kRunnerThreads];
    expect(threads).toHaveLength(4);
    expect(new Set(threads.map((w) => w.threadId)).size).toBe(4);
    expect(m.runners).toEqual({ threads: 4, timers: [0, 0, 0, 0], crashed: 0 });
    const fired: string[] = [];
    m.task('t').on('timeout', (e) => fired.push(e.task_uid));
    for (let i = 0; i < 100; i++) m.task('t').timeout(`u${i}`, 200 + i * 3);
    await m.flush();
    expect(m.runners?.timers).toEqual([25, 25, 25, 25]);
    await waitFor(() => fired.length === 100, 'the 100 timeouts');
    await sleep(100);
    expect([...fired].sort()).toEqual(Array.from({ length: 100 }, (_, i) => `u${i}`).sort());
    // u<i> got id i + 1, so runner (i + 1) % 4 held it; each runner fires its own in due order.
    for (let r = 0; r < 4; r++) {
      const order = fired.map((uid) => Number(uid.slice(1))).filter((i) => (i + 1) % 4 === r);
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
    expect(m.runners?.timers).toEqual([0, 0, 0, 0]);
    await stopped(m);
    expect(m.runners).toBeNull();
    expect(threads.every((w) => w.threadId === -1)).toBe(true); // terminated
  });

  it('replacing and clearing a uid disarms its timer in whichever runner held it', async () => {
    const m = manager();
    await launched(m, 3);
    const fired: TimeoutResponse[] = [];
    m.task('t').on('timeout', (e) => fired.push(e));
    m.task('t').timeout('a', 150, { v: 1 });
    m.task('t').timeout('a', 250, { v: 2 }); // replaces: another id, maybe another runner
    m.task('t').timeout('b', 150);
    m.task('t').clear('b');
    await m.flush();
    expect(m.runners?.timers.reduce((a, b) => a + b, 0)).toBe(1);
    await waitFor(() => fired.length === 1, 'a');
    await sleep(300);
    expect(fired).toEqual([{ task_uid: 'a', timeout: 250, params: { v: 2 } }]);
  });

  it('does not copy bug: a runner that dies loses nothing — a new thread re-arms its timeouts', async () => {
    const m = manager();
    const errors: Error[] = [];
    m.on('error', (e) => errors.push(e));
    await launched(m, 4);
    const fired: string[] = [];
    m.task('t').on('timeout', (e) => fired.push(e.task_uid));
    for (let i = 0; i < 40; i++) m.task('t').timeout(`u${i}`, 600);
    await m.flush();
    const victim = m[kRunnerThreads][1];
    await victim?.terminate(); // the thread dies with its 10 timers
    await waitFor(() => m.runners?.crashed === 1 && m.runners.threads === 4, 'the replacement runner');
    expect(m.runners?.timers).toEqual([10, 10, 10, 10]);
    expect(errors.map((e) => (e as SchedkitError).code)).toEqual(['ERR_WORKER_CRASHED']);
    expect(errors[0]?.message).toContain('re-arms its 10 timeout(s)');
    await waitFor(() => fired.length === 40, 'all 40 timeouts');
    await sleep(200);
    expect(new Set(fired).size).toBe(40);
    expect(fired).toHaveLength(40);
  });

  it('recurring and disabled entries restored by loadTaskRegistry keep their kind in snapshots', async () => {
    const m = manager();
    await launched(m, 2);
    const fired: TimeoutResponse[] = [];
    m.task('r').on('timeout', (e) => fired.push(e));
    const now = Date.now();
    m.loadTaskRegistry({ r: { tick: { iat: now + 100, timeout: 100, every: 100, params: { n: 1 } }, off: { iat: now + 50, timeout: 50, enabled: false } } });
    await waitFor(() => fired.length >= 3, 'three ticks');
    expect(fired.every((e) => e.task_uid === 'tick' && e.timeout === 100 && (e.params as { n: number }).n === 1)).toBe(true);
    (fired[0]?.params as { n: number }).n = 99; // each fire gets its own copy
    expect((fired[1]?.params as { n: number }).n).toBe(1);
    const reg = await snapshotOf(m);
    expect(reg['r']?.['tick']).toMatchObject({ every: 100, timeout: 100, params: { n: 1 } });
    expect(reg['r']?.['off']).toEqual({ iat: now + 50, timeout: 50, enabled: false });
    expect(m.runners?.timers.reduce((a, b) => a + b, 0)).toBe(1); // the disabled one holds no timer
  });

  it('snapshots keep names such as __proto__ and constructor as plain entries (no prototype pollution)', async () => {
    const m = manager();
    await launched(m, 2);
    m.task('__proto__').timeout('polluted', 60_000);
    m.task('t').timeout('constructor', 60_000);
    const reg = await snapshotOf(m);
    expect(Object.keys(reg).sort()).toEqual(['__proto__', 't']);
    expect(Object.keys(reg['__proto__'] ?? {})).toEqual(['polluted']);
    expect(Object.keys(reg['t'] ?? {})).toEqual(['constructor']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('refuses more runner threads than it can start (without a store)', () => {
    const m = manager();
    expect(() => m.launch(257)).toThrow(/at most 256/);
    expect(m.running).toBe(false);
  });
});

describe('schedward bugs not copied (SEEDS-NOTES 000)', () => {
  const redis = useRedisServer();
  let snapshot = '';
  beforeAll(() => {
    snapshot = snapshotDist();
  });
  afterAll(() => {
    removeTmpDir(snapshot);
  });

  it('does not copy bug: runner crash loses its timers (a kill -9 of the process that set a timeout loses nothing)', async () => {
    const prefix = randomPrefix();
    const child = await spawnCompatChild(snapshot, { mode: 'schedward', url: redis.url, prefix, task: 'crash', uid: 'survivor', timeout: 1500 });
    await child.kill9();
    const m = manager({ store: new RedisStore({ url: redis.url, prefix }) });
    const fired: TimeoutResponse[] = [];
    m.task('crash').on('timeout', (e) => fired.push(e));
    await launched(m, 1);
    await waitFor(() => fired.length === 1, 'the timeout set by the killed process', 15_000);
    expect(fired[0]).toEqual({ task_uid: 'survivor', timeout: 1500, params: { from: 'child' } });
  });

  it('does not copy bug: loading into a busy pool duplicates (load twice into a running manager, one fire per uid)', async () => {
    const m = manager();
    await launched(m);
    const fired: string[] = [];
    m.task('busy').on('timeout', (e) => fired.push(e.task_uid));
    m.task('busy').timeout('a', 300);
    m.task('busy').timeout('b', 350);
    const reg = await snapshotOf(m);
    m.loadTaskRegistry(reg);
    m.loadTaskRegistry(reg);
    await waitFor(() => fired.length >= 2, 'both timeouts');
    await sleep(500);
    expect(fired.sort()).toEqual(['a', 'b']);
  });

  it('does not copy bug: listener leak on every snapshot (100 snapshots add no listener anywhere)', async () => {
    const m = manager();
    await launched(m);
    const warnings: Error[] = [];
    const onWarning = (w: Error): number => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const s = m.task('leak');
      s.timeout('u', 60_000);
      await snapshotOf(m);
      const scheduler = m.scheduler;
      const count = (): number[] => [
        s.listenerCount('timeout'),
        m.listenerCount('error'),
        ...(['error', 'run:start', 'run:success', 'run:failure'] as const).map((e) => scheduler?.listenerCount(e) ?? -1),
      ];
      const before = count();
      for (let i = 0; i < 100; i++) await snapshotOf(m);
      expect(count()).toEqual(before);
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('does not copy bug: empty `task: {}` left in dumps (fired and cleared tasks leave no key)', async () => {
    const m = manager();
    await launched(m);
    const fired: string[] = [];
    m.task('fires').on('timeout', (e) => fired.push(e.task_uid));
    m.task('fires').timeout('u', 10);
    m.task('cleared').timeout('u', 60_000);
    m.task('cleared').clear('u');
    m.task('kept').timeout('u', 60_000);
    await waitFor(() => fired.length === 1, 'the fire');
    await waitFor(async () => !('fires' in (await snapshotOf(m))), 'the fired task to leave the dump');
    const dump = await snapshotOf(m);
    expect(Object.keys(dump)).toEqual(['kept']);
    expect(JSON.stringify(dump)).not.toContain('{}');
  });
});

describe('schedward on a file-backed MemoryStore', () => {
  it('pending timeouts survive a restart of the whole manager (new store object, same file)', async () => {
    const dir = makeTmpDir('schedward');
    try {
      const file = join(dir, 'registry.json');
      const m = manager({ store: new MemoryStore({ file }) });
      await launched(m);
      m.task('f').timeout('u', 60_000, { n: 1 });
      await stopped(m); // persists on close
      const m2 = manager({ store: new MemoryStore({ file }) });
      await launched(m2);
      expect((await snapshotOf(m2))['f']?.['u']).toMatchObject({ timeout: 60_000, params: { n: 1 } });
    } finally {
      removeTmpDir(dir);
    }
  });
});

describe('subpath exports', () => {
  it('every compat layer resolves by its package subpath from the built package (schedkit/compat/...)', () => {
    const script = `
      const out = {};
      for (const n of ['schedward', 'schedward/async', 'interval-scheduler', 'schedule-mq', 'vendure']) out[n] = Object.keys(await import('schedkit/compat/' + n)).sort();
      console.log(JSON.stringify(out));`;
    const root = fileURLToPath(new URL('..', import.meta.url));
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(JSON.parse(res.stdout)).toEqual({
      schedward: ['IDLE_ERROR', 'TaskManager', 'TaskSchedule'],
      'schedward/async': ['IDLE_ERROR', 'TaskManager', 'TaskSchedule'],
      'interval-scheduler': ['Scheduler', 'Task'],
      'schedule-mq': ['DEFAULT_PREFIX', 'Scheduler', 'createScheduler'],
      vendure: ['SchedkitSchedulerStrategy'],
    });
  });
});
