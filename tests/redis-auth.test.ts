/**
 * RedisStore against a secured Redis: a password (`requirepass`), an ACL user restricted to
 * its namespace's keys and channel, and TLS with a private CA — by URL (`redis://user:pass@…`,
 * `rediss://…`) and by `redisOptions`, in process and through `schedkit serve --store`.
 * A wrong password, user or certificate makes `start()` reject with a StoreError that names
 * the reason, promptly, and leaves nothing reconnecting behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Scheduler} from '../src/index.js';
import { MemoryStore, RedisStore, StoreError, type RedisStoreOptions } from '../src/index.js';
import { openStore } from '../src/cli/store.js';
import { cleanEnv, cliSandbox } from './cli-sandbox.js';
import { schedulerTracker, sleep, waitFor } from './helpers.js';
import { makeTlsFiles, randomPrefix, removeTmpDir, startSecureRedis, type SecureRedisServer, type TlsFiles } from './redis-harness.js';

const PASSWORD = 'pw-auth-test-0123';
const ACL_PASSWORD = 'acl^pass{word}|9'; // characters that URLs percent-encode
const track = schedulerTracker();
const sandbox = cliSandbox('redis-auth');

/**
 * The commands a RedisStore needs, as README.md's ACL example lists them: the scripts (EVAL,
 * EVALSHA) and what they call, TIME, SCAN + UNLINK (clear), SET (locks), SUBSCRIBE
 * (wake-ups), INFO (ioredis's ready check), PING, SELECT (a database number in the URL).
 */
const ACL_COMMANDS = [
  'eval', 'evalsha', 'time', 'scan', 'unlink', 'set', 'subscribe', 'info', 'ping', 'select',
  'del', 'exists', 'get', 'hdel', 'hget', 'hgetall', 'hincrby', 'hlen', 'hmget', 'hset', 'hsetnx', 'lrange', 'ltrim',
  'pexpire', 'publish', 'rpush', 'sadd', 'smembers', 'zadd', 'zcount', 'zrange', 'zrem', 'zremrangebyrank', 'zscore',
];

function admin(server: SecureRedisServer): Redis {
  return new Redis({ host: '127.0.0.1', port: server.port, password: PASSWORD, lazyConnect: true, maxRetriesPerRequest: 1 });
}

/** A scheduler on `options` that runs task `job` and records its runs. */
function executing(options: RedisStoreOptions): { s: Scheduler; runs: string[] } {
  const runs: string[] = [];
  const s = track({ store: new RedisStore({ partitions: 4, ...options }) });
  s.define('job', (run) => {
    runs.push(`${run.uid}/${run.kind}`);
  });
  return { s, runs };
}

/** Everything a store does in normal use: schedules of each kind fire (woken by pub/sub), locks, snapshot/load, trigger, clear. */
async function exercise(options: RedisStoreOptions): Promise<void> {
  const { s, runs } = executing(options);
  await s.start();
  await s.schedule('job', { uid: 'once', in: '30ms', params: { a: 1 } });
  await s.schedule('job', { uid: 'every', every: '100ms' });
  await s.schedule('job', { uid: 'cron', cron: '* * * * * *' });
  await waitFor(() => runs.includes('once/scheduled') && runs.includes('every/scheduled') && runs.includes('cron/scheduled'), 'every kind of schedule fired');
  await s.trigger('job', 'cron');
  await waitFor(() => runs.includes('cron/trigger'), 'the trigger ran');
  const lock = await s.lock('invoice:7', { ttl: '5s' });
  expect(lock).not.toBeNull();
  expect(await s.lock('invoice:7')).toBeNull();
  expect(await lock?.extend()).toBe(true);
  await lock?.release();
  const dump = await s.snapshot();
  expect(Object.keys(dump['job'] ?? {}).sort()).toEqual(['cron', 'every']);
  expect((await s.list()).map((r) => r.uid)).toEqual(['cron', 'every']);
  expect(await s.clear()).toBe(2);
  expect(await s.load(dump)).toBe(2);
  expect(await s.get('job', 'every')).toMatchObject({ schedule: { kind: 'every', every: 100 } });
  await s.clear();
  await s.stop();
}

