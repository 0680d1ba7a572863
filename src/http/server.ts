/**
 * `schedkit serve`'s HTTP API on a Scheduler: the registry's push/pop API (compatible, with
 * reliable leased pops and long polls as extensions) and management of schedules.
 *
 * JSON in and out; every error is `{ error, code }` (see ./errors.ts). Listens on 127.0.0.1
 * by default; any other host needs a bearer token, which then guards every route except
 * `/healthz` and the pages (`OPEN_ROUTES`: the dashboard at `/` and the docs at `/docs`,
 * which hold no data). Prometheus metrics at `/metrics` (./metrics.ts), the OpenAPI
 * document at `/docs/json` (./docs.ts).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchema } from 'fastify';
import type { Registry } from 'prom-client';
import { SchedkitError, ScheduleNotFoundError, ValidationError } from '../errors.js';
import type { JsonValue } from '../json.js';
import type { Scheduler } from '../scheduler.js';
import type { ClaimedRun, RegistryDump } from '../store/Store.js';
import { parseDuration } from '../timing/duration.js';
import type { ScheduleOptions, TaskReport, UpdateOptions } from '../types.js';
import { bearerChecker, isLoopback, urlHost } from './auth.js';
import type { RouteInfo } from './dashboard.js';
import { swaggerOptions } from './docs.js';
import { toHttpError } from './errors.js';
import { ServiceMetrics } from './metrics.js';
import { OPEN_ROUTES, registerPages } from './pages.js';
import { WorkerQueues } from './queue.js';
import { serviceStats, StatsSampler } from './stats.js';
import { leaseId, leaseToken } from './lease-id.js';
import { MAX_NAME_LENGTH } from '../validate.js';

export type { RouteInfo } from './dashboard.js';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Longest long poll (`?wait=` seconds). */
export const MAX_WAIT_SECONDS = 60;
/** Longest lease a pop or renewal may ask for. */
export const MAX_LEASE_MS = 3_600_000;
/** Attempts in all of a leased pop when `retry` is not given. */
export const DEFAULT_LEASED_ATTEMPTS = 3;
const MAX_ATTEMPTS = 1000;

export interface ServerOptions {
  scheduler: Scheduler;
  /** Bearer token required on every route but `/healthz` and `/`. Required unless `host` is loopback. */
  token?: string | undefined;
  /** Default `127.0.0.1`. */
  host?: string | undefined;
  /** Default 8080; 0 picks a free port. */
  port?: number | undefined;
  /** Largest request body in bytes. Default 1 MiB. */
  bodyLimit?: number | undefined;
  /** A pino (or pino-compatible) logger, true for fastify's default, false (default) for none. */
  logger?: FastifyBaseLogger | boolean | undefined;
  /** Log every request (at info). Default false: only faults are logged. */
  requestLogging?: boolean | undefined;
  /**
   * Also export Node's process metrics (CPU, memory, event loop lag, GC) on `/metrics`.
   * Default false: their collectors stay installed for the life of the process.
   */
  processMetrics?: boolean | undefined;
}

export interface SchedkitServer {
  readonly app: FastifyInstance;
  readonly host: string;
  /** Starts listening; resolves the base URL (`http://127.0.0.1:8080`). */
  listen(): Promise<string>;
  /** The base URL once listening. */
  readonly url: string | undefined;
  /** Answers waiting long polls, stops listening, waits for requests in flight. Does not stop the scheduler. */
  close(): Promise<void>;
  /** Every route served (HEAD aside), in registration order; complete once listening (or after `app.ready()`). */
  readonly routes: readonly RouteInfo[];
  /** This server's Prometheus registry (what `/metrics` exposes); add your own metrics to it. */
  readonly metrics: Registry;
}

const NAME = { type: 'string', minLength: 1, maxLength: 512 } as const;
const DURATION = { type: ['number', 'string'] } as const;
const TIMING_PROPS = { in: DURATION, at: DURATION, every: DURATION, cron: { type: 'string' }, tz: { type: 'string' } } as const;
const TASK_PARAMS = { type: 'object', properties: { name: NAME }, required: ['name'] } as const;
/**
 * A leased pop's id (lease-id.ts): a RedisStore token holds its task name and uid (up to 3
 * UTF-8 bytes per character) beside ~70 bytes of its own, and base64url makes it 4/3 longer.
 */
