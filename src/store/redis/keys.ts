/**
 * RedisStore's key layout (the Lua side is described in lua/includes/lib.lua).
 *
 * A namespace (`prefix`) has P partitions. Every key of partition p starts with the base
 * `<prefix>:{<prefix>:<p>}`: the braces are its Redis Cluster hash tag, so one partition
 * lives in one slot (every script touches one slot) while P partitions spread over the
 * cluster. The tag never contains user text. A schedule `(task, uid)` lives in the partition
 * `fnv1a(enc) mod P`, where `enc = "<UTF-8 byte length of task>:<task><uid>"` names it
 * unambiguously whatever characters task and uid contain (`:`, `{`, `}`, `*`, unicode).
 */
import { ValidationError } from '../../errors.js';

/** Version of the key layout and script protocol; stored in the namespace's metadata. */
export const FORMAT = '5';

export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0) throw new ValidationError('RedisStore.prefix', 'must be a non-empty string');
  if (prefix.length > 128) throw new ValidationError('RedisStore.prefix', 'must be at most 128 characters');
  // eslint-disable-next-line no-control-regex
  if (/[{}\s\u0000-\u001f\u007f]/.test(prefix)) throw new ValidationError('RedisStore.prefix', 'must not contain braces, spaces or control characters (it forms the hash tag)');
  return prefix;
}

export function encodeId(task: string, uid: string): string {
  return `${Buffer.byteLength(task, 'utf8')}:${task}${uid}`;
}

export function decodeId(enc: string): { task: string; uid: string } {
  const colon = enc.indexOf(':');
  const n = Number(enc.slice(0, colon));
  // An ASCII task name is n characters long: no buffer needed (decoding runs per claimed run).
  let ascii = colon + 1 + n <= enc.length;
  for (let i = colon + 1; ascii && i <= colon + n; i++) ascii = enc.charCodeAt(i) < 0x80;
  if (ascii) return { task: enc.slice(colon + 1, colon + 1 + n), uid: enc.slice(colon + 1 + n) };
  const rest = Buffer.from(enc.slice(colon + 1), 'utf8');
  return { task: rest.subarray(0, n).toString('utf8'), uid: rest.subarray(n).toString('utf8') };
}

/** 32-bit FNV-1a over the UTF-8 bytes of `text`: stable across processes and releases. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Escapes Redis glob characters so text matches itself in SCAN MATCH. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\^]/g, (c) => `\\${c}`);
}

export class Keys {
  readonly prefix: string;
  readonly partitions: number;
  /** The namespace's metadata hash (partition count, format). */
  readonly meta: string;
  /** Pub/sub channel of wake-up notifications (payload: the due time, epoch ms). */
  readonly channel: string;
  readonly #bases: string[];
  readonly #head: string;

  constructor(prefix: string, partitions: number) {
    this.prefix = prefix;
    this.partitions = partitions;
    this.meta = `${prefix}:{${prefix}}:meta`;
    this.channel = `${prefix}:wake`;
    this.#bases = Array.from({ length: partitions }, (_, p) => `${prefix}:{${prefix}:${p}}`);
    this.#head = `${prefix}:{${prefix}:`;
  }

  partitionOf(task: string, uid: string): number {
    return fnv1a(encodeId(task, uid)) % this.partitions;
  }

  lockPartition(key: string): number {
    return fnv1a(`lock\u0000${key}`) % this.partitions;
  }

  base(p: number): string {
    return this.#bases[p] as string;
  }

  /** KEYS[1] of every partition script: routes the call to the partition's slot. */
  partitionMeta(p: number): string {
    return `${this.base(p)}:m`;
  }

  schedule(p: number, enc: string): string {
    return `${this.base(p)}:s:${enc}`;
  }

  /** The due set of a task in partition p (ZSET enc -> due time). */
  due(p: number, task: string): string {
    return `${this.base(p)}:d:${task}`;
  }

  /** HASH enc -> "<lease token>|<dueAt>" of the plain one-shots of partition p running without a hash (lua lib: lift). */
  plainRuns(p: number): string {
    return `${this.base(p)}:o`;
  }

  /** HASH lease group -> live runs, "<group>#" -> tokens given, "<group>/" -> "<maxAttempts>|<startedAt>|<encs>" (lua lib). */
  leaseGroups(p: number): string {
    return `${this.base(p)}:g`;
  }

  history(p: number, enc: string): string {
    return `${this.base(p)}:h:${enc}`;
  }

  lock(key: string): string {
    return `${this.base(this.lockPartition(key))}:k:${key}`;
  }

  /** SCAN pattern of every partition key of the namespace (filter with `parse`). */
  scanAll(): string {
    const g = escapeGlob(this.prefix);
    return `${g}:{${g}:*`;
  }

  /** SCAN pattern of schedule hashes, optionally of one task (filter with `parse`). */
  scanSchedules(task?: string): string {
    const g = escapeGlob(this.prefix);
    const tail = task === undefined ? '*' : `${escapeGlob(`${Buffer.byteLength(task, 'utf8')}:${task}`)}*`;
    return `${g}:{${g}:*}:s:${tail}`;
  }

  /** SCAN pattern of due sets (every task's, or one task's), filter with `parse` (type 'd'). */
  scanDue(task?: string): string {
    const g = escapeGlob(this.prefix);
    return `${g}:{${g}:*}:d:${task === undefined ? '*' : escapeGlob(task)}`;
  }

  /** Splits a key of this namespace into partition, type letter and rest; null when it is not one. */
  parse(key: string): { p: number; type: string; rest: string } | null {
    if (!key.startsWith(this.#head)) return null;
    const close = key.indexOf('}', this.#head.length);
    if (close < 0) return null;
    const digits = key.slice(this.#head.length, close);
    if (!/^\d+$/.test(digits)) return null;
    const p = Number(digits);
    if (p >= this.partitions) return null;
    const tail = key.slice(close + 1);
    if (!tail.startsWith(':')) return null;
    const type = tail.slice(1, 2);
    if (tail.length > 2 && tail[2] !== ':') return { p, type: tail.slice(1), rest: '' };
    return { p, type, rest: tail.slice(3) };
  }
}
