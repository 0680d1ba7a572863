/**
 * `/metrics` (Prometheus) and `/api/stats` over real HTTP: counters move with in-process
 * runs and with HTTP worker pops, the lateness histogram observes every start, gauges read
 * live state, the text parses, each server has its own registry, and the token guards it.
 */
import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../src/index.js';
import { createServer, type ServerOptions } from '../src/http/server.js';
import { serviceTracker, type Harness } from './service-harness.js';
import { deferred, sleep, waitFor } from './helpers.js';

const startService = serviceTracker();
/** A started scheduler (executing the tasks `define` adds) behind a server on 127.0.0.1:0. */
const start = (options: Partial<ServerOptions> = {}, define: (s: Scheduler) => void = () => undefined) => startService(options, { execute: true, define });

async function call(h: Harness, method: string, path: string, json?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  return fetch(`${h.url}${path}`, init);
}

async function jsonOf<T>(res: Promise<Response>): Promise<T> {
  return (await (await res).json()) as T;
}

// ------------------------------------------------------------------ exposition parser

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * Parses the Prometheus text format (0.0.4) strictly: every line is a HELP, a TYPE or a
 * sample, every sample belongs to a family with a TYPE, label values are quoted strings.
 */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('# HELP ')) {
      expect(line).toMatch(/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* \S/);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const name = m[1] as string;
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
    let consumed = 0;
    for (let lm = labelRe.exec(body); lm !== null; lm = labelRe.exec(body)) {
      labels[lm[1] as string] = (lm[2] as string).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      consumed = labelRe.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`bad labels: ${line}`);
    const raw = m[3] as string;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (raw !== 'NaN' && Number.isNaN(value)) throw new Error(`bad value: ${line}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(family)) throw new Error(`sample without a TYPE: ${line}`);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

async function scrape(h: Harness, headers: Record<string, string> = {}): Promise<Sample[]> {
  const res = await call(h, 'GET', '/metrics', undefined, headers);
  expect(res.status).toBe(200);
  return parseExposition(await res.text()).samples;
}

/** The value of the sample `name` with exactly these labels (le aside), 0 when absent. */
function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length);
  return found?.value ?? 0;
}

async function metric(h: Harness, name: string, labels: Record<string, string> = {}): Promise<number> {
  return valueOf(await scrape(h), name, labels);
}

describe('/metrics', () => {
  it('serves the Prometheus text format with every schedkit metric typed', async () => {
    const h = await start();
    const res = await call(h, 'GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const { types } = parseExposition(await res.text());
    expect(Object.fromEntries(types)).toEqual({
      schedkit_runs_total: 'counter',
      schedkit_run_lateness_seconds: 'histogram',
      schedkit_lease_losses_total: 'counter',
      schedkit_runs_running: 'gauge',
      schedkit_pool_workers: 'gauge',
      schedkit_pool_queue_length: 'gauge',
      schedkit_http_leases_held: 'gauge',
      schedkit_queue_depth: 'gauge',
    });
  });

  it('reports the worker-thread pool: size, alive and busy threads, queue length', async () => {
    const h = await start({}, (s) => s.define('pooled', { module: new URL('./fixtures/pool-jobs.mjs', import.meta.url), export: 'slow' }));
    expect(await metric(h, 'schedkit_pool_workers', { state: 'size' })).toBe(0); // the pool is made when the first pooled run needs it
    expect((await call(h, 'PUT', '/api/tasks/pooled/a', { in: 0, params: { ms: 1500 } })).status).toBe(200);
    await waitFor(async () => (await metric(h, 'schedkit_pool_workers', { state: 'busy' })) === 1, 'a busy pool thread');
    expect(await metric(h, 'schedkit_pool_workers', { state: 'alive' })).toBe(1);
    expect(await metric(h, 'schedkit_pool_workers', { state: 'size' })).toBeGreaterThanOrEqual(1);
    expect(await metric(h, 'schedkit_pool_queue_length')).toBe(0);
    await waitFor(async () => (await metric(h, 'schedkit_pool_workers', { state: 'busy' })) === 0, 'the pooled run to finish');
  });

  it('counts in-process runs by outcome and observes their lateness', async () => {
    const release = deferred();
    const h = await start({}, (s) => {
      s.define('ok', () => ({ fine: true }));
      s.define('boom', () => {
        throw new Error('kaput');
      });
      s.define('slow', () => release.promise);
    });
    expect((await call(h, 'PUT', '/api/tasks/ok/a', { in: 0 })).status).toBe(200);
    expect((await call(h, 'PUT', '/api/tasks/boom/b', { in: 0 })).status).toBe(200);
    await waitFor(async () => (await metric(h, 'schedkit_runs_total', { task: 'ok', outcome: 'success' })) === 1, 'a success of ok');
    await waitFor(async () => (await metric(h, 'schedkit_runs_total', { task: 'boom', outcome: 'failure' })) === 1, 'a failure of boom');

    // A run that lasts while its schedule comes due again: running, and the later occurrences skipped (overlap: skip).
    expect((await call(h, 'PUT', '/api/tasks/slow/c', { every: '50ms' })).status).toBe(200);
    await waitFor(async () => (await metric(h, 'schedkit_runs_running')) === 1, 'slow running');
    await waitFor(async () => (await metric(h, 'schedkit_runs_total', { task: 'slow', outcome: 'skipped' })) >= 1, 'a skipped occurrence of slow');
    release.resolve();
    await waitFor(async () => (await metric(h, 'schedkit_runs_total', { task: 'slow', outcome: 'success' })) >= 1, 'slow finished');
    await call(h, 'DELETE', '/api/tasks/slow/c');

    const samples = await scrape(h);
    expect(valueOf(samples, 'schedkit_runs_total', { task: 'ok', outcome: 'failure' })).toBe(0);
    expect(valueOf(samples, 'schedkit_run_lateness_seconds_count', { task: 'ok' })).toBe(1);
    expect(valueOf(samples, 'schedkit_run_lateness_seconds_count', { task: 'boom' })).toBe(1);
    // Histogram buckets are cumulative and end at the count.
    const buckets = samples.filter((s) => s.name === 'schedkit_run_lateness_seconds_bucket' && s.labels['task'] === 'ok');
    expect(buckets.length).toBeGreaterThan(5);
    for (let i = 1; i < buckets.length; i++) expect((buckets[i] as Sample).value).toBeGreaterThanOrEqual((buckets[i - 1] as Sample).value);
    expect(buckets.at(-1)?.labels['le']).toBe('+Inf');
    expect(buckets.at(-1)?.value).toBe(1);
  });

  it('counts pops by HTTP workers: destructive, acked, nacked and lost leases; lateness is pop time − due time', async () => {
    const h = await start();
    await call(h, 'PUT', '/api/pushTask/job', { n: 1 });
    await sleep(300); // the pop comes at least 300 ms after the push's due time
    expect((await call(h, 'GET', '/api/popTask/job')).status).toBe(200);
    let samples = await scrape(h);
    expect(valueOf(samples, 'schedkit_runs_total', { task: 'job', outcome: 'success' })).toBe(1);
    expect(valueOf(samples, 'schedkit_run_lateness_seconds_count', { task: 'job' })).toBe(1);
    expect(valueOf(samples, 'schedkit_run_lateness_seconds_sum', { task: 'job' })).toBeGreaterThanOrEqual(0.3);
    expect(valueOf(samples, 'schedkit_run_lateness_seconds_bucket', { task: 'job', le: '0.25' })).toBe(0);

    // Leased: held while unacknowledged, then a success on ack.
    await call(h, 'PUT', '/api/pushTask/leased', { n: 2 });
    const first = await jsonOf<{ task: { id: string } }>(call(h, 'GET', '/api/popTask/leased?lease=30s'));
    expect(await metric(h, 'schedkit_http_leases_held')).toBe(1);
    expect((await call(h, 'POST', `/api/ackTask/leased/${first.task.id}`, { done: true })).status).toBe(200);
    samples = await scrape(h);
    expect(valueOf(samples, 'schedkit_http_leases_held')).toBe(0);
    expect(valueOf(samples, 'schedkit_runs_total', { task: 'leased', outcome: 'success' })).toBe(1);

    // Nacked: a failure.
    await call(h, 'PUT', '/api/pushTask/nacked', {});
    const second = await jsonOf<{ task: { id: string } }>(call(h, 'GET', '/api/popTask/nacked?lease=30s'));
    expect((await call(h, 'POST', `/api/nackTask/nacked/${second.task.id}`, { error: 'no', retry: false })).status).toBe(200);
    expect(await metric(h, 'schedkit_runs_total', { task: 'nacked', outcome: 'failure' })).toBe(1);

    // A lease that runs out: lost, and a lease loss, once the next claim finds it.
    await call(h, 'PUT', '/api/pushTask/dropped', {});
    expect((await call(h, 'GET', '/api/popTask/dropped?lease=200ms&retry=2')).status).toBe(200);
    const again = await jsonOf<{ attempt: number; task: { id: string } }>(call(h, 'GET', '/api/popTask/dropped?wait=10&lease=30s'));
    expect(again.attempt).toBe(2);
    samples = await scrape(h);
    expect(valueOf(samples, 'schedkit_runs_total', { task: 'dropped', outcome: 'lost' })).toBe(1);
    expect(valueOf(samples, 'schedkit_lease_losses_total', { task: 'dropped' })).toBe(1);
    expect(valueOf(samples, 'schedkit_run_lateness_seconds_count', { task: 'dropped' })).toBe(2);
    await call(h, 'POST', `/api/ackTask/dropped/${again.task.id}`);
    expect(await metric(h, 'schedkit_runs_total', { task: 'dropped', outcome: 'success' })).toBe(1);
  });

  it('reports queue depths per task from the store, and leaves them out once the scheduler stopped', async () => {
    const h = await start();
    await call(h, 'PUT', '/api/pushTask/q', {});
    await call(h, 'PUT', '/api/pushTask/q', {});
    await call(h, 'PUT', '/api/tasks/later/x', { in: '1h' });
    const samples = await scrape(h);
    expect(valueOf(samples, 'schedkit_queue_depth', { task: 'q', state: 'due' })).toBe(2);
    expect(valueOf(samples, 'schedkit_queue_depth', { task: 'later', state: 'scheduled' })).toBe(1);
    expect(valueOf(samples, 'schedkit_queue_depth', { task: 'later', state: 'due' })).toBe(0);

    await h.scheduler.stop();
    const after = await scrape(h);
    expect(after.filter((s) => s.name === 'schedkit_queue_depth')).toEqual([]);
    expect(after.some((s) => s.name === 'schedkit_runs_running')).toBe(true);
  });

  it('keeps a registry per server: nothing in the global registry, nothing shared', async () => {
    const a = await start();
    const b = await start();
    await call(a, 'PUT', '/api/pushTask/only-a', {});
    expect((await call(a, 'GET', '/api/popTask/only-a')).status).toBe(200);
    expect(await metric(a, 'schedkit_runs_total', { task: 'only-a', outcome: 'success' })).toBe(1);
    expect(await metric(b, 'schedkit_runs_total', { task: 'only-a', outcome: 'success' })).toBe(0);
    expect(globalRegistry.getSingleMetric('schedkit_runs_total')).toBeUndefined();
    expect(a.server.metrics).not.toBe(b.server.metrics);
  });

  it('stops listening to the scheduler when the server closes', async () => {
    const scheduler = new Scheduler();
    const before = scheduler.listenerCount('run:start');
    const server = createServer({ scheduler, port: 0 });
    await server.listen();
    expect(scheduler.listenerCount('run:start')).toBe(before + 1);
    await server.close();
    expect(scheduler.listenerCount('run:start')).toBe(before);
    await scheduler.stop();
  });

  it('needs the token when the server has one', async () => {
    const token = 'metrics-token-for-tests';
    const h = await start({ token });
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
      const res = await call(h, 'GET', '/metrics', undefined, headers);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
      expect((await call(h, 'GET', '/api/stats', undefined, headers)).status).toBe(401);
    }
    const samples = await scrape(h, { authorization: `Bearer ${token}` });
    expect(samples.some((s) => s.name === 'schedkit_runs_running')).toBe(true);
  });
});

describe('/api/stats', () => {
  interface Stats {
    intervalMs: number;
    running: number;
    httpLeases: number;
    totals: Record<'success' | 'failure' | 'lost' | 'skipped' | 'started' | 'leaseLosses', number> & { latenessAvg: number | null };
    series: { at: string; started: number; success: number; latenessAvg: number | null; latenessP95: number | null }[];
  }

  it('agrees with /metrics and fills its series from the same registry', async () => {
    const h = await start();
    for (let i = 0; i < 3; i++) await call(h, 'PUT', '/api/pushTask/s', { i });
    for (let i = 0; i < 3; i++) expect((await call(h, 'GET', '/api/popTask/s')).status).toBe(200);

    const stats = await jsonOf<Stats>(call(h, 'GET', '/api/stats'));
    expect(stats.totals).toMatchObject({ success: 3, failure: 0, lost: 0, skipped: 0, started: 3, leaseLosses: 0 });
    expect(stats.totals.latenessAvg).toBeGreaterThanOrEqual(0);
    expect(stats.intervalMs).toBeGreaterThan(0);
    const samples = await scrape(h);
    expect(valueOf(samples, 'schedkit_runs_total', { task: 's', outcome: 'success' })).toBe(stats.totals.success);

    // The sampler turns those runs into a point of the series within an interval or two.
    let series: Stats['series'] = [];
    await waitFor(async () => {
      series = (await jsonOf<Stats>(call(h, 'GET', '/api/stats'))).series;
      return series.reduce((n, p) => n + p.started, 0) === 3;
    }, 'the series to count the 3 runs');
    const point = series.find((p) => p.started > 0);
    expect(point).toMatchObject({ success: 3 });
    expect(point?.latenessP95).toBeGreaterThanOrEqual(0);
    expect(new Date(point?.at ?? '').toISOString()).toBe(point?.at);
    expect(series.filter((p) => p.started === 0).every((p) => p.latenessAvg === null)).toBe(true);
  });
});
