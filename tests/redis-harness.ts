/**
 * Real redis-server processes for tests: one per test file (never the system Redis on
 * 6379), on a free loopback port, killed in afterAll and on process exit. Each test uses a
 * random key prefix, so tests of one file never see each other's keys.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { RedisStore, Scheduler, type RedisStoreOptions } from '../src/index.js';
import { freePort } from '../bench/net.mjs';

export const REDIS_SERVER = process.env['REDIS_SERVER'] ?? '/usr/bin/redis-server';
export const REDIS_CLI = process.env['REDIS_CLI'] ?? '/usr/bin/redis-cli';

export function randomPrefix(): string {
  return `test-${randomUUID()}`;
}

export interface RedisServerOptions {
  /** Persist with an append-only file in `dir` (a temp dir by default). */
  appendonly?: boolean;
  /** Start as a cluster-enabled node. */
  cluster?: boolean;
  dir?: string;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** Stops the server (SIGTERM: it writes its AOF; SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** Stops it and starts it again on the same port and directory. */
  restart(): Promise<void>;
}

const live = new Set<ChildProcess>();
const tmpDirs = new Set<string>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});

export function makeTmpDir(label = 'redis'): string {
  const dir = mkdtempSync(join(tmpdir(), `schedkit-${label}-`));
  tmpDirs.add(dir);
  return dir;
}

export function removeTmpDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tmpDirs.delete(dir);
}

export { freePort };

/** Sends one inline command and resolves its raw reply (a status line or one bulk string). */
export function redisCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timeout'));
    }, timeoutMs);
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      const eol = data.indexOf('\r\n');
      const complete = eol >= 0 && (!data.startsWith('$') || data.length >= eol + 2 + Number(data.slice(1, eol)) + 2);
      if (complete) {
        clearTimeout(timer);
        socket.end();
        resolve(data);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server on port ${port} exited (${child.exitCode ?? child.signalCode})`);
    try {
      if ((await redisCommand(port, 'PING')).startsWith('+PONG')) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function launch(port: number, dir: string, options: RedisServerOptions): ChildProcess {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no'];
  args.push('--appendonly', options.appendonly === true ? 'yes' : 'no');
  if (options.appendonly === true) args.push('--appendfsync', 'always');
  if (options.cluster === true) args.push('--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '5000');
  const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? makeTmpDir();
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    let child = launch(port, dir, options);
    try {
      await waitForPing(port, child);
    } catch (err) {
      lastError = err; // most likely the port was taken meanwhile: try another
      await kill(child);
      continue;
    }
    const server: RedisServer = {
      port,
      url: `redis://127.0.0.1:${port}`,
      dir,
      stop: async () => {
        await kill(child);
        if (ownDir) removeTmpDir(dir);
      },
      restart: async () => {
        await kill(child);
        child = launch(port, dir, options);
        await waitForPing(port, child);
      },
    };
    return server;
  }
  if (ownDir) removeTmpDir(dir);
  throw new Error(`could not start redis-server: ${String(lastError)}`);
}

export interface RedisCluster {
  readonly nodes: { host: string; port: number }[];
  readonly servers: RedisServer[];
  stop(): Promise<void>;
}

