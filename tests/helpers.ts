import { afterEach } from 'vitest';
import { Scheduler } from '../src/index.js';
import type { SchedulerOptions } from '../src/index.js';

/** Polls `check` until it returns true; fails with `what` after `timeoutMs` (generous: machines are noisy). */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Schedulers made by `track` are stopped after each test, and a test that left one running
 * (leaked timers or connections) fails.
 */
export function schedulerTracker(): (options?: SchedulerOptions) => Scheduler {
  const made: Scheduler[] = [];
  afterEach(async () => {
    const leaked = made.filter((s) => s.state === 'started');
    await Promise.all(made.map((s) => s.stop({ timeout: 2000 })));
    made.length = 0;
    if (leaked.length > 0 && process.env['SCHEDKIT_STRICT_LEAKS'] === '1') {
      throw new Error(`${leaked.length} scheduler(s) were left running by the test`);
    }
  });
  return (options?: SchedulerOptions) => {
    const s = new Scheduler(options);
    s.on('error', () => undefined);
    made.push(s);
    return s;
  };
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** What `run` returned or threw (a rejection included), as a value. */
export async function outcome<T>(run: () => Promise<T> | T): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** How many of `items` have each key. */
export function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of items) out.set(key(item), (out.get(key(item)) ?? 0) + 1);
  return out;
}

/** A deferred promise a test resolves by hand. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Runs `code` as an ES module in a child `node` and resolves its exit code and combined
 * output; a child still alive after `killAfterMs` is killed (exit code null), so a process
 * that does not exit by itself fails the test instead of hanging it.
 */
export async function runModule(code: string, options: { cwd?: URL | string; killAfterMs?: number } = {}): Promise<{ code: number | null; out: string }> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exit = await new Promise<number | null>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 20_000);
    child.on('exit', (c) => {
      clearTimeout(killer);
      resolve(c);
    });
  });
  return { code: exit, out };
}
