/**
 * Vendure compatibility (`schedkit/compat/vendure`) on a real redis-server. Each "worker" is a
 * strategy plus the croner job Vendure's SchedulerService makes per task
 * (`new Cron(schedule, () => strategy.executeTask(task)(job))`); several share one prefix.
 * The seed document (004) has no runnable example: its interfaces are checked by the compiler
 * (see the first test). Then the behaviours SEEDS-NOTES.md lists, and one "does not copy
 * bug" test per listed bug.
 */
import { join } from 'node:path';
import { Cron } from 'croner';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  SchedkitSchedulerStrategy,
  type Injector,
  type ScheduledTask,
  type ScheduledTaskConfig,
  type SchedulerStrategy,
  type SchedkitSchedulerStrategyOptions,
  type TaskReport,
} from '../src/compat/vendure/index.js';
import { sleep, waitFor } from './helpers.js';
import { makeTmpDir, randomPrefix, removeTmpDir, snapshotDist, useRedisServer } from './redis-harness.js';
import { readLines, spawnCompatChild, type CompatChild } from './fixtures/compat-spawn.js';

const redis = useRedisServer();

/** Vendure's ScheduledTask class, structurally (its real constructor takes the same config). */
class TestTask implements ScheduledTask {
  readonly options: ScheduledTaskConfig;
  constructor(config: ScheduledTaskConfig) {
    this.options = config;
  }
  get id(): string {
    return this.options.id;
  }
  execute(injector: Injector): Promise<unknown> {
    return this.options.execute({ injector, scheduledContext: { channel: 'default' }, params: this.options.params ?? {} });
  }
}

const injector: Injector = { get: <T>() => undefined as T };
const strategies: SchedkitSchedulerStrategy[] = [];
const jobs: Cron[] = [];
const children: CompatChild[] = [];

afterEach(async () => {
  for (const job of jobs.splice(0)) job.stop();
  await Promise.all(children.splice(0).map((c) => c.stop()));
  await Promise.all(strategies.splice(0).map((s) => s.destroy()));
});

function strategy(prefix: string, options: SchedkitSchedulerStrategyOptions = {}): SchedkitSchedulerStrategy {
  const s = new SchedkitSchedulerStrategy({ redis: { url: redis.url, prefix }, lease: '1s', stopTimeout: '2s', onError: () => undefined, ...options });
  void s.init(injector);
  strategies.push(s);
  return s;
}

/** A Vendure worker: registers the tasks and runs a croner job per task, as SchedulerService does. */
function worker(prefix: string, tasks: readonly ScheduledTask[], options: SchedkitSchedulerStrategyOptions = {}): SchedkitSchedulerStrategy {
  const s = strategy(prefix, options);
  for (const task of tasks) {
    s.registerTask(task);
    const pattern = typeof task.options.schedule === 'string' ? task.options.schedule : '* * * * * *';
    // (Vendure names each job after its task; names are per process, and these workers share one.)
    const job: Cron = new Cron(pattern, () => void s.executeTask(task)(job));
    jobs.push(job);
  }
  return s;
}

async function cronReport(s: SchedkitSchedulerStrategy, id: string) {
  const r = await s.producer.get(id, 'cron');
  if (r === null) throw new Error(`no schedule for ${id}`);
  return r;
}

