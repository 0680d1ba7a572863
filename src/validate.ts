import { ValidationError } from './errors.js';
import { describe } from './timing/duration.js';

/** Longest task name or uid accepted. */
export const MAX_NAME_LENGTH = 512;

/**
 * Task names and uids: non-empty strings of at most 512 characters without control
 * characters. Any other character (unicode, `:`, `{}`) is allowed: stores must never
 * build keys by plain concatenation that such characters could confuse.
 */
export function checkName(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new ValidationError(field, `must be a string, got ${describe(value)}`);
  if (value.length === 0) throw new ValidationError(field, 'must not be empty');
  if (value.length > MAX_NAME_LENGTH) throw new ValidationError(field, `must be at most ${MAX_NAME_LENGTH} characters, got ${value.length}`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new ValidationError(field, 'must not contain control characters');
  // Stores keep names as UTF-8 (Redis keys), where every lone surrogate becomes U+FFFD: two
  // different names would become one schedule, and a name would not read back as written.
  if (LONE_SURROGATE.test(value)) throw new ValidationError(field, 'must be well-formed Unicode (it contains a lone surrogate)');
  return value;
}

/** A UTF-16 surrogate that is not half of a pair (with the `u` flag, pairs are one code point). */
export const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

export function checkObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, `must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

export function checkOneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new ValidationError(field, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got ${typeof value === 'string' ? `"${value}"` : describe(value)}`);
  }
  return value as T;
}

export function checkInteger(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new ValidationError(field, `must be an integer, got ${typeof value === 'number' ? String(value) : describe(value)}`);
  if (value < min || value > max) throw new ValidationError(field, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

export function checkNumber(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ValidationError(field, `must be a finite number, got ${typeof value === 'number' ? String(value) : describe(value)}`);
  if (value < min || value > max) throw new ValidationError(field, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

export function checkBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new ValidationError(field, `must be true or false, got ${describe(value)}`);
  return value;
}

/** Rejects keys that are not in `known` (typos in options must not pass silently). */
export function checkKeys(obj: Record<string, unknown>, known: readonly string[], field: string): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) throw new ValidationError(`${field}.${key}`, `is not a known option (known: ${known.join(', ')})`);
  }
}
