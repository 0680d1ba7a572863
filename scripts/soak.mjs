/**
 * Soak: a steady mixed load for minutes or hours against one private redis-server, through the
 * HTTP service (remote workers: push, pop?lease, ack, nack, renew, expired leases) and through
 * the library (two executing Schedulers on one RedisStore namespace: one-shots with retries,
 * cancels and updates; interval and cron schedules that are triggered, re-parameterised and
 * replaced; locks). It samples memory and throughput while the load runs, then drains,
 * removes every schedule, and checks that nothing was lost or run twice and that heap and
 * Redis memory stayed flat. See docs/soak.md.
 *
 *   npm run soak -- --minutes 10                 (= node --expose-gc scripts/soak.mjs …)
 *   npm run soak -- --seconds 30 --rate 100 --json
 *
 * Options: --minutes N | --seconds N (default 5 minutes) · --rate R offered occurrences/s
 * (default 200) · --sample-every S (default: 60 s, or a sixth of a shorter run, at least 5 s
 * or a quarter of the run) · --lease S leased-pop length (default 4) · --drain-timeout S
 * (default 120) · --json (one JSON report on stdout; progress and the summary go to stderr) ·
 * --build (compile src/ into a private directory instead of using a snapshot of dist/) ·
 * --dist DIR (soak another build, e.g. of a given commit) · REDIS_SERVER=path.
 *
 * Checking the checker: SOAK_INJECT_HEAP_LEAK=B keeps B bytes on the heap per one-shot run, and
 * SOAK_INJECT_REDIS_LEAK=B writes a B-byte key to Redis per one-shot run; either must FAIL.
 *
 * Exit codes: 0 PASS · 1 FAIL (not flat, lost, duplicated, residual keys, errors, drain timed
 * out) · 2 usage or setup error · 130 interrupted (SIGINT/SIGTERM: the load stops, everything
 * is cleaned up, a partial summary is printed).
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { freePort } from '../bench/net.mjs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { clearInterval, setInterval } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;

// ============================================================================ the flatness rule
/**
 * A series (heap used after a full GC, Redis used_memory) is FLAT when the least-squares line
 * through the samples of the second half of the load (extended back to at least 3 samples,
 * never to the idle sample taken before the load) grows, across that window, by no more than
 * max(FLOOR, PER_OCCURRENCE × occurrences completed in the window). The floor absorbs GC and
 * allocator noise on a short window; the per-occurrence term is what a leak of a few bytes per
 * occurrence would exceed on a long one. Shrinking is always flat.
 */
const FLAT = {
  heap: { floorBytes: 2 * MiB, perOccurrenceBytes: 16 },
  redis: { floorBytes: 2 * MiB, perOccurrenceBytes: 16 },
};
/**
 * Key kinds a namespace keeps once every schedule is finished or cancelled (see
 * lua/includes/lib.lua): its metadata, and per partition the counters (m), the task names (T)
 * and the running counts (r). Any other key left then (a schedule, history, lease, lock,
 * queue...) is a leak.
 */
const PERMANENT_KINDS = ['meta', 'm', 'T', 'r'];

// ============================================================================ options

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node --expose-gc scripts/soak.mjs [--minutes N | --seconds N] [--rate R] [--sample-every S] [--lease S] [--drain-timeout S] [--json] [--build | --dist DIR]\n`,
  );
  process.exit(2);
}

/** Numeric options: the option's key and its range. */
const NUMERIC = {
  '--minutes': ['minutes', 0.1, 1440],
  '--seconds': ['seconds', 2, 86_400],
  '--rate': ['rate', 10, 5000],
  '--sample-every': ['sampleEvery', 1, 3600],
  '--lease': ['leaseS', 1, 60],
  '--drain-timeout': ['drainTimeoutS', 5, 3600],
};

function parseArgs(argv) {
  const opts = { seconds: undefined, minutes: undefined, rate: 200, sampleEvery: undefined, leaseS: 4, drainTimeoutS: 120, json: false, build: false, dist: join(ROOT, 'dist') };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = inline ?? (flag in NUMERIC || flag === '--dist' ? argv[++i] : undefined);
    if (flag in NUMERIC) {
      const [key, min, max] = NUMERIC[flag];
      const n = Number(value);
      if (value === undefined || value === '' || !Number.isFinite(n) || n < min || n > max) usage(`${flag} must be a number from ${min} to ${max}, got "${value ?? ''}"`);
      opts[key] = n;
    } else if (flag === '--json' || flag === '--build') opts[flag.slice(2)] = true;
    else if (flag === '--dist' && value !== undefined) opts.dist = resolve(value);
    else usage(flag === '--help' || flag === '-h' ? 'schedkit soak test' : `unknown option or missing value: ${arg}`);
  }
  if (opts.minutes !== undefined && opts.seconds !== undefined) usage('give --minutes or --seconds, not both');
  opts.seconds = opts.minutes !== undefined ? opts.minutes * 60 : (opts.seconds ?? 300);
  // Each minute; a sixth of a shorter run, at least 5 s, or a quarter of one under 20 s (so there are >= 3 samples under load).
  opts.sampleEvery ??= Math.min(60, Math.max(Math.min(5, opts.seconds / 4), opts.seconds / 6));
  return opts;
}

// ============================================================================ small tools

const log = (line) => process.stderr.write(`[soak] ${line}\n`);
const rand = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
const mib = (bytes) => (bytes / MiB).toFixed(1);
const fixed = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

/** Least-squares line through `points` ([x, y]); slope in y per x. */
function leastSquares(points) {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of points) {
    sxx += (x - mx) * (x - mx);
    sxy += (x - mx) * (y - my);
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

function renderTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '));
}

/** Runs at most `limit` tasks at once; `tryRun` refuses (false) instead of queueing when full. */
class Gate {
  constructor(limit) {
    this.limit = limit;
    this.active = 0;
    this.idle = Promise.resolve();
    this.markIdle = () => undefined;
  }
  tryRun(fn) {
    if (this.active >= this.limit) return false;
    if (this.active++ === 0) this.idle = new Promise((r) => (this.markIdle = r));
    void Promise.resolve()
      .then(fn)
      .finally(() => {
        if (--this.active === 0) this.markIdle();
      });
    return true;
  }
}

/** Calls `tick(n)` with the whole number of operations due at `perSecond`, every `everyMs`, while `active()`. */
function pace(perSecond, everyMs, active, tick) {
  let owed = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    if (!active()) {
      last = now;
      return;
    }
    owed += ((now - last) / 1000) * perSecond;
    last = now;
    const n = Math.floor(owed);
    owed -= n;
    if (n > 0) tick(n);
  }, everyMs);
  return () => clearInterval(timer);
}

/** Errors that should never happen; the first few are kept verbatim. */
class Errors {
  constructor() {
    this.count = 0;
    this.byKind = {};
    this.first = [];
  }
  add(kind, err) {
    this.count++;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    if (this.first.length < 10) this.first.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

// ============================================================================ redis-server and dist

function ping(port) {
  return new Promise((res) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (ok) => {
      socket.destroy();
      res(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** A redis-server of our own: free loopback port (never 6379), no persistence, in a temp dir. */
async function startRedisServer(dir) {
  const bin = process.env.REDIS_SERVER || 'redis-server';
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    if (port === 6379) continue;
    const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
    const spawned = await new Promise((res) => {
      child.once('spawn', () => res(null));
      child.once('error', (err) => res(err));
    });
    if (spawned !== null) throw new Error(`cannot start ${bin}: ${spawned.message} (set REDIS_SERVER to its path)`);
    const deadline = Date.now() + 10_000;
    while (child.exitCode === null && Date.now() < deadline && !(await ping(port))) await sleep(25);
    if (child.exitCode === null && Date.now() < deadline) {
      const stop = async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      };
      return { port, url: `redis://127.0.0.1:${port}`, child, stop };
    }
    child.kill('SIGKILL');
    if (attempt >= 5) throw new Error(`redis-server did not start: ${stderr}`);
  }
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * The schedkit build under test, in a private directory inside node_modules/.cache (so the
 * package's dependencies resolve and a rebuild of dist/ mid-run changes nothing): a copy of
 * dist/, or with --build (or no dist/) the sources compiled there.
 */
function prepareBuild(build, dist, privateDir) {
  mkdirSync(privateDir, { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(privateDir, 'package.json'));
  const out = join(privateDir, 'dist');
  if (build || !existsSync(join(dist, 'index.js'))) {
    log(`compiling src/ into ${out}`);
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out, '--declaration', 'false', '--declarationMap', 'false', '--sourceMap', 'false'], {
      stdio: 'inherit',
    });
    cpSync(join(ROOT, 'src', 'store', 'redis', 'lua'), join(out, 'store', 'redis', 'lua'), { recursive: true });
    return { dir: out, source: 'src/ (compiled for this run)' };
  }
  if (!existsSync(join(dist, 'store', 'redis', 'lua', 'claim-1.lua'))) throw new Error(`${dist} has no Lua scripts: copy src/store/redis/lua to its store/redis/ or use --build`);
  const isOwnDist = dist === join(ROOT, 'dist');
  if (isOwnDist && newestMtime(join(ROOT, 'src')) > statSync(join(dist, 'index.js')).mtimeMs) log('warning: src/ changed after dist/ was built; --build soaks the current sources');
  cpSync(dist, out, { recursive: true });
  return { dir: out, source: `${isOwnDist ? 'dist/' : dist} (snapshot)` };
}