/** A 3-master Redis Cluster on loopback ports (`redis-cli --cluster create`). */
export async function startCluster(masters = 3): Promise<RedisCluster> {
  const dir = makeTmpDir('cluster');
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < masters; i++) servers.push(await startRedis({ cluster: true, dir }));
    const create = spawnSync(REDIS_CLI, ['--cluster', 'create', ...servers.map((s) => `127.0.0.1:${s.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    const deadline = Date.now() + 20_000;
    for (const s of servers) {
      for (;;) {
        const info = await redisCommand(s.port, 'CLUSTER INFO').catch(() => '');
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error('the cluster did not become ready');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    removeTmpDir(dir);
    throw err;
  }
  return {
    nodes: servers.map((s) => ({ host: '127.0.0.1', port: s.port })),
    servers,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
      removeTmpDir(dir);
    },
  };
}

/** A redis-server for the whole test file: started in beforeAll, stopped in afterAll. */
export function useRedisServer(options: RedisServerOptions = {}): { readonly url: string; readonly server: RedisServer } {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await startRedis(options);
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get url() {
      if (server === undefined) throw new Error('redis-server is not started yet');
      return server.url;
    },
    get server() {
      if (server === undefined) throw new Error('redis-server is not started yet');
      return server;
    },
  };
}

/** A Redis Cluster (startCluster) for the whole test file or describe block: started in beforeAll, stopped in afterAll. */
export function useRedisCluster(masters = 3, startTimeoutMs = 60_000): { readonly cluster: RedisCluster } {
  let cluster: RedisCluster | undefined;
  beforeAll(async () => {
    cluster = await startCluster(masters);
  }, startTimeoutMs);
  afterAll(async () => {
    await cluster?.stop();
  });
  return {
    get cluster() {
      if (cluster === undefined) throw new Error('the cluster is not started');
      return cluster;
    },
  };
}

// ------------------------------------------------------------------ executor processes

const ROOT = new URL('..', import.meta.url).pathname;

/**
 * A private copy of the built package (dist/) inside node_modules/.cache, so that child
 * processes keep working while something else rebuilds dist/ (`npm test` builds first).
 */
export function snapshotDist(): string {
  const dist = join(ROOT, 'dist');
  if (!existsSync(join(dist, 'index.js')) || !existsSync(join(dist, 'store', 'redis', 'lua', 'claim-1.lua'))) {
    throw new Error('dist/ is not built (with its Lua scripts): run `npm run build` first');
  }
  const dir = join(ROOT, 'node_modules', '.cache', `schedkit-test-${randomUUID()}`);
  mkdirSync(dir, { recursive: true });
  cpSync(dist, join(dir, 'dist'), { recursive: true });
  writeFileSync(join(dir, 'child.mjs'), CHILD_SOURCE);
  tmpDirs.add(dir);
  return dir;
}

export interface ChildTask {
  /** Task options (define's third argument). */
  options?: Record<string, unknown>;
  /** Attempt 1 never settles (the process is meant to be killed). */
  hangFirstAttempt?: boolean;
}

export interface ChildConfig {
  url: string;
  prefix: string;
  /** Lines `task uid(JSON) dueAt attempt kind pid realNow` are appended here, one per run. */
  out: string;
  tasks: Record<string, ChildTask>;
  /** Added to Date.now() in the child (a skewed application clock). */
  skewMs?: number;
  cronLookahead?: number;
  concurrency?: number;
}

export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  /** SIGTERM: the child stops its scheduler gracefully and exits. */
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

const CHILD_SOURCE = `
import { appendFileSync } from 'node:fs';
const cfg = JSON.parse(process.env.SCHEDKIT_CHILD);
const realNow = Date.now;
if (cfg.skewMs) Date.now = () => realNow() + cfg.skewMs;
const { Scheduler, RedisStore } = await import(new URL('./dist/index.js', import.meta.url).href);
const store = new RedisStore({ url: cfg.url, prefix: cfg.prefix, ...(cfg.cronLookahead ? { cronLookahead: cfg.cronLookahead } : {}) });
const s = new Scheduler({ store, concurrency: cfg.concurrency ?? 50 });
s.on('error', (e) => process.stderr.write('schedkit error: ' + e.message + '\\n'));
for (const [task, t] of Object.entries(cfg.tasks)) {
  s.define(task, async (run) => {
    appendFileSync(cfg.out, [run.task, JSON.stringify(run.uid), run.dueAt.getTime(), run.attempt, run.kind, process.pid, realNow()].join(' ') + '\\n');
    if (t.hangFirstAttempt && run.attempt === 1) await new Promise(() => undefined);
  }, t.options ?? {});
}
process.on('SIGTERM', () => {
  s.stop({ timeout: 2000 }).finally(() => process.exit(0));
});
await s.start();
process.stdout.write('ready\\n');
`;

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A started `node` child, with the lines it printed (see startNodeChild). */
interface NodeChild {
  readonly handle: Child;
  /** Resolves once the child has printed `line` (at any time since it started); rejects, with its stderr, if it exits first. */
  waitLine(line: string): Promise<void>;
  /** Forgets the times `line` was printed so far (to wait for a fresh one). */
  dropLine(line: string): void;
}

/**
 * Starts `node script` with `env` added, its stdout and stderr piped (stdin piped too with
 * `stdin: 'pipe'`). Killed at this test process's exit if still running.
 */
function startNodeChild(script: string, env: Record<string, string>, label: string, stdin: 'ignore' | 'pipe'): NodeChild {
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: [stdin, 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  let out = '';
  const waiters: { line: string; resolve: () => void }[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as { line: string; resolve: () => void };
      if (out.includes(`${w.line}\n`)) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  });
  return {
    handle: {
      process: child,
      pid: child.pid as number,
      stop: async () => {
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.kill('SIGTERM');
        await exited(child);
        clearTimeout(timer);
      },
      kill9: async () => {
        child.kill('SIGKILL');
        await exited(child);
      },
    },
    waitLine: (line) =>
      new Promise<void>((resolve, reject) => {
        if (out.includes(`${line}\n`)) return resolve();
        waiters.push({ line, resolve });
        const before = line === 'ready' ? 'it was ready' : `"${line}"`;
        child.once('exit', (code) => reject(new Error(`${label} exited (${code}) before ${before}: ${stderr}`)));
      }),
    dropLine: (line) => {
      out = out.replaceAll(`${line}\n`, '');
    },
  };
}

/**
 * Starts `node script` with `env` added; resolves once it prints "ready", rejects (with its
 * stderr) if it exits first. Killed at this test process's exit if still running.
 */
export async function spawnReadyChild(script: string, env: Record<string, string>, label: string): Promise<Child> {
  const started = startNodeChild(script, env, label, 'ignore');
  await started.waitLine('ready');
  return started.handle;
}

/** `snapshot`/`name`, written with `source` unless it is there already: a child script next to the snapshot's dist/. */
function childScript(snapshot: string, name: string, source: string): string {
  const script = join(snapshot, name);
  if (!existsSync(script)) writeFileSync(script, source);
  return script;
}

/** Starts an executor process running the built package; resolves once it has started. */
export function spawnExecutor(snapshot: string, config: ChildConfig): Promise<Child> {
  return spawnReadyChild(join(snapshot, 'child.mjs'), { SCHEDKIT_CHILD: JSON.stringify(config) }, 'executor');
}

export interface RunLine {
  task: string;
  uid: string;
  dueAt: number;
  attempt: number;
  kind: string;
  pid: number;
  realNow: number;
}

export function readRuns(file: string): RunLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [task, uid, dueAt, attempt, kind, pid, realNow] = line.split(' ');
      return { task: task as string, uid: JSON.parse(uid as string) as string, dueAt: Number(dueAt), attempt: Number(attempt), kind: kind as string, pid: Number(pid), realNow: Number(realNow) };
    });
}

// ------------------------------------------------------------------ a test file's executor processes and schedulers

export interface ChildSandboxOptions {
  /** After each test, before its children and schedulers are stopped (e.g. to lift a fault they would stop under). */
  beforeStop?: () => Promise<void>;
  /** After each test, once its children and schedulers are stopped. */
  afterStop?: () => Promise<void>;
}

export interface ChildSandbox {
  /** The file's snapshotDist() copy (made in beforeAll, removed in afterAll). */
  readonly snapshot: string;
  /** The file's temp dir (`schedkit-<label>-…`, likewise). */
  readonly tmp: string;
  /** Starts `n` children at once (`start(i)`, i = 0..n-1); they are stopped after the test. */
  spawn<C extends Child>(n: number, start: (i: number) => Promise<C>): Promise<C[]>;
  /** Stops the children started so far now (the schedulers stay). */
  stopChildren(): Promise<void>;
  /** Forgets a child the test killed itself. */
  untrack(child: Child): void;
  /** Stops `s` after the test, after the children; returns it. */
  trackScheduler(s: Scheduler): Scheduler;
  /** A started producer in this process on a RedisStore (schedules, reports; runs nothing; its errors are ignored), stopped after the test. */
  producer(store: RedisStoreOptions): Promise<Scheduler>;
}

/**
 * The per-file setup of tests with executor processes: a snapshotDist() copy and a temp dir
 * for the whole file; after each test, the children it started, then its schedulers, are
 * stopped.
 */
export function useChildSandbox(label: string, options: ChildSandboxOptions = {}): ChildSandbox {
  let snapshot = '';
  let tmp = '';
  const running: Child[] = [];
  const schedulers: Scheduler[] = [];
  const stopChildren = async (): Promise<void> => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
  };
  const trackScheduler = (s: Scheduler): Scheduler => {
    schedulers.push(s);
    return s;
  };
  beforeAll(() => {
    snapshot = snapshotDist();
    tmp = makeTmpDir(label);
  });
  afterEach(async () => {
    await options.beforeStop?.();
    await stopChildren();
    await Promise.all(schedulers.splice(0).map((s) => s.stop({ timeout: 2000 })));
    await options.afterStop?.();
  });
  afterAll(() => {
    removeTmpDir(snapshot);
    removeTmpDir(tmp);
  });
  return {
    get snapshot() {
      return snapshot;
    },
    get tmp() {
      return tmp;
    },
    spawn: async (n, start) => {
      const started = await Promise.all(Array.from({ length: n }, (_, i) => start(i)));
      running.push(...started);
      return started;
    },
    stopChildren,
    untrack: (child) => {
      const i = running.indexOf(child);
      if (i >= 0) running.splice(i, 1);
    },
    trackScheduler,
    producer: async (store) => {
      const s = new Scheduler({ store: new RedisStore(store) });
      s.on('error', () => undefined);
      trackScheduler(s);
      await s.start({ execute: false });
      return s;
    },
  };
}

// ------------------------------------------------------------------ fault-injection executors

export interface FaultTask {
  /** Task options (define's third argument). */
  options?: Record<string, unknown>;
  /** The handler waits this long (real time, a timer) before it resolves. */
  sleepMs?: number;
  /** Attempt 1 waits until its `signal` aborts (lease lost, timeout, stop) and rejects with the reason. */
  hangFirstAttempt?: boolean;
  /** Attempt 1 throws (after `sleepMs`). */
  failFirstAttempt?: boolean;
}

export interface FaultChildConfig {
  url: string;
  prefix: string;
  /** One JSON line per event is appended here (see FaultEvent). */
  out: string;
  tasks: Record<string, FaultTask>;
  cronLookahead?: number;
  concurrency?: number;
}

/**
 * What a fault executor logs: `start` (the handler began), the scheduler's `run:*` events as
 * `success`, `failure`, `lost`, `skipped`, `retry`, its `error` events, partition errors the
 * store reported (`partition-error`), unhandled rejections (`unhandled`) and clock changes
 * (`clock`). `realNow` is the real clock, `appNow` the child's (possibly jumped) Date.now().
 */
export interface FaultEvent {
  ev: 'start' | 'success' | 'failure' | 'lost' | 'skipped' | 'retry' | 'error' | 'partition-error' | 'unhandled' | 'clock';
  pid: number;
  realNow: number;
  appNow: number;
  task?: string;
  uid?: string;
  dueAt?: number;
  attempt?: number;
  kind?: string;
  reason?: string;
  requeued?: boolean;
  willRetry?: boolean;
  code?: string;
  message?: string;
  offsetMs?: number;
}

export interface FaultChild extends Child {
  /** Sets the child's wall clock (Date.now() and `new Date()`) to the real clock + offsetMs; resolves once applied. */
  setClockOffset(offsetMs: number): Promise<void>;
}

const FAULT_CHILD_SOURCE = `
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
const cfg = JSON.parse(process.env.SCHEDKIT_FAULT_CHILD);
// An injectable wall clock: Date.now() and new Date() read real time + offset (timers are
// monotonic and unaffected, as with a real clock step).
const RealDate = Date;
const realNow = () => RealDate.now();
let offset = 0;
class ClockDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(realNow() + offset);
    else super(...args);
  }
  static now() {
    return realNow() + offset;
  }
}
globalThis.Date = ClockDate;
const log = (ev, fields = {}) => appendFileSync(cfg.out, JSON.stringify({ ev, pid: process.pid, realNow: realNow(), appNow: Date.now(), ...fields }) + '\\n');
const occ = (e) => ({ task: e.task, uid: e.uid, dueAt: e.dueAt.getTime(), attempt: e.attempt, kind: e.kind });
const errFields = (e) => ({ code: e && e.code, message: String(e && e.message !== undefined ? e.message : e) });
process.on('unhandledRejection', (e) => log('unhandled', errFields(e)));
const { Scheduler, RedisStore } = await import(new URL('./dist/index.js', import.meta.url).href);
const store = new RedisStore({ url: cfg.url, prefix: cfg.prefix, ...(cfg.cronLookahead ? { cronLookahead: cfg.cronLookahead } : {}), onError: (e) => log('partition-error', errFields(e)) });
const s = new Scheduler({ store, concurrency: cfg.concurrency ?? 50 });
s.on('error', (e) => log('error', errFields(e)));
s.on('run:success', (e) => log('success', occ(e)));
s.on('run:failure', (e) => log('failure', { ...occ(e), willRetry: e.willRetry, ...errFields(e.error) }));
s.on('run:lost', (e) => log('lost', { ...occ(e), reason: e.reason, requeued: e.requeued }));
s.on('run:skipped', (e) => log('skipped', { task: e.task, uid: e.uid, dueAt: e.dueAt.getTime(), reason: e.reason }));
s.on('run:retry', (e) => log('retry', occ(e)));
for (const [task, t] of Object.entries(cfg.tasks)) {
  s.define(task, async (run) => {
    log('start', occ(run));
    if (t.hangFirstAttempt && run.attempt === 1) {
      await new Promise((_, reject) => {
        const signal = run.signal;
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    if (t.sleepMs) await new Promise((r) => setTimeout(r, t.sleepMs));
    if (t.failFirstAttempt && run.attempt === 1) throw new Error('attempt 1 fails');
  }, t.options ?? {});
}
createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.split(' ');
  if (cmd === 'clock') {
    offset = Number(arg);
    log('clock', { offsetMs: offset });
    process.stdout.write('clock-ok ' + arg + '\\n');
  }
});
process.on('SIGTERM', () => {
  s.stop({ timeout: 2000 }).finally(() => process.exit(0));
});
await s.start();
process.stdout.write('ready\\n');
`;

/**
 * Starts an executor process (the built package, from a snapshotDist() copy) that logs every
 * run and event as JSON lines to `config.out` and whose wall clock can be moved
 * (setClockOffset); resolves once it has started.
 */
export async function spawnFaultExecutor(snapshot: string, config: FaultChildConfig): Promise<FaultChild> {
  const script = childScript(snapshot, 'fault-child.mjs', FAULT_CHILD_SOURCE);
  const started = startNodeChild(script, { SCHEDKIT_FAULT_CHILD: JSON.stringify(config) }, 'fault executor', 'pipe');
  await started.waitLine('ready');
  return {
    ...started.handle,
    setClockOffset: async (offsetMs: number) => {
      started.dropLine(`clock-ok ${offsetMs}`);
      started.handle.process.stdin?.write(`clock ${offsetMs}\n`);
      await started.waitLine(`clock-ok ${offsetMs}`);
    },
  };
}

/** The events logged so far (a line still being written, without its newline, is left for the next read). */
export function readFaultEvents(file: string): FaultEvent[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.pop(); // '' after the last newline, or a line not complete yet
  return lines.filter((line) => line !== '').map((line) => JSON.parse(line) as FaultEvent);
}

// ------------------------------------------------------------------ crashes and run traces (fault-kill, fault-redis-restart, fault-cluster)

/** The pid of the redis-server answering on `port` (INFO server). */
export async function redisPid(port: number): Promise<number> {
  const info = await redisCommand(port, 'INFO server', 5000);
  const m = /process_id:(\d+)/.exec(info);
  if (m === null) throw new Error(`no process_id in INFO server of port ${port}`);
  return Number(m[1]);
}

async function waitForDown(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await redisCommand(port, 'PING', 200);
    } catch {
      return; // refused (or no answer): it is gone
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} still answers`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * kill -9 of the redis-server on `port` — a crash, unlike `RedisServer.stop/restart` (SIGTERM,
 * which rewrites nothing but lets Redis flush and fsync its AOF). Only for servers this test
 * process started. Resolves the killed pid once the port no longer answers.
 */
export async function crashRedis(port: number): Promise<number> {
  const pid = await redisPid(port);
  process.kill(pid, 'SIGKILL');
  await waitForDown(port);
  return pid;
}

export interface CrashableRedisOptions {
  /** AOF fsync policy (appendonly is always on). */
  appendfsync: 'always' | 'everysec' | 'no';
  /** Data directory (a temp dir by default, removed by stop()). */
  dir?: string;
}

export interface CrashableRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** kill -9 of the server (a crash); resolves once the port is closed. */
  crash(): Promise<void>;
  /** Starts it again on the same port and directory (it loads its AOF); resolves once it answers PING. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function launchAof(port: number, dir: string, appendfsync: string): ChildProcess {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no', '--appendonly', 'yes', '--appendfsync', appendfsync];
  const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

/** A redis-server with an AOF and the given fsync policy that a test can crash (kill -9) and start again. */
export async function startCrashableRedis(options: CrashableRedisOptions): Promise<CrashableRedis> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? makeTmpDir('aof');
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    let child = launchAof(port, dir, options.appendfsync);
    try {
      await waitForPing(port, child);
    } catch (err) {
      lastError = err;
      await kill(child);
      continue;
    }
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      dir,
      crash: async () => {
        const done = exited(child);
        child.kill('SIGKILL');
        await done;
        await waitForDown(port);
      },
      start: async () => {
        child = launchAof(port, dir, options.appendfsync);
        await waitForPing(port, child);
      },
      stop: async () => {
        await kill(child);
        if (ownDir) removeTmpDir(dir);
      },
    };
  }
  if (ownDir) removeTmpDir(dir);
  throw new Error(`could not start redis-server: ${String(lastError)}`);
}

