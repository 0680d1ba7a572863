/**
 * Real redis-server processes for tests: one per test file (never the system Redis on
 * 6379), on a free loopback port, killed in afterAll and on process exit. Each test uses a
 * random key prefix, so tests of one file never see each other's keys.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

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

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

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

/**
 * Starts `node script` with `env` added; resolves once it prints "ready", rejects (with its
 * stderr) if it exits first. Killed at this test process's exit if still running.
 */
export async function spawnReadyChild(script: string, env: Record<string, string>, label: string): Promise<Child> {
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${label} exited (${code}) before it was ready: ${stderr}`)));
  });
  return {
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
  };
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