// ============================================================================ HTTP client

/** JSON over the service's HTTP API (keep-alive via fetch's pool); resolves { status, body }. */
async function api(base, method, path, body) {
  const init = { method, headers: { accept: 'application/json' }, signal: globalThis.AbortSignal.timeout(30_000) };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await globalThis.fetch(`${base}${path}`, init);
  const text = await res.text();
  let parsed = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text.length > 0) parsed = JSON.parse(text);
  return { status: res.status, body: parsed };
}

// ============================================================================ bookkeeping
//
// Per-occurrence state lives in typed arrays sized for the whole run when it starts (a few
// bytes per occurrence, outside the JS heap), so the soak's own bookkeeping does not grow the
// heap it measures. Everything else is bounded by the in-flight limits.

/**
 * Occurrences numbered 0, 1, 2... as they are made (`next`): a state byte each, the number
 * made and not finished yet (`outstanding`), and counters (`c`, `throttled` included).
 */
class Book {
  constructor(capacity, counters) {
    this.capacity = capacity;
    this.state = new Uint8Array(capacity);
    this.next = 0;
    this.outstanding = 0;
    this.c = Object.fromEntries([...counters, 'throttled'].map((name) => [name, 0]));
  }
  /** How many of the occurrences made are in one of `states` (at the end: the lost ones). */
  count(...states) {
    let n = 0;
    for (let i = 0; i < this.next; i++) if (states.includes(this.state[i])) n++;
    return n;
  }
}

const HTTP_STATE = { none: 0, pending: 1, acked: 2 };

/**
 * Tasks pushed through the service; each carries its own sequence number in its params.
 * Plan by seq % 100: ack (75) · nack once, then ack (10) · abandon once: the lease expires and
 * it is redelivered (7) · slow: acked only after its lease expired, so the ack is refused and
 * the redelivered attempt acks (5) · renew the lease, then ack (3).
 */
class HttpBook extends Book {
  constructor(capacity) {
    super(capacity, ['pushed', 'pushedDelayed', 'delivered', 'acked', 'nacked', 'renewed', 'abandoned', 'slowHeld', 'lateAckRefused', 'lateAckAccepted', 'redeliveredPlanned', 'redeliveredUnplanned', 'ackRefusedUnplanned', 'emptyPops', 'duplicateDeliveries', 'duplicateAcks']);
    this.attemptsSeen = new Uint16Array(capacity); // bit a-1: attempt a was delivered
  }
  static plan(seq) {
    const m = seq % 100;
    return m < 75 ? 'ack' : m < 85 ? 'nack' : m < 92 ? 'abandon' : m < 97 ? 'slow' : 'renew';
  }
  delivered(seq, attempt) {
    this.c.delivered++;
    const bit = 1 << Math.min(15, attempt - 1);
    const dup = (this.attemptsSeen[seq] & bit) !== 0 || this.state[seq] === HTTP_STATE.acked;
    if (dup) this.c.duplicateDeliveries++;
    this.attemptsSeen[seq] |= bit;
    if (attempt > 1) {
      const plan = HttpBook.plan(seq);
      if (plan === 'nack' && attempt === 2) return dup; // a nack's retry, not a redelivery
      if ((plan === 'abandon' || plan === 'slow') && attempt === 2) this.c.redeliveredPlanned++;
      else this.c.redeliveredUnplanned++;
    }
    return dup;
  }
  acked(seq) {
    if (this.state[seq] === HTTP_STATE.acked) {
      this.c.duplicateAcks++;
      return;
    }
    this.state[seq] = HTTP_STATE.acked;
    this.outstanding--;
    this.c.acked++;
  }
}

const ONCE = { none: 0, pending: 1, cancelling: 2, cancelled: 3, done: 4, failed: 5 };

/**
 * Library one-shots, uid `o<seq>`. Plan by seq % 100: plain (80) · fail attempt 1, succeed on
 * the retry (8) · cancelled before due (6) · updated before due: new params and timing (6).
 */
