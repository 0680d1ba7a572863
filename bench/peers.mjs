/**
 * The schedulers compared by the benchmark, each behind the same small interface so the
 * worker measures them all the same way.
 *
 * far: one-shot schedules due about 1 hour from now (scenario 1)
 *   setup()                     -> instance, created BEFORE the heap baseline is taken
 *   run(inst, n, overBudget)    -> how many were scheduled (stops early when overBudget() says so)
 *   warm(n)                     -> schedules n on a throwaway instance and disposes of it (JIT warm-up)
 *   teardown(inst)              -> optional
 *
 * lateness: one-shots due at given epoch-ms times (scenario 2)
 *   setup(onFire)               -> instance; onFire(index, dueMs) must be called once per fire
 *   schedule(inst, dues)        -> schedules dues[i] for i in 0..dues.length-1
 *   teardown(inst)
 */
import { createRequire } from 'node:module';
import { clearTimeout, setTimeout } from 'node:timers';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

/**
 * schedkit is ../dist/index.js; run.mjs points BENCH_SCHEDKIT_DIST at a snapshot of dist/ it
 * took at start, so a rebuild elsewhere mid-run cannot change or remove what is measured.
 */
function loadSchedkit() {
  const dist = process.env.BENCH_SCHEDKIT_DIST;
  return import(dist === undefined || dist === '' ? '../dist/index.js' : pathToFileURL(dist).href);
}
/** "1 hour from now" for scenario 1. */
export const FAR_MS = 3_600_000;
/** Batch size for schedkit's scheduleMany. */
export const BATCH = 10_000;
/** How often the scheduling loops ask whether the wall-time budget is spent. */
const CHECK_EVERY = 1024;

const noop = () => {};

// ------------------------------------------------------------------ raw setTimeout

const setTimeoutShared = {
  label: 'setTimeout',
  note: 'one shared callback; Timeout handles kept alive by Node timer lists',
  far: {
    setup: () => ({}),
    run(_inst, n, overBudget) {
      for (let i = 0; i < n; i++) {
        setTimeout(noop, FAR_MS);
        if (i % CHECK_EVERY === 0 && overBudget()) return i + 1;
      }
      return n;
    },
    warm(n) {
      const handles = [];
      for (let i = 0; i < n; i++) handles.push(setTimeout(noop, FAR_MS));
      for (const h of handles) clearTimeout(h);
    },
  },
  lateness: {
    setup: (onFire) => ({ onFire, handles: [] }),
    schedule(inst, dues) {
      for (let i = 0; i < dues.length; i++) {
        // The index rides as a timer argument (no closure per timer).
        inst.handles.push(setTimeout(inst.onFire, dues[i] - Date.now(), i, dues[i]));
      }
    },
    teardown(inst) {
      for (const h of inst.handles) clearTimeout(h);
    },
  },
};

const setTimeoutClosure = {
  label: 'setTimeout+closure',
  note: 'a closure per timer (what code needing per-timer identity usually writes)',
  far: {
    setup: () => ({ fired: 0 }),
    run(inst, n, overBudget) {
      for (let i = 0; i < n; i++) {
        setTimeout(() => {
          inst.fired = i;
        }, FAR_MS);
        if (i % CHECK_EVERY === 0 && overBudget()) return i + 1;
      }
      return n;
    },
    warm(n) {
      const handles = [];
      const sink = { fired: 0 };
      for (let i = 0; i < n; i++) {
        handles.push(
          setTimeout(() => {
            sink.fired = i;
          }, FAR_MS),
        );
      }
      for (const h of handles) clearTimeout(h);
    },
  },
};

// ------------------------------------------------------------------ toad-scheduler

/**
 * toad-scheduler v3 has no one-shot job. Closest: a SimpleIntervalJob whose interval is the
 * delay and whose task removes the job (removeById) on its first run.
 */
const toad = {
  label: 'toad-scheduler',
  note: 'no one-shot job in toad-scheduler v3: SimpleIntervalJob(interval = delay) + removeById on first run',
  far: {
    setup() {
      const { ToadScheduler, SimpleIntervalJob, Task } = require('toad-scheduler');
      const scheduler = new ToadScheduler();
      const task = new Task('bench', (_taskId, jobId) => {
        scheduler.removeById(jobId);
      });
      return { scheduler, task, SimpleIntervalJob };
    },
    run(inst, n, overBudget) {
      const { scheduler, task, SimpleIntervalJob } = inst;
      for (let i = 0; i < n; i++) {
        scheduler.addSimpleIntervalJob(new SimpleIntervalJob({ milliseconds: FAR_MS }, task, { id: `j${i}` }));
        if (i % CHECK_EVERY === 0 && overBudget()) return i + 1;
      }
      return n;
    },
    warm(n) {
      const inst = this.setup();
      this.run(inst, n, () => false);
      inst.scheduler.stop();
    },
    teardown(inst) {
      inst.scheduler.stop();
    },
  },
  lateness: {
    setup(onFire) {
      const { ToadScheduler, SimpleIntervalJob, Task } = require('toad-scheduler');
      return { scheduler: new ToadScheduler(), SimpleIntervalJob, Task, onFire };
    },
    schedule(inst, dues) {
      const { scheduler, SimpleIntervalJob, Task, onFire } = inst;
      for (let i = 0; i < dues.length; i++) {
        const due = dues[i];
        const id = `l${i}`;
        const task = new Task(id, () => {
          onFire(i, due);
          scheduler.removeById(id);
        });
        scheduler.addSimpleIntervalJob(new SimpleIntervalJob({ milliseconds: due - Date.now() }, task, { id }));
      }
    },
    teardown(inst) {
      inst.scheduler.stop();
    },
  },
};