const LEASE_ID = { type: 'string', minLength: 1, maxLength: 4 * Math.ceil((70 + 3 * 2 * MAX_NAME_LENGTH) / 3) } as const;
const LEASE_PARAMS = { type: 'object', properties: { name: NAME, id: LEASE_ID }, required: ['name', 'id'] } as const;
const SCHEDULE_PARAMS = { type: 'object', properties: { task: NAME, uid: NAME }, required: ['task', 'uid'] } as const;
const STRING = { type: 'string' } as const;
const RETRY_BODY = { type: ['boolean', 'integer'], minimum: 1, maximum: MAX_ATTEMPTS } as const;

type TaskRoute = { Params: { name: string } };
type LeaseRoute = { Params: { name: string; id: string } };
type ScheduleRoute = { Params: { task: string; uid: string } };

/** OpenAPI tags and summary of a route. */
function doc(tag: 'worker' | 'management' | 'service', summary: string): FastifySchema {
  return { tags: [tag], summary };
}

let version: string | undefined;
function packageVersion(): string {
  if (version === undefined) {
    try {
      // src/http and dist/http are both two levels below the package root.
      version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
    } catch {
      version = '0.0.0';
    }
  }
  return version;
}

export function createServer(options: ServerOptions): SchedkitServer {
  if (typeof options !== 'object' || options === null) throw new ValidationError('server options', 'must be an object');
  const { scheduler } = options;
  if (scheduler === undefined || typeof scheduler.schedule !== 'function') throw new ValidationError('server options.scheduler', 'must be a Scheduler');
  const host = options.host ?? DEFAULT_HOST;
  if (typeof host !== 'string' || host.trim().length === 0) throw new ValidationError('host', 'must be a non-empty string');
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ValidationError('port', `must be an integer between 0 and 65535, got ${String(port)}`);
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1) throw new ValidationError('bodyLimit', 'must be a positive integer (bytes)');
  const token = options.token;
  if (token !== undefined && (typeof token !== 'string' || token.length === 0)) throw new ValidationError('token', 'must be a non-empty string');
  if (token === undefined && !isLoopback(host)) {
    throw new SchedkitError(
      'ERR_INSECURE_BIND',
      `refusing to listen on ${host} without a token: anyone who can reach it could run and change schedules. Set a token (--token or SCHEDKIT_TOKEN) or listen on 127.0.0.1`,
    );
  }

  const logger = options.logger ?? false;
  const app = Fastify({
    ...(typeof logger === 'boolean' ? { logger } : { loggerInstance: logger }),
    bodyLimit,
    // Task names and uids may be 512 characters, percent-encoded up to 9 bytes each.
    routerOptions: { maxParamLength: 512 * 9 },
    // Malformed URLs and the like: the same `{ error, code }` bodies as everything else.
    frameworkErrors: (error, _request, reply) => {
      const http = toHttpError(error);
      void (reply as FastifyReply).code(http.status).send(http.body);
    },
    // Requests Node's HTTP parser refuses (headers over 16 KiB, bad request line or headers,
    // timeouts): the same `{ error, code }` bodies too (fastify's own lack `code`).
    clientErrorHandler,
    ...requestLogging(options.requestLogging === true),
    // Fastify's defaults, stated: JSON with `__proto__` or `constructor.prototype` is refused.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Answered by our own hook below, so that the 503 body is `{ error, code }` too.
    return503OnClosing: false,
    // Strict schemas: unknown properties are errors (not silently dropped), no type coercion.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, allowUnionTypes: true } },
  }) as unknown as FastifyInstance;

  // An `Expect:` other than 100-continue: Node would answer 417 with an empty body.
  app.server.on('checkExpectation', (_request: unknown, response: ServerResponse) => {
    const body = JSON.stringify({ error: 'only "Expect: 100-continue" is supported', code: 'ERR_EXPECTATION_FAILED' });
    response.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
  });

  const routes: RouteInfo[] = [];
  // Added first, so it sees every route (the page's API list, the OpenAPI drift test).
  app.addHook('onRoute', (route) => {
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD');
    const schema = route.schema as (FastifySchema & { querystring?: { properties?: Record<string, unknown> } }) | undefined;
    for (const method of methods) {
      routes.push({ method, url: route.url, summary: schema?.summary, query: Object.keys(schema?.querystring?.properties ?? {}), hidden: schema?.hide === true });
    }
  });

  const metrics = new ServiceMetrics({ scheduler, leasesHeld: (): number => queues.heldLeases(), log: app.log, processMetrics: options.processMetrics === true });
  const sampler = new StatsSampler(metrics);
  const queues = new WorkerQueues(scheduler, metrics);
  const checkToken = token === undefined ? undefined : bearerChecker(token);

  // ---------------------------------------------------------------- body parsing
  // Only JSON bodies: text/plain and others are 415. An empty body is "no body".
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (text.trim().length === 0) {
      done(null, undefined);
      return;
    }
    void defaultJson(request, text, (err, value) => {
      if (err === null || err === undefined) {
        done(null, value);
        return;
      }
      let plainJson = false;
      try {
        JSON.parse(text);
        plainJson = true;
      } catch {
        // not JSON at all: fastify's own error says so
      }
      done(plainJson ? new ValidationError('body', 'must not contain "__proto__" or "constructor.prototype" keys') : err, undefined);
    });
  });

  // ---------------------------------------------------------------- errors and auth
  app.setErrorHandler((err: unknown, request, reply) => {
    const http = toHttpError(err);
    if (http.fault) request.log.error({ err }, 'request failed');
    if (http.status === 401) void reply.header('www-authenticate', 'Bearer realm="schedkit"');
    return reply.code(http.status).send(http.body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: `no route ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)}`, code: 'ERR_NOT_FOUND' }),
  );
  let closing = false;
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    await reply.code(503).header('connection', 'close').send({ error: 'the server is shutting down', code: 'ERR_STOPPED' });
    return reply;
  });
  if (checkToken !== undefined) {
    app.addHook('onRequest', async (request, reply) => {
      const route = request.routeOptions.url;
      if (route !== undefined && OPEN_ROUTES.has(route)) return;
      if (checkToken(request.headers.authorization)) return;
      await reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="schedkit"')
        .send({ error: 'missing or wrong bearer token (send "Authorization: Bearer <token>")', code: 'ERR_UNAUTHORIZED' });
      return reply;
    });
  }
  // A response that goes out before its request's body was read (401, 404, 413, 415, a body
  // sent to a GET): close the connection, rather than let Node read and discard an upload of
  // any size (an unauthenticated client could otherwise stream to us for as long as it likes).
  app.addHook('onSend', async (request, reply) => {
    const raw = request.raw;
    if (!raw.complete && (raw.headers['transfer-encoding'] !== undefined || (raw.headers['content-length'] ?? '0') !== '0')) void reply.header('connection', 'close');
    return Promise.resolve();
  });
  app.addHook('preClose', (done) => {
    closing = true;
    queues.close();
    done();
  });
  app.addHook('onReady', (done) => {
    sampler.start();
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    sampler.stop();
    metrics.close();
    done();
  });

  // Routes are registered in a plugin after @fastify/swagger, whose onRoute hook must exist first.
  void app.register(fastifySwagger, swaggerOptions({ version: packageVersion(), tokenRequired: token !== undefined, openRoutes: OPEN_ROUTES }));
  void app.register((api, _pluginOptions, done) => {
    registerRoutes(api, { scheduler, queues, metrics, sampler, token, routes });
    done();
  });

  let url: string | undefined;
  return {
    app,
    host,
    routes,
    metrics: metrics.registry,
    get url() {
      return url;
    },
    async listen() {
      await app.listen({ host, port });
      const address = app.server.address() as AddressInfo;
      url = `http://${urlHost(host, address.port)}`;
      return url;
    },
    async close() {
      queues.close();
      await app.close();
    },
  };
}

