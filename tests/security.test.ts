/**
 * The service's security properties: with a token, every route the server registers but the
 * documented open ones (the pages, `/healthz`) refuses a request without it (401 JSON, nothing
 * changed), whatever the wrong credential or where it is put; the token compare is constant-time
 * and never throws; `__proto__` / `constructor` / `prototype` in bodies, names, params and query
 * strings pollute nothing; and bodies over the limit are refused with 413 from the headers or as
 * soon as the limit is passed — before parsing, without reading the rest of the upload.
 */
import { randomUUID } from 'node:crypto';
import { createConnection } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bearerChecker } from '../src/http/auth.js';
import { OPEN_ROUTES } from '../src/http/pages.js';
import { serviceTracker, type Harness } from './service-harness.js';

const start = serviceTracker();
const TOKEN = `sec-${randomUUID()}`;
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** What README and docs/http.md declare public: the dashboard and docs pages with their assets, and /healthz. */
const PUBLIC_ROUTES = ['GET /', 'GET /docs', 'GET /assets/dashboard.css', 'GET /assets/dashboard.js', 'GET /assets/docs.js', 'GET /healthz'];

type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

interface Reply {
  status: number;
  headers: Record<string, string | number | string[] | undefined>;
  body: string;
  json: unknown;
}

async function inject(h: Harness, method: string, url: string, options: { headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const res = await h.server.app.inject({ method: method as Method, url, headers: options.headers ?? {}, ...(options.body === undefined ? {} : { payload: options.body }) });
  let json: unknown;
  try {
    json = JSON.parse(res.body);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body: res.body, json };
}

/** A concrete URL for a route pattern (`/api/tasks/:task/:uid` → `/api/tasks/t/u`). */
function concrete(url: string): string {
  return url.replace(/:(\w+)/g, (_, name: string) => ({ name: 't', task: 't', uid: 'u', id: 'x' })[name] ?? 'x');
}

/** Every route the server serves, HEAD variants of GET routes included (fastify adds them). */
function allRoutes(h: Harness): { method: Method; url: string }[] {
  const out: { method: Method; url: string }[] = [];
  for (const r of h.server.routes) {
    out.push({ method: r.method as Method, url: r.url });
    if (r.method === 'GET') out.push({ method: 'HEAD', url: r.url });
  }
  return out;
}

/** A harmless valid body for a route, so that only the token decides. */
function bodyFor(method: Method, url: string): string | undefined {
  if (method === 'GET' || method === 'HEAD' || method === 'DELETE') return undefined;
  if (url === '/api/tasks/:task/:uid' && method === 'PUT') return JSON.stringify({ in: '1h', params: { replaced: true } });
  if (url === '/api/registry') return JSON.stringify({ t: { injected: { iat: Date.now() + 3_600_000, timeout: 0 } } });
  return JSON.stringify({});
}

function expectUnauthorized(r: Reply, method: string, context: string): void {
  expect(r.status, context).toBe(401);
  expect(r.headers['www-authenticate'], context).toBe('Bearer realm="schedkit"');
  if (method !== 'HEAD') expect(r.json, context).toEqual({ error: expect.stringContaining('bearer token') as string, code: 'ERR_UNAUTHORIZED' });
}

/** The state a request without the token must not change. */
async function state(h: Harness): Promise<string> {
  const reports = await h.scheduler.list();
  return JSON.stringify({ snapshot: await h.scheduler.snapshot(), reports: reports.map((r) => [r.id, r.enabled, r.pending, r.params, r.nextRunAt]) });
}

const protoKeysBefore = Object.getOwnPropertyNames(Object.prototype).sort();
function expectNoPollution(context: string): void {
  expect(Object.getOwnPropertyNames(Object.prototype).sort(), context).toEqual(protoKeysBefore);
  expect(({} as Record<string, unknown>)['polluted'], context).toBeUndefined();
  expect(Object.getOwnPropertyNames(Object).includes('polluted'), context).toBe(false);
}

describe('the token guards every route but the documented public ones', () => {
  it('the public routes are exactly the pages and /healthz, and they hold no data', async () => {
    expect([...OPEN_ROUTES].sort()).toEqual(PUBLIC_ROUTES.map((r) => r.slice(4)).sort());
    const h = await start({ token: TOKEN });
    await h.scheduler.schedule('secret-task', { uid: 'secret-uid-4711', every: '1h', params: { password: 'hunter2' } });
    const served = new Set(h.server.routes.map((r) => `${r.method} ${r.url}`));
    for (const route of PUBLIC_ROUTES) {
      expect(served.has(route), `${route} is served`).toBe(true);
      const [method, url] = route.split(' ') as [Method, string];
      const res = await fetch(`${h.url}${url}`, { method });
      expect(res.status, route).toBe(200);
      const text = await res.text();
      for (const secret of ['secret-task', 'secret-uid-4711', 'hunter2']) expect(text, `${route} leaks ${secret}`).not.toContain(secret);
    }
  });

  it('every other route and method, over real HTTP and through inject, answers 401 JSON to every wrong credential and changes nothing', async () => {
    const h = await start({ token: TOKEN });
    await h.scheduler.schedule('t', { uid: 'u', every: '1h', params: { original: true } });
    await h.scheduler.schedule('t', { uid: 'x', in: '1h' });
    const routes = allRoutes(h).filter((r) => !PUBLIC_ROUTES.includes(`${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`));
    expect(routes.length).toBeGreaterThanOrEqual(25); // the API, /metrics, /docs/json, and their HEADs
    for (const expected of ['GET /metrics', 'GET /docs/json', 'GET /api/registry', 'PUT /api/registry', 'GET /api/stats', 'GET /api/popTask/:name', 'PUT /api/pushTask/:name', 'POST /api/tasks/:task/:uid/trigger']) {
      expect(routes.map((r) => `${r.method} ${r.url}`)).toContain(expected);
    }
    const before = await state(h);
    const wrong: { label: string; headers: Record<string, string>; query?: string }[] = [
      { label: 'no credential', headers: {} },
      { label: 'wrong token', headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}X` } },
      { label: 'token prefix', headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } },
      { label: 'token + suffix', headers: { authorization: `Bearer ${TOKEN}x` } },
      { label: 'empty bearer', headers: { authorization: 'Bearer ' } },
      { label: 'bare token', headers: { authorization: TOKEN } },
      { label: 'Basic', headers: { authorization: `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}` } },
      { label: 'Token scheme', headers: { authorization: `Token ${TOKEN}` } },
      { label: 'BearerTOKEN', headers: { authorization: `Bearer${TOKEN}` } },
      { label: 'x-api-key', headers: { 'x-api-key': TOKEN } },
      { label: 'x-token', headers: { 'x-token': TOKEN } },
      { label: 'proxy-authorization', headers: { 'proxy-authorization': `Bearer ${TOKEN}` } },
      { label: 'cookie', headers: { cookie: `token=${TOKEN}` } },
      { label: 'query token', headers: {}, query: `token=${TOKEN}` },
      { label: 'query access_token', headers: {}, query: `access_token=${TOKEN}` },
    ];
    let checked = 0;
    for (const { method, url } of routes) {
      const body = bodyFor(method, url);
      const type: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
      for (const w of wrong) {
        const path = concrete(url) + (w.query === undefined ? '' : `?${w.query}`);
        expectUnauthorized(await inject(h, method, path, { headers: { ...w.headers, ...type }, body }), method, `${method} ${url} with ${w.label}`);
        checked++;
      }
      // Over a real socket too (no credential).
      const res = await fetch(`${h.url}${concrete(url)}`, { method, headers: type, body });
      const text = await res.text();
      expect(res.status, `${method} ${url} over HTTP`).toBe(401);
      if (method !== 'HEAD') expect(JSON.parse(text), `${method} ${url} over HTTP`).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    }
    expect(checked).toBe(routes.length * wrong.length);
    // Nothing changed: no schedule replaced, cancelled, triggered, disabled or loaded; no task pushed or popped.
    expect(await state(h)).toBe(before);
    expect((await inject(h, 'GET', '/api/popTask/t', { headers: AUTH })).status).toBe(202);
    // And the right token opens every one of them.
    for (const { method, url } of routes) {
      const body = bodyFor(method, url);
      const r = await inject(h, method, concrete(url), { headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body });
      expect(r.status, `${method} ${url} with the token`).not.toBe(401);
      expect(r.status, `${method} ${url} with the token`).toBeLessThan(500);
    }
  });

  it('the OpenAPI document lists no route the enumeration misses', async () => {
    const h = await start({ token: TOKEN });
    const doc = (await inject(h, 'GET', '/docs/json', { headers: AUTH })).json as { paths: Record<string, Record<string, unknown>> };
    const served = new Set(allRoutes(h).map((r) => `${r.method} ${r.url}`));
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`));
    expect(documented.length).toBeGreaterThan(15);
    expect(documented.filter((d) => !served.has(d))).toEqual([]);
  });

  it('unknown paths need the token too (401, so route existence does not leak), and are 404 JSON with it', async () => {
    const h = await start({ token: TOKEN });
    const segment = fc.oneof(fc.webSegment(), fc.constantFrom('api', 'tasks', 'docs', 'json', 'metrics', '..', '%2e%2e', 'healthz', '%00', '__proto__'));
    const path = fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => `/${parts.join('/')}`);
    const known = new Set(h.server.routes.map((r) => r.url));
    await fc.assert(
      fc.asyncProperty(path, fc.constantFrom<Method>('GET', 'POST', 'PUT', 'DELETE', 'PATCH'), async (p, method) => {
        const normalized = new URL(`http://x${p}`).pathname; // `/a/..` is `/`, the dashboard
        fc.pre(!known.has(p) && !known.has(normalized) && !PUBLIC_ROUTES.some((r) => r.endsWith(` ${p}`) || r.endsWith(` ${normalized}`)));
        const anonymous = await inject(h, method, p);
        expect(anonymous.status, `${method} ${p}`).toBeLessThan(500);
        if (anonymous.status !== 401) {
          // Only routes that exist under another spelling may answer differently: none may succeed.
          expect(anonymous.status, `${method} ${p}: ${anonymous.body}`).toBeGreaterThanOrEqual(400);
          expect(anonymous.json, `${method} ${p}`).toMatchObject({ code: expect.stringMatching(/^ERR_/) as string });
        }
        const authed = await inject(h, method, p, { headers: AUTH });
        expect(authed.status, `${method} ${p}`).toBeLessThan(500);
        if (authed.status >= 400) expect(authed.json, `${method} ${p}`).toMatchObject({ code: expect.stringMatching(/^ERR_/) as string });
      }),
      { numRuns: 1500 },
    );
  });

  it('Authorization headers: only "Bearer <token>" (any case, spaces or tabs around) passes (2000 cases)', async () => {
    const h = await start({ token: TOKEN });
    const accepted = (value: string): boolean => {
      const m = /^bearer[ \t]+(.+)$/i.exec(value.trim());
      return m !== null && (m[1] as string).trim() === TOKEN;
    };
    const ascii = fc.string({ unit: fc.constantFrom(...' \tabcXYZ019-_.~+/=:'.split('')), maxLength: 6 });
    const near = fc.oneof(
      fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 80 }),
      fc.tuple(fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Token', 'Bearer:', 'Bear', ''), fc.constantFrom(' ', '\t', '  ', ''), fc.constantFrom(TOKEN, TOKEN.toUpperCase(), TOKEN.slice(1), `${TOKEN} `, ` ${TOKEN}`, `${TOKEN}${TOKEN}`, TOKEN.replace('-', '_'), ''), ascii).map(([scheme, sep, token, tail]) => `${scheme}${sep}${token}${tail}`),
      fc.tuple(ascii, ascii).map(([a, b]) => `${a}Bearer ${TOKEN}${b}`),
    );
    let passed = 0;
    await fc.assert(
      fc.asyncProperty(near, async (value) => {
        fc.pre(value.length > 0);
        const r = await inject(h, 'GET', '/api/depths', { headers: { authorization: value } });
        expect(r.status, JSON.stringify(value)).toBe(accepted(value) ? 200 : 401);
        if (r.status === 200) passed++;
      }),
      { numRuns: 2000 },
    );
    expect(passed).toBeGreaterThan(0); // the generator does reach the right token
  });

  it('the token compare is constant-time (SHA-256 digests, timingSafeEqual) and never throws, whatever the input', () => {
    const source = bearerChecker.toString();
    expect(source).toContain('timingSafeEqual');
    expect(source).not.toMatch(/===\s*expected|expected\s*===/);
    const check = bearerChecker(TOKEN);
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'grapheme', maxLength: 300 }), fc.constant(undefined)), (value) => {
        const expected = value !== undefined && /^Bearer[ \t]+(.+)$/i.test(value.trim()) && /^Bearer[ \t]+(.+)$/i.exec(value.trim())?.[1]?.trim() === TOKEN;
        expect(check(value)).toBe(expected);
      }),
      { numRuns: 3000 },
    );
    expect(check(`Bearer ${TOKEN}`)).toBe(true);
    expect(check(`bearer\t${TOKEN}  `)).toBe(true);
  });
});

