import { ValidationError } from './errors.js';
import { describe } from './timing/duration.js';

/** A JSON value, as params and results are stored. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

const MAX_DEPTH = 64;
/** The `seen` set of a scalar's copy: never read or written (only objects are). */
const NO_OBJECTS = new Set<object>();

/**
 * Returns a deep copy of `value` that is plain JSON, or throws `ValidationError` naming the
 * path of the first offending part (functions, symbols, bigint, NaN/Infinity, cycles, class
 * instances other than Date, too deep). `__proto__` keys are kept as plain data properties
 * (never as prototypes), so params cannot pollute any prototype.
 */
export function toJson(value: unknown, field: string): JsonValue {
  // Scalars need no cycle check (and no Set: this runs for every result and params).
  return typeof value === 'object' && value !== null ? copy(value, field, 0, new Set()) : copy(value, field, 0, NO_OBJECTS);
}

function copy(value: unknown, path: string, depth: number, seen: Set<object>): JsonValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new ValidationError(path, `must be JSON: ${String(value)} is not a finite number`);
      // JSON has no -0 (JSON.stringify writes 0): every store must read back the same value.
      return value === 0 ? 0 : value;
    case 'object': {
      if (value === null) return null;
      if (depth >= MAX_DEPTH) throw new ValidationError(path, `must be JSON nested at most ${MAX_DEPTH} levels deep`);
      if (seen.has(value)) throw new ValidationError(path, 'must be JSON: it contains a cycle');
      if (value instanceof Date) {
        if (Number.isNaN(value.getTime())) throw new ValidationError(path, 'must be JSON: an invalid Date has no ISO form');
        return value.toISOString();
      }
      seen.add(value);
      try {
        if (Array.isArray(value)) {
          const out: JsonValue[] = new Array<JsonValue>(value.length);
          for (let i = 0; i < value.length; i++) out[i] = copy(value[i], `${path}[${i}]`, depth + 1, seen);
          return out;
        }
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new ValidationError(path, 'must be JSON: class instances (other than Date) are not allowed');
        }
        const out: JsonObject = Object.create(null) as JsonObject;
        for (const key of Object.keys(value)) {
          const item = (value as Record<string, unknown>)[key];
          if (item === undefined) continue; // as JSON.stringify does
          Object.defineProperty(out, key, {
            value: copy(item, `${path}.${key}`, depth + 1, seen),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
        return Object.setPrototypeOf(out, Object.prototype) as JsonObject;
      } finally {
        seen.delete(value);
      }
    }
    default:
      throw new ValidationError(path, `must be JSON: ${describe(value)} is not allowed`);
  }
}

/**
 * `obj[key]` if it is an own property, else `make()` stored there as an own data property.
 * For objects keyed by user text (task names, uids): `obj[key] ??= {}` would read inherited
 * members (`constructor`, `toString`) and, for `__proto__`, assign to Object.prototype itself.
 */
export function ownEntry<T>(obj: Record<string, T>, key: string, make: () => T): T {
  if (Object.hasOwn(obj, key)) return obj[key] as T;
  const value = make();
  setOwn(obj, key, value);
  return value;
}

/** `obj[key] = value` as an own enumerable data property, `__proto__` included. */
export function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

/** Like `toJson`, but undefined stays undefined (absent params). */
export function toOptionalJson(value: unknown, field: string): JsonValue | undefined {
  return value === undefined ? undefined : toJson(value, field);
}