interface RouteContext {
  readonly scheduler: Scheduler;
  readonly queues: WorkerQueues;
  readonly metrics: ServiceMetrics;
  readonly sampler: StatsSampler;
  readonly token: string | undefined;
  readonly routes: readonly RouteInfo[];
}

/** The API, the service routes and the pages, on `app` (a plugin context registered after @fastify/swagger). */
function registerRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { scheduler, queues, metrics, sampler, token, routes } = ctx;

  // ---------------------------------------------------------------- registry compat
  app.put<TaskRoute & { Body: Record<string, unknown> | undefined; Querystring: { in?: string } }>(
    '/api/pushTask/:name',
    {
      schema: {
        ...doc('worker', 'Push a task: an occurrence of task :name due now (or `?in=` later); the JSON body is its params → { success, id }'),
        params: TASK_PARAMS,
        querystring: { type: 'object', properties: { in: STRING }, additionalProperties: false },
        body: { type: 'object' },
      },
      preValidation: emptyBodyIsObject,
    },
    async (request) => {
      const uid = randomUUID();
      const delay = request.query.in === undefined ? 0 : queryDuration(request.query.in, 'query.in');
      await scheduler.schedule(request.params.name, { uid, in: delay, params: request.body });
      return { success: true, id: uid };
    },
  );

  app.get<TaskRoute & { Querystring: { wait?: string; lease?: string; retry?: string } }>(
    '/api/popTask/:name',
    {
      schema: {
        ...doc('worker', 'Pop a due task → 200 { task } or 202 when none; `wait` long-polls (seconds), `lease` makes it reliable (ack/nack), `retry` = attempts'),
        params: TASK_PARAMS,
        querystring: { type: 'object', properties: { wait: STRING, lease: STRING, retry: STRING }, additionalProperties: false },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const waitMs = q.wait === undefined ? 0 : waitSeconds(q.wait) * 1000;
      const leaseMs = q.lease === undefined ? undefined : leaseDuration(q.lease, 'query.lease');
      if (q.retry !== undefined && leaseMs === undefined) throw new ValidationError('query.retry', 'only applies to a leased pop (add `lease`, e.g. lease=30s)');
      const attempts = q.retry === undefined ? DEFAULT_LEASED_ATTEMPTS : integerQuery(q.retry, 'query.retry', 1, MAX_ATTEMPTS);
      const run = await queues.pop(request.params.name, { leaseMs, attempts, waitMs, owner: `http/${request.ip}`, signal: clientGone(reply) });
      if (run === null) return reply.code(202).send({ error: 'No tasks available' });
      return popBody(run, leaseMs !== undefined);
    },
  );

  app.post<LeaseRoute & { Body: unknown }>('/api/ackTask/:name/:id', { schema: { ...doc('worker', 'Acknowledge a leased pop (optional JSON body = the result)'), params: LEASE_PARAMS } }, async (request) => {
    const held = await queues.ack(request.params.name, leaseToken(request.params.id), request.body as JsonValue | undefined);
    return { success: true, id: leaseId(held.token), uid: held.uid };
  });

  app.post<LeaseRoute & { Body: { error?: string; retry?: boolean | number; delay?: number | string }; Querystring: { retry?: string; delay?: string } }>(
    '/api/nackTask/:name/:id',
    {
      schema: {
        ...doc('worker', 'Fail a leased pop; retried (after `delay`) while attempts remain, `retry: false` gives up'),
        params: LEASE_PARAMS,
        querystring: { type: 'object', properties: { retry: STRING, delay: STRING }, additionalProperties: false },
        body: { type: 'object', properties: { error: { type: 'string', maxLength: 10_000 }, retry: RETRY_BODY, delay: DURATION }, additionalProperties: false },
      },
      preValidation: emptyBodyIsObject,
    },
    async (request) => {
      const { body, query } = request;
      let retry: boolean | number | undefined = body.retry;
      if (retry === undefined && query.retry !== undefined) retry = query.retry === 'false' ? false : query.retry === 'true' ? true : integerQuery(query.retry, 'query.retry', 1, MAX_ATTEMPTS);
      if (retry === true) retry = undefined; // the pop's attempts
      const delayMs =
        body.delay !== undefined ? parseDuration(body.delay, 'body.delay') : query.delay !== undefined ? queryDuration(query.delay, 'query.delay') : undefined;
      const { lease, retryAt } = await queues.nack(request.params.name, leaseToken(request.params.id), { error: body.error, retry, delayMs });
      return { success: true, id: leaseId(lease.token), uid: lease.uid, attempt: lease.attempt, retrying: retryAt !== undefined, retryAt: retryAt === undefined ? null : iso(retryAt) };
    },
  );

  app.post<LeaseRoute & { Querystring: { lease?: string } }>(
    '/api/renewTask/:name/:id',
    { schema: { ...doc('worker', 'Extend a leased pop by `lease` (default: the lease asked for at the pop)'), params: LEASE_PARAMS, querystring: { type: 'object', properties: { lease: STRING }, additionalProperties: false } } },
    async (request) => {
      const leaseMs = request.query.lease === undefined ? undefined : leaseDuration(request.query.lease, 'query.lease');
      const held = await queues.renew(request.params.name, leaseToken(request.params.id), leaseMs);
      return { success: true, id: leaseId(held.token), leaseExpiresAt: iso(held.expiresAt) };
    },
  );

  // ---------------------------------------------------------------- management
  app.get<{ Querystring: { task?: string } }>(
    '/api/tasks',
    { schema: { ...doc('management', 'List schedules (TaskReports), optionally of one task'), querystring: { type: 'object', properties: { task: NAME }, additionalProperties: false } } },
    async (request) => {
      const reports = await scheduler.list(request.query.task === undefined ? {} : { task: request.query.task });
      return { tasks: reports.map(reportJson) };
    },
  );

  app.get<ScheduleRoute>('/api/tasks/:task/:uid', { schema: { ...doc('management', 'One schedule (TaskReport)'), params: SCHEDULE_PARAMS } }, async (request) => {
    const { task, uid } = request.params;
    const report = await scheduler.get(task, uid);
    if (report === null) throw new ScheduleNotFoundError(task, uid);
    return reportJson(report);
  });

  app.put<ScheduleRoute & { Body: Omit<ScheduleOptions, 'uid'> }>(
    '/api/tasks/:task/:uid',
    {
      schema: {
        ...doc('management', 'Create or replace a schedule: one of in, at, every, cron (+ tz), with params and enabled'),
        params: SCHEDULE_PARAMS,
        body: { type: 'object', properties: { ...TIMING_PROPS, params: {}, enabled: { type: 'boolean' } }, additionalProperties: false },
      },
      preValidation: emptyBodyIsObject,
    },
    async (request) => {
      const { task, uid } = request.params;
      await scheduler.schedule(task, { ...request.body, uid });
      return reportJson(await mustGet(scheduler, task, uid));
    },
  );

  app.patch<ScheduleRoute & { Body: UpdateOptions }>(
    '/api/tasks/:task/:uid',
    {
      schema: {
        ...doc('management', 'Update a schedule: enabled, params, or a new timing'),
        params: SCHEDULE_PARAMS,
        body: {
          type: 'object',
          properties: { enabled: { type: 'boolean' }, params: {}, schedule: { type: 'object', properties: TIMING_PROPS, additionalProperties: false } },
          additionalProperties: false,
        },
      },
      preValidation: emptyBodyIsObject,
    },
    async (request) => reportJson(await scheduler.update(request.params.task, request.params.uid, request.body)),
  );

  app.delete<ScheduleRoute>('/api/tasks/:task/:uid', { schema: { ...doc('management', 'Cancel a schedule'), params: SCHEDULE_PARAMS } }, async (request) => {
    const { task, uid } = request.params;
    if (!(await scheduler.cancel(task, uid))) throw new ScheduleNotFoundError(task, uid);
    return { deleted: true, task, uid };
  });

  app.post<ScheduleRoute>('/api/tasks/:task/:uid/trigger', { schema: { ...doc('management', 'Run a schedule now (an occurrence of its own)'), params: SCHEDULE_PARAMS } }, async (request) => {
    const { task, uid } = request.params;
    await scheduler.trigger(task, uid);
    return reportJson(await mustGet(scheduler, task, uid));
  });

  for (const [action, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    app.post<ScheduleRoute>(`/api/tasks/:task/:uid/${action}`, { schema: { ...doc('management', `${enabled ? 'Enable' : 'Disable'} a schedule`), params: SCHEDULE_PARAMS } }, async (request) =>
      reportJson(await scheduler.update(request.params.task, request.params.uid, { enabled })),
    );
  }

  app.get('/api/registry', { schema: doc('management', 'Snapshot of every schedule (schedward TaskRunnerRegistryDump)') }, async () => scheduler.snapshot());

  app.put<{ Body: RegistryDump }>(
    '/api/registry',
    { schema: { ...doc('management', 'Load a snapshot → { loaded }'), body: { type: 'object' } }, preValidation: emptyBodyIsObject },
    async (request) => ({
      loaded: await scheduler.load(request.body),
    }),
  );

  app.get('/api/depths', { schema: doc('management', 'Due, scheduled and running occurrences per task') }, async () => {
    await queues.ready('depths');
    const depths = await scheduler.store.depths();
    return Object.fromEntries(depths);
  });

  app.get('/api/stats', { schema: doc('management', "Runs by outcome and start lateness: totals and the last 5 minutes in 2 s intervals (from /metrics' registry)") }, async () =>
    serviceStats(metrics, sampler, scheduler.running, queues.heldLeases()),
  );

  // ---------------------------------------------------------------- service
  app.get('/metrics', { schema: doc('service', 'Prometheus metrics (text exposition format)') }, async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });

  app.get('/docs/json', { schema: { hide: true } }, async () => Promise.resolve(app.swagger()));

  // ---------------------------------------------------------------- open routes
  app.get('/healthz', { schema: doc('service', 'Liveness: 200, or 503 while stopping (no token needed)') }, async (_request, reply) => {
    const state = scheduler.state;
    const ok = state !== 'stopping' && state !== 'stopped';
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'stopping', scheduler: state, store: scheduler.store.kind });
  });

  registerPages(app, { tokenRequired: token !== undefined, routes: () => routes });
}

