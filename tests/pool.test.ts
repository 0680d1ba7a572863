import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WorkerCrashError } from '../src/index.js';
import { schedulerTracker, sleep, waitFor } from './helpers.js';

const jobs = new URL('./fixtures/pool-jobs.mjs', import.meta.url);
const mod = (name: string) => ({ module: jobs, export: name });

describe('worker-thread pool', () => {
  const track = schedulerTracker();
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'schedkit-pool-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a module handler on a thread: params and result cross by structured clone', async () => {
    const s = track({ pool: { size: 2 } });
    s.define('double', mod('default'));
    const results: unknown[] = [];
    s.on('run:success', (e) => results.push(e.result));
    await s.start();
    await s.schedule('double', { uid: 'x', in: 0, params: { n: 21 } });
    await waitFor(() => results.length === 1, 'the pooled run');
    expect(results[0]).toMatchObject({ doubled: 42 });
    expect((results[0] as { threadId: number }).threadId).toBeGreaterThan(0); // not the main thread
    expect(s.pool).toMatchObject({ size: 2, threads: 1, busy: 0, queued: 0, completed: 1 });
  });

  it('a handler spinning the CPU for 3 s on a thread blocks no other schedule and keeps its lease', async () => {
    const s = track({ pool: { size: 2 } });
    const lost: unknown[] = [];
    s.on('run:lost', (e) => lost.push(e));
    // A third of the spin: only heartbeats keep it (they beat every ~330 ms; a starved event
    // loop on a loaded 2-core machine must not be mistaken for a lost lease, hence not shorter).
    s.define('spin', mod('spin'), { lease: 1000 });
    const ticks: number[] = [];
    s.define('tick', () => void ticks.push(Date.now()), { overlap: 'allow', misfire: 'run-all' });
    let spinStart = 0;
    let spinEnd = 0;
    s.on('run:start', (e) => {
      if (e.task === 'spin') spinStart = Date.now();
    });
    s.on('run:success', (e) => {
      if (e.task === 'spin') spinEnd = Date.now();
    });
    await s.start();
    await s.schedule('spin', { uid: 'cpu', in: 0, params: { ms: 3000 } });
    await waitFor(() => s.pool?.busy === 1, 'the spin to occupy a thread');
    await s.schedule('tick', { uid: 't', every: 100 });
    await waitFor(() => spinEnd > 0, 'the spin to finish', 30_000);
    // Ticks ran on this thread while the other was pegged (counts, not timings: at 100 ms a
    // tick, a 3 s spin leaves room for far more than these few even on a loaded machine).
    expect(ticks.filter((t) => t >= spinStart && t <= spinEnd).length).toBeGreaterThanOrEqual(3);
    expect(lost).toEqual([]);
    expect((await s.get('tick', 't'))?.failures).toBe(0);
    expect((await s.get('spin', 'cpu'))).toBeNull(); // finished: a one-shot is removed
  });

  it('timeout terminates a thread stuck in an endless loop; the retry runs on a fresh thread', async () => {
    const s = track({ pool: { size: 1 } });
    const file = join(dir, 'thread');
    s.define('stuck', mod('stuck'), { timeout: 300, retry: { attempts: 2, backoff: 'fixed', delay: 10 } });
    const failures: Error[] = [];
    const successes: unknown[] = [];
    s.on('run:failure', (e) => failures.push(e.error));
    s.on('run:success', (e) => successes.push(e.result));
    await s.start();
    await s.schedule('stuck', { uid: 'x', in: 0, params: { file } });
    await waitFor(() => successes.length === 1, 'the retry to succeed');
    expect(failures).toHaveLength(1);
    expect(failures[0]?.message).toMatch(/run timed out after 300 ms; its worker thread was terminated/);
    const first = Number(await readFile(file, 'utf8'));
    const second = successes[0] as { attempt: number; threadId: number };
    expect(second.attempt).toBe(2);
    expect(second.threadId).not.toBe(first);
    expect(s.pool?.crashed).toBe(1);
  });

  it.each([
    ['throws', /handler failed on purpose/, 'RangeError'],
    ['exits', /worker thread crashed: the worker thread exited with code 1/, 'WorkerCrashError'],
    ['uncloneable', /structured clone failed/, 'DataCloneError'],
  ])('a handler that %s fails only its own run; the pool and the scheduler go on', async (name, message, errorName) => {
    const s = track({ pool: { size: 1 } });
    s.define(name, mod(name));
    s.define('double', mod('default'));
    const failures: Error[] = [];
    const ok: unknown[] = [];
    s.on('run:failure', (e) => failures.push(e.error));
    s.on('run:success', (e) => ok.push(e.result));
    await s.start();
    await s.schedule(name, { uid: 'bad', in: 0 });
    await waitFor(() => failures.length === 1, 'the failure');
    expect(failures[0]?.message).toMatch(message);
    expect(failures[0]?.name).toBe(errorName);
    await s.schedule('double', { uid: 'good', in: 0, params: { n: 2 } });
    await waitFor(() => ok.length === 1, 'the next run on the pool');
    expect(ok[0]).toMatchObject({ doubled: 4 });
  });

  it('a handler exceeding resourceLimits.maxOldGenerationSizeMb fails only its own run', async () => {
    const s = track({ pool: { size: 1, resourceLimits: { maxOldGenerationSizeMb: 32 } } });
    s.define('oom', mod('oom'));
    s.define('double', mod('default'));
    const failures: Error[] = [];
    const ok: unknown[] = [];
    s.on('run:failure', (e) => failures.push(e.error));
    s.on('run:success', (e) => ok.push(e.result));
    await s.start();
    await s.schedule('oom', { uid: 'hog', in: 0 });
    await waitFor(() => failures.length === 1, 'the out-of-memory failure', 30_000);
    expect(failures[0]).toBeInstanceOf(WorkerCrashError);
    expect(failures[0]?.message).toMatch(/out of memory/i);
    await s.schedule('double', { uid: 'good', in: 0, params: { n: 5 } });
    await waitFor(() => ok.length === 1, 'the next run on a fresh thread');
  });

  it('in-process and pooled handlers work side by side', async () => {
    const s = track({ pool: { size: 1 } });
    const seen: string[] = [];
    s.define('inline', () => void seen.push('inline'));
    s.define('double', mod('default'));
    s.on('run:success', (e) => e.task === 'double' && seen.push('pooled'));
    await s.start();
    await s.schedule('inline', { in: 0 });
    await s.schedule('double', { in: 0, params: { n: 1 } });
    await waitFor(() => seen.length === 2, 'both runs');
    expect(seen.sort()).toEqual(['inline', 'pooled']);
  });

  it('stop() drains pooled runs within its timeout, then terminates what is left', async () => {
    const s = track({ pool: { size: 2 } });
    s.define('slow', mod('slow'));
    const ok: unknown[] = [];
    s.on('run:success', (e) => ok.push(e.result));
    await s.start();
    await s.schedule('slow', { uid: 'a', in: 0, params: { ms: 200 } });
    await waitFor(() => s.pool?.busy === 1, 'the run to start');
    await s.stop({ timeout: '10s' });
    expect(ok).toEqual(['done']);

    const t = track({ pool: { size: 1 } });
    t.define('stuck', mod('stuck'));
    await t.start();
    await t.schedule('stuck', { uid: 'forever', in: 0, params: { file: join(dir, 'f') } });
    await waitFor(() => t.pool?.busy === 1, 'the stuck run to start');
    const before = Date.now();
    await t.stop({ timeout: 200 });
    expect(Date.now() - before).toBeLessThan(10_000); // it did not wait for the endless loop
    expect(t.pool).toBeNull();
  });

  it('rejects a missing module file, a bad export name and bad pool options, naming the field', () => {
    const s = track();
    expect(() => s.define('x', { module: join(dir, 'missing.mjs') })).toThrow(/define\.handler\.module: no such file/);
    expect(() => s.define('y', { module: jobs, export: '' })).toThrow(/define\.handler\.export/);
    expect(() => s.define('z', { modul: jobs } as never)).toThrow(/define\.handler: must be a function or \{ module, export\? \}/);
    expect(() => track({ pool: { size: 0 } })).toThrow(/pool\.size/);
    expect(() => track({ pool: { threads: 2 } as never })).toThrow(/pool\.threads: is not a known option/);
  });

  it('a missing export fails the run with a clear error', async () => {
    const s = track({ pool: { size: 1 } });
    s.define('nope', mod('doesNotExist'));
    const failures: Error[] = [];
    s.on('run:failure', (e) => failures.push(e.error));
    await s.start();
    await s.schedule('nope', { in: 0 });
    await waitFor(() => failures.length === 1, 'the failure');
    expect(failures[0]?.message).toMatch(/has no exported function "doesNotExist"/);
    await sleep(10);
  });
});
