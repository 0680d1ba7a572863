/**
 * Names that could collide in Redis keys or hash tags (`:`, `{}`, unicode, prefixes of each
 * other, very long): every (task, uid) stays its own schedule, with its own params, on a real
 * redis-server (property test).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RedisStore } from '../src/index.js';
import { schedulerTracker } from './helpers.js';
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
});
