/**
 * Redis scenario of `npm run bench` (skip it with BENCH_REDIS=0), also runnable alone:
 *   node --expose-gc bench/redis.mjs
 * schedkit's RedisStore against BullMQ on ONE freshly started redis-server (`--save ''
 * --appendonly no`, a free loopback port, never the system Redis on 6379), in one run. Each
 * measurement runs in its own forked process; the server is FLUSHALLed between them.
 *
 *   1) drain:  N occurrences due at one instant (schedkit: scheduleMany of `{ at: past }`
 *              one-shots, then an executor; BullMQ: addBulk without delay, then a Worker):
 *              jobs/s from starting the consumer to the last completion acknowledged.
 *   2) steady: RATE occurrences/s for SECONDS s (due times spread evenly, scheduled ahead):
 *              fire lateness = handler start - due time, both on this machine's clock.
 *   3) memory: N one-shots due in 1 h (BullMQ: delayed jobs, delay 1 h, data {}):
 *              INFO used_memory after - before, / N.
 *
 * Prints a table with ratios, checks the targets, writes bench/results/redis-latest.json
 * (BENCH_REDIS_OUT=<file> elsewhere). Env: BENCH_REDIS_N (50000), BENCH_REDIS_CONCURRENCY
 * (schedkit executor concurrency, 100), BENCH_REDIS_BULL_CONCURRENCY (50), BENCH_REDIS_RATE
 * (2000), BENCH_REDIS_SECONDS (10), BENCH_REDIS_MEM_N (50000), REDIS_SERVER (path);
 * BENCH_REDIS_ONLY=drain,steady,memory and BENCH_REDIS_PEERS=schedkit,bullmq pick a subset.
 * BullMQ comes from node_modules, else is installed on demand under node_modules/.cache (see
 * ensureBullmq). Exits 1 only when a correctness check fails (an occurrence missing or run twice).
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from './net.mjs';
import { fmt, fmtInt, percentile, preciseClock, renderTable } from './stats.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const env = (name, fallback) => (process.env[name] === undefined || process.env[name] === '' ? fallback : Number(process.env[name]));
const CONFIG = {
  n: env('BENCH_REDIS_N', 50_000),
  concurrency: env('BENCH_REDIS_CONCURRENCY', 100),
  bullConcurrency: env('BENCH_REDIS_BULL_CONCURRENCY', 50),
  rate: env('BENCH_REDIS_RATE', 2_000),
  seconds: env('BENCH_REDIS_SECONDS', 10),
  leadMs: env('BENCH_REDIS_LEAD_MS', 5_000),
  memN: env('BENCH_REDIS_MEM_N', 50_000),
  server: process.env.REDIS_SERVER ?? '/usr/bin/redis-server',
  /** Comma-separated subset of drain,steady,memory (default all), e.g. for profiling one. */
  only: (process.env.BENCH_REDIS_ONLY ?? 'drain,steady,memory').split(','),
  /** Comma-separated subset of schedkit,bullmq (default both). */
  peers: (process.env.BENCH_REDIS_PEERS ?? 'schedkit,bullmq').split(','),
};
const TARGETS = { drainRatio: 5, p99Ms: 10, memoryRatio: 0.5 };
const FAR_MS = 3_600_000;
const log = (msg) => process.stderr.write(`[bench:redis] ${msg}\n`);

// ====================================================================== worker side

async function loadSchedkit() {
  const dist = process.env.BENCH_SCHEDKIT_DIST;
  return import(dist === undefined || dist === '' ? '../dist/index.js' : pathToFileURL(dist).href);
}

/**
 * BullMQ, the peer: from the project's node_modules when it is there, else installed on
 * demand (it is not a devDependency: the lock file cannot list its optional native
 * packages for every platform) under node_modules/.cache/schedkit-bench/bullmq.
 * BENCH_BULLMQ_VERSION (default 6) picks the version installed, BENCH_BULLMQ_DIR another place.
 */
