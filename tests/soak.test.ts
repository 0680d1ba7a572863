/**
 * The soak (scripts/soak.mjs, `npm run soak`) for 20 s at a modest rate, as a child process
 * with its own redis-server: it must exit 0 with a summary, nothing lost, nothing run twice,
 * memory flat and no key left behind. Redeliveries after an expired lease are at-least-once
 * by design and reported apart from duplicates; they are checked to be exactly the planned
 * ones. No timing is asserted (2 shared cores): only counts and the script's verdict.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;

interface Flatness {
  judged: boolean;
  flat: boolean;
}

interface SoakReport {
  verdict: string;
  failures: string[];
  samples: { phase: string }[];
  http: Record<string, number>;
  once: Record<string, number>;
  recurring: Record<string, number>;
  locks: Record<string, number>;
  lost: { total: number };
  duplicates: { total: number };
  violations: { total: number };
  atLeastOnceByDesign: { redeliveredAfterPlannedLeaseExpiry: number; lateAcksRefused: number };
  flatness: { heap: Flatness; redis: Flatness };
  residual: { keys: Record<string, number>; depths: { due: number; scheduled: number; running: number }; leasesHeld: number; libSchedules: number };
  errors: { count: number; first: string[] };
}

let child: ChildProcess | undefined;
afterEach(() => {
  // Only if the test failed mid-run: SIGINT makes the soak stop its redis-server and clean up.
  if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  child = undefined;
});

function runSoak(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--expose-gc', 'scripts/soak.mjs', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

it('soaks 20 s of mixed HTTP and library load: exit 0, nothing lost or duplicated, flat, clean', async () => {
  const { code, stdout, stderr } = await runSoak(['--seconds', '20', '--rate', '40', '--lease', '2', '--json']);
  expect(code, stderr.slice(-4000)).toBe(0);
  // --json: the summary table goes to stderr, the report to stdout.
  expect(stderr).toContain('soak summary');
  expect(stderr).toMatch(/^ {2}phase +t s +heap MiB/m);
  expect(stderr).toMatch(/^verdict: PASS$/m);
  const r = JSON.parse(stdout) as SoakReport;
  expect(r.verdict).toBe('PASS');
  expect(r.failures).toEqual([]);

  expect(r.lost.total).toBe(0);
  expect(r.duplicates.total).toBe(0);
  expect(r.violations.total).toBe(0);
  expect(r.errors).toMatchObject({ count: 0, first: [] });

  // Both paths carried load, with every planned twist.
  const h = r.http;
  expect(h['pushed']).toBeGreaterThan(0);
  expect(h['acked']).toBe(h['pushed']);
  for (const k of ['nacked', 'abandoned', 'slowHeld', 'renewed']) expect(h[k], k).toBeGreaterThan(0);
  // At least once, by design: each abandoned or too-slow task is delivered once more (unless a
  // late ack got in before anyone reclaimed it) — and those redeliveries are not duplicates.
  expect(r.atLeastOnceByDesign.redeliveredAfterPlannedLeaseExpiry).toBe((h['abandoned'] ?? 0) + (h['slowHeld'] ?? 0) - (h['lateAckAccepted'] ?? 0));
  expect(r.atLeastOnceByDesign.lateAcksRefused).toBe(h['lateAckRefused']);

  const o = r.once;
  expect(o['succeeded']).toBeGreaterThan(0);
  for (const k of ['retried', 'cancelled', 'updated']) expect(o[k], k).toBeGreaterThan(0);
  expect(o['failedFinal']).toBe(0);

  const c = r.recurring;
  expect(c['ticks']).toBeGreaterThan(0);
  expect(c['missingTicks']).toBe(0);
  expect(c['triggerRuns']).toBe(c['triggers']);
  expect(c['retired']).toBe(c['created']); // every schedule, replaced ones included, ended cancelled
  expect(r.locks['acquired']).toBeGreaterThan(0);
  expect(r.locks['violations']).toBe(0);

  // Sampled at start, under load, at the end of the load and after the drain; memory judged flat.
  expect(r.samples.map((s) => s.phase)).toEqual(expect.arrayContaining(['start', 'load', 'end', 'after']));
  expect(r.flatness.heap).toMatchObject({ judged: true, flat: true });
  expect(r.flatness.redis).toMatchObject({ judged: true, flat: true });
  // Nothing left in Redis or in the service once everything ran and every schedule was cancelled.
  expect(r.residual.keys).toEqual({});
  expect(r.residual.depths).toEqual({ due: 0, scheduled: 0, running: 0 });
  expect(r.residual.leasesHeld).toBe(0);
  expect(r.residual.libSchedules).toBe(0);
}, 120_000);
