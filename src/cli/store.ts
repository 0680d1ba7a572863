/**
 * `--store memory|redis://host:port[/db]`, `--cluster host:port,…` and `--prefix`: which
 * store `serve` runs on, and which store the other commands act on directly (no service).
 */
import { resolve } from 'node:path';
import { ValidationError } from '../errors.js';
import { MemoryStore } from '../store/memory/MemoryStore.js';
import { RedisStore } from '../store/redis/RedisStore.js';
import type { Store } from '../store/Store.js';

export interface StoreSpec {
  /** `memory`, or a `redis://` / `rediss://` URL; undefined with `cluster`. */
  readonly store: string | undefined;
  /** Cluster seed nodes as written: `host:port,host:port`. */
  readonly cluster: string | undefined;
  readonly prefix: string | undefined;
  /** The embedded store's file. */
  readonly data: string;
}

export interface OpenedStore {
  readonly store: Store;
  /** For messages: `data: /abs/file`, `redis: redis://…`, `cluster: a:1,b:2`. */
  readonly description: string;
}

function parseNodes(text: string): { host: string; port: number }[] {
  const nodes = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const match = /^(.+):(\d{1,5})$/.exec(s);
      const port = match === null ? Number.NaN : Number(match[2]);
      if (match === null || port < 1 || port > 65535) throw new ValidationError('--cluster', `expected host:port[,host:port…], got "${s}"`);
      return { host: (match[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
    });
  if (nodes.length === 0) throw new ValidationError('--cluster', 'expected host:port[,host:port…]');
  return nodes;
}

/** Builds the store (not opened yet). Throws `ValidationError` for a bad spec. */
export function openStore(spec: StoreSpec): OpenedStore {
  if (spec.store !== undefined && spec.cluster !== undefined) throw new ValidationError('--store', 'give either --store or --cluster, not both');
  if (spec.cluster !== undefined) {
    const cluster = parseNodes(spec.cluster);
    return { store: new RedisStore({ cluster, prefix: spec.prefix }), description: `cluster: ${spec.cluster}${spec.prefix === undefined ? '' : `, prefix: ${spec.prefix}`}` };
  }
  const kind = spec.store ?? 'memory';
  if (kind === 'memory') {
    if (spec.prefix !== undefined) throw new ValidationError('--prefix', 'only applies to a Redis store');
    const file = resolve(spec.data);
    return { store: new MemoryStore({ file }), description: `data: ${file}` };
  }
  if (/^rediss?:\/\//.test(kind)) {
    let url: URL;
    try {
      url = new URL(kind);
    } catch {
      throw new ValidationError('--store', `not a valid URL: "${kind}"`);
    }
    if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname)) throw new ValidationError('--store', `the path must be a database number (redis://host:port/0), got "${url.pathname}"`);
    return { store: new RedisStore({ url: kind, prefix: spec.prefix }), description: `redis: ${redactUrl(kind, url)}${spec.prefix === undefined ? '' : `, prefix: ${spec.prefix}`}` };
  }
  throw new ValidationError('--store', `expected memory or redis://host:port[/db], got "${kind}"`);
}

/**
 * The URL as shown in messages: never a password, whether in the user info (as typed or
 * percent-encoded: `new URL` re-encodes characters such as `^`, `{`, `|`, spaces) or in a
 * `?password=` query parameter (which ioredis also reads).
 */
export function redactUrl(text: string, url: URL): string {
  if (url.password === '' && !url.searchParams.has('password')) return text;
  const shown = new URL(url.href);
  if (shown.password !== '') shown.password = '***';
  if (shown.searchParams.has('password')) shown.searchParams.set('password', '***');
  return shown.href.replace('%2A%2A%2A', '***');
}