const CLIENT_ERRORS: Readonly<Record<string, readonly [number, string, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'ERR_HEADERS_TOO_LARGE'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'ERR_TIMEOUT'],
};

/** fastify's default client error handler, answering `{ error, code }` (`ERR_BAD_REQUEST` for malformed requests). */
function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, text, code] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'Bad Request', 'ERR_BAD_REQUEST'];
  const body = JSON.stringify({ error: status === 400 ? 'malformed HTTP request' : text.toLowerCase(), code });
  if (socket.writable) socket.write(`HTTP/1.1 ${status} ${text}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  socket.destroy(err);
}

type LogControllerCtor = new (options: { disableRequestLogging: boolean }) => unknown;

/** Request logging on or off: through `LogController` where this fastify 5 has it, else the older (deprecated) option. */
function requestLogging(enabled: boolean): Record<string, unknown> {
  const Controller = (Fastify as unknown as { LogController?: LogControllerCtor }).LogController;
  return Controller === undefined ? { disableRequestLogging: !enabled } : { logController: new Controller({ disableRequestLogging: !enabled }) };
}

/** A route whose body is optional: no body (or an empty one) is `{}`. */
async function emptyBodyIsObject(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
  return Promise.resolve();
}

/** Aborted when the client closes the connection before the answer is sent. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

function waitSeconds(value: string): number {
  const n = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isFinite(n) || n > MAX_WAIT_SECONDS) throw new ValidationError('query.wait', `must be a number of seconds from 0 to ${MAX_WAIT_SECONDS}, got "${value}"`);
  return n;
}

/** A duration in a query string: a bare number means seconds (as `wait`), else `500ms`, `30s`, `2m`. */
function queryDuration(value: string, field: string, opts: { allowZero?: boolean } = {}): number {
  const text = value.trim();
  return parseDuration(/^\d+(\.\d+)?$/.test(text) ? `${text}s` : text, field, opts);
}

function leaseDuration(value: string, field: string): number {
  const ms = queryDuration(value, field, { allowZero: false });
  if (ms > MAX_LEASE_MS) throw new ValidationError(field, `must be at most ${MAX_LEASE_MS / 60_000} minutes (renew a longer run with renewTask)`);
  return ms;
}

function integerQuery(value: string, field: string, min: number, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ValidationError(field, `must be an integer from ${min} to ${max}, got "${value}"`);
  return n;
}

function isPlainObject(value: unknown): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The registry's `{ task: { ...params, id } }`, plus schedkit's run details beside it. */
function popBody(run: ClaimedRun, leased: boolean): Record<string, unknown> {
  const id = leased ? leaseId(run.token) : run.uid;
  const task = isPlainObject(run.params) ? { ...run.params, id } : run.params === undefined ? { id } : { params: run.params, id };
  const body: Record<string, unknown> = { task, uid: run.uid, attempt: run.attempt, kind: run.kind, dueAt: iso(run.dueAt) };
  if (leased) body['leaseExpiresAt'] = iso(run.leaseExpiresAt);
  return body;
}

async function mustGet(scheduler: Scheduler, task: string, uid: string): Promise<TaskReport> {
  const report = await scheduler.get(task, uid);
  if (report === null) throw new ScheduleNotFoundError(task, uid);
  return report;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : iso(ms);
}

/** A TaskReport as JSON: every date (history included) as an ISO string. */
export function reportJson(report: TaskReport): Record<string, unknown> {
  return {
    ...report,
    nextRunAt: report.nextRunAt?.toISOString() ?? null,
    lastExecutedAt: report.lastExecutedAt?.toISOString() ?? null,
    lastFinishedAt: report.lastFinishedAt?.toISOString() ?? null,
    history: report.history.map((h) => ({ ...h, dueAt: iso(h.dueAt), startedAt: isoOrNull(h.startedAt), finishedAt: iso(h.finishedAt) })),
  };
}