export interface TraceTask {
  /** Task options (define's third argument). */
  options?: Record<string, unknown>;
  /** The handler sleeps a random time in [min, max] ms between its S and D lines. */
  sleepMs?: [number, number];
}

export interface TraceChildConfig {
  /** One server, or `cluster` seed nodes. */
  url?: string;
  cluster?: { host: string; port: number }[];
  prefix: string;
  /** JSON lines (TraceLine) are appended here. */
  out: string;
  tasks: Record<string, TraceTask>;
  concurrency?: number;
  cronLookahead?: number;
}

/**
 * One JSON line per event of an executor child: `S` handler entered, `D` handler done (its
 * last statement), `E` run:success (the store acknowledged the completion), `L` run:lost
 * (`reason` 'lease expired' when this process reaped another's expired lease, with
 * `requeued`; 'lease lost before completion' when its own completion was fenced out), `F`
 * run:failure, `X` an error event (no run fields).
 */
export interface TraceLine {
  ev: 'S' | 'D' | 'E' | 'L' | 'F' | 'X';
  pid: number;
  /** The child's Date.now() when it logged the line. */
  at: number;
  task: string;
  uid: string;
  dueAt: number;
  attempt: number;
  kind: string;
  requeued?: boolean;
  reason?: string;
  error?: string;
}

