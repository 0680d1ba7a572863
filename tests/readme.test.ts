import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { runModule } from './helpers.js';

/**
 * Keeps the README's first example true: it runs exactly as written from the repository root,
 * where Node resolves `schedkit` to this package itself (after `npm run build`).
 */
describe('README', () => {
  it('the first example runs, fires its schedules and exits by itself', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const block = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const root = new URL('..', import.meta.url);
    const { code: exit, out } = await runModule(block as string, { cwd: root });
    expect(out).toContain('email to a@b.c, attempt 1');
    expect(out).toMatch(/poll due \d{4}-/);
    expect(out).toMatch(/p1 ran \d+ times, next at \d{4}-/);
    expect(exit).toBe(0);
  });
});