// ------------------------------------------------------------------ node-schedule

const nodeSchedule = {
  label: 'node-schedule',
  note: 'scheduleJob(date, fn), anonymous jobs',
  far: {
    setup: () => ({ schedule: require('node-schedule') }),
    run(inst, n, overBudget) {
      const { scheduleJob } = inst.schedule;
      for (let i = 0; i < n; i++) {
        scheduleJob(new Date(Date.now() + FAR_MS), noop);
        if (i % CHECK_EVERY === 0 && overBudget()) return i + 1;
      }
      return n;
    },
    warm(n) {
      const { scheduleJob } = require('node-schedule');
      const jobs = [];
      for (let i = 0; i < n; i++) jobs.push(scheduleJob(new Date(Date.now() + FAR_MS), noop));
      // Cancel newest first (cheapest for its sorted invocation list).
      for (let i = jobs.length - 1; i >= 0; i--) jobs[i].cancel();
    },
  },
  lateness: {
    setup: (onFire) => ({ schedule: require('node-schedule'), onFire, jobs: [] }),
    schedule(inst, dues) {
      const { scheduleJob } = inst.schedule;
      for (let i = 0; i < dues.length; i++) {
        const due = dues[i];
        inst.jobs.push(scheduleJob(new Date(due), () => inst.onFire(i, due)));
      }
    },
    async teardown(inst) {
      await inst.schedule.gracefulShutdown();
    },
  },
};

// ------------------------------------------------------------------ schedkit

async function schedkitSetup(onFire) {
  const { Scheduler } = await loadSchedkit();
  const scheduler = new Scheduler();
  const errors = [];
  scheduler.on('error', (err) => errors.push(String(err)));
  scheduler.on('run:failure', (ev) => errors.push(`run:failure ${ev.uid}: ${String(ev.error)}`));
  if (onFire === undefined) {
    scheduler.define('bench', noop);
  } else {
    // Lateness from run.dueAt, as a user's handler would see it; the index is in the uid.
    scheduler.define('bench', (run) => {
      onFire(Number(run.uid.slice(1)), run.dueAt.getTime());
    });
  }
  await scheduler.start();
  return { scheduler, errors };
}

const schedkitLoop = {
  label: 'schedkit schedule()',
  note: 'await scheduler.schedule("bench", { uid, at }) one by one (at = epoch ms number)',
  far: {
    setup: () => schedkitSetup(undefined),
    async run(inst, n, overBudget) {
      const { scheduler } = inst;
      for (let i = 0; i < n; i++) {
        await scheduler.schedule('bench', { uid: `u${i}`, at: Date.now() + FAR_MS });
        if (i % CHECK_EVERY === 0 && overBudget()) return i + 1;
      }
      return n;
    },
    async warm(n) {
      const inst = await schedkitSetup(undefined);
      await this.run(inst, n, () => false);
      await inst.scheduler.stop();
    },
    teardown: (inst) => inst.scheduler.stop(),
  },
  lateness: {
    setup: (onFire) => schedkitSetup(onFire),
    async schedule(inst, dues) {
      for (let i = 0; i < dues.length; i++) await inst.scheduler.schedule('bench', { uid: `l${i}`, at: dues[i] });
    },
    teardown: (inst) => inst.scheduler.stop(),
  },
};

const schedkitMany = {
  label: 'schedkit scheduleMany()',
  note: `await scheduler.scheduleMany("bench", list) in batches of ${BATCH} (list built inside the timed region)`,
  far: {
    setup: () => schedkitSetup(undefined),
    async run(inst, n, overBudget) {
      const { scheduler } = inst;
      let done = 0;
      while (done < n) {
        const end = Math.min(n, done + BATCH);
        const list = [];
        for (let i = done; i < end; i++) list.push({ uid: `u${i}`, at: Date.now() + FAR_MS });
        await scheduler.scheduleMany('bench', list);
        done = end;
        if (overBudget()) break;
      }
      return done;
    },
    async warm(n) {
      const inst = await schedkitSetup(undefined);
      await this.run(inst, n, () => false);
      await inst.scheduler.stop();
    },
    teardown: (inst) => inst.scheduler.stop(),
  },
  lateness: {
    setup: (onFire) => schedkitSetup(onFire),
    async schedule(inst, dues) {
      for (let start = 0; start < dues.length; start += BATCH) {
        const list = [];
        for (let i = start; i < Math.min(dues.length, start + BATCH); i++) list.push({ uid: `l${i}`, at: dues[i] });
        await inst.scheduler.scheduleMany('bench', list);
      }
    },
    teardown: (inst) => inst.scheduler.stop(),
  },
};

export const PEERS = {
  setTimeout: setTimeoutShared,
  'setTimeout+closure': setTimeoutClosure,
  'toad-scheduler': toad,
  'node-schedule': nodeSchedule,
  'schedkit-schedule': schedkitLoop,
  'schedkit-scheduleMany': schedkitMany,
};

export const SCHEDKIT_PEERS = ['schedkit-schedule', 'schedkit-scheduleMany'];