const TRACE_CHILD_SOURCE = `
import { appendFileSync } from 'node:fs';
const cfg = JSON.parse(process.env.SCHEDKIT_TRACE_CHILD);
const { Scheduler, RedisStore } = await import(new URL('./dist/index.js', import.meta.url).href);
const pid = process.pid;
function log(ev, run, extra) {
  const rec = { ev, pid, at: Date.now() };
  if (run) Object.assign(rec, { task: run.task, uid: run.uid, dueAt: run.dueAt.getTime(), attempt: run.attempt, kind: run.kind });
  appendFileSync(cfg.out, JSON.stringify(Object.assign(rec, extra ?? {})) + '\\n');
}
const target = cfg.cluster ? { cluster: cfg.cluster } : { url: cfg.url };
const store = new RedisStore({ ...target, prefix: cfg.prefix, ...(cfg.cronLookahead ? { cronLookahead: cfg.cronLookahead } : {}), onError: (e) => log('X', null, { error: e.message }) });
const s = new Scheduler({ store, concurrency: cfg.concurrency ?? 100 });
s.on('error', (e) => log('X', null, { error: e.message }));
s.on('run:success', (e) => log('E', e));
s.on('run:lost', (e) => log('L', e, { requeued: e.requeued, reason: e.reason }));
s.on('run:failure', (e) => log('F', e, { error: e.error.message }));
for (const [task, t] of Object.entries(cfg.tasks)) {
  const [min, max] = t.sleepMs ?? [0, 0];
  s.define(task, async (run) => {
    log('S', run);
    const ms = min + Math.random() * (max - min);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    log('D', run);
    return null;
  }, t.options ?? {});
}
process.on('SIGTERM', () => {
  s.stop({ timeout: 5000 }).finally(() => process.exit(0));
});
await s.start();
process.stdout.write('ready\\n');
`;

