/**
 * Names that could collide in Redis keys or hash tags (`:`, `{}`, unicode, prefixes of each
 * other, very long): every (task, uid) stays its own schedule, with its own params, on a real
 * redis-server (property test).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RedisStore, SchedkitError } from '../src/index.js';
import { schedulerTracker, waitFor } from './helpers.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();

describe('RedisStore names (property test)', () => {
  const track = schedulerTracker();

  it('any set of (task, uid) names maps one-to-one onto schedules', async () => {
    const piece = fc.oneof(fc.string({ minLength: 1, maxLength: 6 }), fc.constantFrom(':', '{', '}', '{x}', '::', 'ü', '名', '\u{1F600}', 'a:b', '}{'));
    const nameArb = fc.array(piece, { minLength: 1, maxLength: 4 }).map((parts) => parts.join(''));
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.tuple(nameArb, nameArb), { minLength: 1, maxLength: 40, selector: ([t, u]) => `${t}\u0000${u}` }), async (pairs) => {
        const s = track({ store: new RedisStore({ url: redis.url, prefix: randomPrefix(), partitions: 4 }) });
        await s.start({ execute: false });
        for (const [i, [task, uid]] of pairs.entries()) await s.schedule(task, { uid, in: '1h', params: { i } });
        const listed = await s.list();
        expect(listed).toHaveLength(pairs.length);
        for (const [i, [task, uid]] of pairs.entries()) {
          const report = await s.get(task, uid);
          expect(report?.params, `${task} / ${uid}`).toEqual({ i });
        }
        const dump = await s.snapshot();
        expect(Object.values(dump).reduce((n, entries) => n + Object.keys(entries).length, 0)).toBe(pairs.length);
        expect(await s.clear()).toBe(pairs.length);
        await s.stop();
      }),
      { numRuns: 40 },
    );
  });

  it('random names, valid or not (unicode, lone surrogates, control characters, glob and hash-tag characters, 500+ long): a typed error, or an exact round trip through schedule/get/list/snapshot/lock/cancel and a run (100 batches of 20-40)', async () => {
    const piece = fc.oneof(
      fc.string({ minLength: 1, maxLength: 5 }),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 3 }),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }),
      fc.constantFrom(':', '{', '}', '{x}', '}{', '*', '?', '[', ']', '[a-z]', '\\', '^', '%', ' ', '\t', '\u0000', '\u007f', '\ud800', '\udc00', '\ud83d\ude00', 'ü', '名', '__proto__', 'constructor'),
    );
    const nameArb = fc.oneof(
      { weight: 12, arbitrary: fc.array(piece, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('')) },
      { weight: 1, arbitrary: fc.integer({ min: 509, max: 515 }).chain((n) => fc.constantFrom('k', '名', '{').map((c) => c.repeat(n))) },
      { weight: 1, arbitrary: fc.constant('') },
    );
    // eslint-disable-next-line no-control-regex
    const valid = (v: string): boolean => v.length >= 1 && v.length <= 512 && !/[\u0000-\u001f\u007f]/.test(v) && !/[\ud800-\udfff]/u.test(v);
    const prefix = randomPrefix();
    const s = track({ store: new RedisStore({ url: redis.url, prefix, partitions: 8 }) });
    await s.start({ execute: false });
    let accepted = 0;
    let refused = 0;
    let fired = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(nameArb, nameArb), { minLength: 20, maxLength: 40 }), async (pairs) => {
        await s.clear();
        const model = new Map<string, Map<string, number>>(); // task -> uid -> i (a later duplicate replaces)
        for (const [i, [task, uid]] of pairs.entries()) {
          const ok = valid(task) && valid(uid);
          try {
            await s.schedule(task, { uid, in: '1h', params: { i } });
          } catch (err) {
            expect(err, `(${JSON.stringify(task)}, ${JSON.stringify(uid)})`).toBeInstanceOf(SchedkitError);
            expect((err as SchedkitError).code).toBe('ERR_VALIDATION');
            expect(ok, `(${JSON.stringify(task)}, ${JSON.stringify(uid)}) refused: ${(err as Error).message}`).toBe(false);
            refused++;
            continue;
          }
          expect(ok, `(${JSON.stringify(task)}, ${JSON.stringify(uid)}) accepted`).toBe(true);
          accepted++;
          if (!model.has(task)) model.set(task, new Map());
          model.get(task)?.set(uid, i);
        }
        const all = await s.list();
        expect(all.map((r) => `${r.task}\u0000${r.uid}`).sort()).toEqual([...model].flatMap(([t, uids]) => [...uids.keys()].map((u) => `${t}\u0000${u}`)).sort());
        const dump = await s.snapshot();
        expect(Object.keys(dump).sort()).toEqual([...model.keys()].sort());
        for (const [task, uids] of model) {
          expect((await s.list({ task })).map((r) => r.uid).sort(), `list({ task: ${JSON.stringify(task)} })`).toEqual([...uids.keys()].sort());
          expect(Object.keys(dump[task] ?? {}).sort()).toEqual([...uids.keys()].sort());
          for (const [uid, i] of uids) {
            const report = await s.get(task, uid);
            expect([report?.task, report?.uid, report?.params], `get(${JSON.stringify(task)}, ${JSON.stringify(uid)})`).toEqual([task, uid, { i }]);
          }
        }
        // Locks keyed by the same names, and cancel by name, half of them.
        let k = 0;
        for (const [task, uids] of model) {
          const lock = await s.lock(task, { ttl: '10s' });
          expect(lock, `lock ${JSON.stringify(task)}`).not.toBeNull();
          expect(await s.lock(task), `lock ${JSON.stringify(task)} twice`).toBeNull();
          expect(await lock?.release()).toBe(true);
          for (const uid of uids.keys()) {
            if (k++ % 2 === 0) {
              expect(await s.cancel(task, uid)).toBe(true);
              expect(await s.get(task, uid)).toBeNull();
              uids.delete(uid);
            }
          }
        }
        expect((await s.list()).length).toBe([...model.values()].reduce((n, u) => n + u.size, 0));
        // The names reach a handler unchanged: run up to three of them.
        const picked = [...model].flatMap(([t, uids]) => [...uids.keys()].map((u) => [t, u] as const)).slice(0, 3);
        if (picked.length > 0) {
          const runner = track({ store: new RedisStore({ url: redis.url, prefix, partitions: 8 }) });
          const seen: string[] = [];
          for (const task of new Set(picked.map(([t]) => t))) runner.define(task, (run) => void seen.push(`${run.task}\u0000${run.uid}`));
          await runner.start();
          for (const [task, uid] of picked) await runner.trigger(task, uid);
          await waitFor(() => picked.every(([t, u]) => seen.includes(`${t}\u0000${u}`)), 'the triggered names ran');
          expect(seen.every((x) => picked.some(([t, u]) => x === `${t}\u0000${u}`))).toBe(true);
          fired += picked.length;
          await runner.stop();
        }
      }),
      { numRuns: 100 },
    );
    expect(accepted).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(50);
    expect(fired).toBeGreaterThan(50);
    await s.clear();
  });
});
