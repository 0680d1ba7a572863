/**
 * One measurement in a fresh process (forked by run.mjs with --expose-gc), so heaps and JIT
 * state of different schedulers never mix. Argument: JSON { scenario, peer, ... }.
 * Sends { ok: true, result } or { ok: false, error } over IPC, then exits.
 */
import { loadavg } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { PEERS } from './peers.mjs';
import { gcFull, percentile, preciseClock } from './stats.mjs';

const job = JSON.parse(process.argv[2] ?? '{}');

/** Scenario 1: n one-shots due ~1 h from now: time to schedule and retained bytes per schedule. */
async function far({ peer, n, capMs, warm }) {
  const p = PEERS[peer].far;
  if (warm > 0) await p.warm(warm);
  const inst = await p.setup();
  gcFull();
  const before = process.memoryUsage();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + capMs;
  let capped = false;
  const overBudget = () => {
    if (performance.now() > deadline) capped = true;
    return capped;
  };
  const scheduled = await p.run(inst, n, overBudget);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  gcFull();
  const after = process.memoryUsage();
  // `inst` is still referenced below, so everything it holds is alive at the measurement.
  if (p.teardown !== undefined) await p.teardown(inst);
  const heap = after.heapUsed - before.heapUsed;
  const ab = after.arrayBuffers - before.arrayBuffers;
  const external = after.external - before.external;
  return {
    scenario: 'far',
    peer,
    requested: n,
    scheduled,
    capped,
    ms,
    // CPU time of the process (all threads, so parallel GC counts) over the same span: less
    // sensitive than wall time to other work on a shared machine.
    cpuMs: (cpu.user + cpu.system) / 1000,
    nsPerSchedule: (ms * 1e6) / scheduled,
    heapBytesPerSchedule: heap / scheduled,
    arrayBufferBytesPerSchedule: ab / scheduled,
    externalBytesPerSchedule: external / scheduled,
    totalBytesPerSchedule: (heap + external) / scheduled,
    rssMB: after.rss / 2 ** 20,
    loadavg1: loadavg()[0],
  };
}

/**
 * Scenario 2: n one-shots due evenly over n/rate seconds, starting leadMs after scheduling
 * begins; each fire records (fire time - due time). Integer-ms due times (10 per ms at
 * 10k/s), measured with a sub-ms wall clock.
 */
async function lateness({ peer, n, rate, leadMs, graceMs }) {
  const p = PEERS[peer].lateness;
  const dues = new Float64Array(n);
  const late = new Float64Array(n);
  const lateWall = new Float64Array(n);
  const seen = new Uint8Array(n);
  let fired = 0;
  let unique = 0;
  let duplicates = 0;
  let badIndex = 0;
  let dueMismatch = 0;
  let clock;
  const onFire = (i, dueMs) => {
    const now = clock.now();
    const wallLate = Date.now() - dueMs;
    if (!(i >= 0 && i < n)) {
      badIndex++;
      return;
    }
    if (seen[i] !== 0) duplicates++;
    else unique++;
    seen[i] = 1;
    late[i] = now - dueMs;
    lateWall[i] = wallLate;
    if (dueMs !== dues[i]) dueMismatch++;
    fired++;
  };
  const inst = await p.setup(onFire);
  // Anchored right before scheduling; its drift from Date.now() is checked at the end.
  clock = preciseClock();
  const perMs = rate / 1000;
  const first = Math.ceil(clock.now()) + leadMs;
  for (let i = 0; i < n; i++) dues[i] = first + Math.floor(i / perMs);
  const last = dues[n - 1];
  const s0 = clock.now();
  await p.schedule(inst, dues);
  const s1 = clock.now();
  // Event-loop delay while firing: tells a scheduler's own overhead from a blocked loop.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  await sleep(Math.max(0, first - clock.now() - 5));
  loop.enable();
  // Wait for every fire, or give up graceMs after the last due time.
  while (unique < n && clock.now() < last + graceMs) await sleep(20);
  // A little longer, so late duplicates would still be seen.
  await sleep(200);
  const doneAt = clock.now();
  loop.disable();
  await p.teardown(inst);
  const drift = clock.drift();
  const values = [];
  const wall = [];
  for (let i = 0; i < n; i++) {
    if (seen[i] === 0) continue;
    values.push(late[i]);
    wall.push(lateWall[i]);
  }
  values.sort((a, b) => a - b);
  wall.sort((a, b) => a - b);
  let sum = 0;
  for (const v of values) sum += v;
  const missing = n - values.length;
  return {
    scenario: 'lateness',
    peer,
    scheduled: n,
    fired,
    unique: values.length,
    missing,
    duplicates,
    badIndex,
    dueMismatch,
    errors: inst.errors === undefined ? [] : inst.errors.slice(0, 5),
    errorCount: inst.errors === undefined ? 0 : inst.errors.length,
    ok: missing === 0 && duplicates === 0 && badIndex === 0 && fired === n,
    rate,
    spanMs: last - first + 1,
    scheduleMs: s1 - s0,
    scheduledBeforeFirstDue: s1 < first,
    min: values[0] ?? Number.NaN,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    p999: percentile(values, 99.9),
    max: values[values.length - 1] ?? Number.NaN,
    mean: sum / values.length,
    waitedMs: doneAt - last,
    clockDriftMs: drift,
    loadavg1: loadavg()[0],
    eventLoopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
    // Cross-check in Date.now()'s own frame (1 ms resolution, reads up to 1 ms low).
    wallClock: { p50: percentile(wall, 50), p99: percentile(wall, 99), max: wall[wall.length - 1] ?? Number.NaN },
  };
}

// Forked by run.mjs: answer over IPC. Run by hand (e.g. under --cpu-prof): print JSON.
const reply = (message, code) => {
  if (process.send === undefined) {
    process.stdout.write(`${JSON.stringify(message, null, 2)}\n`);
    process.exit(code);
  }
  process.send(message, () => process.exit(code));
};
try {
  const result = job.scenario === 'far' ? await far(job) : job.scenario === 'lateness' ? await lateness(job) : null;
  if (result === null) throw new Error(`unknown scenario ${String(job.scenario)}; pass JSON like {"scenario":"far","peer":"schedkit-schedule","n":1000000,"capMs":60000,"warm":20000}`);
  reply({ ok: true, result }, 0);
} catch (err) {
  reply({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, 1);
}
