/**
 * The HTTP API over real HTTP on 127.0.0.1 (port 0), against a real Scheduler and
 * MemoryStore: the registry's push/pop contract, leased pops, long polls, management
 * routes, errors and security.
 */
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../src/index.js';
import { createServer } from '../src/http/server.js';
import { serviceTracker, type Harness } from './service-harness.js';

const start = serviceTracker();

interface Res {
  status: number;
  body: unknown;
  headers: Headers;
}

async function request(h: { url: string }, method: string, path: string, init: { json?: unknown; body?: string; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Res> {
  const headers: Record<string, string> = { ...init.headers };
  let body: string | undefined = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${h.url}${path}`, { method, headers, body, signal: init.signal });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('application/json')) parsed = JSON.parse(text);
  return { status: res.status, body: parsed, headers: res.headers };
}

const push = (h: Harness, name: string, params: unknown): Promise<Res> => request(h, 'PUT', `/api/pushTask/${encodeURIComponent(name)}`, { json: params });
const pop = (h: Harness, name: string, query = ''): Promise<Res> => request(h, 'GET', `/api/popTask/${encodeURIComponent(name)}${query}`);

interface Popped {
  task: Record<string, unknown> & { id: string };
  uid: string;
  attempt: number;
  kind: string;
  leaseExpiresAt?: string;
}

function popped(res: Res): Popped {
  expect(res.status).toBe(200);
  return res.body as Popped;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('registry push/pop (seed 003)', () => {
  it('pushes a JSON payload and pops it back with an id; an empty queue answers 202', async () => {
    const h = await start();
    const pushed = await push(h, 'zoneCheck', { domain: 'kek', args: ['kek'] });
    expect(pushed.status).toBe(200);
    const { id } = pushed.body as { success: boolean; id: string };
    expect(pushed.body).toEqual({ success: true, id });
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const res = await pop(h, 'zoneCheck');
    expect(res.status).toBe(200);
    expect((res.body as Popped).task).toEqual({ domain: 'kek', args: ['kek'], id });
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);

    const empty = await pop(h, 'zoneCheck');
    expect(empty.status).toBe(202);
    expect(empty.body).toEqual({ error: 'No tasks available' });
    // A destructive pop leaves nothing behind: the one-shot schedule is gone.
    expect(await h.scheduler.list({ task: 'zoneCheck' })).toEqual([]);
  });

  it('a push without a body is an empty payload', async () => {
    const h = await start();
    const pushed = await request(h, 'PUT', '/api/pushTask/bare');
    expect(pushed.status).toBe(200);
    expect(popped(await pop(h, 'bare')).task).toEqual({ id: (pushed.body as { id: string }).id });
  });

  it('pops in FIFO order per task name, and names do not mix', async () => {
    const h = await start();
    for (let i = 0; i < 25; i++) {
      await push(h, 'fifo', { n: i });
      await push(h, 'other', { m: i });
    }
    const seen: number[] = [];
    for (let i = 0; i < 25; i++) seen.push(popped(await pop(h, 'fifo')).task['n'] as number);
    expect(seen).toEqual([...Array(25).keys()]);
    expect((await pop(h, 'fifo')).status).toBe(202);
    expect(popped(await pop(h, 'other')).task['m']).toBe(0);
  });

  it('hands each occurrence to exactly one of many concurrent poppers', async () => {
    const h = await start();
    for (let i = 0; i < 40; i++) await push(h, 'race', { n: i });
    const results = await Promise.all(Array.from({ length: 60 }, () => pop(h, 'race')));
    const got = results.filter((r) => r.status === 200).map((r) => (r.body as Popped).task['n'] as number);
    expect(results.filter((r) => r.status === 202)).toHaveLength(20);
    expect(got).toHaveLength(40);
    expect(new Set(got).size).toBe(40);
  });
});

describe('leased (reliable) pops', () => {
  it('redelivers a popped-but-unacknowledged task after its lease; ack removes it', async () => {
    const h = await start();
    const { id: uid } = (await push(h, 'job', { file: 'a.csv' })).body as { id: string };

    const first = popped(await pop(h, 'job', '?lease=300ms&retry=3'));
    expect(first.task).toEqual({ file: 'a.csv', id: first.task.id });
    expect(first.task.id).not.toBe(uid); // the lease token, not the schedule's uid
    expect(first.uid).toBe(uid);
    expect(first.attempt).toBe(1);
    expect(typeof first.leaseExpiresAt).toBe('string');

    // Leased, so nobody else gets it meanwhile.
    expect((await pop(h, 'job')).status).toBe(202);
    const report = await h.scheduler.get('job', uid);
    expect(report?.isRunning).toBe(true);

    // Not acknowledged: back after the lease (a long poll waits for it).
    const again = popped(await pop(h, 'job', '?wait=10&lease=30s&retry=3'));
    expect(again.uid).toBe(uid);
    expect(again.task['file']).toBe('a.csv');
    expect(again.attempt).toBe(2);
    expect(again.kind).toBe('retry');
    expect(again.task.id).not.toBe(first.task.id);

    // The first lease is fenced out: its ack is refused.
    const stale = await request(h, 'POST', `/api/ackTask/job/${first.task.id}`);
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ code: 'ERR_LEASE_LOST' });

    const ack = await request(h, 'POST', `/api/ackTask/job/${again.task.id}`, { json: { rows: 12 } });
    expect(ack.status).toBe(200);
    expect(ack.body).toMatchObject({ success: true, uid });
    expect((await pop(h, 'job')).status).toBe(202);
    expect(await h.scheduler.get('job', uid)).toBeNull(); // done: the one-shot is gone

    // Acknowledging twice is a conflict, not a crash.
    const twice = await request(h, 'POST', `/api/ackTask/job/${again.task.id}`);
    expect(twice.status).toBe(409);
  });

  it('records the ack result on a recurring schedule popped by a worker', async () => {
    const h = await start();
    await request(h, 'PUT', '/api/tasks/sync/hourly', { json: { every: '1h', params: { src: 'db' } } });
    await request(h, 'POST', '/api/tasks/sync/hourly/trigger');
    const run = popped(await pop(h, 'sync', '?lease=30s'));
    expect(run).toMatchObject({ uid: 'hourly', kind: 'trigger', task: { src: 'db' } });
    expect((await request(h, 'POST', `/api/ackTask/sync/${run.task.id}`, { json: { copied: 3 } })).status).toBe(200);
    const report = (await request(h, 'GET', '/api/tasks/sync/hourly')).body as Record<string, unknown>;
    expect(report).toMatchObject({ lastResult: { copied: 3 }, successes: 1, isRunning: false, enabled: true });
    expect(typeof report['lastExecutedAt']).toBe('string');
    expect(new Date(report['lastExecutedAt'] as string).toISOString()).toBe(report['lastExecutedAt']);
  });

  it('nack retries while attempts remain, then fails for good', async () => {
    const h = await start();
    const { id: uid } = (await push(h, 'flaky', { n: 1 })).body as { id: string };

    const one = popped(await pop(h, 'flaky', '?lease=30s&retry=2'));
    const nack1 = await request(h, 'POST', `/api/nackTask/flaky/${one.task.id}`, { json: { error: 'boom', delay: 0 } });
    expect(nack1.status).toBe(200);
    expect(nack1.body).toMatchObject({ success: true, uid, attempt: 1, retrying: true });

    const two = popped(await pop(h, 'flaky', '?wait=10&lease=30s&retry=2'));
    expect(two).toMatchObject({ uid, attempt: 2, kind: 'retry', task: { n: 1 } });
    const report = await h.scheduler.get('flaky', uid);
    expect(report?.lastError).toBe('boom');

    const nack2 = await request(h, 'POST', `/api/nackTask/flaky/${two.task.id}`, { json: { error: 'boom again' } });
    expect(nack2.body).toMatchObject({ retrying: false, retryAt: null, attempt: 2 });
    expect((await pop(h, 'flaky')).status).toBe(202);
  });

  it('nack with retry=false gives up at once; a nack without a body uses the pop retry count', async () => {
    const h = await start();
    await push(h, 'giveup', { n: 1 });
    const run = popped(await pop(h, 'giveup', '?lease=30s&retry=5'));
    const res = await request(h, 'POST', `/api/nackTask/giveup/${run.task.id}?retry=false`);
    expect(res.body).toMatchObject({ retrying: false });
    expect((await pop(h, 'giveup')).status).toBe(202);

    await push(h, 'again', { n: 2 });
    const run2 = popped(await pop(h, 'again', '?lease=30s&retry=2'));
    const res2 = await request(h, 'POST', `/api/nackTask/again/${run2.task.id}`);
    expect(res2.status).toBe(200);
    const body2 = res2.body as { retrying: boolean; retryAt: string };
    expect(body2.retrying).toBe(true);
    expect(Date.parse(body2.retryAt)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('renewTask extends a lease; acking under the wrong task name is refused', async () => {
    const h = await start();
    await push(h, 'long', { n: 1 });
    const run = popped(await pop(h, 'long', '?lease=30s'));
    const renewed = await request(h, 'POST', `/api/renewTask/long/${run.task.id}?lease=2m`);
    expect(renewed.status).toBe(200);
    const until = Date.parse((renewed.body as { leaseExpiresAt: string }).leaseExpiresAt);
    expect(until).toBeGreaterThan(Date.parse(run.leaseExpiresAt as string));
    expect((await request(h, 'POST', `/api/ackTask/other/${run.task.id}`)).status).toBe(409);
    expect((await request(h, 'POST', `/api/ackTask/long/${run.task.id}`)).status).toBe(200);
  });
});

describe('long polls', () => {
  it('returns as soon as a task is pushed', async () => {
    const h = await start();
    const waiting = pop(h, 'lp', '?wait=20');
    await sleep(100);
    expect(h.server.url).toBeDefined();
    await push(h, 'lp', { hello: 'world' });
    const res = await waiting;
    expect(res.status).toBe(200);
    expect((res.body as Popped).task['hello']).toBe('world');
  });

  it('serves several waiting workers one task each', async () => {
    const h = await start();
    const waiting = [pop(h, 'many', '?wait=20'), pop(h, 'many', '?wait=20'), pop(h, 'many', '?wait=20')];
    await sleep(100);
    for (let i = 0; i < 3; i++) await push(h, 'many', { i });
    const got = (await Promise.all(waiting)).map((r) => popped(r).task['i']);
    expect(got.sort()).toEqual([0, 1, 2]);
  });

  it('answers 202 when the wait ends empty', async () => {
    const h = await start();
    const res = await pop(h, 'nothing', '?wait=1');
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ error: 'No tasks available' });
  });

  it('a worker that hangs up while waiting does not swallow the next task', async () => {
    const h = await start();
    const controller = new AbortController();
    const gone = pop(h, 'hangup', '?wait=20').catch(() => 'aborted');
    void gone;
    const aborted = request(h, 'GET', '/api/popTask/hangup?wait=20', { signal: controller.signal }).catch(() => 'aborted');
    await sleep(100);
    controller.abort();
    expect(await aborted).toBe('aborted');
    await sleep(100);
    await push(h, 'hangup', { n: 1 });
    await push(h, 'hangup', { n: 2 });
    // One task went to the still-waiting poller; the other is still there.
    const first = (await gone) as Res;
    const second = await pop(h, 'hangup');
    expect([popped(first).task['n'], popped(second).task['n']].sort()).toEqual([1, 2]);
  });

  it('closing the server answers waiting polls instead of hanging', async () => {
    const h = await start();
    const waiting = pop(h, 'closing', '?wait=30');
    await sleep(100);
    await h.server.close();
    const res = await waiting;
    expect(res.status).toBe(202);
  });
});

describe('management routes', () => {
  it('creates, lists, triggers, disables, enables, updates and deletes a schedule', async () => {
    const h = await start();
    const put = await request(h, 'PUT', '/api/tasks/report/daily', { json: { cron: '0 0 9 * * *', tz: 'Europe/Berlin', params: { to: 'ops' } } });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ id: 'report/daily', task: 'report', uid: 'daily', schedule: { kind: 'cron', cron: '0 0 9 * * *', tz: 'Europe/Berlin' }, enabled: true, params: { to: 'ops' } });
    const next = (put.body as { nextRunAt: string }).nextRunAt;
    expect(new Date(next).toISOString()).toBe(next);
    expect(Date.parse(next)).toBeGreaterThan(Date.now());

    const list = await request(h, 'GET', '/api/tasks');
    expect(list.status).toBe(200);
    expect((list.body as { tasks: { id: string }[] }).tasks.map((t) => t.id)).toEqual(['report/daily']);
    expect(((await request(h, 'GET', '/api/tasks?task=nope')).body as { tasks: unknown[] }).tasks).toEqual([]);

    const trig = await request(h, 'POST', '/api/tasks/report/daily/trigger');
    expect(trig.status).toBe(200);
    expect(trig.body).toMatchObject({ pending: 1 });
    expect(await h.store.depths()).toEqual(new Map([['report', { due: 1, scheduled: 1, running: 0 }]]));
    expect((await request(h, 'GET', '/api/depths')).body).toEqual({ report: { due: 1, scheduled: 1, running: 0 } });

    const off = await request(h, 'POST', '/api/tasks/report/daily/disable');
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ enabled: false });
    expect((await h.store.get('report', 'daily'))?.enabled).toBe(false);
    expect((await request(h, 'POST', '/api/tasks/report/daily/enable')).body).toMatchObject({ enabled: true });
    expect((await h.store.get('report', 'daily'))?.enabled).toBe(true);

    const patched = await request(h, 'PATCH', '/api/tasks/report/daily', { json: { params: { to: 'dev' }, schedule: { every: '1h' } } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ params: { to: 'dev' }, schedule: { kind: 'every', every: 3_600_000 } });

    const del = await request(h, 'DELETE', '/api/tasks/report/daily');
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ deleted: true, task: 'report', uid: 'daily' });
    expect((await request(h, 'GET', '/api/tasks/report/daily')).status).toBe(404);
    expect(await h.store.get('report', 'daily')).toBeNull();
  });

  it('snapshots and loads the registry (schedward dump format)', async () => {
    const h = await start();
    await request(h, 'PUT', '/api/tasks/a/1', { json: { in: '1h', params: { x: 1 } } });
    await request(h, 'PUT', '/api/tasks/b/2', { json: { every: 60_000, enabled: false } });
    const dump = (await request(h, 'GET', '/api/registry')).body as Record<string, Record<string, { iat: number; timeout: number }>>;
    expect(dump['a']?.['1']).toMatchObject({ timeout: 3_600_000, params: { x: 1 } });
    expect(dump['b']?.['2']).toMatchObject({ every: 60_000, enabled: false });

    const other = await start();
    const loaded = await request(other, 'PUT', '/api/registry', { json: dump });
    expect(loaded.body).toEqual({ loaded: 2 });
    expect((await request(other, 'GET', '/api/registry')).body).toEqual(dump);
  });

  it('GET /healthz and the index page', async () => {
    const h = await start();
    const health = await request(h, 'GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok', scheduler: 'started', store: 'memory' });
    const index = await request(h, 'GET', '/');
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toMatch(/^text\/html/);
    expect(index.body).toContain('/api/popTask/:name');
  });
});

describe('errors are JSON {error, code}', () => {
  it('400 for an invalid cron, naming the field', async () => {
    const h = await start();
    const res = await request(h, 'PUT', '/api/tasks/report/bad', { json: { cron: '0 99 * * *' } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'ERR_INVALID_CRON', field: 'schedule.cron' });
    expect((res.body as { error: string }).error).toMatch(/schedule\.cron/);
    expect(await h.store.get('report', 'bad')).toBeNull();
  });

  it('400 for schema violations, naming the field', async () => {
    const h = await start();
    const wrongType = await request(h, 'PUT', '/api/tasks/t/u', { json: { every: true } });
    expect(wrongType.status).toBe(400);
    expect(wrongType.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'body.every' });
    const unknown = await request(h, 'PUT', '/api/tasks/t/u', { json: { evry: '1m' } });
    expect(unknown.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'body.evry' });
    const noTiming = await request(h, 'PUT', '/api/tasks/t/u', { json: {} });
    expect(noTiming.status).toBe(400);
    expect(noTiming.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'schedule' });
    const negative = await request(h, 'PUT', '/api/tasks/t/u', { json: { in: -5 } });
    expect(negative.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'schedule.in' });
    const wait = await pop(h, 'x', '?wait=600');
    expect(wait.status).toBe(400);
    expect(wait.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'query.wait' });
    const lease = await pop(h, 'x', '?lease=soon');
    expect(lease.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'query.lease' });
    const typo = await pop(h, 'x', '?leas=30s');
    expect(typo.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'query.leas' });
    const pushArray = await push(h, 'x', [1, 2]);
    expect(pushArray.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'body' });
    const badJson = await request(h, 'PUT', '/api/pushTask/x', { body: '{"a":', headers: { 'content-type': 'application/json' } });
    expect(badJson.status).toBe(400);
    expect(badJson.body).toMatchObject({ code: 'ERR_INVALID_JSON' });
    expect(await h.store.list()).toEqual([]);
  });

  it('404 for an unknown schedule or route', async () => {
    const h = await start();
    for (const [method, path] of [
      ['GET', '/api/tasks/none/x'],
      ['DELETE', '/api/tasks/none/x'],
      ['POST', '/api/tasks/none/x/trigger'],
      ['POST', '/api/tasks/none/x/disable'],
      ['PATCH', '/api/tasks/none/x'],
    ] as const) {
      const res = await request(h, method, path, method === 'PATCH' ? { json: { enabled: false } } : {});
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body).toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
    }
    const route = await request(h, 'GET', '/api/nothing-here');
    expect(route.status).toBe(404);
    expect(route.body).toMatchObject({ code: 'ERR_NOT_FOUND' });
    const badUrl = await request(h, 'GET', '/api/tasks/%E0%A4%A/x');
    expect(badUrl.status).toBe(400);
    expect(badUrl.body).toMatchObject({ code: 'ERR_BAD_URL' });
  });

  it('413 for a body over the limit, 415 for a non-JSON body', async () => {
    const h = await start({ bodyLimit: 256 });
    const big = await push(h, 'x', { blob: 'x'.repeat(1000) });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({ code: 'ERR_BODY_TOO_LARGE' });
    const text = await request(h, 'PUT', '/api/pushTask/x', { body: 'hello', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    expect(text.body).toMatchObject({ code: 'ERR_UNSUPPORTED_MEDIA_TYPE' });
    const form = await request(h, 'PUT', '/api/pushTask/x', { body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(form.status).toBe(415);
    expect(await h.store.list()).toEqual([]);
  });

  it('503 once the scheduler is stopped', async () => {
    const h = await start();
    await h.scheduler.stop();
    const res = await push(h, 'x', { a: 1 });
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ code: 'ERR_STOPPED' });
    expect((await pop(h, 'x')).status).toBe(503);
    expect((await request(h, 'GET', '/healthz')).status).toBe(503);
  });
});

describe('security', () => {
  it('__proto__ in a pushed body is refused and pollutes nothing', async () => {
    const h = await start();
    const raw = '{"a":1,"__proto__":{"polluted":"yes"}}';
    const res = await request(h, 'PUT', '/api/pushTask/evil', { body: raw, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'ERR_VALIDATION', field: 'body' });
    const nested = await request(h, 'PUT', '/api/tasks/evil/1', { body: '{"in":0,"params":{"x":{"__proto__":{"polluted":"yes"}}}}', headers: { 'content-type': 'application/json' } });
    expect(nested.status).toBe(400);
    const ctor = await request(h, 'PUT', '/api/pushTask/evil', { body: '{"constructor":{"prototype":{"polluted":"yes"}}}', headers: { 'content-type': 'application/json' } });
    expect(ctor.status).toBe(400);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect((await pop(h, 'evil')).status).toBe(202);
  });

  it('with a token, /api needs the bearer token (401 without or wrong); /healthz stays open', async () => {
    const token = 's3cret-token-for-tests';
    const h = await start({ token });
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: `Bearer ${token}x` }, { authorization: token }, { authorization: `Basic ${token}` }];
    for (const headers of attempts) {
      const res = await request(h, 'PUT', '/api/pushTask/x', { json: { a: 1 }, headers });
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ error: expect.any(String) as string, code: 'ERR_UNAUTHORIZED' });
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    expect((await request(h, 'GET', '/api/nothing-here')).status).toBe(401);
    expect((await request(h, 'GET', '/api/tasks')).status).toBe(401);
    expect(await h.store.list()).toEqual([]);

    const auth = { authorization: `Bearer ${token}` };
    expect((await request(h, 'PUT', '/api/pushTask/x', { json: { a: 1 }, headers: auth })).status).toBe(200);
    const got = await request(h, 'GET', '/api/popTask/x', { headers: auth });
    expect(popped(got).task['a']).toBe(1);
    expect((await request(h, 'GET', '/healthz')).status).toBe(200);
  });

  it('refuses to listen beyond loopback without a token', async () => {
    const scheduler = new Scheduler();
    try {
      expect(() => createServer({ scheduler, host: '0.0.0.0', port: 0 })).toThrow(expect.objectContaining({ code: 'ERR_INSECURE_BIND' }) as Error);
      expect(() => createServer({ scheduler, host: '192.168.1.10', port: 0 })).toThrow(/token/);
      expect(() => createServer({ scheduler, host: 'localhost', port: 0 })).not.toThrow();
      expect(() => createServer({ scheduler, host: '::1', port: 0 })).not.toThrow();
      expect(() => createServer({ scheduler, host: '0.0.0.0', port: 0, token: 'x'.repeat(32) })).not.toThrow();
      expect(() => createServer({ scheduler, port: 70_000 })).toThrow(/port/);
    } finally {
      await scheduler.stop();
    }
  });
});