/** `start()` rejects with a StoreError whose message matches `reason`; nothing keeps reconnecting afterwards. */
async function expectRefused(options: RedisStoreOptions, reason: RegExp, server?: SecureRedisServer): Promise<StoreError> {
  const a = server === undefined ? undefined : admin(server);
  const connections = async (): Promise<number> => Number(/total_connections_received:(\d+)/.exec((await a?.info('stats')) ?? '')?.[1] ?? 0);
  const s = track({ store: new RedisStore({ prefix: randomPrefix(), ...options }) });
  let error: unknown;
  try {
    await s.start();
  } catch (err) {
    error = err;
  }
  expect(error, 'start() must reject').toBeInstanceOf(StoreError);
  const e = error as StoreError;
  expect(e.code).toBe('ERR_STORE');
  expect(e.message).toMatch(reason);
  // Every command rejects the same way (the store is not left half-open), and a retry does too.
  await expect(s.list()).rejects.toMatchObject({ code: 'ERR_STORE' });
  await expect(s.ready()).rejects.toBeInstanceOf(StoreError);
  if (a !== undefined) {
    // No reconnect loop: ioredis would retry every 50-2000 ms; in 1.5 s nothing connects again.
    const before = await connections();
    await sleep(1500);
    expect((await connections()) - before, 'connections opened after the failure').toBeLessThanOrEqual(1); // our own INFO's connection at most
    a.disconnect();
  }
  await s.stop();
  return e;
}