describe('prototype keys pollute nothing', () => {
  /** JSON text of an object tree whose keys are often __proto__ / constructor / prototype (JSON.stringify cannot write an own __proto__ key from a literal). */
  const key = fc.constantFrom('__proto__', 'constructor', 'prototype', 'polluted', 'in', 'every', 'params', 'iat', 't', 'u', 'enabled', 'toString');
  const leaf = fc.oneof(fc.constantFrom('1', 'true', 'null', '"x"', '"1h"', '5', '{}', '[]'), fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)));
  const { node } = fc.letrec<{ node: string }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.array(fc.tuple(key, tie('node')), { maxLength: 4 }).map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
      fc.array(tie('node'), { maxLength: 3 }).map((items) => `[${items.join(',')}]`),
    ),
  }));
  /** What fastify refuses: an own `__proto__` key anywhere, or `constructor` holding an object with `prototype`. */
  function poisoned(value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    if (Array.isArray(value)) return value.some(poisoned);
    if (Object.hasOwn(value, '__proto__')) return true;
    const c: unknown = (value as Record<string, unknown>)['constructor'];
    if (Object.hasOwn(value, 'constructor') && typeof c === 'object' && c !== null && Object.hasOwn(c, 'prototype')) return true;
    return Object.values(value).some(poisoned);
  }

  it('bodies with prototype keys at any depth on every write route: 400 when poisoned, never 5xx, Object.prototype untouched (1500 cases)', async () => {
    const h = await start({ token: TOKEN });
    const writes = allRoutes(h).filter((r) => r.method === 'PUT' || r.method === 'POST' || r.method === 'PATCH');
    expect(writes.length).toBeGreaterThanOrEqual(8);
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...writes), node, async ({ method, url }, body) => {
        const r = await inject(h, method, concrete(url), { headers: { ...AUTH, 'content-type': 'application/json' }, body });
        const context = `${method} ${url} ${body}`;
        expect(r.status, context).toBeLessThan(500);
        if (r.status >= 400) expect(r.json, context).toMatchObject({ code: expect.stringMatching(/^ERR_/) as string });
        if (poisoned(JSON.parse(body))) {
          expect(r.status, context).toBe(400);
          refused++;
        }
        expectNoPollution(context);
      }),
      { numRuns: 1500 },
    );
    expect(refused).toBeGreaterThan(50);
    // Whatever was accepted is plain data: every report's params read back as JSON.
    for (const report of await h.scheduler.list()) expect(JSON.parse(JSON.stringify(report.params ?? null)) ?? null).toEqual(report.params ?? null);
  });

  it('names __proto__, constructor, prototype, toString… round-trip over HTTP as plain data (routes, list, registry, push/pop)', async () => {
    const h = await start({ token: TOKEN });
    const names = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__', 'valueOf', 'polluted'];
    const json = { ...AUTH, 'content-type': 'application/json' };
    for (const task of names) {
      for (const uid of names) {
        const path = `/api/tasks/${encodeURIComponent(task)}/${encodeURIComponent(uid)}`;
        expect((await inject(h, 'GET', path, { headers: AUTH })).status, `GET ${path} before`).toBe(404);
        const put = await inject(h, 'PUT', path, { headers: json, body: JSON.stringify({ every: '1h', params: { constructor: 1, prototype: { polluted: true }, toString: 'x' } }) });
        expect(put.status, `PUT ${path}: ${put.body}`).toBe(200);
        const got = (await inject(h, 'GET', path, { headers: AUTH })).json as { task: string; uid: string; params: Record<string, unknown> };
        expect([got.task, got.uid]).toEqual([task, uid]);
        expect(got.params).toEqual({ constructor: 1, prototype: { polluted: true }, toString: 'x' });
      }
    }
    expectNoPollution('after PUTs');
    const listed = (await inject(h, 'GET', '/api/tasks', { headers: AUTH })).json as { tasks: { task: string; uid: string }[] };
    expect(listed.tasks).toHaveLength(names.length ** 2);
    const filtered = (await inject(h, 'GET', `/api/tasks?task=constructor`, { headers: AUTH })).json as { tasks: { task: string }[] };
    expect(filtered.tasks.map((t) => t.task)).toEqual(names.map(() => 'constructor'));
    // The registry export names every one as an own key (JSON.parse keeps "__proto__" as data).
    const registry = JSON.parse((await inject(h, 'GET', '/api/registry', { headers: AUTH })).body) as Record<string, Record<string, unknown>>;
    expect(Object.keys(registry).sort()).toEqual([...names].sort());
    for (const task of names) expect(Object.keys(registry[task] as object).sort(), task).toEqual([...names].sort());
    expectNoPollution('after the registry export');
    // The library's snapshot too (it once assigned `out["__proto__"] = …`, polluting Object.prototype).
    const snap = await h.scheduler.snapshot();
    expect(Object.keys(snap).sort()).toEqual([...names].sort());
    expectNoPollution('after snapshot()');
    // Push/pop/ack through worker routes named like prototype members.
    for (const name of names) {
      const push = await inject(h, 'PUT', `/api/pushTask/${encodeURIComponent(name)}`, { headers: json, body: JSON.stringify({ constructor: 'c', n: 1 }) });
      expect(push.status, `push ${name}`).toBe(200);
      const pop = await inject(h, 'GET', `/api/popTask/${encodeURIComponent(name)}?lease=30s`, { headers: AUTH });
      expect(pop.status, `pop ${name}`).toBe(200);
      const task = (pop.json as { task: { constructor: string; n: number; id: string } }).task;
      expect(task).toMatchObject({ constructor: 'c', n: 1 });
      expect((await inject(h, 'POST', `/api/ackTask/${encodeURIComponent(name)}/${task.id}`, { headers: AUTH })).status, `ack ${name}`).toBe(200);
      expect((await inject(h, 'POST', `/api/ackTask/${encodeURIComponent(name)}/${encodeURIComponent(name)}`, { headers: AUTH })).status, `ack ${name} with a bogus id`).toBe(409);
    }
    for (const task of names) {
      for (const uid of names) expect((await inject(h, 'DELETE', `/api/tasks/${encodeURIComponent(task)}/${encodeURIComponent(uid)}`, { headers: AUTH })).status).toBe(200);
    }
    expect(await h.scheduler.list()).toEqual([]);
    expectNoPollution('at the end');
  });

  it('query strings with prototype keys on every route: never 5xx, never polluting', async () => {
    const h = await start({ token: TOKEN });
    await h.scheduler.schedule('t', { uid: 'u', every: '1h' });
    const queries = [
      '__proto__=1',
      '__proto__[polluted]=1',
      '__proto__.polluted=1',
      'constructor[prototype][polluted]=1',
      'constructor=x&prototype=y',
      'task=__proto__',
      'task=constructor',
      'a[__proto__][polluted]=1',
      '%5F%5Fproto%5F%5F=1',
      'toString=1&valueOf=2&hasOwnProperty=3',
    ];
    for (const { method, url } of allRoutes(h)) {
      for (const q of queries) {
        const body = bodyFor(method, url);
        const r = await inject(h, method, `${concrete(url)}?${q}`, { headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body });
        const context = `${method} ${url}?${q}`;
        expect(r.status, context).toBeLessThan(500);
        if (r.status >= 400 && method !== 'HEAD') expect(r.json, context).toMatchObject({ code: expect.stringMatching(/^ERR_/) as string });
        expectNoPollution(context);
      }
    }
  });
});