describe('Vendure SchedulerStrategy (004)', () => {
  it('implements the SchedulerStrategy interface (structural copy of Vendure\'s; checked by tsc)', () => {
    const s: SchedulerStrategy = strategy(randomPrefix());
    expect(typeof s.registerTask).toBe('function');
    expect(typeof s.executeTask(new TestTask({ id: 'x', schedule: '* * * * *', execute: () => Promise.resolve() }))).toBe('function');
    for (const m of ['getTasks', 'getTask', 'triggerTask', 'updateTask', 'init', 'destroy'] as const) expect(typeof s[m]).toBe('function');
  });

  it('several workers start each tick once (3 workers, every second)', async () => {
    const prefix = randomPrefix();
    let runs = 0;
    const task = new TestTask({ id: 'tick', schedule: '* * * * * *', execute: () => Promise.resolve(++runs) });
    const workers = [worker(prefix, [task]), worker(prefix, [task]), worker(prefix, [task])];
    await waitFor(() => runs >= 4, 'four ticks', 15_000);
    for (const job of jobs.splice(0)) job.stop();
    await Promise.all(workers.map((w) => w.destroy()));
    const probe = strategy(prefix);
    const history = (await cronReport(probe, 'tick')).history.filter((h) => h.outcome !== 'skipped');
    expect(history).toHaveLength(runs);
    expect(new Set(history.map((h) => h.dueAt)).size).toBe(runs);
  });

  it('reports: getTasks/getTask give { id, lastExecutedAt, isRunning, lastResult, enabled }; a failure reports { error }', async () => {
    const prefix = randomPrefix();
    let n = 0;
    const ok = new TestTask({ id: 'ok', schedule: '* * * * * *', params: { k: 2 }, execute: ({ params }) => Promise.resolve({ n: ++n, k: params['k'] }) });
    const bad = new TestTask({ id: 'bad', schedule: '* * * * * *', execute: () => Promise.reject(new Error('nope')) });
    const w = worker(prefix, [ok, bad]);
    await waitFor(async () => (await w.getTask('bad'))?.lastExecutedAt != null && (await w.getTask('ok'))?.lastExecutedAt != null, 'a run of each', 15_000);
    await waitFor(async () => !(await w.getTask('ok'))?.isRunning, 'the ok run to finish');
    const tasks = await w.getTasks();
    expect(tasks.map((t) => t.id).sort()).toEqual(['bad', 'ok']);
    const okReport = tasks.find((t) => t.id === 'ok') as TaskReport;
    expect(Object.keys(okReport).sort()).toEqual(['enabled', 'id', 'isRunning', 'lastExecutedAt', 'lastResult']);
    expect(okReport.lastExecutedAt).toBeInstanceOf(Date);
    expect(okReport.enabled).toBe(true);
    expect(okReport.lastResult).toMatchObject({ k: 2 });
    await waitFor(async () => (await w.getTask('bad'))?.lastResult !== null, 'the failure to be recorded');
    expect((await w.getTask('bad'))?.lastResult).toEqual({ error: 'nope' });
    expect(await w.getTask('missing')).toBeUndefined();
  });

  it('updateTask({ enabled: false }) stops a task on every worker, survives a worker restart, and enabling resumes it', async () => {
    const prefix = randomPrefix();
    let runs = 0;
    const task = new TestTask({ id: 'toggle', schedule: '* * * * * *', execute: () => Promise.resolve(++runs) });
    const w = worker(prefix, [task]);
    await w.ready();
    const off = await w.updateTask({ id: 'toggle', enabled: false });
    expect(off).toMatchObject({ id: 'toggle', enabled: false });
    const before = runs;
    // A worker that (re)starts and registers the same task does not re-enable it.
    const w2 = worker(prefix, [task]);
    await w2.ready();
    await sleep(2500);
    expect(runs).toBe(before);
    expect((await w2.getTask('toggle'))?.enabled).toBe(false);
    await w2.updateTask({ id: 'toggle', enabled: true });
    await waitFor(() => runs > before, 'a run after enabling', 15_000);
    await expect(w.updateTask({ id: 'missing', enabled: true })).rejects.toThrow(/missing/);
  });

  it('processes registering one task at once create it once and lose no trigger queued meanwhile', async () => {
    const prefix = randomPrefix();
    const ran: string[] = [];
    const mk = () => new TestTask({ id: 'raced', schedule: '0 0 1 1 *', execute: () => Promise.resolve(ran.push('run')) });
    worker(prefix, [mk()], { execute: true });
    // Five servers register the task (none exists yet) and each triggers it at once: a
    // registration that found no schedule and created it after another process had created
    // it and queued a trigger replaced it, dropping that trigger.
    const servers = Array.from({ length: 5 }, () => strategy(prefix, { execute: false }));
    await Promise.all(servers.map((s) => s.triggerTask(mk())));
    await waitFor(() => ran.length === 5, 'all five triggered runs');
    await sleep(300);
    expect(ran).toHaveLength(5);
    expect((await cronReport(servers[0] as SchedkitSchedulerStrategy, 'raced')).successes).toBe(5);
  });

  it('triggerTask runs the task at the soonest opportunity on a worker, not on the (server) process that triggered it', async () => {
    const prefix = randomPrefix();
    const ran: string[] = [];
    const mk = (where: string) => new TestTask({ id: 'rare', schedule: '0 0 1 1 *', execute: () => Promise.resolve(ran.push(where)) });
    worker(prefix, [mk('worker')], { execute: true }); // a worker whose task never ticks during the test
    const server = strategy(prefix, { execute: false });
    server.registerTask(mk('server'));
    await server.triggerTask(mk('server'));
    await waitFor(() => ran.length === 1, 'the triggered run');
    // executeTask(task)() without a job (a manual call) queues a trigger the same way.
    await server.executeTask(mk('server'))();
    await waitFor(() => ran.length === 2, 'the second triggered run');
    expect(ran).toEqual(['worker', 'worker']);
    expect(server.scheduler).toBeNull();
  });

  it('function schedules: evaluated with the `cronTime` option, else taken from the croner job\'s pattern', async () => {
    const prefix = randomPrefix();
    const cronTime = { everySecond: () => '* * * * * *' };
    const viaOption = new TestTask({ id: 'fnOption', schedule: (c: never) => (c as typeof cronTime).everySecond(), execute: () => Promise.resolve('a') });
    const viaJob = new TestTask({ id: 'fnJob', schedule: () => '* * * * * *', execute: () => Promise.resolve('b') });
    const w = worker(prefix, [viaOption], { cronTime });
    worker(prefix, [viaJob]);
    await waitFor(async () => (await w.getTask('fnOption'))?.lastResult === 'a' && (await w.getTask('fnJob'))?.lastResult === 'b', 'both ran', 15_000);
    expect((await cronReport(w, 'fnJob')).schedule).toEqual({ kind: 'cron', cron: '* * * * * *' });
  });
});

