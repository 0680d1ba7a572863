import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore, Scheduler, parseDuration, ValidationError } from '../src/index.js';
import { nextDue, dueTimesBetween, latestDueAtOrBefore, type ScheduleSpec } from '../src/store/index.js';

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
const seq = (spec: ScheduleSpec, from: string, n: number): string[] => {
  let t = Date.parse(from);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const next = nextDue(spec, t);
    if (next === null) break;
    expect(next).toBeGreaterThan(t);
    t = next;
    out.push(iso(t) as string);
  }
  return out;
};
const cron = (expr: string, tz?: string): ScheduleSpec => ({ kind: 'cron', cron: expr, tz });

describe('durations', () => {
  it('parses numbers and unit strings', () => {
    expect(parseDuration(1500, 'd')).toBe(1500);
    expect(parseDuration('1500', 'd')).toBe(1500);
    expect(parseDuration('500ms', 'd')).toBe(500);
    expect(parseDuration('5s', 'd')).toBe(5000);
    expect(parseDuration('1m', 'd')).toBe(60_000);
    expect(parseDuration('2h', 'd')).toBe(7_200_000);
    expect(parseDuration('1d', 'd')).toBe(86_400_000);
    expect(parseDuration('1h30m', 'd')).toBe(5_400_000);
    expect(parseDuration('1.5s', 'd')).toBe(1500);
    expect(parseDuration(' 2 m 3 s ', 'd')).toBe(123_000);
  });

  it.each([
    [-1, /must not be negative/],
    [Number.NaN, /finite/],
    [Infinity, /finite/],
    ['', /not a duration/],
    ['5 parsecs', /not a duration/],
    ['-5s', /not a duration/],
    ['5s5', /not a duration/],
    [null, /got null/],
    [{}, /got object/],
    [1e30, /too large/],
  ])('rejects %s naming the field', (value, message) => {
    expect(() => parseDuration(value, 'schedule.in')).toThrow(ValidationError);
    expect(() => parseDuration(value, 'schedule.in')).toThrow(message);
    expect(() => parseDuration(value, 'schedule.in')).toThrow(/^schedule\.in: /);
  });

  it('property: any string either parses to a finite non-negative integer or throws ValidationError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9. ]*(ms|s|m|h|d|w|min|sec)?[0-9 ]*(ms|s|m|h)?$/)), (text) => {
        try {
          const ms = parseDuration(text, 'f');
          return Number.isInteger(ms) && ms >= 0;
        } catch (err) {
          return err instanceof ValidationError && err.field === 'f';
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('property: n seconds written as "<n>s" is n * 1000 ms', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1_000_000 }), (n) => parseDuration(`${n}s`, 'f') === n * 1000), { numRuns: 2000 });
  });
});

describe('every: fixed rate from an anchor', () => {
  const spec: ScheduleSpec = { kind: 'every', every: 1000, anchor: 10_000 };
  it('never drifts and skips straight over long gaps', () => {
    expect(nextDue(spec, 0)).toBe(10_000);
    expect(nextDue(spec, 10_000)).toBe(11_000);
    expect(nextDue(spec, 10_500)).toBe(11_000);
    expect(nextDue(spec, 1_000_000_123)).toBe(1_000_001_000);
    expect(latestDueAtOrBefore(spec, 10_000, 15_500)).toBe(15_000);
    expect(dueTimesBetween(spec, 10_000, 13_000, 100)).toEqual([10_000, 11_000, 12_000, 13_000]);
    expect(dueTimesBetween(spec, 10_000, 1e12, 5)).toHaveLength(5);
  });
});