class OnceBook extends Book {
  constructor(capacity) {
    super(capacity, ['scheduled', 'succeeded', 'retried', 'cancelled', 'cancelTooLate', 'updated', 'updateTooLate', 'failedFinal', 'duplicateStarts', 'duplicateSuccesses', 'ranAfterCancel', 'staleParams']);
    this.startedAttempts = new Uint8Array(capacity);
    this.updated = new Uint8Array(capacity);
  }
  static plan(seq) {
    const m = seq % 100;
    return m < 80 ? 'plain' : m < 88 ? 'fail' : m < 94 ? 'cancel' : 'update';
  }
  resolve(seq, state) {
    const was = this.state[seq];
    if (was === ONCE.pending || was === ONCE.cancelling) this.outstanding--;
    this.state[seq] = state;
  }
  started(seq, attempt, params) {
    const bit = 1 << Math.min(7, attempt - 1);
    if ((this.startedAttempts[seq] & bit) !== 0 || this.state[seq] === ONCE.done) this.c.duplicateStarts++;
    if (this.state[seq] === ONCE.cancelled) this.c.ranAfterCancel++;
    if (this.updated[seq] === 1 && (params === null || typeof params !== 'object' || params.v !== 2)) this.c.staleParams++;
    this.startedAttempts[seq] |= bit;
  }
  succeeded(seq) {
    if (this.state[seq] === ONCE.done) {
      this.c.duplicateSuccesses++;
      return;
    }
    this.c.succeeded++;
    this.resolve(seq, ONCE.done);
  }
}

/**
 * One interval or cron schedule: the ticks it ran, as indexes k of dueAt = first + k·period.
 * All ticks below `doneBelow` ran; `ahead` holds those that ran out of order above it.
 */
class RecurringSchedule {
  constructor(task, uid, first, period) {
    Object.assign(this, { task, uid, first, period });
    this.doneBelow = 0;
    this.ahead = new Set();
    this.state = 'live';
    this.triggersPending = 0;
    this.limitK = Infinity;
    this.c = { ticks: 0, skipped: 0, duplicateTicks: 0, misaligned: 0, ranWhileDisabled: 0, triggerRuns: 0, duplicateTriggerRuns: 0 };
  }
  tick(dueAt, skipped) {
    const offset = dueAt - this.first;
    const k = Math.round(offset / this.period);
    if (k < 0 || offset !== k * this.period) {
      this.c.misaligned++;
      return;
    }
    if (k >= this.limitK) this.c.ranWhileDisabled++;
    if (k < this.doneBelow || this.ahead.has(k)) {
      this.c.duplicateTicks++;
      return;
    }
    if (skipped) this.c.skipped++;
    else this.c.ticks++;
    this.ahead.add(k);
    while (this.ahead.delete(this.doneBelow)) this.doneBelow++;
  }
  triggerRan() {
    if (this.triggersPending <= 0) this.c.duplicateTriggerRuns++;
    else this.triggersPending--;
    this.c.triggerRuns++;
  }
  /** Ticks below `limitK` that have not run (all of them must, before the schedule is cancelled). */
  missing() {
    let n = 0;
    for (let k = this.doneBelow; k < this.limitK; k++) if (!this.ahead.has(k)) n++;
    return n;
  }
}

class RecurringBook {
  constructor() {
    this.live = new Map();
    /** uid -> runs seen while its schedule() call was still in flight. */
    this.creating = new Map();
    this.generation = 0;
    this.c = {
      created: 0,
      retired: 0,
      ticks: 0,
      skipped: 0,
      missingTicks: 0,
      duplicateTicks: 0,
      misaligned: 0,
      ranWhileDisabled: 0,
      ranAfterCancel: 0,
      triggers: 0,
      triggerRuns: 0,
      triggersLost: 0,
      duplicateTriggerRuns: 0,
      paramUpdates: 0,
      retireTimeouts: 0,
    };
  }
  /** Totals of retired schedules plus the live ones. */
  totals() {
    const t = { ...this.c };
    for (const s of this.live.values()) {
      t.ticks += s.c.ticks;
      t.skipped += s.c.skipped;
      t.duplicateTicks += s.c.duplicateTicks;
      t.misaligned += s.c.misaligned;
      t.ranWhileDisabled += s.c.ranWhileDisabled;
      t.triggerRuns += s.c.triggerRuns;
      t.duplicateTriggerRuns += s.c.duplicateTriggerRuns;
    }
    return t;
  }
  fold(s) {
    this.c.ticks += s.c.ticks;
    this.c.skipped += s.c.skipped;
    this.c.duplicateTicks += s.c.duplicateTicks;
    this.c.misaligned += s.c.misaligned;
    this.c.ranWhileDisabled += s.c.ranWhileDisabled;
    this.c.triggerRuns += s.c.triggerRuns;
    this.c.duplicateTriggerRuns += s.c.duplicateTriggerRuns;
    this.c.missingTicks += s.missing();
    this.c.triggersLost += s.triggersPending;
    this.c.retired++;
    this.live.delete(s.uid);
  }
}

