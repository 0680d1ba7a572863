/**
 * HTTP worker API bench: `schedkit serve` on the embedded store (a child process on a free
 * loopback port) and 50 concurrent clients, each looping push → pop?lease=30s → ack for
 * ~10 s. Reports round trips per second and p50/p99 latency per round trip and per request
 * type; writes bench/results/http.json.
 *
 *   node bench/http.mjs          (after `npm run build`; also run at the end of bench/run.mjs,
 *                                 BENCH_HTTP=0 skips it there)
 *   BENCH_HTTP_CLIENTS=50 BENCH_HTTP_SECONDS=10 BENCH_HTTP_WARMUP_SECONDS=1 node bench/http.mjs
 *
 * The load is a small hand-written loop on node:http with a keep-alive agent (one socket per
 * client) rather than autocannon: a round trip here is three *dependent* requests (the pop
 * answers the id the ack needs), which autocannon does not measure as a unit, and no new
 * dependency is needed. Loopback only; bounded in time (BENCH_HTTP_SECONDS, at most 120) and
 * count (BENCH_HTTP_MAX_ROUND_TRIPS, default 5,000,000). Exits 1 only on a correctness
 * failure (an error answer, a lost or duplicated task), never on a performance figure.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import http from 'node:http';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { fmt, fmtInt, percentile } from './stats.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

function intEnv(name, fallback, min, max) {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name} must be a number from ${min} to ${max}, got "${raw}"`);
  return n;
}

const CONFIG = {
  clients: intEnv('BENCH_HTTP_CLIENTS', 50, 1, 1000),
  seconds: intEnv('BENCH_HTTP_SECONDS', 10, 1, 120),
  warmupSeconds: intEnv('BENCH_HTTP_WARMUP_SECONDS', 1, 0, 30),
  maxRoundTrips: intEnv('BENCH_HTTP_MAX_ROUND_TRIPS', 5_000_000, 1, 100_000_000),
  lease: '30s',
  task: 'bench',
};

function log(line) {
  process.stderr.write(`[http] ${line}\n`);
}

/** Starts `schedkit serve` from a snapshot of dist/; resolves { url, child, stop }. */
async function startService(distSnapshot, dataDir) {
  const child = spawn(process.execPath, [join(distSnapshot, 'dist', 'cli', 'main.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--data', join(dataDir, 'registry.json')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SCHEDKIT_'))), SCHEDKIT_LOG_LEVEL: 'warn' },
  });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`serve did not listen within 20 s: ${stderr}`)), 20_000);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      const m = /schedkit listening on (http:\/\/\S+)/.exec(stdout);
      if (m !== null) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      rej(new Error(`serve exited with ${code}: ${stderr}`));
    });
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    const result = await exited;
    clearTimeout(timer);
    return result;
  };
  return { url, child, stop, stderr: () => stderr };
}

function requester(base, agent) {
  const { hostname, port } = new URL(base);
  return (method, path, body) =>
    new Promise((res, rej) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers = { accept: 'application/json' };
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(payload);
      }
      const req = http.request({ host: hostname, port, method, path, agent, headers }, (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (d) => (text += d));
        r.on('end', () => {
          try {
            res({ status: r.statusCode, body: text.length === 0 ? undefined : JSON.parse(text) });
          } catch (err) {
            rej(err);
          }
        });
        r.on('error', rej);
      });
      req.on('error', rej);
      req.end(payload);
    });
}

