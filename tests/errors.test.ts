import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DuplicateTaskError,
  InvalidCronError,
  Scheduler,
  SchedkitError,
  SchedulerStoppedError,
  UnknownTaskError,
  ValidationError,
} from '../src/index.js';
import { schedulerTracker, waitFor } from './helpers.js';

describe('bad input gets a typed error naming the field', () => {
  const track = schedulerTracker();

  it.each([
    [{ uid: 'x' }, 'ERR_VALIDATION', /schedule: needs one of `in`, `at`, `every` or `cron`/],
    [{ in: -5 }, 'ERR_VALIDATION', /schedule\.in: must not be negative/],
    [{ in: Number.NaN }, 'ERR_VALIDATION', /schedule\.in: must be a finite number/],
    [{ in: 'soon' }, 'ERR_VALIDATION', /schedule\.in: "soon" is not a duration/],
    [{ every: 0 }, 'ERR_VALIDATION', /schedule\.every: must be greater than zero/],
    [{ at: 'not a date' }, 'ERR_VALIDATION', /schedule\.at: .* is not a valid date/],
    [{ in: 5, at: Date.now() }, 'ERR_VALIDATION', /takes `in` or `at`, not both/],
    [{ cron: '* * *' }, 'ERR_INVALID_CRON', /schedule\.cron: "\* \* \*" is not a valid cron expression/],
    [{ cron: '61 * * * *' }, 'ERR_INVALID_CRON', /schedule\.cron/],
    [{ cron: '0 0 30 2 *' }, 'ERR_INVALID_CRON', /never fires/],
    [{ cron: '* * * * *', tz: 'Mars/Olympus' }, 'ERR_VALIDATION', /schedule\.tz: "Mars\/Olympus" is not a known IANA time zone/],
    [{ in: 5, tz: 'UTC' }, 'ERR_VALIDATION', /schedule\.tz: is only valid with `cron`/],
    [{ cron: '* * * * *', every: 5 }, 'ERR_VALIDATION', /cannot be combined/],
    [{ in: 5, params: { f: () => 1 } }, 'ERR_VALIDATION', /schedule\.params\.f: must be JSON: function/],
    [{ in: 5, params: { n: 10n } }, 'ERR_VALIDATION', /schedule\.params\.n: must be JSON: bigint/],
    [{ in: 5, params: { n: Infinity } }, 'ERR_VALIDATION', /schedule\.params\.n: must be JSON/],
    [{ in: 5, params: new Map() }, 'ERR_VALIDATION', /class instances/],
    [{ in: 5, uid: '' }, 'ERR_VALIDATION', /schedule\.uid: must not be empty/],
    [{ in: 5, uid: 'x'.repeat(513) }, 'ERR_VALIDATION', /at most 512/],
    [{ in: 5, uid: 42 }, 'ERR_VALIDATION', /schedule\.uid: must be a string/],
    [{ in: 5, enabled: 'yes' }, 'ERR_VALIDATION', /schedule\.enabled/],
    [{ in: 5, evry: 5 }, 'ERR_VALIDATION', /schedule\.evry: is not a known option/],
  ])('schedule(%o) -> %s', async (options, code, message) => {
    const s = track();
    const err = await s.schedule('t', options as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchedkitError);
    expect((err as SchedkitError).code).toBe(code);
    expect((err as Error).message).toMatch(message);
    expect(await s.list()).toEqual([]); // nothing half-stored
  });

  it('cyclic params are refused', async () => {
    const s = track();
    const params: Record<string, unknown> = {};
    params['self'] = params;
    await expect(s.schedule('t', { in: 5, params })).rejects.toThrow(/cycle/);
  });

  it('__proto__ and constructor keys in params are plain data, never prototypes', async () => {
    const s = track();
    const params = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"bad": 1}}}') as unknown;
    await s.schedule('t', { uid: 'p', in: '1h', params });
    const report = await s.get('t', 'p');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(report?.params)).toBe(Object.prototype);
    expect(Object.keys(report?.params as object)).toEqual(['__proto__', 'constructor']);
  });

  it('define: duplicate task, bad name, non-function handler, bad options', () => {
    const s = track();
    s.define('t', () => 1);
    expect(() => s.define('t', () => 1)).toThrow(DuplicateTaskError);
    expect(() => s.define('', () => 1)).toThrow(/define\.task: must not be empty/);
    expect(() => s.define('x', 'nope' as never)).toThrow(/define\.handler: must be a function/);
    expect(() => s.define('y', () => 1, { overlap: 'sometimes' as never })).toThrow(/define\("y"\)\.options\.overlap: must be one of "skip", "allow", "buffer-one", "cancel-previous"/);
    expect(() => s.define('y', () => 1, { retry: { attempts: 0 } })).toThrow(/retry\.attempts: must be between 1/);
    expect(() => s.define('y', () => 1, { retry: { jitter: 2 } })).toThrow(/retry\.jitter/);
    expect(() => s.define('y', () => 1, { timeout: -1 })).toThrow(/options\.timeout: must not be negative/);
    expect(() => s.define('y', () => 1, { concurrency: 0 })).toThrow(/options\.concurrency/);
    expect(() => s.define('y', () => 1, { misfire: 'run-all', catchupWindow: 'forever' })).toThrow(/catchupWindow/);
    expect(() => s.define('y', () => 1, { retries: 3 } as never)).toThrow(/options\.retries: is not a known option/);
  });

  it('Scheduler options are validated', () => {
    expect(() => new Scheduler({ concurrency: 0 })).toThrow(/Scheduler options\.concurrency/);
    expect(() => new Scheduler({ defaults: { overlap: 'x' as never } })).toThrow(/defaults\.overlap/);
  });

  it('strictTasks: scheduling an undefined task is an UnknownTaskError', async () => {
    const s = track({ strictTasks: true });
    await expect(s.schedule('ghost', { in: 5 })).rejects.toBeInstanceOf(UnknownTaskError);
  });

  it('commands after stop throw SchedulerStoppedError; start() again resumes', async () => {
    const s = track();
    await s.start();
    await s.stop();
    await expect(s.schedule('t', { in: 5 })).rejects.toBeInstanceOf(SchedulerStoppedError);
    await expect(s.list()).rejects.toMatchObject({ code: 'ERR_STOPPED', message: 'list: the scheduler is stopped' });
    await s.start();
    await expect(s.schedule('t', { in: '1h', uid: 'again' })).resolves.toMatchObject({ uid: 'again' });
  });

  it('a handler result that is not JSON fails the run with a clear error', async () => {
    const s = track();
    s.define('t', () => ({ when: 1n }));
    await s.start();
    await s.schedule('t', { uid: 'x', every: '1h', in: 0 });
    await waitFor(async () => (await s.get('t', 'x'))?.lastError != null, 'the failure');
    expect((await s.get('t', 'x'))?.lastError).toMatch(/task "t" result\.when: must be JSON: bigint/);
  });

  it('property: arbitrary schedule options never crash: a ScheduledRef or a SchedkitError, and the store stays consistent', async () => {
    const s = track();
    const anything = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.constant(null), fc.constant(undefined), fc.boolean(), fc.object({ maxDepth: 2 }));
    const options = fc.record(
      {
        uid: fc.oneof(fc.string({ maxLength: 20 }), anything),
        in: anything,
        at: anything,
        every: anything,
        cron: fc.oneof(fc.constantFrom('* * * * *', '0 0 * * *', '*/5 * * * * *', 'L W #', '0 0 31 2 *'), fc.string()),
        tz: fc.oneof(fc.constantFrom('UTC', 'Europe/Berlin', 'Nope/Nope'), fc.string()),
        params: anything,
        enabled: anything,
      },
      { requiredKeys: [] },
    );
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(options, async (opts) => {
        try {
          const ref = await s.schedule('fuzz', opts as never);
          ok++;
          return typeof ref.uid === 'string';
        } catch (err) {
          return err instanceof SchedkitError && (err instanceof ValidationError || err instanceof InvalidCronError);
        }
      }),
      { numRuns: 2000 },
    );
    expect((await s.list({ task: 'fuzz' })).length).toBeLessThanOrEqual(ok);
    expect(await s.snapshot()).toBeTypeOf('object');
  });
});

