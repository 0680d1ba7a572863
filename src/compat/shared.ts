/**
 * Helpers shared by the compatibility layers in src/compat/ (internal: not exported from the
 * package root). Each layer is a thin translation of a seed system's API onto `Scheduler`.
 */
import type { EventEmitter } from 'node:events';

/**
 * Emits `error` on `emitter` when someone listens; otherwise reports a process warning, so
 * a background failure (a store write behind a fire-and-forget call) never crashes the
 * process the way an unhandled `error` event would.
 */
export function reportError(emitter: EventEmitter, err: unknown, label: string): void {
  const error = err instanceof Error ? err : new Error(String(err));
  if (emitter.listenerCount('error') > 0) {
    emitter.emit('error', error);
    return;
  }
  process.emitWarning(`${label}: ${error.message}`, { code: 'SCHEDKIT_COMPAT_ERROR' });
}

/**
 * Returns `promise` after marking it handled: a caller that ignores the promise (the seed
 * APIs were fire-and-forget) gets the failure through `onError` instead of an unhandled
 * rejection, and a caller that awaits it still sees the rejection.
 */
export function handled<T>(promise: Promise<T>, onError: (err: unknown) => void): Promise<T> {
  promise.catch(onError);
  return promise;
}

/** A Redis URL from node-redis/ioredis style `{ host, port, db }` settings. */
export function redisUrl(host: string | undefined, port: number | string | undefined, db: number | string | undefined): string {
  const h = host === undefined || host === '' ? '127.0.0.1' : host;
  const p = port === undefined || port === '' ? 6379 : Number(port);
  const d = db === undefined || db === '' ? 0 : Number(db);
  return `redis://${h.includes(':') ? `[${h}]` : h}:${p}/${d}`;
}
