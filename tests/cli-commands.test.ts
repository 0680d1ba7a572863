/**
 * Every `schedkit` client command end to end, as child processes of the built CLI: against a
 * running `schedkit serve` (embedded store), against `serve --store redis://…` with a
 * test-started redis-server, and directly on a store with `--store` (no service).
 *
 * Runs a private copy of dist/ (so a concurrent `npm run build` cannot pull it away);
 * `npm test` builds first, run `npm run build` before running this file alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { chunkDump, countSchedules, progressBar } from '../src/cli/client.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../src/http/server.js';
import type { RegistryDump } from '../src/store/Store.js';
import { cleanEnv, cliSandbox } from './cli-sandbox.js';
import { randomPrefix, useRedisCluster, useRedisServer } from './redis-harness.js';

const sandbox = cliSandbox('cli-commands');
const { bin } = sandbox;
let dir: string;
beforeAll(() => {
  dir = sandbox.dir;
});

interface Served {
  readonly child: ChildProcess;
  readonly url: string;
  readonly line: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `schedkit serve` and resolves once it printed its listening line. */
function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, [bin, 'serve', '--port', '0', ...args], { cwd: dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  sandbox.track(child);
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise<Served>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 20 s; stdout: ${stdout} stderr: ${stderr}`)), 20_000);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const match = /schedkit listening on (http:\/\/\S+)(.*)/.exec(stdout);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ child, url: match[1] as string, line: match[0], exited });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${String(code)} before listening; stderr: ${stderr}`));
    });
  });
}

async function stop(served: Served): Promise<void> {
  served.child.kill('SIGTERM');
  expect((await served.exited).code).toBe(0);
}

interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one CLI command to completion (20 s at most). */
function run(args: string[], env: Record<string, string> = {}, input?: string): Promise<Ran> {
  const child = spawn(process.execPath, [bin, ...args], { cwd: dir, env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  sandbox.track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.end(input);
  return new Promise<Ran>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed with `--json`; resolves its parsed output. */
async function ok(args: string[], env: Record<string, string> = {}, input?: string): Promise<unknown> {
  const r = await run([...args, '--json'], env, input);
  expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as unknown;
}

/** Runs a command that must fail with exit 1; resolves the service's `{ error, code }` (the last stderr line). */
async function fails(args: string[], env: Record<string, string> = {}): Promise<{ error: string; code: string; field?: string }> {
  const r = await run(args, env);
  expect(r.status, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(1);
  expect(r.stdout).toBe('');
  const last = r.stderr.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as { error: string; code: string; field?: string };
}

interface Report {
  task: string;
  uid: string;
  schedule: { kind: string; every?: number; cron?: string; tz?: string };
  enabled: boolean;
  params?: unknown;
  pending: number;
  nextRunAt: string | null;
}

interface Popped {
  task: { id: string } & Record<string, unknown>;
  uid: string;
  attempt: number;
  leaseExpiresAt?: string;
}

/** A registry dump of `n` one-shots of task `bulk`, due in a day. */
function bigDump(n: number): RegistryDump {
  const iat = Date.now() + 86_400_000;
  const uids: RegistryDump[string] = {};
  for (let i = 0; i < n; i++) uids[`u${String(i).padStart(6, '0')}`] = { iat, timeout: 86_400_000, params: { i, pad: 'x'.repeat(40) } };
  return { bulk: uids };
}

describe('schedkit commands against a running service (embedded store)', { timeout: 120_000 }, () => {
  it('schedule, list, get, enable, disable, trigger and cancel', async () => {
    const served = await serve(['--data', join(dir, 'manage.json')]);
    const url = ['--url', served.url];

    const every = (await ok(['schedule', 'mail', 'digest', '--every', '1h', '--params', '{"to":"ops"}', ...url])) as Report;
    expect(every).toMatchObject({ task: 'mail', uid: 'digest', schedule: { kind: 'every', every: 3_600_000 }, params: { to: 'ops' }, enabled: true });
    const cron = (await ok(['schedule', 'report', 'daily', '--cron', '0 9 * * *', '--tz', 'Europe/Paris', '--disabled', ...url])) as Report;
    expect(cron).toMatchObject({ schedule: { kind: 'cron', cron: '0 9 * * *', tz: 'Europe/Paris' }, enabled: false });
    const at = new Date(Date.now() + 3_600_000).toISOString();
    expect(((await ok(['schedule', 'once', 'at', '--at', at, ...url])) as Report).nextRunAt).toBe(at);
    expect(((await ok(['schedule', 'once', 'in', '--in', '10m', ...url])) as Report).schedule.kind).toBe('once');

    const text = await run(['schedule', 'mail', 'weekly', '--every', '7d', ...url]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^scheduled mail weekly: every 604800000ms, next run /);

    const list = (await ok(['list', ...url])) as Report[];
    expect(list.map((r) => `${r.task}/${r.uid}`)).toEqual(['mail/digest', 'mail/weekly', 'once/at', 'once/in', 'report/daily']);
    expect(((await ok(['list', '--task', 'mail', ...url])) as Report[]).length).toBe(2);
    const table = await run(['list', ...url]);
    expect(table.stdout).toMatch(/^TASK\s+UID\s+SCHEDULE/);
    expect(table.stdout).toMatch(/report\s+daily\s+cron 0 9 \* \* \* Europe\/Paris\s+no/);

    expect(await ok(['get', 'mail', 'digest', ...url])).toMatchObject({ task: 'mail', uid: 'digest', params: { to: 'ops' } });
    const got = await run(['get', 'mail', 'digest', ...url]);
    expect(got.stdout).toMatch(/^task:\s+mail$/m);
    expect(got.stdout).toMatch(/^schedule:\s+every 3600000ms$/m);

    expect(((await ok(['disable', 'mail', 'digest', ...url])) as Report).enabled).toBe(false);
    expect(((await ok(['get', 'mail', 'digest', ...url])) as Report).enabled).toBe(false);
    expect(((await ok(['enable', 'mail', 'digest', ...url])) as Report).enabled).toBe(true);
    expect((await run(['disable', 'report', 'daily', ...url])).stdout).toBe('disabled report daily\n');

    expect(((await ok(['trigger', 'mail', 'digest', ...url])) as Report).pending).toBe(1);
    expect(await ok(['cancel', 'once', 'in', ...url])).toEqual({ deleted: true, task: 'once', uid: 'in' });
    expect(await fails(['get', 'once', 'in', ...url])).toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
    expect(await fails(['cancel', 'once', 'in', ...url])).toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
    expect(await fails(['enable', 'nope', 'nope', ...url])).toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
    expect(await fails(['schedule', 'bad', 'cron', '--cron', 'not a cron', ...url])).toMatchObject({ code: 'ERR_INVALID_CRON', field: 'schedule.cron' });
    expect(await fails(['schedule', 'bad', 'in', '--in', 'soon', ...url])).toMatchObject({ code: 'ERR_VALIDATION' });
    await stop(served);
  });

  it('push (params or stdin), pop, leased pop with ack and nack', async () => {
    const served = await serve(['--data', join(dir, 'worker.json')]);
    const env = { SCHEDKIT_URL: served.url }; // config from the environment

    const pushed = (await ok(['push', 'zone', '--params', '{"domain":"kek"}'], env)) as { success: boolean; id: string };
    expect(pushed.success).toBe(true);
    const popped = (await ok(['pop', 'zone'], env)) as Popped;
    expect(popped.task).toEqual({ domain: 'kek', id: pushed.id });
    expect(await ok(['pop', 'zone'], env)).toBeNull();
    expect((await run(['pop', 'zone'], env)).stdout).toBe('no task available\n');

    // Params as JSON on stdin; the plain output is the id.
    const fromStdin = await run(['push', 'zone'], env, '{"domain":"from-stdin"}\n');
    expect(fromStdin.status).toBe(0);
    const id = fromStdin.stdout.trim();
    const leased = (await ok(['pop', 'zone', '--lease', '30s', '--wait', '5'], env)) as Popped;
    expect(leased).toMatchObject({ uid: id, attempt: 1, task: { domain: 'from-stdin' } });
    expect(leased.leaseExpiresAt).toEqual(expect.any(String));
    expect(await ok(['ack', 'zone', leased.task.id, '--result', '{"ok":true}'], env)).toMatchObject({ success: true, uid: id });
    expect(await fails(['ack', 'zone', leased.task.id], env)).toMatchObject({ code: 'ERR_LEASE_LOST' });

    await ok(['push', 'zone', '--params', '{"n":2}'], env);
    const second = (await ok(['pop', 'zone', '--lease', '30s'], env)) as Popped;
    expect(await ok(['nack', 'zone', second.task.id, '--error', 'boom', '--retry', 'false'], env)).toMatchObject({ success: true, retrying: false, retryAt: null });
    await ok(['push', 'zone', '--params', '{"n":3}'], env);
    const third = (await ok(['pop', 'zone', '--lease', '30s'], env)) as Popped;
    const nacked = (await ok(['nack', 'zone', third.task.id, '--delay', '100ms'], env)) as { retrying: boolean };
    expect(nacked.retrying).toBe(true);
    const again = (await ok(['pop', 'zone', '--lease', '30s', '--wait', '10'], env)) as Popped;
    expect(again).toMatchObject({ attempt: 2, task: { n: 3 } });
    expect((await run(['ack', 'zone', again.task.id], env)).stdout).toBe(`acked zone ${again.task.id}\n`);
    await stop(served);
  });

  it('snapshot to stdout or a file, and load (a large registry, sent in chunks)', async () => {
    const served = await serve(['--data', join(dir, 'snap.json')]);
    const url = ['--url', served.url];
    await ok(['schedule', 'mail', 'digest', '--every', '1h', '--params', '{"to":"ops"}', ...url]);
    const snap = (await ok(['snapshot', ...url])) as Record<string, Record<string, { every?: number; params?: unknown }>>;
    expect(snap['mail']?.['digest']).toMatchObject({ every: 3_600_000, params: { to: 'ops' } });
    const file = join(dir, 'out.json');
    expect(await ok(['snapshot', '--out', file, ...url])).toEqual({ file, schedules: 1 });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(snap);

    const big = join(dir, 'big.json');
    const n = 6000;
    writeFileSync(big, JSON.stringify(bigDump(n)));
    expect(chunkDump(bigDump(n)).length).toBeGreaterThan(1); // really sent in several requests
    expect(await ok(['load', big, ...url])).toEqual({ loaded: n });
    expect(((await ok(['list', '--task', 'bulk', ...url])) as Report[]).length).toBe(n);
    // Not a TTY: no progress bar on stderr.
    const plain = await run(['load', file, ...url]);
    expect(plain).toMatchObject({ status: 0, stdout: 'loaded 1 schedules\n', stderr: '' });
    const fromStdin = await run(['load', '-', ...url], {}, JSON.stringify(snap));
    expect(fromStdin.stdout).toBe('loaded 1 schedules\n');
    await stop(served);
  });

  it('usage errors exit 2; service errors print { error, code } and exit 1', async () => {
    const served = await serve(['--data', join(dir, 'errors.json')], { SCHEDKIT_TOKEN: 'cli-commands-token-0123' });
    const url = ['--url', served.url];
    for (const args of [
      ['schedule', 'a', 'b', ...url],
      ['schedule', 'a', 'b', '--in', '1s', '--every', '1s', ...url],
      ['schedule', 'a', 'b', '--every', '1s', '--tz', 'UTC', ...url],
      ['schedule', 'a', 'b', '--every', '1s', '--params', '{nope', ...url],
      ['get', 'a', ...url],
      ['list', 'extra', ...url],
      ['pop', ...url],
      ['ack', 'a', 'b', '--result', 'not json', ...url],
      ['nack', 'a', 'b', '--retry', 'maybe', ...url],
      ['load', join(dir, 'missing.json'), ...url],
      ['list', '--bogus', ...url],
      ['list', '--store', 'mongodb://x'],
    ]) {
      const r = await run(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^schedkit: /);
      expect(r.stdout).toBe('');
    }
    // Token: missing → 401 from the service, given by flag or env → fine.
    expect(await fails(['list', ...url])).toEqual({ error: expect.any(String) as unknown, code: 'ERR_UNAUTHORIZED' });
    expect(await fails(['list', '--token', 'wrong-token', ...url])).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect(await ok(['list', '--token', 'cli-commands-token-0123', ...url])).toEqual([]);
    expect(await ok(['list', ...url], { SCHEDKIT_TOKEN: 'cli-commands-token-0123' })).toEqual([]);
    await stop(served);

    // Nobody listening: exit 1 with a hint.
    const gone = await run(['list', ...url]);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/cannot reach .*schedkit serve/);
  });
});

describe('schedkit --store memory (direct, no service)', { timeout: 120_000 }, () => {
  it('acts on the registry file', async () => {
    const data = join(dir, 'direct.json');
    const store = ['--store', 'memory', '--data', data];
    expect(await ok(['schedule', 'mail', 'digest', '--every', '1h', ...store])).toMatchObject({ task: 'mail', uid: 'digest' });
    expect(existsSync(data)).toBe(true);
    expect(((await ok(['list', ...store])) as Report[]).map((r) => r.uid)).toEqual(['digest']);
    expect(await ok(['disable', 'mail', 'digest', ...store])).toMatchObject({ enabled: false });
    expect(await fails(['get', 'mail', 'nope', ...store])).toMatchObject({ code: 'ERR_SCHEDULE_NOT_FOUND' });
    // A service on the same file sees it.
    const served = await serve(['--data', data]);
    expect(served.line).toContain(`data: ${data}`);
    expect(await ok(['get', 'mail', 'digest', '--url', served.url])).toMatchObject({ enabled: false });
    await stop(served);
  });
});

describe('schedkit on RedisStore', { timeout: 120_000 }, () => {
  const redis = useRedisServer();

  it('serve --store redis://… --prefix: commands over HTTP, and directly on the store', async () => {
    const prefix = randomPrefix();
    const served = await serve(['--store', redis.url, '--prefix', prefix]);
    expect(served.line).toContain(`redis: ${redis.url}, prefix: ${prefix}`);
    const url = ['--url', served.url];
    const direct = ['--store', redis.url, '--prefix', prefix];

    // Made over HTTP, seen directly; made directly, seen over HTTP.
    await ok(['schedule', 'mail', 'digest', '--every', '1h', '--params', '{"to":"ops"}', ...url]);
    await ok(['schedule', 'report', 'daily', '--cron', '0 9 * * *', ...direct]);
    const seen = (await ok(['list', ...direct])) as Report[];
    expect(seen.map((r) => `${r.task}/${r.uid}`)).toEqual(['mail/digest', 'report/daily']);
    expect(((await ok(['list', ...url])) as Report[]).length).toBe(2);
    // Config from the environment too.
    expect(((await ok(['list'], { SCHEDKIT_STORE: redis.url, SCHEDKIT_PREFIX: prefix })) as Report[]).length).toBe(2);
    expect(await ok(['list'], { SCHEDKIT_STORE: redis.url, SCHEDKIT_PREFIX: randomPrefix() })).toEqual([]);
    // An explicit --url beats SCHEDKIT_STORE; --url with --store is a usage error.
    expect(((await ok(['list', ...url], { SCHEDKIT_STORE: 'redis://127.0.0.1:1' })) as Report[]).length).toBe(2);
    expect((await run(['list', ...url, ...direct])).status).toBe(2);

    // Trigger directly, pop it from the service, ack over HTTP.
    expect(((await ok(['trigger', 'mail', 'digest', ...direct])) as Report).pending).toBe(1);
    const popped = (await ok(['pop', 'mail', '--lease', '30s', '--wait', '10', ...url])) as Popped;
    expect(popped).toMatchObject({ uid: 'digest', task: { to: 'ops' } });
    await ok(['ack', 'mail', popped.task.id, ...url]);

    // A leased pop made directly can be acknowledged by another direct command.
    await ok(['push', 'jobs', '--params', '{"n":1}', ...direct]);
    const leased = (await ok(['pop', 'jobs', '--lease', '30s', ...direct])) as Popped;
    expect(leased.task).toMatchObject({ n: 1 });
    expect(await ok(['ack', 'jobs', leased.task.id, ...direct])).toMatchObject({ success: true });
    expect(await fails(['ack', 'jobs', leased.task.id, ...direct])).toMatchObject({ code: 'ERR_LEASE_LOST' });
    expect(await ok(['pop', 'jobs', ...direct])).toBeNull();

    // Snapshot and load directly.
    const file = join(dir, 'redis-snap.json');
    expect(await ok(['snapshot', '--out', file, ...direct])).toEqual({ file, schedules: 2 });
    await ok(['cancel', 'mail', 'digest', ...direct]);
    await ok(['cancel', 'report', 'daily', ...url]);
    expect(await ok(['list', ...url])).toEqual([]);
    expect(await ok(['load', file, ...direct])).toEqual({ loaded: 2 });
    expect(((await ok(['list', ...url])) as Report[]).map((r) => `${r.task}/${r.uid}`)).toEqual(['mail/digest', 'report/daily']);
    const big = join(dir, 'redis-big.json');
    writeFileSync(big, JSON.stringify(bigDump(3000)));
    expect(await ok(['load', big, ...direct])).toEqual({ loaded: 3000 });
    expect(((await ok(['list', '--task', 'bulk', ...url])) as Report[]).length).toBe(3000);
    await stop(served);
  });

  it('a store that cannot be reached is a failure (exit 1), a bad --store a usage error (exit 2)', async () => {
    const r = await run(['list', '--store', 'redis://127.0.0.1:1', '--prefix', randomPrefix()]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^schedkit: /);
    const s = await run(['serve', '--port', '0', '--store', 'redis://127.0.0.1:1', '--prefix', randomPrefix()]);
    expect(s.status).toBe(1);
    expect((await run(['list', '--store', redis.url, '--cluster', '127.0.0.1:7000'])).status).toBe(2);
    expect((await run(['list', '--store', 'memory', '--prefix', 'x'])).status).toBe(2);
  });
});

describe('schedkit on a Redis Cluster (--cluster)', { timeout: 120_000 }, () => {
  const redisCluster = useRedisCluster(3, 90_000);

  it('serve --cluster and direct --cluster commands share the namespace', async () => {
    const nodes = redisCluster.cluster.nodes.map((n) => `${n.host}:${String(n.port)}`).join(',');
    const prefix = randomPrefix();
    const served = await serve(['--cluster', nodes, '--prefix', prefix]);
    expect(served.line).toContain(`cluster: ${nodes}, prefix: ${prefix}`);
    const direct = ['--cluster', nodes, '--prefix', prefix];
    await ok(['schedule', 'mail', 'digest', '--every', '1h', ...direct]);
    await ok(['schedule', 'report', 'daily', '--cron', '0 9 * * *', '--url', served.url]);
    expect(((await ok(['list', ...direct])) as Report[]).map((r) => `${r.task}/${r.uid}`)).toEqual(['mail/digest', 'report/daily']);
    await ok(['trigger', 'mail', 'digest', ...direct]);
    expect(await ok(['pop', 'mail', '--wait', '10', '--url', served.url])).toMatchObject({ uid: 'digest' });
    const snap = (await ok(['snapshot', ...direct])) as RegistryDump;
    expect(countSchedules(snap)).toBe(2);
    await stop(served);
  });
});

describe('schedkit --help', () => {
  it("names the service's default URL (the CLI keeps its own copy of the defaults)", async () => {
    const r = await run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`default http://${DEFAULT_HOST}:${String(DEFAULT_PORT)}`);
    expect((await run(['pop', '--help'])).stdout).toMatch(/pop <task> \[--wait S\] \[--lease D\]/);
  });
});

describe('load chunking and the progress bar', () => {
  it('splits a dump by entries and bytes, keeping every schedule once', () => {
    const dump = bigDump(4500);
    const chunks = chunkDump(dump, 2000, 10_000_000);
    expect(chunks.map(countSchedules)).toEqual([2000, 2000, 500]);
    const bySize = chunkDump(dump, 100_000, 50_000);
    expect(bySize.length).toBeGreaterThan(5);
    for (const c of bySize) expect(JSON.stringify(c).length).toBeLessThan(60_000);
    expect(bySize.reduce((n, c) => n + countSchedules(c), 0)).toBe(4500);
    expect(chunkDump({})).toEqual([{}]);
    expect(progressBar(5, 10, 10)).toBe('\r[#####-----]  50% 5/10');
  });
});
