/**
 * The HTTP worker API on a RedisStore: a leased pop's id is its lease token, which on Redis
 * names its schedule (task and uid: any character), base64url-encoded so that it is safe in a
 * URL path whether or not a client encodes it (src/http/lease-id.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RedisStore, Scheduler } from '../src/index.js';
import { createServer, type SchedkitServer } from '../src/http/server.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();
const open: { server: SchedkitServer; scheduler: Scheduler }[] = [];
afterEach(async () => {
  for (const h of open.splice(0)) {
    await h.server.close();
    await h.scheduler.stop({ timeout: 1000 });
  }
});

async function start(): Promise<{ url: string; scheduler: Scheduler }> {
  const scheduler = new Scheduler({ store: new RedisStore({ url: redis.url, prefix: randomPrefix(), partitions: 2 }) });
  scheduler.on('error', () => undefined);
  await scheduler.start({ execute: false });
  const server = createServer({ scheduler, port: 0 });
  const url = await server.listen();
  open.push({ server, scheduler });
  return { url, scheduler };
}

async function post(url: string, path: string, json?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', ...(json === undefined ? {} : { body: JSON.stringify(json), headers: { 'content-type': 'application/json' } }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A leased pop, waiting up to 5 s (a retry due now reaches a claim through the store's notification). */
async function popLeased(url: string, task: string): Promise<{ id: string; uid: string; attempt: number }> {
  const res = await fetch(`${url}/api/popTask/${encodeURIComponent(task)}?lease=30s&wait=5`);
  expect(res.status).toBe(200);
  const body = (await res.json()) as { task: { id: string }; uid: string; attempt: number };
  return { id: body.task.id, uid: body.uid, attempt: body.attempt };
}

describe('HTTP leased pops on RedisStore', () => {
  it('ids are URL-safe whatever the uid holds: ack, nack and renew take them unencoded (and encoded)', async () => {
    const { url, scheduler } = await start();
    const uids = ['a/b', 'c d%20e', 'f?g#h', 'ü/🎉', 'x'.repeat(500)];
    for (const uid of uids) await scheduler.schedule('job', { uid, at: Date.now() - 1000 });
    const seen: string[] = [];
    for (let i = 0; i < uids.length; i++) {
      const { id, uid } = await popLeased(url, 'job');
      seen.push(uid);
      expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
      // Renew as given (raw in the path), then ack with the id encoded (a no-op for these characters).
      const renewed = await post(url, `/api/renewTask/job/${id}?lease=1m`);
      expect(renewed).toMatchObject({ status: 200, body: { success: true, id } });
      const acked = await post(url, `/api/ackTask/job/${encodeURIComponent(id)}`, { ok: uid.length });
      expect(acked).toMatchObject({ status: 200, body: { success: true, id, uid } });
      // Once acked it is gone: a second ack is a lost lease.
      expect((await post(url, `/api/ackTask/job/${id}`)).status).toBe(409);
    }
    expect(seen.sort()).toEqual([...uids].sort());
    expect(await scheduler.list({ task: 'job' })).toEqual([]);
  });

  it('the longest names (512 characters of 3 UTF-8 bytes each, task and uid): renew and ack take the id', async () => {
    const { url, scheduler } = await start();
    const task = '中'.repeat(512);
    const uid = '文'.repeat(512);
    await scheduler.schedule(task, { uid, at: Date.now() - 1000 });
    const { id } = await popLeased(url, task);
    expect(id.length).toBeGreaterThan(4096);
    expect((await post(url, `/api/renewTask/${encodeURIComponent(task)}/${id}`)).status).toBe(200);
    expect(await post(url, `/api/ackTask/${encodeURIComponent(task)}/${id}`)).toMatchObject({ status: 200, body: { success: true, id, uid } });
  });

  it('a nack retries under the same uid; an id that is not one is a lost lease (409), not an error', async () => {
    const { url, scheduler } = await start();
    await scheduler.schedule('flaky', { uid: 'slash/uid', at: Date.now() - 1000 });
    const first = await popLeased(url, 'flaky');
    const nacked = await post(url, `/api/nackTask/flaky/${first.id}`, { error: 'boom', delay: 0 });
    expect(nacked).toMatchObject({ status: 200, body: { success: true, id: first.id, uid: 'slash/uid', retrying: true } });
    const again = await popLeased(url, 'flaky');
    expect(again).toMatchObject({ uid: 'slash/uid', attempt: 2 });
    expect(again.id).not.toBe(first.id);
    for (const bad of ['x', 'not-an-id', Buffer.from('0.a.1.1.1').toString('base64url')]) expect((await post(url, `/api/ackTask/flaky/${bad}`)).status).toBe(409);
    expect((await post(url, `/api/ackTask/flaky/${again.id}`)).status).toBe(200);
  });
});
