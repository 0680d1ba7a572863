/**
 * `npm run bench`: schedkit against raw setTimeout, toad-scheduler and node-schedule, each
 * measurement in its own forked process (fresh heap, --expose-gc).
 *
 *   1) far:      N one-shots due ~1 h ahead: time to schedule, retained bytes per schedule.
 *   2) lateness: 30,000 one-shots spread over 3 s (10,000 fires/s): fire time - due time.
 *   3) Redis:    schedkit RedisStore against BullMQ on one fresh redis-server (bench/redis.mjs;
 *                BENCH_REDIS=0 skips it).
 *
 * Prints a table with ratios against schedkit, checks schedkit's targets, and writes
 * bench/results/latest.json. Tunable through env (defaults in CONFIG); for A/B runs,
 * BENCH_DIST=<dir with index.js> measures another build of schedkit and BENCH_OUT=<file>
 * writes the JSON elsewhere, e.g.
 *   BENCH_PEERS=schedkit-schedule,schedkit-scheduleMany BENCH_DIST=/tmp/other/dist \
 *   BENCH_OUT=bench/results/other.json node --expose-gc bench/run.mjs
 * Exits 1 only when a
 * correctness check fails (a fire missing or duplicated, a worker crashing); missing a
 * performance target is reported, not fatal. No timing thresholds belong in tests.
 */
import { execFileSync, fork } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PEERS, SCHEDKIT_PEERS, FAR_MS, BATCH } from './peers.mjs';
import { runRedisBench } from './redis.mjs';
import { fmt, fmtInt, median, renderTable } from './stats.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

const env = (name, fallback) => (process.env[name] === undefined || process.env[name] === '' ? fallback : Number(process.env[name]));
const CONFIG = {
  n: env('BENCH_N', 1_000_000),
  reps: env('BENCH_REPS', 3),
  capMs: env('BENCH_CAP_MS', 60_000),
  /** A peer whose scenario-1 run takes longer than this is not repeated (keeps the bench near 4 minutes). */
  slowFarMs: env('BENCH_SLOW_FAR_MS', 10_000),
  warm: env('BENCH_WARM', 20_000),
  latN: env('BENCH_LAT_N', 30_000),
  latRate: env('BENCH_LAT_RATE', 10_000),
  latReps: env('BENCH_LAT_REPS', 3),
  leadMs: env('BENCH_LEAD_MS', 1_500),
  /** Longest wait for the remaining fires after the last due time (a slow peer keeps firing late). */
  graceMs: env('BENCH_GRACE_MS', 60_000),
  /** A peer still firing this long after the last due time runs its lateness scenario once only. */
  slowLagMs: env('BENCH_SLOW_LAG_MS', 5_000),
  /** A lateness run during which Date.now() moved more than this against performance.now() is repeated. */
  maxDriftMs: env('BENCH_MAX_DRIFT_MS', 1),
  peers: (process.env.BENCH_PEERS ?? '').split(',').filter((p) => p !== ''),
  execArgv: ['--expose-gc', '--max-old-space-size=8192'],
};

const TARGETS = { scheduleMs: 1000, heapBytes: 150, p99Ms: 5 };
const FAR_PEERS = ['setTimeout', 'setTimeout+closure', 'toad-scheduler', 'node-schedule', 'schedkit-schedule', 'schedkit-scheduleMany'];
const LATENESS_PEERS = ['setTimeout', 'toad-scheduler', 'node-schedule', 'schedkit-schedule', 'schedkit-scheduleMany'];
/** A peer's name in tables and messages (defined before the scenarios: a repeated run's message uses it). */
const label = (peer) => PEERS[peer].label;
const selected = (list) => (CONFIG.peers.length === 0 ? list : list.filter((p) => CONFIG.peers.includes(p)));

const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

// The machine is shared: a rebuild elsewhere (rm -rf dist) must not change or remove the
// code under test mid-run. Workers load a snapshot of dist/ taken now, kept under
// node_modules/.cache (ignored by git and eslint; packages still resolve from node_modules).
const distDir = resolve(process.env.BENCH_DIST || join(root, 'dist'));
if (!existsSync(join(distDir, 'index.js'))) {
  process.stderr.write(`bench: ${join(distDir, 'index.js')} is missing; run \`npm run build\` first (npm run bench does).\n`);
  process.exit(2);
}
const snapshotDir = join(root, 'node_modules', '.cache', 'schedkit-bench', `dist-${process.pid}`);
cpSync(distDir, snapshotDir, { recursive: true });
writeFileSync(join(snapshotDir, 'package.json'), '{ "type": "module" }\n');
process.on('exit', () => rmSync(snapshotDir, { recursive: true, force: true }));
process.on('SIGINT', () => process.exit(130));