// ============================================================================ the soak

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (typeof globalThis.gc !== 'function') usage('run node with --expose-gc (npm run soak does)');

  const startedAt = new Date();
  const cleanups = [];
  const tmp = mkdtempSync(join(os.tmpdir(), 'schedkit-soak-'));
  const privateDir = join(ROOT, 'node_modules', '.cache', `schedkit-soak-${process.pid}`);
  let redis;
  let interrupted = false;
  let wakeMain = () => undefined;

  // Whatever happens, the redis-server and the temp dirs go.
  process.on('exit', () => {
    if (redis !== undefined && redis.child.exitCode === null) redis.child.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
    rmSync(privateDir, { recursive: true, force: true });
  });
  const onSignal = (signal) => {
    if (interrupted) {
      log(`${signal} again: exiting now`);
      process.exit(130);
    }
    interrupted = true;
    log(`${signal}: stopping the load, cleaning up (again to exit at once)`);
    wakeMain();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const errors = new Errors();
  const build = prepareBuild(opts.build, opts.dist, privateDir);
  const sk = await import(pathToFileURL(join(build.dir, 'index.js')).href);
  const { createServer } = await import(pathToFileURL(join(build.dir, 'http', 'server.js')).href);
  const { Redis } = await import('ioredis');

  redis = await startRedisServer(tmp);
  cleanups.push(() => redis.stop());
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 3 });
  cleanups.push(() => admin.quit().catch(() => admin.disconnect()));

  // ---------------------------------------------------------------- the system under test
  const HTTP_TASK = 'soak.http';
  const svc = new sk.Scheduler({ store: new sk.RedisStore({ url: redis.url, prefix: 'soak-svc' }) });
  svc.on('error', (err) => errors.add('service scheduler', err));
  await svc.start({ execute: false });
  cleanups.push(() => svc.stop({ timeout: 5000 }));
  const server = createServer({ scheduler: svc, host: '127.0.0.1', port: 0 });
  const base = await server.listen();
  cleanups.push(() => server.close());

  const libs = [0, 1].map((i) => new sk.Scheduler({ store: new sk.RedisStore({ url: redis.url, prefix: 'soak-lib' }), concurrency: 64, owner: `soak-lib-${i}` }));

  // ---------------------------------------------------------------- the load's shape
  const R = opts.rate;
  const shape = {
    httpPerS: R * 0.4,
    intervals: Math.max(2, Math.round(R * 0.1)),
    crons: Math.max(2, Math.round(R * 0.05)),
  };
  shape.oncePerS = Math.max(1, R - shape.httpPerS - shape.intervals - shape.crons);
  const maxBacklog = Math.max(500, R * 20);
  const http = new HttpBook(Math.ceil(shape.httpPerS * opts.seconds * 1.05) + 1000);
  const once = new OnceBook(Math.ceil(shape.oncePerS * opts.seconds * 1.05) + 1000);
  const rec = new RecurringBook();
  const locks = { acquired: 0, contended: 0, extended: 0, released: 0, violations: 0, anomalies: 0 };
  const lockHolders = new Map();
  const scrapes = { ok: 0 };

  // ---------------------------------------------------------------- library tasks
  const onceTask = 'soak.once';
  const injected = { heap: Number(process.env.SOAK_INJECT_HEAP_LEAK ?? 0), redis: Number(process.env.SOAK_INJECT_REDIS_LEAK ?? 0), kept: [] };
  if (injected.heap > 0 || injected.redis > 0) log(`injecting a leak per one-shot run: ${injected.heap} B of heap, ${injected.redis} B of Redis`);
  for (const lib of libs) {
    lib.on('error', (err) => errors.add('library scheduler', err));
    lib.define(
      onceTask,
      async (run) => {
        const seq = Number(run.uid.slice(1));
        once.started(seq, run.attempt, run.params);
        if (OnceBook.plan(seq) === 'fail' && run.attempt === 1) throw new Error('soak: planned failure');
        if (injected.heap > 0) injected.kept.push(new Array(Math.ceil(injected.heap / 8)).fill(seq)); // 8 B per element (no pointer compression)
        if (injected.redis > 0) await admin.set(`soak-injected-leak:${seq}:${run.attempt}`, 'x'.repeat(injected.redis));
        if (seq % 4 === 0) await sleep(rand(1, 5));
        return { seq };
      },
      { retry: { attempts: 3, backoff: 'fixed', delay: '200ms' } },
    );
    const recurringHandler = (run) => {
      const record = (s) => (run.kind === 'trigger' ? s.triggerRan() : s.tick(run.dueAt.getTime(), false));
      const s = rec.live.get(run.uid);
      if (s !== undefined) record(s);
      else if (rec.creating.has(run.uid)) rec.creating.get(run.uid).push(record);
      else rec.c.ranAfterCancel++;
    };
    // Every tick must run: overlapping runs allowed, missed ticks all caught up.
    lib.define('soak.every', recurringHandler, { overlap: 'allow', misfire: 'run-all' });
    lib.define('soak.cron', recurringHandler, { overlap: 'allow', misfire: 'run-all' });
    lib.on('run:success', (e) => {
      if (e.task === onceTask) once.succeeded(Number(e.uid.slice(1)));
    });
    lib.on('run:retry', (e) => {
      if (e.task === onceTask) once.c.retried++;
    });
    lib.on('run:failure', (e) => {
      if (e.task === onceTask && !e.willRetry) {
        once.c.failedFinal++;
        once.resolve(Number(e.uid.slice(1)), ONCE.failed);
      }
    });
    lib.on('run:skipped', (e) => {
      const s = rec.live.get(e.uid);
      if (s !== undefined) s.tick(e.dueAt.getTime(), true);
      else if (e.task !== onceTask) rec.c.ranAfterCancel++;
    });
    lib.on('run:lost', (e) => errors.add('library run lost its lease', `${e.task}/${e.uid}: ${e.reason}`));
    await lib.start();
    cleanups.push(() => lib.stop({ timeout: 5000 }));
  }
  cleanups.reverse(); // close in the opposite order of opening
  const lib = (i = rand(0, 1)) => libs[i];

  async function addRecurring(kind) {
    const uid = `${kind === 'every' ? 'e' : 'c'}${rec.generation++}`;
    const task = kind === 'every' ? 'soak.every' : 'soak.cron';
    const timing = kind === 'every' ? { every: '1s' } : { cron: '* * * * * *', tz: 'UTC' };
    // Its first run may start before schedule() resolves here: such runs wait in `creating`.
    rec.creating.set(uid, []);
    const ref = await lib().schedule(task, { uid, ...timing, params: { v: 0 } });
    const s = new RecurringSchedule(task, uid, ref.nextRunAt.getTime(), 1000);
    rec.live.set(uid, s);
    for (const early of rec.creating.get(uid)) early(s);
    rec.creating.delete(uid);
    rec.c.created++;
  }

  /** Disable, wait until every tick before the first one that will not fire has run (and the triggers), cancel. */
  async function retire(s, timeoutMs) {
    s.state = 'retiring';
    const report = await lib().update(s.task, s.uid, { enabled: false });
    s.limitK = Math.round((report.nextRunAt.getTime() - s.first) / s.period);
    const deadline = Date.now() + timeoutMs;
    while ((s.missing() > 0 || s.triggersPending > 0) && Date.now() < deadline) await sleep(50);
    if (s.missing() > 0 || s.triggersPending > 0) rec.c.retireTimeouts++;
    if (!(await lib().cancel(s.task, s.uid))) errors.add('cancel of a recurring schedule', `${s.task}/${s.uid} was not found`);
    rec.fold(s);
  }

  for (let i = 0; i < shape.intervals; i++) await addRecurring('every');
  for (let i = 0; i < shape.crons; i++) await addRecurring('cron');

  // ---------------------------------------------------------------- load generators
  let loadOn = false;
  let workersOn = true;
  const stops = [];
  const loading = () => loadOn && !interrupted;
  const leaseMs = opts.leaseS * 1000;
  /**
   * Paces `perS` new occurrences into `book` (HttpBook or OnceBook), each made by `make(seq)`
   * through `gate`; one that the backlog cap or a full gate refuses is counted as throttled.
   */
  const producer = (book, perS, gate, make) =>
    pace(perS, 50, loading, (n) => {
      for (let i = 0; i < n; i++) {
        const seq = book.next;
        if (book.outstanding >= maxBacklog || seq >= book.capacity || !gate.tryRun(() => make(seq))) book.c.throttled++;
        else book.next++;
      }
    });

  // HTTP producer: pushes, a fifth of them delayed by 1 s.
  const pushGate = new Gate(32);
  stops.push(
    producer(http, shape.httpPerS, pushGate, async (seq) => {
      const delayed = seq % 5 === 4;
      http.state[seq] = HTTP_STATE.pending;
      http.outstanding++;
      try {
        const res = await api(base, 'PUT', `/api/pushTask/${HTTP_TASK}${delayed ? '?in=1s' : ''}`, { seq, pad: 'x'.repeat(seq % 64) });
        if (res.status !== 200) throw new Error(`HTTP ${res.status} ${JSON.stringify(res.body)}`);
        http.c.pushed++;
        if (delayed) http.c.pushedDelayed++;
      } catch (err) {
        // Unknown whether it was stored: not counted as lost, but as an error.
        errors.add('push', err);
        if (http.state[seq] === HTTP_STATE.pending) {
          http.state[seq] = HTTP_STATE.none;
          http.outstanding--;
        }
      }
    }),
  );

  // HTTP workers: long-poll pops with a lease, then act out the task's plan.
  const lateAcks = new Set();
  const ackPath = (token) => `/api/ackTask/${HTTP_TASK}/${encodeURIComponent(token)}`;
  async function ack(seq, token, late) {
    const res = await api(base, 'POST', ackPath(token), { seq });
    if (res.status === 200) {
      http.acked(seq);
      if (late) http.c.lateAckAccepted++;
    } else if (res.status === 409) {
      // The lease expired first: the occurrence is (or will be) redelivered. By design.
      if (late) http.c.lateAckRefused++;
      else http.c.ackRefusedUnplanned++;
    } else {
      throw new Error(`ack: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    }
  }
  async function httpWorker() {
    while (workersOn) {
      try {
        const res = await api(base, 'GET', `/api/popTask/${HTTP_TASK}?lease=${opts.leaseS}s&wait=1&retry=5`);
        if (res.status === 202) {
          http.c.emptyPops++;
          continue;
        }
        if (res.status !== 200) throw new Error(`pop: HTTP ${res.status} ${JSON.stringify(res.body)}`);
        const { task, attempt } = res.body;
        const seq = task.seq;
        const token = task.id;
        if (!Number.isInteger(seq) || seq < 0 || seq >= http.next) throw new Error(`pop: unexpected task ${JSON.stringify(task)}`);
        if (http.delivered(seq, attempt)) continue; // a duplicate: counted, not acted on
        const plan = attempt === 1 ? HttpBook.plan(seq) : 'ack';
        if (plan === 'nack') {
          const n = await api(base, 'POST', `/api/nackTask/${HTTP_TASK}/${encodeURIComponent(token)}`, { error: 'soak: planned failure', delay: '200ms' });
          if (n.status !== 200 || n.body.retrying !== true) throw new Error(`nack: HTTP ${n.status} ${JSON.stringify(n.body)}`);
          http.c.nacked++;
        } else if (plan === 'abandon') {
          http.c.abandoned++; // never acknowledged: redelivered once the lease expires
        } else if (plan === 'slow') {
          http.c.slowHeld++; // "still working" past the lease; the late ack must be refused
          const timer = setTimeout(() => {
            lateAcks.delete(timer);
            ack(seq, token, true).catch((err) => errors.add('late ack', err));
          }, leaseMs + 1000);
          lateAcks.add(timer);
        } else {
          if (plan === 'renew') {
            const r = await api(base, 'POST', `/api/renewTask/${HTTP_TASK}/${encodeURIComponent(token)}?lease=${opts.leaseS}s`);
            if (r.status === 200) http.c.renewed++;
            else if (r.status !== 409) throw new Error(`renew: HTTP ${r.status} ${JSON.stringify(r.body)}`);
          }
          await ack(seq, token, false);
        }
      } catch (err) {
        errors.add('http worker', err);
        await sleep(100);
      }
    }
  }
  const workers = Array.from({ length: 8 }, () => httpWorker());

  // Library one-shots.
  const onceGate = new Gate(64);
  const followUps = new Set();
  function followUp(ms, fn) {
    const timer = setTimeout(() => {
      followUps.delete(timer);
      // Never dropped (the occurrence's fate depends on it): past the gate when it is full.
      if (!onceGate.tryRun(fn)) void Promise.resolve().then(fn);
    }, ms);
    followUps.add(timer);
  }
  stops.push(
    producer(once, shape.oncePerS, onceGate, async (seq) => {
      const plan = OnceBook.plan(seq);
      const uid = `o${seq}`;
      once.state[seq] = ONCE.pending;
      once.outstanding++;
      const due = plan === 'cancel' ? 3000 : plan === 'update' ? 4000 : rand(0, 2000);
      try {
        await lib(seq % 2).schedule(onceTask, { uid, in: due, params: { seq, v: 1 } });
        once.c.scheduled++;
      } catch (err) {
        errors.add('schedule one-shot', err);
        once.resolve(seq, ONCE.none);
        return;
      }
      if (plan === 'cancel') {
        followUp(rand(300, 800), async () => {
          once.state[seq] = ONCE.cancelling;
          try {
            if (await lib().cancel(onceTask, uid)) {
              once.c.cancelled++;
              once.resolve(seq, ONCE.cancelled);
            } else {
              once.c.cancelTooLate++; // it ran meanwhile (a stall of seconds): fine, it counts as run
              if (once.state[seq] === ONCE.cancelling) once.state[seq] = ONCE.pending;
            }
          } catch (err) {
            errors.add('cancel one-shot', err);
            if (once.state[seq] === ONCE.cancelling) once.state[seq] = ONCE.pending;
          }
        });
      } else if (plan === 'update') {
        followUp(rand(300, 800), async () => {
          try {
            await lib().update(onceTask, uid, { params: { seq, v: 2 }, schedule: { in: 300 } });
            once.updated[seq] = 1;
            once.c.updated++;
          } catch (err) {
            if (err?.code === 'ERR_SCHEDULE_NOT_FOUND') once.c.updateTooLate++;
            else errors.add('update one-shot', err);
          }
        });
      }
    }),
  );

  // Recurring schedules: triggers (1/s), params updates and replacement of the oldest (every 5 s).
  const recGate = new Gate(8);
  const liveSchedules = () => [...rec.live.values()].filter((s) => s.state === 'live');
  stops.push(
    pace(1, 100, loading, () => {
      const list = liveSchedules();
      const s = list[rand(0, list.length - 1)];
      if (s === undefined) return;
      s.triggersPending++; // before the call: the run may start before trigger() resolves
      const started = recGate.tryRun(async () => {
        try {
          await lib().trigger(s.task, s.uid);
          rec.c.triggers++;
        } catch (err) {
          s.triggersPending--;
          errors.add('trigger', err);
        }
      });
      if (!started) s.triggersPending--;
    }),
    pace(0.2, 200, loading, () => {
      const list = liveSchedules();
      const s = list[rand(0, list.length - 1)];
      if (s !== undefined) {
        recGate.tryRun(async () => {
          await lib().update(s.task, s.uid, { params: { v: rec.c.paramUpdates + 1 } });
          rec.c.paramUpdates++;
        });
      }
      const oldest = list[0];
      if (oldest === undefined) return;
      oldest.state = 'retiring';
      const replacing = recGate.tryRun(async () => {
        try {
          await addRecurring(oldest.task === 'soak.every' ? 'every' : 'cron');
          await retire(oldest, 60_000);
        } catch (err) {
          errors.add('replace a recurring schedule', err);
        }
      });
      if (!replacing) oldest.state = 'live';
    }),
  );

  // Locks: pairs of contenders, one per scheduler, for the same key at the same moment (two keys):
  // withLock and lock/extend/release. Two holders of one key at once is a violation.
  const lockGate = new Gate(8);
  const enter = (key) => {
    if ((lockHolders.get(key) ?? 0) > 0) locks.violations++;
    lockHolders.set(key, (lockHolders.get(key) ?? 0) + 1);
  };
  const leave = (key) => lockHolders.set(key, lockHolders.get(key) - 1);
  async function contend(scheduler, key, useWithLock) {
    try {
      if (useWithLock) {
        await scheduler.withLock(
          key,
          async () => {
            locks.acquired++;
            enter(key);
            await sleep(rand(5, 30));
            leave(key);
          },
          { ttl: '5s' },
        );
        locks.released++;
        return;
      }
      const l = await scheduler.lock(key, { ttl: '5s' });
      if (l === null) {
        locks.contended++;
        return;
      }
      locks.acquired++;
      enter(key);
      await sleep(rand(1, 10));
      if (await l.extend('5s')) locks.extended++;
      else locks.anomalies++;
      leave(key);
      if (await l.release()) locks.released++;
      else locks.anomalies++;
    } catch (err) {
      if (err?.code === 'ERR_LOCK_HELD') locks.contended++;
      else errors.add('lock', err);
    }
  }
  stops.push(
    pace(2, 100, loading, (n) => {
      for (let i = 0; i < n; i++) {
        const key = `soak-lock-${rand(0, 1)}`;
        lockGate.tryRun(() => Promise.all([contend(libs[0], key, Math.random() < 0.5), contend(libs[1], key, Math.random() < 0.5)]));
      }
    }),
  );

  // Monitoring traffic: what a Prometheus scrape and the dashboard ask, every 5 s.
  stops.push(
    pace(0.2, 500, loading, () => {
      void Promise.all([api(base, 'GET', '/metrics'), api(base, 'GET', '/api/stats'), api(base, 'GET', '/api/depths'), lib().list({ task: 'soak.every' })])
        .then(([m, st, d]) => {
          if (m.status !== 200 || st.status !== 200 || d.status !== 200) throw new Error(`HTTP ${m.status}/${st.status}/${d.status}`);
          scrapes.ok++;
        })
        .catch((err) => errors.add('monitoring', err));
    }),
  );

  // ---------------------------------------------------------------- sampling
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const t0 = performance.now();
  const samples = [];
  const completed = () => {
    const r = rec.totals();
    return { http: http.c.acked, once: once.c.succeeded, recurring: r.ticks + r.triggerRuns };
  };
  async function census() {
    const kinds = {};
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const m = /^([^:{]+):\{[^}]*\}:(meta|\w)/.exec(key);
        const kind = m === null ? `other` : `${m[1].replace('soak-', '')}:${m[2]}`;
        kinds[kind] = (kinds[kind] ?? 0) + 1;
      }
    } while (cursor !== '0');
    return kinds;
  }
  /**
   * Heap used after full GCs: the lowest of three readings 100 ms apart, so that what the
   * load happens to hold in flight at one instant (requests, claims, promises) counts less.
   */
  async function heapAfterGc() {
    let lowest = Infinity;
    for (let i = 0; i < 3; i++) {
      if (i > 0) await sleep(100);
      globalThis.gc();
      globalThis.gc();
      lowest = Math.min(lowest, process.memoryUsage().heapUsed);
    }
    return lowest;
  }
  async function sample(phase) {
    const heapUsed = await heapAfterGc();
    const mem = process.memoryUsage();
    const info = await admin.info('everything');
    const field = (name) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
    const dbsize = await admin.dbsize();
    const done = completed();
    const t = (performance.now() - t0) / 1000;
    const prev = samples.at(-1);
    const total = done.http + done.once + done.recurring;
    const s = {
      t: Math.round(t * 10) / 10,
      phase,
      heapUsed,
      rss: mem.rss,
      external: mem.external,
      redisUsedMemory: field('used_memory'),
      redisClients: field('connected_clients'),
      redisCommands: field('total_commands_processed'),
      redisInputBytes: field('total_net_input_bytes'),
      dbsize,
      keys: dbsize <= 200_000 ? await census() : null,
      lagP50Ms: lag.percentile(50) / 1e6,
      lagP99Ms: lag.percentile(99) / 1e6,
      lagMaxMs: lag.max / 1e6,
      handles: process.getActiveResourcesInfo().length,
      completed: done,
      completedTotal: total,
      perS: prev === undefined || t === prev.t ? 0 : (total - prev.completedTotal) / (t - prev.t),
      backlog: { http: http.outstanding, once: once.outstanding },
      errors: errors.count,
    };
    lag.reset();
    samples.push(s);
    log(
      `${phase.padEnd(5)} t=${fixed(s.t, 0)}s heap ${mib(s.heapUsed)} MiB · rss ${mib(s.rss)} MiB · redis ${mib(s.redisUsedMemory)} MiB, ${s.dbsize} keys, ${s.redisClients} clients · lag p99 ${fixed(s.lagP99Ms)} ms · ${fixed(s.perS, 0)} occ/s · backlog ${http.outstanding}+${once.outstanding} · errors ${errors.count}`,
    );
    return s;
  }

  log(
    `schedkit ${build.source}; redis-server ${redis.url}; service ${base}; ${opts.seconds} s at ${R} occ/s offered (http ${shape.httpPerS}/s, one-shots ${fixed(shape.oncePerS)}/s, ${shape.intervals} intervals + ${shape.crons} crons every 1 s), samples every ${fixed(opts.sampleEvery, 0)} s`,
  );
  await sample('start');
  loadOn = true;
  const loadStart = performance.now();
  const loadStartT = (loadStart - t0) / 1000;
  const loadEnd = loadStart + opts.seconds * 1000;
  let nextSample = loadStart + opts.sampleEvery * 1000;
  while (!interrupted) {
    const now = performance.now();
    if (now >= loadEnd - 1) break;
    const until = Math.min(nextSample, loadEnd);
    await new Promise((r) => {
      const timer = setTimeout(r, Math.max(0, until - now));
      wakeMain = () => {
        clearTimeout(timer);
        r();
      };
    });
    if (interrupted) break;
    if (performance.now() >= nextSample && performance.now() < loadEnd - 1) {
      await sample('load');
      nextSample += opts.sampleEvery * 1000;
      while (nextSample <= performance.now()) nextSample += opts.sampleEvery * 1000;
    }
  }
  if (!interrupted) await sample('end'); // at full load, before the load stops
  const loadSeconds = (performance.now() - loadStart) / 1000;
  loadOn = false;
  for (const stop of stops) stop();

  // ---------------------------------------------------------------- drain and clean up
  const drainMs = interrupted ? 5000 : opts.drainTimeoutS * 1000;
  const drainDeadline = Date.now() + drainMs;
  const busy = () => pushGate.active + onceGate.active + recGate.active + lockGate.active + followUps.size + lateAcks.size;
  log(`draining (up to ${drainMs / 1000} s): backlog ${http.outstanding} http + ${once.outstanding} one-shots`);
  while ((http.outstanding > 0 || once.outstanding > 0 || busy() > 0) && Date.now() < drainDeadline) await sleep(100);
  let drained = http.outstanding === 0 && once.outstanding === 0 && busy() === 0;
  if (!interrupted) {
    // Every recurring schedule: all its ticks before disabling must run, then it is cancelled.
    const left = Math.max(5000, drainDeadline - Date.now());
    await Promise.all(liveSchedules().map((s) => retire(s, left).catch((err) => errors.add('retire', err))));
    if (rec.c.retireTimeouts > 0) drained = false;
  }
  workersOn = false;
  await Promise.all(workers);
  for (const timer of lateAcks) clearTimeout(timer);
  for (const timer of followUps) clearTimeout(timer);

  const residual = { depths: null, leasesHeld: null, libSchedules: null };
  if (!interrupted) {
    const d = await api(base, 'GET', '/api/depths');
    residual.depths = d.body?.[HTTP_TASK] ?? { due: 0, scheduled: 0, running: 0 };
    const m = await api(base, 'GET', '/metrics');
    residual.leasesHeld = Number(/^schedkit_http_leases_held (\d+)/m.exec(m.body)?.[1] ?? NaN);
    residual.libSchedules = (await lib(0).list()).length;
  }
  const after = await sample('after');
  lag.disable();

  for (const fn of cleanups) {
    try {
      await fn();
    } catch (err) {
      errors.add('cleanup', err);
    }
  }

  // ---------------------------------------------------------------- verdict
  const rt = rec.totals();
  const lost = {
    http: interrupted ? 0 : http.count(HTTP_STATE.pending),
    once: interrupted ? 0 : once.count(ONCE.pending, ONCE.cancelling) + once.c.failedFinal,
    recurringTicks: rt.missingTicks,
    triggers: rt.triggersLost,
  };
  const duplicates = {
    httpDeliveries: http.c.duplicateDeliveries,
    httpAcks: http.c.duplicateAcks,
    onceStarts: once.c.duplicateStarts,
    onceSuccesses: once.c.duplicateSuccesses,
    recurringTicks: rt.duplicateTicks,
    triggerRuns: rt.duplicateTriggerRuns,
  };
  const violations = {
    onceRanAfterCancel: once.c.ranAfterCancel,
    onceStaleParams: once.c.staleParams,
    recurringMisaligned: rt.misaligned,
    recurringRanWhileDisabled: rt.ranWhileDisabled,
    recurringRanAfterCancel: rt.ranAfterCancel,
    lockOverlaps: locks.violations,
    lockAnomalies: locks.anomalies,
  };
  const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);

  const loadSamples = samples.filter((s) => s.phase === 'load' || s.phase === 'end');
  const half = loadStartT + loadSeconds / 2;
  let window = loadSamples.filter((s) => s.t >= half);
  if (window.length < 3) window = loadSamples.slice(-3);
  function flatness(key, rule) {
    if (window.length < 3) return { judged: false, flat: true, reason: 'fewer than 3 samples under load' };
    const fit = leastSquares(window.map((s) => [s.t / 60, s[key]]));
    const minutes = (window.at(-1).t - window[0].t) / 60;
    const occurrences = window.at(-1).completedTotal - window[0].completedTotal;
    const growth = fit.slope * minutes;
    const allowed = Math.max(rule.floorBytes, rule.perOccurrenceBytes * occurrences);
    return {
      judged: true,
      flat: growth <= allowed,
      window: [window[0].t, window.at(-1).t],
      samples: window.length,
      slopeBytesPerMin: Math.round(fit.slope),
      fittedGrowthBytes: Math.round(growth),
      allowedBytes: Math.round(allowed),
      occurrences,
      bytesPerOccurrence: occurrences > 0 ? growth / occurrences : null,
      firstToLastBytes: window.at(-1)[key] - window[0][key],
    };
  }
  const flat = { heap: flatness('heapUsed', FLAT.heap), redis: flatness('redisUsedMemory', FLAT.redis) };
  const residualKeys = {};
  for (const [kind, n] of Object.entries(after.keys ?? {})) if (!PERMANENT_KINDS.includes(kind.split(':')[1])) residualKeys[kind] = n;
  const clients = window.map((s) => s.redisClients);

  const failures = [];
  const backlogOf = (s) => s.backlog.http + s.backlog.once;
  const overloaded =
    window.length > 0 && backlogOf(window.at(-1)) > 2 * backlogOf(window[0]) + R
      ? ` — the backlog grew from ${backlogOf(window[0])} to ${backlogOf(window.at(-1))} meanwhile: this machine did not keep up with ${R} occ/s, retry with a lower --rate`
      : '';
  if (!flat.heap.flat) failures.push(`heap grew ${mib(flat.heap.fittedGrowthBytes)} MiB over the second half (allowed ${mib(flat.heap.allowedBytes)} MiB)${overloaded}`);
  if (!flat.redis.flat) failures.push(`Redis memory grew ${mib(flat.redis.fittedGrowthBytes)} MiB over the second half (allowed ${mib(flat.redis.allowedBytes)} MiB)${overloaded}`);
  if (clients.length > 0 && Math.max(...clients) - Math.min(...clients) > 2) failures.push(`Redis connections changed under steady load: ${clients.join(' → ')}`);
  if (sum(lost) > 0) failures.push(`lost: ${JSON.stringify(lost)}`);
  if (sum(duplicates) > 0) failures.push(`duplicates: ${JSON.stringify(duplicates)}`);
  if (sum(violations) > 0) failures.push(`violations: ${JSON.stringify(violations)}`);
  if (errors.count > 0) failures.push(`${errors.count} errors: ${errors.first.slice(0, 3).join(' | ')}`);
  if (!interrupted) {
    if (!drained) failures.push(`did not drain within ${opts.drainTimeoutS} s (backlog ${http.outstanding} http + ${once.outstanding} one-shots, ${rec.c.retireTimeouts} schedules)`);
    if (Object.keys(residualKeys).length > 0) failures.push(`keys left after every schedule finished or was cancelled: ${JSON.stringify(residualKeys)}`);
    const d = residual.depths;
    if (d.due + d.scheduled + d.running > 0 || residual.leasesHeld !== 0 || residual.libSchedules !== 0) failures.push(`left behind: ${JSON.stringify(residual)}`);
  }
  const endSample = samples.find((s) => s.phase === 'end') ?? after;
  const verdict = interrupted ? 'INTERRUPTED' : failures.length === 0 ? 'PASS' : 'FAIL';

  const report = {
    startedAt: startedAt.toISOString(),
    config: { ...opts, shape, maxBacklog, schedkit: build.source, node: process.version, cpus: os.cpus().length, loadavg: os.loadavg() },
    loadSeconds,
    samples,
    throughput: {
      offeredPerS: R,
      completedPerS: (endSample.completedTotal - samples[0].completedTotal) / loadSeconds,
      completed: completed(),
      // Redis commands (those run inside scripts included) and bytes received, per occurrence completed under load.
      redisCommandsPerOccurrence: (endSample.redisCommands - samples[0].redisCommands) / Math.max(1, endSample.completedTotal - samples[0].completedTotal),
      redisInputBytesPerOccurrence: (endSample.redisInputBytes - samples[0].redisInputBytes) / Math.max(1, endSample.completedTotal - samples[0].completedTotal),
    },
    http: http.c,
    once: once.c,
    recurring: rt,
    locks,
    monitoringScrapes: scrapes.ok,
    lost: { ...lost, total: sum(lost) },
    duplicates: { ...duplicates, total: sum(duplicates) },
    atLeastOnceByDesign: {
      redeliveredAfterPlannedLeaseExpiry: http.c.redeliveredPlanned,
      redeliveredAfterUnplannedLeaseExpiry: http.c.redeliveredUnplanned,
      lateAcksRefused: http.c.lateAckRefused,
      note: 'a leased task whose lease expired is delivered again (attempt + 1) while its first holder may still be working: executed twice by design, acknowledged once',
    },
    violations: { ...violations, total: sum(violations) },
    flatness: { rule: FLAT, ...flat, redisClients: clients },
    residual: { keys: residualKeys, afterKeys: after.keys, ...residual },
    errors: { count: errors.count, byKind: errors.byKind, first: errors.first },
    verdict,
    failures,
  };
  const text = summary(report);
  if (opts.json) {
    process.stderr.write(`${text}\n`);
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(`${text}\n`);
  }
  return verdict === 'PASS' ? 0 : verdict === 'INTERRUPTED' ? 130 : 1;
}

function summary(r) {
  const rows = [['phase', 't s', 'heap MiB', 'rss MiB', 'redis MiB', 'keys', 'schedules', 'clients', 'lag p99 ms', 'lag max ms', 'occ/s', 'backlog', 'errors']];
  for (const s of r.samples) {
    const schedules = s.keys === null ? '-' : Object.entries(s.keys).reduce((n, [k, v]) => n + (k.endsWith(':s') ? v : 0), 0);
    rows.push([
      s.phase,
      fixed(s.t, 0),
      mib(s.heapUsed),
      mib(s.rss),
      mib(s.redisUsedMemory),
      s.dbsize,
      schedules,
      s.redisClients,
      fixed(s.lagP99Ms),
      fixed(s.lagMaxMs),
      fixed(s.perS, 0),
      s.backlog.http + s.backlog.once,
      s.errors,
    ]);
  }
  const f = (x) =>
    x.judged
      ? `${x.flat ? 'flat' : 'GROWING'}: fitted ${x.fittedGrowthBytes >= 0 ? '+' : ''}${fixed(x.fittedGrowthBytes / 1024, 0)} KiB over t=${x.window[0]}..${x.window[1]} s (${x.samples} samples, ${x.occurrences} occurrences, ${fixed(x.bytesPerOccurrence ?? 0, 2)} B/occurrence), allowed ${fixed(x.allowedBytes / 1024, 0)} KiB; last - first ${fixed(x.firstToLastBytes / 1024, 0)} KiB`
      : `not judged (${x.reason})`;
  const h = r.http;
  const o = r.once;
  const c = r.recurring;
  return [
    '',
    `soak summary: ${fixed(r.loadSeconds, 0)} s of load at ${r.config.rate} occ/s offered; ${fixed(r.throughput.completedPerS, 0)} occ/s completed (${r.throughput.completed.http} http acks, ${r.throughput.completed.once} one-shots, ${r.throughput.completed.recurring} recurring runs); Redis: ${fixed(r.throughput.redisCommandsPerOccurrence)} commands (script calls included) and ${fixed(r.throughput.redisInputBytesPerOccurrence, 0)} B received per occurrence`,
    ...renderTable(rows).map((l) => `  ${l}`),
    `  http:      ${h.pushed} pushed (${h.pushedDelayed} delayed), ${h.delivered} deliveries, ${h.acked} acked, ${h.nacked} nacked+retried, ${h.abandoned} abandoned, ${h.slowHeld} held past the lease (${h.lateAckRefused} late acks refused, ${h.lateAckAccepted} accepted), ${h.renewed} renewed, ${h.throttled} throttled`,
    `  one-shots: ${o.scheduled} scheduled, ${o.succeeded} succeeded, ${o.retried} retried, ${o.cancelled} cancelled (${o.cancelTooLate} too late), ${o.updated} updated (${o.updateTooLate} too late), ${o.throttled} throttled`,
    `  recurring: ${c.created} schedules (${c.retired} replaced or retired), ${c.ticks} ticks, ${c.skipped} skipped, ${c.triggers} triggers → ${c.triggerRuns} trigger runs, ${c.paramUpdates} params updates`,
    `  locks:     ${r.locks.acquired} acquired, ${r.locks.contended} contended, ${r.locks.extended} extended, ${r.locks.released} released; monitoring scrapes ${r.monitoringScrapes}`,
    `  lost: ${r.lost.total} ${JSON.stringify(r.lost)}`,
    `  duplicates: ${r.duplicates.total} ${JSON.stringify(r.duplicates)}`,
    `  at-least-once by design (not duplicates): ${r.atLeastOnceByDesign.redeliveredAfterPlannedLeaseExpiry} redelivered after a planned lease expiry, ${r.atLeastOnceByDesign.redeliveredAfterUnplannedLeaseExpiry} after an unplanned one, ${r.atLeastOnceByDesign.lateAcksRefused} late acks refused`,
    `  violations: ${r.violations.total}; errors: ${r.errors.count}${r.errors.count > 0 ? ` ${JSON.stringify(r.errors.byKind)}` : ''}`,
    `  heap (after GC): ${f(r.flatness.heap)}`,
    `  redis used_memory: ${f(r.flatness.redis)}`,
    r.verdict === 'INTERRUPTED'
      ? `  interrupted: lost and left-over keys not checked (${JSON.stringify(r.residual.afterKeys)} keys)`
      : `  after drain and cancel: ${JSON.stringify(r.residual.afterKeys)} keys${Object.keys(r.residual.keys).length > 0 ? ` — LEFT: ${JSON.stringify(r.residual.keys)}` : ' (no schedule, history, lease or lock keys left)'}`,
    `verdict: ${r.verdict}${r.failures.length > 0 ? `\n  - ${r.failures.join('\n  - ')}` : ''}`,
  ].join('\n');
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log(`FAILED: ${err?.stack ?? err}`);
    process.exit(2);
  },
);