describe('cron', () => {
  it('supports an optional seconds field, L, W and #', () => {
    expect(seq(cron('*/15 * * * * *', 'UTC'), '2026-01-01T00:00:01Z', 2)).toEqual(['2026-01-01T00:00:15.000Z', '2026-01-01T00:00:30.000Z']);
    expect(seq(cron('0 12 L * *', 'UTC'), '2026-01-01T00:00:00Z', 2)).toEqual(['2026-01-31T12:00:00.000Z', '2026-02-28T12:00:00.000Z']);
    // 15W: the weekday nearest the 15th (2026-02-15 is a Sunday -> Monday the 16th).
    expect(seq(cron('0 12 15W * *', 'UTC'), '2026-02-01T00:00:00Z', 1)).toEqual(['2026-02-16T12:00:00.000Z']);
    // 1#2: the second Monday.
    expect(seq(cron('0 12 * * 1#2', 'UTC'), '2026-01-01T00:00:00Z', 1)).toEqual(['2026-01-12T12:00:00.000Z']);
  });

  it('honours the time zone', () => {
    expect(seq(cron('0 9 * * *', 'Europe/Berlin'), '2026-01-10T00:00:00Z', 1)).toEqual(['2026-01-10T08:00:00.000Z']);
    expect(seq(cron('0 9 * * *', 'America/New_York'), '2026-01-10T00:00:00Z', 1)).toEqual(['2026-01-10T14:00:00.000Z']);
  });

  describe('DST', () => {
    it('spring forward (Europe/Berlin 2026-03-29): 02:30 does not exist; it fires at 03:30 CEST that day, not dropped, not looped', () => {
      expect(seq(cron('0 30 2 * * *', 'Europe/Berlin'), '2026-03-27T12:00:00Z', 4)).toEqual([
        '2026-03-28T01:30:00.000Z', // 02:30 CET
        '2026-03-29T01:30:00.000Z', // 03:30 CEST: the shifted occurrence
        '2026-03-30T00:30:00.000Z', // 02:30 CEST
        '2026-03-31T00:30:00.000Z',
      ]);
    });

    it('spring forward (America/New_York 2026-03-08): same rule', () => {
      expect(seq(cron('30 2 * * *', 'America/New_York'), '2026-03-07T12:00:00Z', 2)).toEqual(['2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z']);
    });

    it('fall back (Europe/Berlin 2026-10-25): 02:30 happens twice on the wall clock but fires once', () => {
      expect(seq(cron('0 30 2 * * *', 'Europe/Berlin'), '2026-10-24T12:00:00Z', 2)).toEqual([
        '2026-10-25T00:30:00.000Z', // 02:30 CEST, first pass; the 02:30 CET pass fires nothing
        '2026-10-26T01:30:00.000Z',
      ]);
    });

    it('fall back: a 30-minute cron never fires twice for one wall time (one 90-minute gap)', () => {
      const times = seq(cron('0 */30 * * * *', 'Europe/Berlin'), '2026-10-24T23:00:00Z', 8).map((t) => Date.parse(t));
      const gaps = times.slice(1).map((t, i) => (t - (times[i] as number)) / 60_000);
      expect(gaps).toEqual([30, 30, 90, 30, 30, 30, 30]);
    });

    it('a per-second cron over a whole DST day in both zones is strictly increasing and never stops', () => {
      for (const [tz, day] of [
        ['Europe/Berlin', '2026-03-29T00:00:00Z'],
        ['Europe/Berlin', '2026-10-24T23:00:00Z'],
        ['America/New_York', '2026-11-01T04:00:00Z'],
      ] as const) {
        const spec = cron('0 * * * * *', tz);
        let t = Date.parse(day);
        for (let i = 0; i < 24 * 60; i++) {
          const next = nextDue(spec, t);
          expect(next).not.toBeNull();
          expect(next as number).toBeGreaterThan(t);
          expect((next as number) - t).toBeLessThanOrEqual(3_600_000 + 60_000);
          t = next as number;
        }
      }
    });
  });

  describe('through the scheduler (fake clock across the fall-back night)', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('a daily 02:30 Berlin cron fires once on 2026-10-25 and once the next day', async () => {
      vi.useFakeTimers({ now: Date.parse('2026-10-24T22:00:00Z'), toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'Date'] });
      const s = new Scheduler({ store: new MemoryStore() });
      const dues: string[] = [];
      s.define('nightly', (run) => void dues.push(run.dueAt.toISOString()));
      await s.start();
      await s.schedule('nightly', { uid: 'x', cron: '30 2 * * *', tz: 'Europe/Berlin' });
      for (let i = 0; i < 30 * 60; i++) await vi.advanceTimersByTimeAsync(60_000); // 30 hours, a minute at a time
      await s.stop({ timeout: 1000 });
      expect(dues).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
    });
  });
});
