/**
 * The floor of a leased drain on this machine: what the least work that still leases each run
 * costs, to set beside `npm run bench`'s drain (bench/redis.mjs). Not schedkit: two tiny Lua
 * scripts on one freshly started redis-server (a free loopback port, `--save ''`), one process.
 *   claim:    ZRANGE BYSCORE LIMIT <batch> + ZREM + HSET of one lease field per run; the reply
 *             is one string, as schedkit's claim's is
 *   complete: HDEL of those lease fields (the tokens as arguments)
 * A claim goes out again as soon as one answers (one claim ahead, as schedkit's executor does),
 * each batch runs a no-op handler, then its completion goes out.
 *   node bench/redis-floor.mjs        env: FLOOR_N (50000), FLOOR_BATCH (100), REDIS_SERVER
 * Prints jobs/s and Redis and Node CPU per job.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from './net.mjs';

const n = Number(process.env.FLOOR_N ?? 50_000);
const batch = Number(process.env.FLOOR_BATCH ?? 100);

/** Whether something listens on the loopback port. */
async function accepts(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const port = await freePort();
const server = spawn(process.env.REDIS_SERVER ?? '/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
try {
  for (let i = 0; !(await accepts(port)); i++) {
    if (i > 200) throw new Error(`redis-server did not start on port ${port}`);
    await sleep(25);
  }
  const r = new Redis({ port, host: '127.0.0.1' });
  const due = Date.now() - 1000;
  for (let i = 0; i < n; i += 5000) {
    const args = [];
    for (let j = i; j < Math.min(n, i + 5000); j++) args.push(due, `5:benchd${j}`);
    await r.zadd('due', ...args);
  }
  r.defineCommand('floorClaim', {
    numberOfKeys: 2,
    lua: `
local m = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]), 'WITHSCORES')
if #m == 0 then return '' end
local members, lease, out = {}, {}, {}
for i = 1, #m, 2 do members[#members + 1] = m[i] end
redis.call('ZREM', KEYS[1], unpack(members))
for i, enc in ipairs(members) do
  local token = ARGV[3] .. i
  lease[#lease + 1] = token
  lease[#lease + 1] = enc
  out[i] = token .. '\\31' .. enc .. '\\31' .. m[2 * i]
end
redis.call('HSET', KEYS[2], unpack(lease))
return table.concat(out, '\\30')`,
  });
  r.defineCommand('floorComplete', { numberOfKeys: 1, lua: `return redis.call('HDEL', KEYS[1], unpack(ARGV))` });
  const cpu = async () => {
    const info = await r.info('cpu');
    return Number(/used_cpu_user:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]);
  };
  let done = 0;
  let seq = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const handler = () => undefined;
  const claim = () => {
    r.floorClaim('due', 'leases', String(Date.now()), String(batch), `t${seq++}.`).then((reply) => {
      if (reply === '') return;
      claim(); // the next claim goes out before this batch runs
      const tokens = [];
      for (const run of reply.split('\x1e')) {
        const [token, enc] = run.split('\x1f');
        handler(enc);
        tokens.push(token);
      }
      void r.floorComplete('leases', ...tokens).then(() => {
        done += tokens.length;
        if (done === n) finish();
      });
    });
  };
  const redis0 = await cpu();
  const node0 = process.cpuUsage();
  const t0 = performance.now();
  claim();
  await finished;
  const ms = performance.now() - t0;
  const node = process.cpuUsage(node0);
  const redisCpu = (await cpu()) - redis0;
  console.log(`floor: ${n} runs in batches of ${batch}: ${Math.round((n * 1000) / ms).toLocaleString('en-US')} jobs/s; Redis CPU ${((redisCpu * 1e6) / n).toFixed(2)} us/job, Node CPU ${((node.user + node.system) / n).toFixed(2)} us/job`);
  r.disconnect();
} finally {
  server.kill('SIGKILL');
}