/** Runs the bench; resolves its report (also written to bench/results/http.json). */
export async function runHttpBench() {
  const started = Date.now();
  const distDir = resolve(process.env.BENCH_DIST || join(root, 'dist'));
  if (!existsSync(join(distDir, 'cli', 'main.js'))) {
    process.stderr.write(`bench: ${join(distDir, 'cli', 'main.js')} is missing; run \`npm run build\` first.\n`);
    return { failures: ['dist missing'] };
  }
  // A snapshot of dist/ (and package.json, which the CLI reads), so a rebuild elsewhere changes nothing mid-run.
  const snapshot = join(root, 'node_modules', '.cache', 'schedkit-bench', `http-${process.pid}`);
  rmSync(snapshot, { recursive: true, force: true });
  mkdirSync(snapshot, { recursive: true });
  cpSync(distDir, join(snapshot, 'dist'), { recursive: true });
  cpSync(join(root, 'package.json'), join(snapshot, 'package.json'));
  const dataDir = mkdtempSync(join(os.tmpdir(), 'schedkit-http-bench-'));
  const loadBefore = os.loadavg();
  const failures = [];
  let service;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONFIG.clients, maxFreeSockets: CONFIG.clients });
  try {
    service = await startService(snapshot, dataDir);
    log(`service ${service.url}; ${CONFIG.clients} clients, ${CONFIG.warmupSeconds} s warm-up + ${CONFIG.seconds} s of push → pop?lease=${CONFIG.lease} → ack`);
    const request = requester(service.url, agent);
    const path = `/api/pushTask/${CONFIG.task}`;

    const lat = { push: [], pop: [], ack: [], roundTrip: [] };
    let measuring = false;
    let stopAt = Infinity;
    let roundTrips = 0;
    let emptyPops = 0;
    let pushed = 0;
    let acked = 0;
    const seen = new Set();
    const errors = [];

    const client = async () => {
      while (performance.now() < stopAt && roundTrips < CONFIG.maxRoundTrips && errors.length === 0) {
        const t0 = performance.now();
        const push = await request('PUT', path, { n: pushed, at: Date.now() });
        const t1 = performance.now();
        if (push.status !== 200) {
          errors.push(`push: HTTP ${push.status} ${JSON.stringify(push.body)}`);
          break;
        }
        pushed++;
        let pop;
        let t2;
        let t2start = t1;
        for (;;) {
          t2start = performance.now();
          pop = await request('GET', `/api/popTask/${CONFIG.task}?lease=${CONFIG.lease}`);
          t2 = performance.now();
          if (pop.status !== 202) break;
          emptyPops++; // another client popped the one we pushed first: the queue is shared
        }
        if (pop.status !== 200) {
          errors.push(`pop: HTTP ${pop.status} ${JSON.stringify(pop.body)}`);
          break;
        }
        const uid = pop.body.uid;
        if (seen.has(uid)) errors.push(`task ${uid} delivered twice`);
        seen.add(uid);
        const ack = await request('POST', `/api/ackTask/${CONFIG.task}/${encodeURIComponent(pop.body.task.id)}`);
        const t3 = performance.now();
        if (ack.status !== 200) {
          errors.push(`ack: HTTP ${ack.status} ${JSON.stringify(ack.body)}`);
          break;
        }
        acked++;
        if (measuring) {
          roundTrips++;
          lat.push.push(t1 - t0);
          lat.pop.push(t2 - t2start);
          lat.ack.push(t3 - t2);
          lat.roundTrip.push(t3 - t0);
        }
      }
    };

    const warmupEnd = performance.now() + CONFIG.warmupSeconds * 1000;
    stopAt = warmupEnd + CONFIG.seconds * 1000;
    const clients = Array.from({ length: CONFIG.clients }, () => client());
    let measureStart = performance.now();
    const startMeasuring = setTimeout(() => {
      measuring = true;
      measureStart = performance.now();
    }, CONFIG.warmupSeconds * 1000);
    if (CONFIG.warmupSeconds === 0) {
      clearTimeout(startMeasuring);
      measuring = true;
    }
    const results = await Promise.allSettled(clients);
    const elapsedS = (performance.now() - measureStart) / 1000;
    for (const r of results) if (r.status === 'rejected') errors.push(`client crashed: ${r.reason?.stack ?? r.reason}`);

    // Correctness: everything pushed was delivered once and acknowledged; nothing is left.
    const depths = await request('GET', '/api/depths');
    const left = depths.body?.[CONFIG.task] ?? { due: 0, scheduled: 0, running: 0 };
    if (errors.length === 0 && (acked !== pushed || left.due + left.scheduled + left.running !== 0)) {
      errors.push(`pushed ${pushed}, acked ${acked}, left in the store ${JSON.stringify(left)}`);
    }
    failures.push(...errors.slice(0, 5));

    const summary = (values) => {
      const s = Float64Array.from(values).sort();
      return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s.length === 0 ? NaN : s[s.length - 1] };
    };
    const report = {
      meta: {
        date: new Date(started).toISOString(),
        node: process.version,
        platform: `${os.platform()} ${os.release()} ${os.arch()}`,
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? null,
        loadavgBefore: loadBefore,
        loadavgAfter: os.loadavg(),
        store: 'memory (embedded, --data file)',
        tool: 'hand-written node:http loop, keep-alive agent (one socket per client)',
        config: CONFIG,
        schedkitDist: distDir,
      },
      measuredSeconds: elapsedS,
      roundTrips,
      roundTripsPerSecond: roundTrips / elapsedS,
      requestsPerSecond: (roundTrips * 3) / elapsedS,
      emptyPops,
      latencyMs: { roundTrip: summary(lat.roundTrip), push: summary(lat.push), pop: summary(lat.pop), ack: summary(lat.ack) },
      failures,
    };
    const resultsDir = join(here, 'results');
    mkdirSync(resultsDir, { recursive: true });
    const jsonPath = resolve(process.env.BENCH_HTTP_OUT || join(resultsDir, 'http.json'));
    writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);

    const rows = [['', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms']];
    for (const [name, s] of Object.entries(report.latencyMs)) rows.push([name, fmt(s.p50, 2), fmt(s.p90, 2), fmt(s.p99, 2), fmt(s.max, 1)]);
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const lines = [
      `HTTP worker API (${CONFIG.clients} clients, push → pop?lease → ack, embedded store, loopback):`,
      `  ${fmtInt(roundTrips)} round trips in ${fmt(elapsedS, 1)} s = ${fmtInt(report.roundTripsPerSecond)} round trips/s (${fmtInt(report.requestsPerSecond)} requests/s), ${fmtInt(emptyPops)} empty pops retried`,
      ...rows.map((r) => `  ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')}`),
      failures.length === 0 ? '  correctness: every pushed task popped once and acknowledged, none left' : `  FAILURES: ${failures.join('; ')}`,
      `  results: ${relative(process.cwd(), jsonPath)}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return report;
  } catch (err) {
    failures.push(String(err?.stack ?? err));
    log(`FAILED: ${err?.stack ?? err}`);
    return { failures };
  } finally {
    agent.destroy();
    if (service !== undefined) {
      const { code } = await service.stop();
      if (code !== 0) {
        failures.push(`serve exited with ${code}: ${service.stderr().slice(-2000)}`);
        log(`serve exited with ${code}`);
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(snapshot, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const report = await runHttpBench();
  if (report.failures.length > 0) process.exitCode = 1;
}