/** Starts an executor child that logs TraceLines (see TraceLine); resolves once it has started. */
export function spawnTraceExecutor(snapshot: string, config: TraceChildConfig): Promise<Child> {
  return spawnReadyChild(childScript(snapshot, 'trace-child.mjs', TRACE_CHILD_SOURCE), { SCHEDKIT_TRACE_CHILD: JSON.stringify(config) }, 'trace executor');
}

export function readTraceLog(file: string): TraceLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as TraceLine);
}

// ------------------------------------------------------------------ secured servers (password, ACL users, TLS)

export interface TlsFiles {
  readonly dir: string;
  /** PEM paths: the throwaway CA, and the server certificate (for 127.0.0.1 and localhost) with its key. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** True when the `openssl` command is there (to make throwaway certificates). */
export function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
}

/** A throwaway CA and a server certificate it signed, for 127.0.0.1 / localhost, in a temp dir (made with `openssl`). */
export function makeTlsFiles(): TlsFiles {
  if (!hasOpenssl()) throw new Error('the `openssl` command is needed to make test certificates (Debian package openssl)');
  const dir = makeTmpDir('tls');
  const file = (name: string): string => join(dir, name);
  writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const steps: string[][] = [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '2', '-subj', '/CN=schedkit-test-ca'],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1'],
    ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('server.crt'), '-days', '2', '-extfile', file('ext.cnf')],
  ];
  for (const args of steps) {
    const r = spawnSync('openssl', args, { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`openssl ${args[0] ?? ''} failed: ${r.stderr}`);
  }
  return { dir, ca: file('ca.crt'), cert: file('server.crt'), key: file('server.key') };
}

