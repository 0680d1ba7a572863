import { ValidationError } from '../errors.js';
import { toOptionalJson } from '../json.js';
import { getCron } from '../timing/cron.js';
import { MAX_DURATION_MS } from '../timing/duration.js';
import type { ScheduleSpec } from '../timing/spec.js';
import { checkBoolean, checkName, checkNumber, checkObject } from '../validate.js';
import type { RegistryDump, ScheduleInput } from './Store.js';

/** A JSON object: a Date, Map or other class instance as a dump or entry would load nothing or the wrong thing. */
function checkPlain(value: unknown, field: string): Record<string, unknown> {
  const o = checkObject(value, field);
  const proto: unknown = Object.getPrototypeOf(o);
  if (proto !== Object.prototype && proto !== null) {
    const name = (o as { constructor?: { name?: unknown } }).constructor?.name;
    throw new ValidationError(field, `must be a plain (JSON) object, got ${typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'a class instance'}`);
  }
  return o;
}

/** Largest absolute time accepted in a registry (year ~2286). */
const MAX_EPOCH_MS = 1e13;

/**
 * Turns a registry dump (schedward's `TaskRunnerRegistryDump`, possibly with schedkit's
 * recurring fields) into schedule inputs, validating every field. The `iat` rule: each
 * entry becomes due at its `iat`; one whose `iat` has passed is due at once, and `iat` is
 * kept as its due time.
 */
export function loadRegistry(dump: unknown, field = 'registry'): ScheduleInput[] {
  const root = checkPlain(dump, field);
  const out: ScheduleInput[] = [];
  for (const task of Object.keys(root)) {
    const taskField = `${field}[${JSON.stringify(task)}]`;
    checkName(task, `${taskField} (task name)`);
    const entries = checkPlain(root[task], taskField);
    for (const uid of Object.keys(entries)) {
      const at = `${taskField}[${JSON.stringify(uid)}]`;
      checkName(uid, `${at} (uid)`);
      const entry = checkPlain(entries[uid], at);
      const iat = checkNumber(entry['iat'], `${at}.iat`, 0, MAX_EPOCH_MS);
      const timeout = entry['timeout'] === undefined ? 0 : checkNumber(entry['timeout'], `${at}.timeout`, 0, MAX_DURATION_MS);
      let spec: ScheduleSpec = { kind: 'once' };
      if (entry['every'] !== undefined && entry['cron'] !== undefined) throw new ValidationError(at, 'has both `every` and `cron`');
      if (entry['every'] !== undefined) {
        spec = { kind: 'every', every: checkNumber(entry['every'], `${at}.every`, 1, MAX_DURATION_MS), anchor: iat };
      } else if (entry['cron'] !== undefined) {
        if (typeof entry['cron'] !== 'string') throw new ValidationError(`${at}.cron`, 'must be a string');
        const tz = entry['tz'];
        if (tz !== undefined && typeof tz !== 'string') throw new ValidationError(`${at}.tz`, 'must be a string');
        getCron(entry['cron'], tz, `${at}.cron`);
        spec = { kind: 'cron', cron: entry['cron'], tz };
      }
      const enabled = entry['enabled'] === undefined ? true : checkBoolean(entry['enabled'], `${at}.enabled`);
      out.push({ task, uid, spec, first: { at: iat }, params: toOptionalJson(entry['params'], `${at}.params`), enabled, timeout });
    }
  }
  return out;
}

export type { RegistryDump };