describe('RedisStore with requirepass', () => {
  let server: SecureRedisServer;
  beforeAll(async () => {
    server = await startSecureRedis({ password: PASSWORD });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('works with the password in the URL and in redisOptions', async () => {
    await exercise({ url: `redis://:${PASSWORD}@127.0.0.1:${server.port}`, prefix: randomPrefix() });
    await exercise({ url: `redis://127.0.0.1:${server.port}/3`, redisOptions: { password: PASSWORD }, prefix: randomPrefix() });
  });

  it('a wrong or missing password is a StoreError naming the reason, not a hang or a reconnect loop', async () => {
    await expectRefused({ url: `redis://:wrong@127.0.0.1:${server.port}` }, /WRONGPASS/, server);
    await expectRefused({ url: `redis://127.0.0.1:${server.port}` }, /NOAUTH/, server);
    await expectRefused({ url: `redis://127.0.0.1:${server.port}`, redisOptions: { password: 'wrong' } }, /WRONGPASS/, server);
    await expectRefused({ url: `redis://nobody:${PASSWORD}@127.0.0.1:${server.port}` }, /WRONGPASS/, server);
    // With several instances, the one with the wrong password is named too.
    await expectRefused({ instances: [`redis://:${PASSWORD}@127.0.0.1:${server.port}`, `redis://:wrong@127.0.0.1:${server.port}`] }, /WRONGPASS/, server);
  });
});

describe('RedisStore as an ACL user restricted to its namespace', () => {
  let server: SecureRedisServer;
  let a: Redis;
  const prefix = `acl-${randomPrefix()}`;
  beforeAll(async () => {
    server = await startSecureRedis({ password: PASSWORD });
    a = admin(server);
    await a.call('ACL', 'SETUSER', 'app', 'reset', 'on', `>${ACL_PASSWORD}`, `~${prefix}:*`, `&${prefix}:*`, ...ACL_COMMANDS.map((c) => `+${c}`));
    await a.call('ACL', 'SETUSER', 'nochannel', 'reset', 'on', `>${ACL_PASSWORD}`, `~${prefix}:*`, ...ACL_COMMANDS.map((c) => `+${c}`));
    await a.call('ACL', 'LOG', 'RESET');
  });
  afterAll(async () => {
    a?.disconnect();
    await server?.stop();
  });

  /** ACL LOG entries of `user` (denied commands, keys, channels, auth). */
  async function denied(user: string): Promise<string[]> {
    const log = (await a.call('ACL', 'LOG', '100')) as unknown[][];
    return log.filter((entry) => entry[entry.indexOf('username') + 1] === user).map((entry) => `${String(entry[entry.indexOf('reason') + 1])}:${String(entry[entry.indexOf('object') + 1])}`);
  }

  it('every Lua command is in the documented ACL list', () => {
    const dir = new URL('../src/store/redis/lua/', import.meta.url);
    const sources = [...readdirSync(dir).filter((f) => f.endsWith('.lua')).map((f) => readFileSync(new URL(f, dir), 'utf8')), ...readdirSync(new URL('includes/', dir)).map((f) => readFileSync(new URL(`includes/${f}`, dir), 'utf8'))];
    const used = new Set(sources.flatMap((src) => [...src.matchAll(/redis\.p?call\(\s*['"](\w+)['"]/g)].map((m) => (m[1] as string).toLowerCase())));
    expect(used.size).toBeGreaterThan(10);
    expect([...used].filter((c) => !ACL_COMMANDS.includes(c))).toEqual([]);
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const c of ACL_COMMANDS) expect(readme, `README's ACL example lists +${c}`).toContain(`+${c}`);
  });

  it('works with username and password in the URL (percent-encoded) and in redisOptions; no command is denied', async () => {
    await exercise({ url: `redis://app:${encodeURIComponent(ACL_PASSWORD)}@127.0.0.1:${server.port}`, prefix });
    await exercise({ url: `redis://127.0.0.1:${server.port}`, redisOptions: { username: 'app', password: ACL_PASSWORD }, prefix });
    expect(await denied('app')).toEqual([]);
  });

  it('the restriction is in force: another namespace is refused with a typed error', async () => {
    const s = track({ store: new RedisStore({ url: `redis://app:${encodeURIComponent(ACL_PASSWORD)}@127.0.0.1:${server.port}`, prefix: 'elsewhere' }) });
    await expect(s.start()).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringMatching(/NOPERM|no permissions/i) as string });
    await s.stop();
    expect((await denied('app')).some((d) => d.startsWith('key:elsewhere'))).toBe(true);
  });

  it('without the channel permission, writes fail loudly (wake-ups are never silently lost)', async () => {
    const s = track({ store: new RedisStore({ url: `redis://nochannel:${encodeURIComponent(ACL_PASSWORD)}@127.0.0.1:${server.port}`, prefix, partitions: 4 }) });
    await s.start({ execute: false });
    const err = await s.schedule('job', { uid: 'x', in: '1h' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toMatch(/publish|channel/i);
    await s.stop();
  });

  it('a wrong password for the user is a StoreError naming WRONGPASS', async () => {
    await expectRefused({ url: `redis://app:wrong@127.0.0.1:${server.port}`, prefix }, /WRONGPASS/, server);
    await expectRefused({ url: `redis://127.0.0.1:${server.port}`, redisOptions: { username: 'app', password: 'wrong' }, prefix }, /WRONGPASS/, server);
  });
});

describe('RedisStore over TLS', () => {
  let server: SecureRedisServer;
  let tls: TlsFiles;
  beforeAll(async () => {
    tls = makeTlsFiles();
    server = await startSecureRedis({ password: PASSWORD, tls });
  });
  afterAll(async () => {
    await server?.stop();
    if (tls !== undefined) removeTmpDir(tls.dir);
  });

  it('rediss:// with the private CA in redisOptions.tls works, and so does redis:// with redisOptions.tls', async () => {
    const ca = readFileSync(tls.ca);
    await exercise({ url: `rediss://:${PASSWORD}@127.0.0.1:${String(server.tlsPort)}`, redisOptions: { tls: { ca } }, prefix: randomPrefix() });
    await exercise({ url: `redis://127.0.0.1:${String(server.tlsPort)}`, redisOptions: { password: PASSWORD, tls: { ca } }, prefix: randomPrefix() });
  });

  it('an unknown CA, plain TCP to the TLS port, or a wrong password over TLS are StoreErrors naming the reason', async () => {
    const e = await expectRefused({ url: `rediss://:${PASSWORD}@127.0.0.1:${String(server.tlsPort)}` }, /certificate/i, server);
    expect(e.cause).toMatchObject({ code: expect.stringMatching(/CERT|SIGNED/) as string });
    await expectRefused({ url: `redis://:${PASSWORD}@127.0.0.1:${String(server.tlsPort)}`, redisOptions: { connectTimeout: 2000 } }, /closed|reset|ECONN|timeout/i, server);
    await expectRefused({ url: `rediss://:wrong@127.0.0.1:${String(server.tlsPort)}`, redisOptions: { tls: { ca: readFileSync(tls.ca) } } }, /WRONGPASS/, server);
  });

  it('the CLI builds the same store from --store URLs and never shows the password', () => {
    for (const [url, shown] of [
      [`rediss://:${PASSWORD}@127.0.0.1:6390`, 'redis: rediss://:***@127.0.0.1:6390'],
      [`redis://app:${ACL_PASSWORD}@127.0.0.1:6390/2`, 'redis: redis://app:***@127.0.0.1:6390/2'],
      [`redis://app:${encodeURIComponent(ACL_PASSWORD)}@127.0.0.1:6390`, 'redis: redis://app:***@127.0.0.1:6390'],
      ['redis://127.0.0.1:6390?password=secret-in-query', 'redis: redis://127.0.0.1:6390?password=***'],
    ] as const) {
      const opened = openStore({ store: url, cluster: undefined, prefix: 'p', data: '' });
      expect(opened.store).toBeInstanceOf(RedisStore);
      expect(opened.description).toBe(`${shown}, prefix: p`);
    }
    expect(openStore({ store: 'memory', cluster: undefined, prefix: undefined, data: 'x.json' }).store).toBeInstanceOf(MemoryStore);
  });

  it('schedkit serve --store rediss://… works with NODE_EXTRA_CA_CERTS, and a wrong password exits 1 with the reason', async () => {
    const url = `rediss://:${PASSWORD}@127.0.0.1:${String(server.tlsPort)}`;
    const prefix = randomPrefix();
    const served = await serve({ SCHEDKIT_STORE: url, SCHEDKIT_PREFIX: prefix, NODE_EXTRA_CA_CERTS: tls.ca });
    expect(served.line).toContain(`(redis: rediss://:***@127.0.0.1:${String(server.tlsPort)}, prefix: ${prefix})`);
    expect(served.line).not.toContain(PASSWORD);
    const put = await fetch(`${served.url}/api/tasks/job/tls`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ every: '1h' }) });
    expect(put.status).toBe(200);
    // The schedule is in Redis: a direct command (no service) over TLS reads it back.
    const listed = await run(['list', '--json', '--store', url, '--prefix', prefix], { NODE_EXTRA_CA_CERTS: tls.ca });
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { uid: string }[]).map((t) => t.uid)).toEqual(['tls']);
    served.child.kill('SIGTERM');
    expect((await served.exited).code).toBe(0);

    const wrong = await run(['serve', '--port', '0', '--store', `rediss://:not-${PASSWORD}@127.0.0.1:${String(server.tlsPort)}`], { NODE_EXTRA_CA_CERTS: tls.ca });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^schedkit: RedisStore\.open: .*WRONGPASS/m);
    expect(wrong.stderr + wrong.stdout).not.toContain(PASSWORD);
    const untrusted = await run(['list', '--store', url]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/certificate/i);
  });
});

interface Served {
  readonly child: ChildProcess;
  readonly url: string;
  readonly line: string;
  readonly exited: Promise<{ code: number | null }>;
}

/** `schedkit serve --port 0` with `env`; resolves once it prints its listening line. */
function serve(env: Record<string, string>): Promise<Served> {
  const child = sandbox.track(spawn(process.execPath, [sandbox.bin, 'serve', '--port', '0'], { cwd: sandbox.dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null }>((resolve) => child.once('exit', (code) => resolve({ code })));
  return new Promise<Served>((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const match = /schedkit listening on (http:\/\/\S+).*/.exec(stdout);
      if (match !== null) resolve({ child, url: match[1] as string, line: match[0], exited });
    });
    void exited.then(({ code }) => reject(new Error(`serve exited with ${String(code)} before listening; stderr: ${stderr}`)));
  });
}

/** Runs the CLI to completion (killed after 20 s: a hang fails instead of blocking). */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = sandbox.track(spawn(process.execPath, [sandbox.bin, ...args], { cwd: sandbox.dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
}