const BULLMQ_CACHE = resolve(process.env.BENCH_BULLMQ_DIR || join(root, 'node_modules', '.cache', 'schedkit-bench', 'bullmq'));
function bullmqFrom(base) {
  return createRequire(join(base, 'package.json'))('bullmq');
}
function ensureBullmq() {
  // BENCH_BULLMQ_CACHE=1 ignores a copy in the project's node_modules (tests the on-demand install).
  for (const base of process.env.BENCH_BULLMQ_CACHE === '1' ? [BULLMQ_CACHE] : [root, BULLMQ_CACHE]) {
    try {
      createRequire(join(base, 'package.json')).resolve('bullmq');
      return base;
    } catch {
      // not there
    }
  }
  const spec = `bullmq@${process.env.BENCH_BULLMQ_VERSION ?? '6'}`;
  log(`installing ${spec} for the comparison under ${relative(process.cwd(), BULLMQ_CACHE)} (not a project dependency)`);
  mkdirSync(BULLMQ_CACHE, { recursive: true });
  if (!existsSync(join(BULLMQ_CACHE, 'package.json'))) writeFileSync(join(BULLMQ_CACHE, 'package.json'), '{ "private": true }\n');
  try {
    execFileSync('npm', ['install', '--prefix', BULLMQ_CACHE, '--no-audit', '--no-fund', '--ignore-scripts', spec], { stdio: ['ignore', 'ignore', 'inherit'] });
    createRequire(join(BULLMQ_CACHE, 'package.json')).resolve('bullmq');
    return BULLMQ_CACHE;
  } catch (err) {
    log(`could not install ${spec}: ${err instanceof Error ? err.message : String(err)}; BullMQ is left out`);
    return null;
  }
}
const bullmq = () => bullmqFrom(process.env.BENCH_BULLMQ_BASE || root);
function bullmqVersion(base) {
  try {
    const entry = createRequire(join(base, 'package.json')).resolve('bullmq');
    const dir = entry.slice(0, entry.lastIndexOf('/node_modules/bullmq/') + '/node_modules/bullmq/'.length);
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

async function redisStats(client) {
  const text = await client.info('all');
  const out = { calls: 0, scriptCalls: 0, usec: 0, cpu: 0, usedMemory: 0 };
  for (const line of text.split('\r\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m !== null) {
      if (m[1] === 'info' || m[1] === 'config' || m[1] === 'client' || m[1] === 'hello' || m[1] === 'select') continue;
      out.calls += Number(m[2]);
      out.usec += Number(m[3]);
      if (m[1] === 'evalsha' || m[1] === 'eval' || m[1] === 'fcall') out.scriptCalls += Number(m[2]);
    }
    const c = /^used_cpu_(sys|user):([\d.]+)/.exec(line);
    if (c !== null) out.cpu += Number(c[2]);
    const u = /^used_memory:(\d+)/.exec(line);
    if (u !== null) out.usedMemory = Number(u[1]);
  }
  return out;
}

function statsDelta(a, b, n) {
  return {
    commandsPerJob: (b.calls - a.calls) / n,
    scriptCallsPerJob: (b.scriptCalls - a.scriptCalls) / n,
    redisUsecPerJob: (b.usec - a.usec) / n,
    redisCpuUsPerJob: ((b.cpu - a.cpu) * 1e6) / n,
  };
}

/** CPU time (user + system) this process spent since `start`, per job, in µs. */
function nodeCpu(start, n) {
  const c = process.cpuUsage(start);
  return (c.user + c.system) / n;
}

async function newIoredis(url) {
  const { Redis } = await import('ioredis');
  return new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
}

async function schedkitScheduler(url, prefix, concurrency) {
  const { Scheduler, RedisStore } = await loadSchedkit();
  const store = new RedisStore({ url, prefix });
  const scheduler = new Scheduler({ store, concurrency });
  const errors = [];
  scheduler.on('error', (err) => errors.push(String(err)));
  return { scheduler, store, errors };
}

async function scheduleOnce(scheduler, list) {
  for (let i = 0; i < list.length; i += 10_000) await scheduler.scheduleMany('bench', list.slice(i, i + 10_000));
}

const jobs = {
  async 'drain:schedkit'({ url, n, concurrency }) {
    const admin = await newIoredis(url);
    const producer = await schedkitScheduler(url, 'sk', concurrency);
    producer.scheduler.define('bench', () => undefined);
    await producer.scheduler.start({ execute: false });
    const at = Date.now() - 1000;
    const t0 = performance.now();
    await scheduleOnce(producer.scheduler, Array.from({ length: n }, (_, i) => ({ uid: `d${i}`, at })));
    const addMs = performance.now() - t0;
    await producer.scheduler.stop();

    const { scheduler, store, errors } = await schedkitScheduler(url, 'sk', concurrency);
    const seen = new Uint8Array(n);
    let ran = 0;
    let dup = 0;
    let done = 0;
    let finish;
    const finished = new Promise((r) => (finish = r));
    scheduler.define('bench', (run) => {
      const i = Number(run.uid.slice(1));
      if (seen[i] === 1) dup++;
      seen[i] = 1;
      ran++;
    });
    scheduler.on('run:success', () => {
      if (++done === n) finish();
    });
    await store.open(); // connect before the clock starts
    await admin.config('RESETSTAT');
    const s0 = await redisStats(admin);
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    await scheduler.start();
    await Promise.race([finished, sleep(300_000)]);
    const ms = performance.now() - t1;
    const nodeCpuUsPerJob = nodeCpu(c1, n);
    const s1 = await redisStats(admin);
    const errorsDuringDrain = errors.slice(0, 3); // not those of a claim cut short by stop()
    if (process.env.BENCH_REDIS_CMDSTATS === '1') process.stderr.write(`${(await admin.info('commandstats')).replace(/\r/g, '')}\n`);
    await scheduler.stop();
    await store.close();
    await admin.quit();
    return { peer: 'schedkit', n, ran, done, dup, addMs, ms, jobsPerS: (done * 1000) / ms, errors: errorsDuringDrain, nodeCpuUsPerJob, ...statsDelta(s0, s1, n) };
  },

  async 'drain:bullmq'({ url, n, concurrency }) {
    const { Queue, Worker } = bullmq();
    const admin = await newIoredis(url);
    const connection = { url };
    const queue = new Queue('drain', { connection: await newIoredis(url) });
    const t0 = performance.now();
    for (let i = 0; i < n; i += 5_000) {
      const chunk = [];
      for (let j = i; j < Math.min(n, i + 5_000); j++) chunk.push({ name: 'j', data: { i: j }, opts: { removeOnComplete: true, removeOnFail: true } });
      await queue.addBulk(chunk);
    }
    const addMs = performance.now() - t0;
    const seen = new Uint8Array(n);
    let ran = 0;
    let dup = 0;
    let done = 0;
    let finish;
    const finished = new Promise((r) => (finish = r));
    const worker = new Worker(
      'drain',
      async (job) => {
        const i = job.data.i;
        if (seen[i] === 1) dup++;
        seen[i] = 1;
        ran++;
      },
      { connection: { ...connection, maxRetriesPerRequest: null }, concurrency, autorun: false },
    );
    worker.on('completed', () => {
      if (++done === n) finish();
    });
    await worker.waitUntilReady();
    await admin.config('RESETSTAT');
    const s0 = await redisStats(admin);
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    void worker.run();
    await Promise.race([finished, sleep(300_000)]);
    const ms = performance.now() - t1;
    const nodeCpuUsPerJob = nodeCpu(c1, n);
    const s1 = await redisStats(admin);
    await worker.close();
    await queue.close();
    await admin.quit();
    return { peer: 'bullmq', n, ran, done, dup, addMs, ms, jobsPerS: (done * 1000) / ms, errors: [], nodeCpuUsPerJob, ...statsDelta(s0, s1, n) };
  },

  async 'steady:schedkit'({ url, rate, seconds, leadMs, concurrency }) {
    const n = rate * seconds;
    const { scheduler, errors } = await schedkitScheduler(url, 'st', concurrency);
    const clock = preciseClock();
    const late = new Float64Array(n).fill(Number.NaN);
    let fired = 0;
    let dup = 0;
    let finish;
    const finished = new Promise((r) => (finish = r));
    scheduler.define('bench', (run) => {
      const t = clock.now();
      const i = Number(run.uid.slice(1));
      if (!Number.isNaN(late[i])) dup++;
      late[i] = t - run.dueAt.getTime();
      if (++fired === n) finish();
    });
    await scheduler.start();
    const first = Math.ceil(Date.now() + leadMs);
    const list = Array.from({ length: n }, (_, i) => ({ uid: `s${i}`, at: first + Math.floor((i * 1000) / rate) }));
    await scheduleOnce(scheduler, list);
    globalThis.gc?.(); // the scheduling garbage, before the first is due (same for both peers)
    const scheduledBeforeFirstDue = Date.now() < first;
    const scheduleMs = Date.now() - (first - leadMs);
    await Promise.race([finished, sleep(leadMs + seconds * 1000 + 60_000)]);
    if (process.env.BENCH_REDIS_CMDSTATS === '1') {
      const admin = await newIoredis(url);
      process.stderr.write(`${(await admin.info('commandstats')).replace(/\r/g, '')}\n`);
      await admin.quit();
    }
    await scheduler.stop();
    return { peer: 'schedkit', ...summarize(late, fired, dup), scheduledBeforeFirstDue, scheduleMs, errors: errors.slice(0, 3) };
  },

  async 'steady:bullmq'({ url, rate, seconds, leadMs, concurrency }) {
    const { Queue, Worker } = bullmq();
    const n = rate * seconds;
    const queue = new Queue('steady', { connection: await newIoredis(url) });
    const clock = preciseClock();
    const late = new Float64Array(n).fill(Number.NaN);
    let fired = 0;
    let dup = 0;
    let finish;
    const finished = new Promise((r) => (finish = r));
    const worker = new Worker(
      'steady',
      async (job) => {
        const t = clock.now();
        const i = job.data.i;
        if (!Number.isNaN(late[i])) dup++;
        late[i] = t - job.data.due;
        if (++fired === n) finish();
      },
      { connection: { url, maxRetriesPerRequest: null }, concurrency },
    );
    await worker.waitUntilReady();
    const first = Math.ceil(Date.now() + leadMs);
    for (let i = 0; i < n; i += 5_000) {
      const chunk = [];
      const now = Date.now();
      for (let j = i; j < Math.min(n, i + 5_000); j++) {
        const due = first + Math.floor((j * 1000) / rate);
        chunk.push({ name: 'j', data: { i: j, due }, opts: { delay: Math.max(0, due - now), removeOnComplete: true, removeOnFail: true } });
      }
      await queue.addBulk(chunk);
    }
    globalThis.gc?.(); // the scheduling garbage, before the first is due (same for both peers)
    const scheduledBeforeFirstDue = Date.now() < first;
    const scheduleMs = Date.now() - (first - leadMs);
    await Promise.race([finished, sleep(leadMs + seconds * 1000 + 60_000)]);
    await worker.close();
    await queue.close();
    return { peer: 'bullmq', ...summarize(late, fired, dup), scheduledBeforeFirstDue, scheduleMs, errors: [] };
  },

  async 'memory:schedkit'({ url, n }) {
    const { scheduler } = await schedkitScheduler(url, 'mem', 1);
    scheduler.define('bench', () => undefined);
    await scheduler.start({ execute: false });
    const at = Date.now() + FAR_MS;
    await scheduleOnce(scheduler, Array.from({ length: n }, (_, i) => ({ uid: `m${i}`, at })));
    await scheduler.stop();
    return { peer: 'schedkit', n };
  },

  /** The same with `in` (the delay is kept, for snapshots: a hash per one-shot, as with params). */
  async 'memory-in:schedkit'({ url, n }) {
    const { scheduler } = await schedkitScheduler(url, 'mem', 1);
    scheduler.define('bench', () => undefined);
    await scheduler.start({ execute: false });
    await scheduleOnce(scheduler, Array.from({ length: n }, (_, i) => ({ uid: `m${i}`, in: FAR_MS })));
    await scheduler.stop();
    return { peer: 'schedkit', n };
  },

  async 'memory:bullmq'({ url, n }) {
    const { Queue } = bullmq();
    const queue = new Queue('mem', { connection: await newIoredis(url) });
    for (let i = 0; i < n; i += 5_000) {
      const chunk = [];
      for (let j = i; j < Math.min(n, i + 5_000); j++) chunk.push({ name: 'j', data: {}, opts: { delay: FAR_MS } });
      await queue.addBulk(chunk);
    }
    await queue.close();
    return { peer: 'bullmq', n };
  },
};

function summarize(late, fired, dup) {
  const values = Array.from(late).filter((x) => !Number.isNaN(x));
  const sorted = Float64Array.from(values).sort();
  // Where the tail is: lateness by 500 ms slice of the due times (p99 of each slice).
  const slices = [];
  const per = Math.max(1, Math.ceil(late.length / 40));
  for (let i = 0; i < late.length; i += per) {
    const s = Float64Array.from(Array.from(late.subarray(i, i + per)).filter((x) => !Number.isNaN(x))).sort();
    slices.push(Number(percentile(s, 99).toFixed(1)));
  }
  return { n: late.length, fired, missing: late.length - values.length, dup, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? Number.NaN, p99BySlice: slices };
}

if (process.argv[2] === '--worker') {
  const job = JSON.parse(process.argv[3] ?? '{}');
  let reply;
  try {
    reply = { ok: true, result: await jobs[job.job](job) };
  } catch (err) {
    reply = { ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
  process.send(reply, () => process.exit(0));
}

// ====================================================================== parent side

async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(os.tmpdir(), 'schedkit-bench-redis-'));
  const child = spawn(CONFIG.server, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no'], { stdio: 'ignore' });
  const stop = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  const { Redis } = await import('ioredis');
  const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: null, retryStrategy: () => 50 });
  client.on('error', () => undefined);
  for (let i = 0; i < 100; i++) {
    try {
      if ((await client.ping()) === 'PONG') break;
    } catch {
      await sleep(50);
    }
  }
  const info = await client.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
  return { port, url: `redis://127.0.0.1:${port}`, client, version, stop };
}

function runWorker(job, distIndex, bullmqBase) {
  return new Promise((res) => {
    const child = fork(fileURLToPath(import.meta.url), ['--worker', JSON.stringify(job)], {
      // BENCH_REDIS_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the workers.
      execArgv: ['--expose-gc', ...(process.env.BENCH_REDIS_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')],
      env: { ...process.env, BENCH_SCHEDKIT_DIST: distIndex, BENCH_BULLMQ_BASE: bullmqBase ?? '' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let reply;
    const killer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.on('message', (m) => (reply = m));
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      if (reply?.ok === true) res(reply.result);
      else res({ crashed: true, error: reply?.error ?? `worker exited with code ${String(code)} signal ${String(signal)}` });
    });
  });
}

async function usedMemory(client) {
  // Let lazy frees and client buffers settle before reading.
  await sleep(200);
  const info = await client.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

export async function runRedisBench() {
  const started = Date.now();
  const distDir = resolve(process.env.BENCH_DIST || join(root, 'dist'));
  if (!existsSync(join(distDir, 'index.js'))) {
    process.stderr.write(`bench: ${join(distDir, 'index.js')} is missing; run \`npm run build\` first.\n`);
    return { failures: ['dist missing'] };
  }
  if (!existsSync(CONFIG.server)) {
    log(`${CONFIG.server} not found (set REDIS_SERVER): Redis scenario skipped`);
    return { failures: [] };
  }
  // Same as run.mjs: measure a snapshot of dist/, so a rebuild elsewhere changes nothing mid-run.
  const snapshotDir = join(root, 'node_modules', '.cache', 'schedkit-bench', `dist-redis-${process.pid}`);
  cpSync(distDir, snapshotDir, { recursive: true });
  writeFileSync(join(snapshotDir, 'package.json'), '{ "type": "module" }\n');
  const distIndex = join(snapshotDir, 'index.js');
  const bullmqBase = CONFIG.peers.includes('bullmq') ? ensureBullmq() : null;
  const peers = CONFIG.peers.filter((p) => p !== 'bullmq' || bullmqBase !== null);
  const redis = await startRedis();
  const failures = [];
  const results = {};
  const loadBefore = os.loadavg();
  try {
    const run = async (name, job) => {
      await redis.client.flushall();
      const res = await runWorker({ ...job, job: name, url: redis.url }, distIndex, bullmqBase);
      if (res.crashed) {
        failures.push(`${name}: worker crashed: ${res.error}`);
        log(`${name}: CRASHED\n${res.error}`);
        return undefined;
      }
      if (res.errors?.length > 0) failures.push(`${name}: errors, e.g. ${res.errors.join('; ')}`);
      return res;
    };
    // 1) drain
    for (const peer of CONFIG.only.includes('drain') ? peers : []) {
      const res = await run(`drain:${peer}`, { n: CONFIG.n, concurrency: peer === 'schedkit' ? CONFIG.concurrency : CONFIG.bullConcurrency });
      if (res === undefined) continue;
      if (res.done !== CONFIG.n || res.ran !== CONFIG.n || res.dup > 0) failures.push(`drain:${peer}: completed ${res.done}, ran ${res.ran} (${res.dup} twice) of ${CONFIG.n}`);
      results[`drain:${peer}`] = res;
      log(`drain ${peer}: ${fmtInt(res.jobsPerS)} jobs/s (${fmt(res.ms, 0)} ms for ${fmtInt(res.done)}; add ${fmt(res.addMs, 0)} ms); ${fmt(res.commandsPerJob, 1)} Redis commands/job, ${fmt(res.redisCpuUsPerJob, 1)} µs Redis CPU/job, ${fmt(res.nodeCpuUsPerJob, 1)} µs Node CPU/job`);
    }
    // 2) steady
    for (const peer of CONFIG.only.includes('steady') ? peers : []) {
      const res = await run(`steady:${peer}`, { rate: CONFIG.rate, seconds: CONFIG.seconds, leadMs: CONFIG.leadMs, concurrency: peer === 'schedkit' ? CONFIG.concurrency : CONFIG.bullConcurrency });
      if (res === undefined) continue;
      if (res.missing > 0 || res.dup > 0) failures.push(`steady:${peer}: ${res.missing} missing, ${res.dup} twice of ${res.n}`);
      results[`steady:${peer}`] = res;
      if (!res.scheduledBeforeFirstDue) failures.push(`steady:${peer}: scheduling (${res.scheduleMs} ms) overran the ${CONFIG.leadMs} ms lead: raise BENCH_REDIS_LEAD_MS`);
      log(`steady ${peer}: scheduled in ${res.scheduleMs} ms; fired ${res.fired}/${res.n}, p50 ${fmt(res.p50, 2)} p99 ${fmt(res.p99, 2)} max ${fmt(res.max, 2)} ms`);
    }
    // 3) memory
    const memoryJobs = (CONFIG.only.includes('memory') ? peers : []).flatMap((peer) => (peer === 'schedkit' ? ['memory:schedkit', 'memory-in:schedkit'] : [`memory:${peer}`]));
    for (const job of memoryJobs) {
      await redis.client.flushall();
      const before = await usedMemory(redis.client);
      const res = await runWorker({ job, url: redis.url, n: CONFIG.memN }, distIndex, bullmqBase);
      if (res.crashed) {
        failures.push(`${job}: worker crashed: ${res.error}`);
        continue;
      }
      const after = await usedMemory(redis.client);
      const keys = await redis.client.dbsize();
      results[job] = { ...res, before, after, keys, bytesPerJob: (after - before) / res.n };
      log(`${job}: ${fmt((after - before) / res.n, 1)} B per one-shot (${fmtInt(keys)} keys)`);
    }
  } finally {
    await redis.client.quit().catch(() => undefined);
    redis.stop();
    rmSync(snapshotDir, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ table
  const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && a > 0 && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
  const rows = [];
  const dS = results['drain:schedkit'];
  const dB = results['drain:bullmq'];
  const drainN = fmtInt(CONFIG.n);
  const addRow = (scenario, metric, s, b, digits, higherIsBetter = false) => rows.push([scenario, metric, s === undefined ? 'n/a' : fmt(s, digits), b === undefined ? 'n/a' : fmt(b, digits), higherIsBetter ? ratio(s, b) : ratio(s, b)]);
  const d = `1) drain ${drainN} due now`;
  addRow(d, 'jobs/s (higher is better)', dS?.jobsPerS, dB?.jobsPerS, 0, true);
  addRow(d, 'drain time (ms)', dS?.ms, dB?.ms, 0);
  addRow(d, 'time to add (ms)', dS?.addMs, dB?.addMs, 0);
  addRow(d, 'Redis commands/job (incl. in Lua)', dS?.commandsPerJob, dB?.commandsPerJob, 2);
  addRow(d, 'script calls/job (EVALSHA)', dS?.scriptCallsPerJob, dB?.scriptCallsPerJob, 3);
  addRow(d, 'Redis CPU µs/job (used_cpu)', dS?.redisCpuUsPerJob, dB?.redisCpuUsPerJob, 1);
  addRow(d, 'Node CPU µs/job (consumer process)', dS?.nodeCpuUsPerJob, dB?.nodeCpuUsPerJob, 1);
  const sS = results['steady:schedkit'];
  const sB = results['steady:bullmq'];
  const st = `2) steady ${fmtInt(CONFIG.rate)}/s x ${CONFIG.seconds} s`;
  addRow(st, 'p50 lateness (ms)', sS?.p50, sB?.p50, 2);
  addRow(st, 'p99 lateness (ms)', sS?.p99, sB?.p99, 2);
  addRow(st, 'max lateness (ms)', sS?.max, sB?.max, 2);
  rows.push([st, 'fired / scheduled', sS === undefined ? 'n/a' : `${sS.fired}/${sS.n}`, sB === undefined ? 'n/a' : `${sB.fired}/${sB.n}`, '']);
  const mS = results['memory:schedkit'];
  const mB = results['memory:bullmq'];
  const m = `3) memory ${fmtInt(CONFIG.memN)} one-shots in 1 h`;
  addRow(m, 'used_memory B per one-shot (schedkit: at)', mS?.bytesPerJob, mB?.bytesPerJob, 1);
  addRow(m, 'keys (DBSIZE)', mS?.keys, mB?.keys, 0);
  const mIn = results['memory-in:schedkit'];
  addRow(m, 'used_memory B per one-shot (schedkit: in)', mIn?.bytesPerJob, mB?.bytesPerJob, 1);

  const targets = [
    { target: `drain >= ${TARGETS.drainRatio}x BullMQ jobs/s`, value: dS && dB ? `${fmtInt(dS.jobsPerS)} vs ${fmtInt(dB.jobsPerS)} jobs/s = ${(dS.jobsPerS / dB.jobsPerS).toFixed(2)}x` : 'n/a', pass: dS && dB ? dS.jobsPerS >= TARGETS.drainRatio * dB.jobsPerS : null },
    { target: `steady ${fmtInt(CONFIG.rate)}/s p99 lateness < ${TARGETS.p99Ms} ms`, value: sS ? `p99 ${fmt(sS.p99, 2)} ms` : 'n/a', pass: sS ? sS.p99 < TARGETS.p99Ms : null },
    { target: `memory per one-shot <= ${TARGETS.memoryRatio}x BullMQ delayed job`, value: mS && mB ? `${fmt(mS.bytesPerJob, 1)} vs ${fmt(mB.bytesPerJob, 1)} B = ${(mS.bytesPerJob / mB.bytesPerJob).toFixed(2)}x` : 'n/a', pass: mS && mB ? mS.bytesPerJob <= TARGETS.memoryRatio * mB.bytesPerJob : null },
  ];

  const out = [];
  out.push('');
  out.push(`schedkit RedisStore vs BullMQ — redis-server ${redis.version} (fresh, --save '' --appendonly no, 127.0.0.1:${redis.port}), node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, load avg at start ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);
  out.push(`schedkit: RedisStore defaults (16 partitions), executor concurrency ${CONFIG.concurrency}, trivial handler; BullMQ ${bullmqBase === null ? '(not available)' : bullmqVersion(bullmqBase)}: Worker concurrency ${CONFIG.bullConcurrency}, trivial processor, removeOnComplete (schedkit deletes a finished one-shot too)`);
  out.push('');
  out.push(renderTable(['scenario', 'metric', 'schedkit', 'BullMQ', 'schedkit ÷ BullMQ'], rows));
  out.push('');
  out.push('drain: clock runs from starting the consumer (store connected, jobs already in Redis) to the last completion acknowledged by Redis.');
  out.push('steady: lateness = handler start (sub-ms wall clock) - due time, both on this machine; all occurrences scheduled during the lead time before the first is due.');
  out.push('memory: INFO used_memory after adding - before (empty db), / N; BullMQ jobs carry data {}, schedkit one-shots no params. A plain one-shot (at, no params) is one sorted-set member; one scheduled with in (its delay is kept for snapshots) or with params also has a hash.');
  out.push('');
  out.push('targets:');
  out.push(renderTable(['target', 'measured', 'verdict'], targets.map((t) => [t.target, t.value, t.pass === null ? 'NOT MEASURED' : t.pass ? 'PASS' : 'FAIL'])));
  out.push('');
  if (failures.length > 0) {
    out.push('!!! FAIL: correctness checks failed:');
    for (const f of failures) out.push(`!!!   ${f}`);
  } else {
    out.push('correctness: every occurrence ran exactly once in every scenario.');
  }
  const jsonPath = resolve(process.env.BENCH_REDIS_OUT || join(here, 'results', 'redis-latest.json'));
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify({ meta: { date: new Date(started).toISOString(), durationS: (Date.now() - started) / 1000, node: process.version, redis: redis.version, cpus: os.cpus().length, loadavgBefore: loadBefore, loadavgAfter: os.loadavg(), config: CONFIG, targets: TARGETS }, results, targets, failures, table: rows }, null, 2)}\n`);
  out.push(`results: ${relative(process.cwd(), jsonPath)} (${fmt((Date.now() - started) / 1000, 0)} s)`);
  process.stdout.write(`${out.join('\n')}\n`);
  return { failures };
}

if (resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  const { failures } = await runRedisBench();
  if (failures.length > 0) process.exitCode = 1;
  process.exit();
}