export interface SecureRedisOptions {
  /** `requirepass`: the password of Redis's `default` user. */
  password?: string;
  /** Also listen with TLS (on `tlsPort`), with these files; clients need not present certificates. */
  tls?: TlsFiles;
}

export interface SecureRedisServer {
  /** The plain TCP port. */
  readonly port: number;
  /** The TLS port (with `tls`). */
  readonly tlsPort: number | undefined;
  stop(): Promise<void>;
}

/**
 * A redis-server with a password and/or a TLS port, on free loopback ports; it counts as up
 * once the plain port answers PING with PONG or NOAUTH. Killed at this process's exit.
 */
export async function startSecureRedis(options: SecureRedisOptions = {}): Promise<SecureRedisServer> {
  const dir = makeTmpDir('secure');
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const tlsPort = options.tls === undefined ? undefined : await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no'];
    if (options.password !== undefined) args.push('--requirepass', options.password);
    if (options.tls !== undefined && tlsPort !== undefined) {
      args.push('--tls-port', String(tlsPort), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key, '--tls-ca-cert-file', options.tls.ca, '--tls-auth-clients', 'no');
    }
    const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    live.add(child);
    child.on('exit', () => live.delete(child));
    const deadline = Date.now() + 10_000;
    let up = false;
    while (!up && Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      const reply = await redisCommand(port, 'PING').catch(() => '');
      up = reply.startsWith('+PONG') || reply.startsWith('-NOAUTH');
      if (!up) await new Promise((r) => setTimeout(r, 25));
    }
    if (up) {
      return {
        port,
        tlsPort,
        stop: async () => {
          await kill(child);
          removeTmpDir(dir);
        },
      };
    }
    lastError = new Error(`redis-server on port ${port} did not come up (exit ${String(child.exitCode ?? child.signalCode)})`);
    await kill(child); // most likely a port was taken meanwhile: try others
  }
  removeTmpDir(dir);
  throw new Error(`could not start redis-server: ${String(lastError)}`);
}