function runWorker(job) {
  return new Promise((resolve) => {
    const child = fork(join(here, 'worker.mjs'), [JSON.stringify(job)], {
      execArgv: CONFIG.execArgv,
      env: { ...process.env, BENCH_SCHEDKIT_DIST: join(snapshotDir, 'index.js') },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let reply;
    // Safety net: a worker that hangs is killed (only this child, by its handle).
    const killer = setTimeout(() => child.kill('SIGKILL'), (job.capMs ?? 0) + 180_000);
    child.on('message', (m) => {
      reply = m;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      if (reply?.ok === true) resolve(reply.result);
      else resolve({ crashed: true, error: reply?.error ?? `worker exited with code ${String(code)} signal ${String(signal)}`, ...job });
    });
  });
}

function git(args) {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

const failures = [];
const clockRetries = [];
const started = Date.now();
// What is measured: the commit and whether src/ differs from it, taken when dist/ is snapshotted.
const commit = git(['rev-parse', 'HEAD']);
const dirty = git(['status', '--porcelain', '--', 'src']) !== '';
const loadBefore = os.loadavg();

// ------------------------------------------------------------------ scenario 1

const far = {};
for (const peer of selected(FAR_PEERS)) {
  const reps = [];
  for (let r = 0; r < CONFIG.reps; r++) {
    const res = await runWorker({ scenario: 'far', peer, n: CONFIG.n, capMs: CONFIG.capMs, warm: CONFIG.warm });
    if (res.crashed) {
      failures.push(`far/${peer}: worker crashed: ${res.error}`);
      log(`far ${peer} rep ${r + 1}: CRASHED\n${res.error}`);
      break;
    }
    reps.push(res);
    log(`far ${peer} rep ${r + 1}: ${fmtInt(res.scheduled)} in ${fmt(res.ms)} ms, ${fmt(res.heapBytesPerSchedule)} heap B + ${fmt(res.arrayBufferBytesPerSchedule)} ArrayBuffer B per schedule${res.capped ? ' (capped)' : ''}`);
    // A peer that needs the whole wall-time budget, or most of it, runs once (the budget is per peer).
    if (res.capped || res.ms > CONFIG.slowFarMs) break;
  }
  if (reps.length === 0) continue;
  far[peer] = {
    reps,
    scheduled: median(reps.map((r) => r.scheduled)),
    capped: reps.some((r) => r.capped),
    ms: median(reps.map((r) => r.ms)),
    msMin: Math.min(...reps.map((r) => r.ms)),
    msMax: Math.max(...reps.map((r) => r.ms)),
    nsPerSchedule: median(reps.map((r) => r.nsPerSchedule)),
    heapBytesPerSchedule: median(reps.map((r) => r.heapBytesPerSchedule)),
    arrayBufferBytesPerSchedule: median(reps.map((r) => r.arrayBufferBytesPerSchedule)),
    totalBytesPerSchedule: median(reps.map((r) => r.totalBytesPerSchedule)),
  };
}

// ------------------------------------------------------------------ scenario 2

const lateness = {};
for (const peer of selected(LATENESS_PEERS)) {
  const reps = [];
  let retries = 0;
  for (let r = 0; r < CONFIG.latReps; r++) {
    const res = await runWorker({ scenario: 'lateness', peer, n: CONFIG.latN, rate: CONFIG.latRate, leadMs: CONFIG.leadMs, graceMs: CONFIG.graceMs });
    if (!res.crashed && Math.abs(res.clockDriftMs) > CONFIG.maxDriftMs && retries < CONFIG.latReps) {
      // The system clock was stepped/slewed mid-run: due times (wall clock) and fire times
      // (monotonic) no longer line up, so the run says nothing about the scheduler. Redo it.
      retries++;
      clockRetries.push(`${label(peer)} rep ${r + 1}: wall clock moved ${fmt(res.clockDriftMs, 2)} ms against the monotonic clock; run repeated`);
      log(`lateness ${peer} rep ${r + 1}: clock moved ${fmt(res.clockDriftMs, 2)} ms during the run; repeating it`);
      r--;
      continue;
    }
    if (res.crashed) {
      failures.push(`lateness/${peer}: worker crashed: ${res.error}`);
      log(`lateness ${peer} rep ${r + 1}: CRASHED\n${res.error}`);
      break;
    }
    reps.push(res);
    if (!res.ok) {
      failures.push(`lateness/${peer} rep ${r + 1}: fired ${res.fired} of ${res.scheduled} scheduled (missing ${res.missing}, duplicates ${res.duplicates}, bad index ${res.badIndex})`);
    }
    if (res.errorCount > 0) failures.push(`lateness/${peer} rep ${r + 1}: ${res.errorCount} scheduler errors, e.g. ${res.errors.join('; ')}`);
    log(`lateness ${peer} rep ${r + 1}: fired ${res.fired}/${res.scheduled}, p50 ${fmt(res.p50, 2)} p99 ${fmt(res.p99, 2)} max ${fmt(res.max, 2)} ms${res.scheduledBeforeFirstDue ? '' : ' (scheduling overran the lead time)'}`);
    if (res.max > CONFIG.slowLagMs) break; // far behind: repeating would only cost minutes
  }
  if (reps.length === 0) continue;
  lateness[peer] = {
    reps,
    scheduled: reps[0].scheduled,
    fired: reps.map((r) => r.fired),
    ok: reps.every((r) => r.ok),
    p50: median(reps.map((r) => r.p50)),
    p99: median(reps.map((r) => r.p99)),
    p99Worst: Math.max(...reps.map((r) => r.p99)),
    max: median(reps.map((r) => r.max)),
    maxWorst: Math.max(...reps.map((r) => r.max)),
  };
}

// ------------------------------------------------------------------ table

// Ratios of values at or below zero (a median fire slightly early) mean nothing: n/a.
const ratio = (value, base) => (typeof value === 'number' && typeof base === 'number' && base > 0 && value > 0 && Number.isFinite(value) ? `${(value / base).toFixed(2)}x` : 'n/a');
const rows = [];
const farMetrics = [
  ['1) far one-shots', 'time to schedule (ms)', (s) => s.ms, (s) => s.nsPerSchedule, 0],
  ['1) far one-shots', 'ns per schedule', (s) => s.nsPerSchedule, (s) => s.nsPerSchedule, 0],
  ['1) far one-shots', 'heap B/schedule (heapUsed)', (s) => s.heapBytesPerSchedule, (s) => s.heapBytesPerSchedule, 1],
  ['1) far one-shots', 'ArrayBuffer B/schedule (off-heap)', (s) => s.arrayBufferBytesPerSchedule, null, 1],
  ['1) far one-shots', 'heap+external B/schedule', (s) => s.totalBytesPerSchedule, (s) => s.totalBytesPerSchedule, 1],
];
for (const [scenario, metric, get, ratioOf, digits] of farMetrics) {
  for (const peer of Object.keys(far)) {
    const s = far[peer];
    const n = `${fmtInt(s.scheduled)}${s.capped ? ` (capped at ${CONFIG.capMs / 1000} s)` : ''}`;
    const base = SCHEDKIT_PEERS.map((k) => (far[k] === undefined || ratioOf === null ? undefined : ratioOf(far[k])));
    const mine = ratioOf === null ? undefined : ratioOf(s);
    rows.push([scenario, metric, label(peer), n, fmt(get(s), digits), ratio(mine, base[0]), ratio(mine, base[1])]);
  }
}
const latMetrics = [
  ['p50 lateness (ms)', (s) => s.p50],
  ['p99 lateness (ms)', (s) => s.p99],
  ['max lateness (ms)', (s) => s.max],
];
const rate = `${fmtInt(CONFIG.latRate)}/s`;
for (const [metric, get] of latMetrics) {
  for (const peer of Object.keys(lateness)) {
    const s = lateness[peer];
    const base = SCHEDKIT_PEERS.map((k) => (lateness[k] === undefined ? undefined : get(lateness[k])));
    rows.push([`2) lateness @ ${rate}`, metric, label(peer), fmtInt(s.scheduled), fmt(get(s), 2), ratio(get(s), base[0]), ratio(get(s), base[1])]);
  }
}
for (const peer of Object.keys(lateness)) {
  const s = lateness[peer];
  rows.push([`2) lateness @ ${rate}`, 'fired / scheduled', label(peer), fmtInt(s.scheduled), `${s.fired.join(',')} ${s.ok ? 'OK' : 'FAIL'}`, '', '']);
}

// ------------------------------------------------------------------ targets

const targets = [];
for (const peer of SCHEDKIT_PEERS) {
  const f = far[peer];
  if (f !== undefined) {
    const full = f.scheduled === 1_000_000;
    targets.push({
      target: `1,000,000 once-schedules in < ${TARGETS.scheduleMs} ms`,
      peer: label(peer),
      value: `${fmt(f.ms, 0)} ms median of ${f.reps.length} (min ${fmt(f.msMin, 0)}, max ${fmt(f.msMax, 0)}) for ${fmtInt(f.scheduled)}`,
      // Only a run of exactly 1,000,000 can pass or fail this target.
      pass: full ? f.ms < TARGETS.scheduleMs : null,
    });
    targets.push({
      target: `<= ${TARGETS.heapBytes} heap B/schedule (heapUsed)`,
      peer: label(peer),
      value: `${fmt(f.heapBytesPerSchedule)} B (+ ${fmt(f.arrayBufferBytesPerSchedule)} B off-heap ArrayBuffers = ${fmt(f.totalBytesPerSchedule)} B; ${f.totalBytesPerSchedule <= TARGETS.heapBytes ? 'also within' : 'OVER'} ${TARGETS.heapBytes} B counted together)`,
      pass: f.heapBytesPerSchedule <= TARGETS.heapBytes,
    });
  }
  const l = lateness[peer];
  if (l !== undefined) {
    targets.push({
      target: `p99 fire lateness < ${TARGETS.p99Ms} ms @ ${rate}`,
      peer: label(peer),
      value: `p99 ${fmt(l.p99, 2)} ms median of ${l.reps.length} (worst ${fmt(l.p99Worst, 2)})`,
      pass: l.p99 < TARGETS.p99Ms,
    });
  }
}

const out = [];
out.push('');
out.push(`schedkit benchmark — node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, load avg at start ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);
out.push(`scenario 1: ${fmtInt(CONFIG.n)} one-shots due ${FAR_MS / 3_600_000} h ahead (due = now + 1 h per call), ${CONFIG.warm > 0 ? `${fmtInt(CONFIG.warm)}-schedule warm-up, ` : ''}median of up to ${CONFIG.reps} runs, each in a fresh process; wall-time cap ${CONFIG.capMs / 1000} s per peer`);
out.push(`scenario 2: ${fmtInt(CONFIG.latN)} one-shots due evenly over ${CONFIG.latN / CONFIG.latRate} s (${rate}; integer-ms due times, ${CONFIG.latRate / 1000} per ms), first due ${CONFIG.leadMs} ms after scheduling starts; median of ${CONFIG.latReps} runs`);
out.push('');
out.push(renderTable(['scenario', 'metric', 'peer', 'N', 'value', '÷ schedkit schedule()', '÷ schedkit scheduleMany()'], rows));
out.push('');
out.push('ratios: peer value ÷ schedkit value (time ratios per schedule, so a capped N compares fairly); lower is better for every metric, so > 1x means schedkit wins.');
out.push('heapUsed excludes ArrayBuffer backing stores; schedkit keeps its schedule table in typed arrays, so its off-heap bytes are shown separately and in heap+external.');
out.push('');
out.push('peer notes:');
for (const peer of new Set([...Object.keys(far), ...Object.keys(lateness)])) out.push(`  ${label(peer)}: ${PEERS[peer].note}`);
for (const peer of Object.keys(far)) {
  if (!far[peer].capped && far[peer].reps.length < CONFIG.reps) out.push(`  ${label(peer)}: one run took over ${CONFIG.slowFarMs / 1000} s, so scenario 1 ran once instead of ${CONFIG.reps} times.`);
  if (far[peer].capped) out.push(`  ${label(peer)}: scheduling ${fmtInt(CONFIG.n)} would exceed the ${CONFIG.capMs / 1000} s cap; measured with N = ${fmtInt(far[peer].scheduled)} instead (one run).`);
}
for (const peer of Object.keys(lateness)) {
  const overran = lateness[peer].reps.filter((r) => !r.scheduledBeforeFirstDue).length;
  if (overran > 0) out.push(`  ${label(peer)}: in ${overran} lateness run(s) scheduling was still going when the first one-shot was due (its lateness includes that).`);
  if (lateness[peer].reps.length < CONFIG.latReps && lateness[peer].reps.some((r) => r.max > CONFIG.slowLagMs)) out.push(`  ${label(peer)}: fell more than ${CONFIG.slowLagMs / 1000} s behind, so its lateness ran once instead of ${CONFIG.latReps} times.`);
  const drift = Math.max(...lateness[peer].reps.map((r) => Math.abs(r.clockDriftMs)));
  if (drift > CONFIG.maxDriftMs) out.push(`  ${label(peer)}: wall clock moved ${fmt(drift, 2)} ms against the monotonic clock during a kept run (lateness precision reduced).`);
}
for (const note of clockRetries) out.push(`  ${note}`);
const cores = os.cpus().length;
const busy = [...Object.values(far), ...Object.values(lateness)].flatMap((x) => x.reps).filter((r) => r.loadavg1 > cores * 0.75);
if (busy.length > 0 || loadBefore[0] > cores * 0.75) {
  const worst = Math.max(loadBefore[0], ...busy.map((r) => r.loadavg1));
  out.push(`  WARNING: the machine was busy (1-min load average up to ${worst.toFixed(2)} on ${cores} cores; ${busy.length} run(s) ended above ${(cores * 0.75).toFixed(1)}): times and lateness are inflated by other work; bytes per schedule are not.`);
}
out.push('');
out.push('schedkit targets:');
out.push(renderTable(['target', 'peer', 'measured', 'verdict'], targets.map((t) => [t.target, t.peer, t.value, t.pass === null ? 'NOT MEASURED (N != 1M)' : t.pass ? 'PASS' : 'FAIL'])));
out.push('');
if (failures.length > 0) {
  out.push('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  out.push('!!! FAIL: correctness checks failed:');
  for (const f of failures) out.push(`!!!   ${f}`);
  out.push('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
} else {
  out.push('correctness: every lateness run fired each scheduled one-shot exactly once.');
}

const resultsDir = join(here, 'results');
mkdirSync(resultsDir, { recursive: true });
const jsonPath = resolve(process.env.BENCH_OUT || join(resultsDir, 'latest.json'));
mkdirSync(dirname(jsonPath), { recursive: true });
const report = {
  meta: {
    date: new Date(started).toISOString(),
    durationS: (Date.now() - started) / 1000,
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? null,
    totalMemMB: Math.round(os.totalmem() / 2 ** 20),
    loadavgBefore: loadBefore,
    loadavgAfter: os.loadavg(),
    commit,
    dirty,
    schedkitDist: distDir,
    config: { ...CONFIG, farDelayMs: FAR_MS, scheduleManyBatch: BATCH },
    targets: TARGETS,
  },
  far,
  lateness,
  targets,
  failures,
  clockRetries,
  table: { header: ['scenario', 'metric', 'peer', 'N', 'value', 'ratio_vs_schedkit_schedule', 'ratio_vs_schedkit_scheduleMany'], rows },
};
writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
out.push(`results: ${relative(process.cwd(), jsonPath)} (${fmt(report.meta.durationS, 0)} s in all)`);
process.stdout.write(`${out.join('\n')}\n`);
if (failures.length > 0) process.exitCode = 1;

// ------------------------------------------------------------------ Redis (BENCH_REDIS=0 skips)

if (process.env.BENCH_REDIS !== '0') {
  const redis = await runRedisBench();
  if (redis.failures.length > 0) process.exitCode = 1;
}

// ------------------------------------------------------------------ HTTP worker API (bench/http.mjs; BENCH_HTTP=0 skips)

if (process.env.BENCH_HTTP !== '0') {
  const { runHttpBench } = await import('./http.mjs');
  const httpReport = await runHttpBench();
  if (httpReport.failures.length > 0) process.exitCode = 1;
}

// ------------------------------------------------------------------ worker-thread pool overhead (bench/pool.mjs; BENCH_POOL=0 skips)

if (process.env.BENCH_POOL !== '0') {
  process.stdout.write('\n');
  await import('./pool.mjs');
}
