/**
 * `node bench/pool.mjs`: overhead of a run in the worker-thread pool (size 2) against an
 * in-process run, for a trivial handler. N one-shots due now are drained by one scheduler;
 * the figure is wall time per run, and the difference is the pool's cost per run
 * (structured clone both ways, a message round trip, the thread's dispatch).
 */
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = process.env.BENCH_DIST ?? join(here, '..', 'dist');
const { Scheduler } = await import(pathToFileURL(join(dist, 'index.js')).href);
const N = Number(process.env.BENCH_POOL_N ?? 20_000);
const REPS = Number(process.env.BENCH_POOL_REPS ?? 3);
const job = pathToFileURL(join(here, 'fixtures-pool-job.mjs'));

/** Drains N due one-shots after a warm-up (threads spawned, code optimised); resolves ms. */
async function drain(pooled) {
  const s = new Scheduler({ pool: { size: 2 }, concurrency: 64 });
  const warm = 200;
  let done = 0;
  let finish;
  const all = new Promise((resolve) => (finish = resolve));
  s.on('run:success', () => {
    if (++done === warm + N) finish();
  });
  if (pooled) s.define('t', { module: job });
  else s.define('t', (run) => run.attempt);
  await s.start();
  const past = Date.now() - 1000;
  await s.scheduleMany('t', Array.from({ length: warm }, (_, i) => ({ uid: `w${i}`, at: past })));
  while (done < warm) await new Promise((r) => setTimeout(r, 5));
  const t0 = performance.now();
  await s.scheduleMany('t', Array.from({ length: N }, (_, i) => ({ uid: `u${i}`, at: past })));
  await all;
  const ms = performance.now() - t0;
  await s.stop();
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const inProcess = [];
const pooled = [];
for (let r = 0; r < REPS; r++) {
  inProcess.push(await drain(false));
  pooled.push(await drain(true));
}
const usIn = (median(inProcess) * 1000) / N;
const usPool = (median(pooled) * 1000) / N;
console.log(`pool bench: ${N} trivial runs, median of ${REPS}, pool size 2, concurrency 64`);
console.log(`  in-process: ${usIn.toFixed(1)} us/run (${Math.round((N / median(inProcess)) * 1000)} runs/s)`);
console.log(`  pooled:     ${usPool.toFixed(1)} us/run (${Math.round((N / median(pooled)) * 1000)} runs/s)`);
console.log(`  overhead of the pool: ${(usPool - usIn).toFixed(1)} us per run`);
