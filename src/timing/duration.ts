import { ValidationError } from '../errors.js';

/** A duration: milliseconds as a number, or a string such as `'500ms'`, `'5s'`, `'1h30m'`. */
export type Duration = number | string;

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const PART = /(\d+(?:\.\d+)?)\s*(ms|sec|s|min|m|h|d|w)/gy;

/** The longest duration accepted anywhere (about 100 years): guards against overflow. */
export const MAX_DURATION_MS = 100 * 365 * 86_400_000;

/**
 * Parses a duration into whole milliseconds. Throws `ValidationError` naming `field` for
 * NaN, negative, non-finite, too large or unparsable input.
 */
export function parseDuration(value: unknown, field: string, opts: { allowZero?: boolean } = {}): number {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ValidationError(field, `must be a finite number of milliseconds, got ${String(value)}`);
    ms = value;
  } else if (typeof value === 'string') {
    const text = value.trim();
    if (/^\d+(?:\.\d+)?$/.test(text)) {
      ms = Number(text);
    } else {
      ms = 0;
      PART.lastIndex = 0;
      let consumed = 0;
      let match: RegExpExecArray | null;
      while ((match = PART.exec(text)) !== null) {
        ms += Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? Number.NaN);
        consumed = PART.lastIndex;
        while (text[consumed] === ' ') consumed++;
        PART.lastIndex = consumed;
      }
      if (text.length === 0 || consumed !== text.length) {
        throw new ValidationError(field, `"${value}" is not a duration (use milliseconds or e.g. "500ms", "5s", "1m", "2h", "1h30m")`);
      }
    }
  } else {
    throw new ValidationError(field, `must be a number of milliseconds or a duration string, got ${describe(value)}`);
  }
  if (ms < 0) throw new ValidationError(field, `must not be negative, got ${String(value)}`);
  if (ms > MAX_DURATION_MS) throw new ValidationError(field, `is too large (at most ${MAX_DURATION_MS} ms)`);
  // Rounded before the zero check: 0.4 ms is 0 ms, and an `every` of 0 would never advance.
  const rounded = Math.round(ms);
  if (rounded === 0 && opts.allowZero === false) throw new ValidationError(field, ms === 0 ? 'must be greater than zero' : `must be greater than zero (${String(value)} rounds to 0 ms)`);
  return rounded;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