describe('HTTP status of store errors', () => {
  it('Redis out of memory is 503 ERR_STORE_OOM (not a fault of the service); other store failures are 500 faults', async () => {
    const { toHttpError } = await import('../src/http/errors.js');
    const { StoreError } = await import('../src/errors.js');
    const oom = toHttpError(new StoreError('RedisStore.upsert: Redis is out of memory', { code: 'ERR_STORE_OOM' }));
    expect(oom).toMatchObject({ status: 503, body: { code: 'ERR_STORE_OOM' }, fault: false });
    const other = toHttpError(new StoreError('RedisStore.upsert: connection closed'));
    expect(other).toMatchObject({ status: 500, body: { code: 'ERR_STORE' }, fault: true });
  });
});

describe('load() refuses what is not a JSON registry', () => {
  it('a Date, a Map or a class instance as the dump, a task or an entry is ERR_VALIDATION naming it; nothing is loaded', async () => {
    const { Scheduler } = await import('../src/index.js');
    const s = new Scheduler();
    await s.start({ execute: false });
    try {
      class Entry {
        iat = Date.now() + 60_000;
      }
      const cases: [unknown, RegExp][] = [
        [new Date(), /^registry: must be a plain \(JSON\) object, got an instance of Date$/],
        [new Map([['t', { u: { iat: 1 } }]]), /^registry: must be a plain \(JSON\) object, got an instance of Map$/],
        [{ t: new Map() }, /^registry\["t"\]: must be a plain \(JSON\) object, got an instance of Map$/],
        [{ t: { u: new Entry() } }, /^registry\["t"\]\["u"\]: must be a plain \(JSON\) object, got an instance of Entry$/],
      ];
      for (const [dump, message] of cases) {
        const err = await s.load(dump as never).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).message).toMatch(message);
      }
      // Plain objects, with or without a prototype, still load.
      const bare = Object.create(null) as Record<string, unknown>;
      bare['u'] = { iat: Date.now() + 60_000, timeout: 60_000 };
      expect(await s.load({ t: bare } as never)).toBe(1);
      expect(Object.keys(await s.snapshot())).toEqual(['t']);
    } finally {
      await s.stop();
    }
  });
});