// ------------------------------------------------------------------ body limit, over a real socket

interface RawAnswer {
  status: number;
  head: string;
  body: string;
  /** Body bytes we had written when the answer's first byte arrived. */
  sentWhenAnswered: number;
  /** Body bytes written in all (we stop at the answer, or when the server closes). */
  sent: number;
  /** The server closed the connection. */
  closed: boolean;
}

/**
 * Sends `head` (request line and headers), then up to `total` body bytes in 64 KiB pieces
 * (chunked framing when `chunked`), honouring backpressure, and stops as soon as the answer
 * arrives or the server closes. Rejects if nothing is answered within 20 s (a hang).
 */
function rawUpload(port: number, head: string, total: number, opts: { chunked?: boolean; fill?: string } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const piece = Buffer.alloc(65536, opts.fill ?? 'x');
    const frame = opts.chunked === true ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece;
    let data = '';
    let sent = 0;
    let sentWhenAnswered = -1;
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no answer within 20 s (${sent} body bytes sent)`)), 20_000);
    function finish(err?: Error): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) return reject(err);
      const end = data.indexOf('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), head: data.slice(0, end), body: end < 0 ? '' : data.slice(end + 4), sentWhenAnswered, sent, closed });
    }
    let closed = false;
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('utf8');
      if (sentWhenAnswered < 0) sentWhenAnswered = sent;
      const end = data.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(data)?.[1] ?? Number.NaN);
      if (end >= 0 && data.length - end - 4 >= length) setTimeout(() => finish(), 50); // let a close arrive
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', () => undefined); // EPIPE / ECONNRESET once the server closes: expected
    socket.write(head);
    const pump = (): void => {
      while (!done && sentWhenAnswered < 0 && sent < total) {
        const n = Math.min(piece.length, total - sent);
        sent += n;
        const ok = socket.write(n === piece.length ? frame : opts.chunked === true ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), piece.subarray(0, n), Buffer.from('\r\n')]) : piece.subarray(0, n));
        if (!ok) {
          socket.once('drain', pump);
          return;
        }
      }
      if (!done && sent >= total && opts.chunked === true) socket.write('0\r\n\r\n');
    };
    pump();
  });
}

function request(method: string, path: string, headers: Record<string, string | number>): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

function portOf(h: Harness): number {
  return Number(new URL(h.url).port);
}

describe('bodies over the limit are refused with 413 before parsing', () => {
  const LIMIT = 1024;

  it('at the limit a valid body is accepted; one byte over it is 413 whether valid JSON or not', async () => {
    const h = await start({ token: TOKEN, bodyLimit: LIMIT });
    const valid = (size: number): string => {
      const base = JSON.stringify({ every: '1h', params: { pad: '' } });
      return JSON.stringify({ every: '1h', params: { pad: 'p'.repeat(size - base.length) } });
    };
    expect(Buffer.byteLength(valid(LIMIT))).toBe(LIMIT);
    const head = (size: number): string => request('PUT', '/api/tasks/t/u', { ...AUTH, 'content-type': 'application/json', 'content-length': size });
    const send = async (body: string): Promise<RawAnswer> => {
      const a = await rawUpload(portOf(h), head(Buffer.byteLength(body)) + body, 0);
      return a;
    };
    expect((await send(valid(LIMIT))).status).toBe(200);
    for (const body of [valid(LIMIT + 1), `{${'x'.repeat(LIMIT)}`, '\u0000'.repeat(LIMIT + 1), `{"__proto__":{"polluted":1},"pad":"${'x'.repeat(LIMIT)}"}`]) {
      const a = await send(body);
      expect(a.status, body.slice(0, 30)).toBe(413);
      expect(JSON.parse(a.body)).toEqual({ error: expect.any(String) as string, code: 'ERR_BODY_TOO_LARGE' });
    }
    expectNoPollution('after oversized bodies');
  });

  it('an announced Content-Length over the limit is answered 413 without waiting for the body (none is ever sent)', async () => {
    const h = await start({ token: TOKEN, bodyLimit: LIMIT });
    for (const [path, method] of [
      ['/api/registry', 'PUT'],
      ['/api/tasks/t/u', 'PUT'],
      ['/api/pushTask/t', 'PUT'],
      ['/api/nackTask/t/x', 'POST'],
    ] as const) {
      const a = await rawUpload(portOf(h), request(method, path, { ...AUTH, 'content-type': 'application/json', 'content-length': 100 * 1024 * 1024 }), 0);
      expect(a.status, path).toBe(413);
      expect(JSON.parse(a.body), path).toMatchObject({ code: 'ERR_BODY_TOO_LARGE' });
      expect(a.head.toLowerCase(), path).toContain('connection: close');
    }
  });

  it('a streamed (chunked) 256 MiB body of garbage is cut off at the limit: 413 and the connection closed, the rest never read', async () => {
    const h = await start({ token: TOKEN }); // the default limit, 1 MiB
    const total = 256 * 1024 * 1024;
    const a = await rawUpload(portOf(h), request('PUT', '/api/registry', { ...AUTH, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }), total, { chunked: true, fill: '{' });
    expect(a.status).toBe(413);
    expect(JSON.parse(a.body)).toMatchObject({ code: 'ERR_BODY_TOO_LARGE' });
    expect(a.closed).toBe(true);
    // The answer came while most of the upload was still unsent: the server neither buffered
    // nor drained it (what was sent beyond 1 MiB sits in the two sockets' kernel buffers).
    expect(a.sentWhenAnswered).toBeGreaterThan(1024 * 1024);
    expect(a.sent).toBeLessThan(total / 4);
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
  });

  it('an upload nobody will read (no token, a GET page, an unknown route) is answered and cut off, not drained', async () => {
    const h = await start({ token: TOKEN });
    const total = 256 * 1024 * 1024;
    for (const [method, path, headers, status] of [
      ['PUT', '/api/registry', {}, 401],
      ['PUT', '/api/tasks/t/u', { authorization: 'Bearer wrong' }, 401],
      ['GET', '/healthz', {}, 200],
      ['POST', '/no/such/route', AUTH, 413], // a 404 route reads bodies (up to the limit) like any other
      ['PUT', '/api/registry', AUTH, 415],
    ] as const) {
      const type = status === 415 ? 'text/plain' : 'application/json';
      const a = await rawUpload(portOf(h), request(method, path, { ...headers, 'content-type': type, 'transfer-encoding': 'chunked' }), total, { chunked: true });
      expect(a.status, `${method} ${path}`).toBe(status);
      expect(a.head.toLowerCase(), `${method} ${path}`).toContain('connection: close');
      expect(a.closed, `${method} ${path}`).toBe(true);
      expect(a.sent, `${method} ${path}: body bytes sent`).toBeLessThan(total / 4);
    }
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
  });

  it('requests HTTP itself refuses (huge or malformed headers, bad request line, unknown Expect) get JSON { error, code } too', async () => {
    const h = await start({ token: TOKEN });
    const cases: [string, number, string][] = [
      [request('GET', '/api/tasks', { ...AUTH, 'x-big': 'a'.repeat(20_000) }), 431, 'ERR_HEADERS_TOO_LARGE'],
      [request('GET', `/api/tasks/${'a'.repeat(20_000)}/u`, AUTH), 431, 'ERR_HEADERS_TOO_LARGE'],
      [`GET /api/tasks HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, 431, 'ERR_HEADERS_TOO_LARGE'],
      ['GARBAGE\r\n\r\n', 400, 'ERR_BAD_REQUEST'],
      ['GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-A: \u0001\r\n\r\n', 400, 'ERR_BAD_REQUEST'],
      [request('PUT', '/api/registry', { ...AUTH, 'content-type': 'application/json', 'content-length': 'abc' }), 400, 'ERR_BAD_REQUEST'],
      [request('PUT', '/api/registry', { ...AUTH, 'content-type': 'application/json', 'content-length': 5, 'transfer-encoding': 'chunked' }), 400, 'ERR_BAD_REQUEST'],
      [request('GET', '/api/tasks', { ...AUTH, expect: 'nonsense' }), 417, 'ERR_EXPECTATION_FAILED'],
    ];
    for (const [head, status, code] of cases) {
      const a = await rawUpload(portOf(h), head, 0);
      expect(a.status, head.slice(0, 60)).toBe(status);
      expect(JSON.parse(a.body), head.slice(0, 60)).toEqual({ error: expect.any(String) as string, code });
    }
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
  });
});