describe('Vendure bugs not copied (SEEDS-NOTES 004)', () => {
  let snapshot = '';
  let tmp = '';
  beforeAll(() => {
    snapshot = snapshotDist();
    tmp = makeTmpDir('vendure');
  });
  afterAll(() => {
    removeTmpDir(snapshot);
    removeTmpDir(tmp);
  });

  it('does not copy bug: clock skew lets fast tasks run twice per tick (two worker processes, clocks -700 ms and +700 ms)', async () => {
    const prefix = randomPrefix();
    const out = join(tmp, `${prefix}.log`);
    const base = { mode: 'vendure', url: redis.url, prefix, out, task: 'fast', schedule: '* * * * * *', lease: 1000 };
    children.push(await spawnCompatChild(snapshot, { ...base, skewMs: -700 }), await spawnCompatChild(snapshot, { ...base, skewMs: 700 }));
    await waitFor(() => readLines(out).length >= 5, 'five runs', 20_000);
    await Promise.all(children.splice(0).map((c) => c.stop()));
    const runs = readLines(out).length;
    const history = (await cronReport(strategy(prefix), 'fast')).history.filter((h) => h.outcome !== 'skipped');
    expect(history).toHaveLength(runs);
    expect(new Set(history.map((h) => h.dueAt)).size).toBe(runs); // never two runs of one tick
  });

  it('does not copy bug: on timeout the lock is released while execute() keeps running (the run stays "running" until it settles)', async () => {
    const prefix = randomPrefix();
    let started = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const task = new TestTask({ id: 'slow', schedule: '* * * * * *', timeout: 200, execute: async () => { started++; await gate; return 'late'; } });
    const w = worker(prefix, [task]);
    await waitFor(() => started === 1, 'the first run', 15_000);
    await waitFor(async () => (await cronReport(w, 'slow')).skips >= 2, 'two ticks to pass while it runs', 15_000);
    expect(started).toBe(1); // far past its 200 ms timeout, nothing started beside it
    expect((await w.getTask('slow'))?.isRunning).toBe(true);
    release();
    await waitFor(async () => JSON.stringify((await w.getTask('slow'))?.lastResult).includes('timed out'), 'the timed-out run to be reported');
    await waitFor(() => started === 2, 'the next tick after it settled', 15_000);
  });

  it('does not copy bug: preventOverlap does not engage (true skips ticks while running; false lets them overlap)', async () => {
    const prefix = randomPrefix();
    let running = 0;
    let peak = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const body = async (): Promise<void> => {
      running++;
      peak = Math.max(peak, running);
      await gate;
      running--;
    };
    const guarded = new TestTask({ id: 'guarded', schedule: '* * * * * *', preventOverlap: true, execute: body });
    const open = new TestTask({ id: 'open', schedule: '* * * * * *', preventOverlap: false, execute: body });
    const w = worker(prefix, [guarded, open]);
    await w.ready();
    await waitFor(async () => (await cronReport(w, 'guarded')).skips >= 1 && (await cronReport(w, 'open')).running >= 2, 'a skipped guarded tick and two open runs', 15_000);
    expect((await cronReport(w, 'guarded')).running).toBe(1);
    expect(peak).toBeGreaterThanOrEqual(3); // 1 guarded + at least 2 open at once
    release();
  });

  it('does not copy bug: a manual trigger that meets a held lock is lost (it runs once the running tick settles)', async () => {
    const prefix = randomPrefix();
    const kinds: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const task = new TestTask({ id: 'busy', schedule: '0 0 1 1 *', execute: async () => { kinds.push('run'); if (kinds.length === 1) await gate; } });
    const w = worker(prefix, [task], { execute: true });
    await w.triggerTask(task);
    await waitFor(() => kinds.length === 1, 'the first run (holding the lock)');
    await w.triggerTask(task); // meets the held lock
    await sleep(300);
    expect(kinds).toHaveLength(1);
    release();
    await waitFor(() => kinds.length === 2, 'the trigger that met the lock to run');
    const history = (await cronReport(w, 'busy')).history;
    expect(history.map((h) => h.kind)).toEqual(['trigger', 'trigger']);
  });

  it('does not copy bug: a crashed worker\'s lock lingers until a stale-lock sweep (kill -9; the next tick runs elsewhere)', async () => {
    const prefix = randomPrefix();
    const out = join(tmp, `${prefix}.log`);
    const child = await spawnCompatChild(snapshot, { mode: 'vendure', url: redis.url, prefix, out, task: 'stuck', schedule: '* * * * * *', lease: 1000, hang: true });
    children.push(child);
    await waitFor(() => readLines(out).length === 1, 'the child to start a run', 15_000);
    await child.kill9();
    children.splice(children.indexOf(child), 1);
    let runs = 0;
    const w = worker(prefix, [new TestTask({ id: 'stuck', schedule: '* * * * * *', execute: () => Promise.resolve(++runs) })]);
    await waitFor(() => runs >= 1, 'a run on the surviving worker once the dead one\'s lease expired', 15_000);
    await waitFor(async () => (await cronReport(w, 'stuck')).history.some((h) => h.outcome === 'lost'), 'the dead run to be reported lost');
  });
});
