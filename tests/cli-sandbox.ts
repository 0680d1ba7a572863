import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface CliSandbox {
  /** The private copy's dist/cli/main.js. */
  readonly bin: string;
  /** A temporary working directory for the file. */
  readonly dir: string;
  /** Kills `child` after the test if it is still running. */
  track<T extends ChildProcess>(child: T): T;
}

/**
 * For tests that run the built CLI as child processes: a private copy of dist/ (inside
 * node_modules/.cache, so it resolves the package's dependencies) that a concurrent
 * `npm run build` cannot pull away, a temp dir, and children killed after each test.
 * `npm test` builds first; run `npm run build` before running such a file alone.
 */
export function cliSandbox(label: string): CliSandbox {
  const copy = join(root, 'node_modules', '.cache', `schedkit-${label}-${randomUUID()}`);
  const children = new Set<ChildProcess>();
  let dir = '';
  beforeAll(() => {
    const dist = join(root, 'dist');
    if (!existsSync(join(dist, 'cli', 'main.js')) || !existsSync(join(dist, 'store', 'redis', 'lua'))) {
      throw new Error(`${dist} is not built: run \`npm run build\` first (npm test does)`);
    }
    mkdirSync(copy, { recursive: true });
    cpSync(dist, join(copy, 'dist'), { recursive: true });
    cpSync(join(root, 'package.json'), join(copy, 'package.json'));
    dir = mkdtempSync(join(tmpdir(), `schedkit-${label}-`));
  });
  afterEach(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    children.clear();
  });
  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    rmSync(copy, { recursive: true, force: true });
  });
  return {
    bin: join(copy, 'dist', 'cli', 'main.js'),
    get dir() {
      return dir;
    },
    track(child) {
      children.add(child);
      return child;
    },
  };
}

/** A clean environment: no SCHEDKIT_* from the developer's shell leaks in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCHEDKIT_')) env[k] = v;
  return { ...env, ...extra };
}
