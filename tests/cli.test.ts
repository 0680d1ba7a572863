/**
 * The built `schedkit` command (dist/cli/main.js, as `npx schedkit` runs it) as a child
 * process: serve, push/pop over HTTP, graceful SIGTERM, persistence across restarts.
 * `npm test` builds first; run `npm run build` before running this file alone.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, cliSandbox } from './cli-sandbox.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const sandbox = cliSandbox('cli');
const { bin } = sandbox;
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
let dir: string;
beforeAll(() => {
  dir = sandbox.dir;
});

interface Served {
  readonly child: ChildProcessWithoutNullStreams;
  readonly url: string;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `schedkit serve` and resolves once it printed its listening line. */
function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, [bin, 'serve', ...args], { cwd: dir, env: cleanEnv(env) });
  sandbox.track(child);
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise<Served>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 20 s; stdout: ${stdout} stderr: ${stderr}`)), 20_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const match = /schedkit listening on (http:\/\/\S+)/.exec(stdout);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ child, url: match[1] as string, stderr: () => stderr, exited });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${String(code)} before listening; stderr: ${stderr}`));
    });
  });
}

function run(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, env: cleanEnv(env), encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function json(url: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) };
}

describe('schedkit serve', () => {
  it('serves push/pop, stops on SIGTERM with exit 0, and keeps schedules across restarts', async () => {
    const data = join(dir, 'r.json');
    const first = await serve(['--port', '0', '--data', data]);
    expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const pushed = await json(`${first.url}/api/pushTask/zoneCheck`, 'PUT', { domain: 'kek' });
    expect(pushed.status).toBe(200);
    const { id } = pushed.body as { id: string };
    const popped = await json(`${first.url}/api/popTask/zoneCheck`);
    expect(popped).toEqual({ status: 200, body: expect.objectContaining({ task: { domain: 'kek', id } }) as unknown });
    expect(await json(`${first.url}/api/popTask/zoneCheck`)).toEqual({ status: 202, body: { error: 'No tasks available' } });

    // A schedule and a pushed-but-not-popped task, both due later or now.
    expect((await json(`${first.url}/api/tasks/report/daily`, 'PUT', { cron: '0 0 9 * * *', params: { to: 'ops' } })).status).toBe(200);
    expect((await json(`${first.url}/api/pushTask/pending`, 'PUT', { keep: true })).status).toBe(200);

    first.child.kill('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(data)).toBe(true);
    const saved = JSON.parse(readFileSync(data, 'utf8')) as { registry: Record<string, Record<string, unknown>> };
    expect(saved.registry['report']?.['daily']).toMatchObject({ cron: '0 0 9 * * *', params: { to: 'ops' } });

    const second = await serve(['--port', '0', '--data', data]);
    const report = await json(`${second.url}/api/tasks/report/daily`);
    expect(report.status).toBe(200);
    expect(report.body).toMatchObject({ task: 'report', uid: 'daily', schedule: { kind: 'cron', cron: '0 0 9 * * *' }, params: { to: 'ops' }, enabled: true });
    const pending = await json(`${second.url}/api/popTask/pending`);
    expect(pending.status).toBe(200);
    expect((pending.body as { task: { keep: boolean } }).task.keep).toBe(true);

    second.child.kill('SIGINT');
    expect((await second.exited).code).toBe(0);
  });

  it('reads SCHEDKIT_* from the environment and requires the token it was given', async () => {
    const token = 'cli-test-token-0123456789';
    const served = await serve([], { SCHEDKIT_PORT: '0', SCHEDKIT_DATA: join(dir, 'env.json'), SCHEDKIT_TOKEN: token });
    expect((await json(`${served.url}/api/tasks`)).status).toBe(401);
    expect((await json(`${served.url}/api/tasks`, 'GET', undefined, { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await json(`${served.url}/healthz`)).status).toBe(200);
    served.child.kill('SIGTERM');
    expect((await served.exited).code).toBe(0);
  });

  it('list and trigger talk to a running service', async () => {
    const served = await serve(['--port', '0', '--data', join(dir, 'client.json')]);
    await json(`${served.url}/api/tasks/mail/digest`, 'PUT', { every: '1h' });
    const list = run(['list', '--url', served.url]);
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^TASK\s+UID/);
    expect(list.stdout).toMatch(/mail\s+digest\s+every 3600000ms/);
    const trig = run(['trigger', 'mail', 'digest', '--url', served.url]);
    expect(trig.status).toBe(0);
    expect(((await json(`${served.url}/api/tasks/mail/digest`)).body as { pending: number }).pending).toBe(1);
    const missing = run(['trigger', 'mail', 'nope', '--url', served.url]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/404.*ERR_SCHEDULE_NOT_FOUND/);
    served.child.kill('SIGTERM');
    expect((await served.exited).code).toBe(0);
  });

  it('refuses a non-loopback host without a token (exit 2)', () => {
    const r = run(['serve', '--host', '0.0.0.0', '--port', '0', '--data', join(dir, 'never.json')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/token/);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
  });

  it('exits 1 with a clear message when the port is taken', async () => {
    const served = await serve(['--port', '0', '--data', join(dir, 'a.json')]);
    const port = new URL(served.url).port;
    const r = run(['serve', '--port', port, '--data', join(dir, 'b.json')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/EADDRINUSE/);
    served.child.kill('SIGTERM');
    expect((await served.exited).code).toBe(0);
  });
});

describe('schedkit command line', () => {
  it('--version prints the package version', () => {
    const r = run(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('--help prints usage on stdout', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: schedkit <command>/);
    expect(r.stdout).toMatch(/serve/);
    const s = run(['serve', '--help']);
    expect(s.status).toBe(0);
    expect(s.stdout).toMatch(/SCHEDKIT_PORT/);
  });

  it('an unknown command or option prints usage on stderr and exits 2', () => {
    for (const args of [['frobnicate'], [], ['serve', '--bogus'], ['serve', '--port', 'http']]) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/schedkit: /);
      expect(r.stdout).toBe('');
    }
    expect(run(['frobnicate']).stderr).toMatch(/unknown command "frobnicate"[\s\S]*Usage: schedkit/);
  });
});
