/**
 * Direct store mode (`--store`, `--cluster`): the service's HTTP API built in this process on
 * a `Scheduler` over the store and called with fastify's `inject` (no socket), so commands
 * answer exactly as `schedkit serve` would.
 */
import { SchedkitError } from '../errors.js';
import { createServer, type SchedkitServer } from '../http/server.js';
import type { JsonValue } from '../json.js';
import { Scheduler } from '../scheduler.js';
import { openStore, type StoreSpec } from './store.js';
import { ClientError, type Answer, type Outcome, type Transport } from './transport.js';
import { leaseToken } from '../http/lease-id.js';

export class StoreTransport implements Transport {
  readonly direct = true;
  readonly target: string;
  readonly scheduler: Scheduler;
  readonly #server: SchedkitServer;

  constructor(spec: StoreSpec) {
    const opened = openStore(spec);
    this.target = opened.description;
    this.scheduler = new Scheduler({ store: opened.store });
    this.scheduler.on('error', () => undefined);
    this.#server = createServer({ scheduler: this.scheduler });
  }

  async request(method: string, path: string, body?: unknown): Promise<Answer> {
    const res = await this.#server.app.inject({
      method: method as 'GET',
      url: `/${path}`,
      ...(body === undefined ? {} : { payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    if (res.statusCode >= 500) {
      // A store fault: the server hides it from HTTP clients, but here the caller is us.
      await this.scheduler.ready().catch((err: unknown) => {
        throw err instanceof SchedkitError ? err : new ClientError(`cannot open the store (${this.target}): ${(err as Error).message}`);
      });
    }
    return { status: res.statusCode, body: res.body.length === 0 ? undefined : JSON.parse(res.body) };
  }

  /** `id`: a leased pop's id, as the HTTP API gives it (http/lease-id.ts). */
  async complete(id: string, outcome: Outcome): Promise<boolean> {
    const token = leaseToken(id);
    await this.scheduler.ready();
    const now = await this.scheduler.store.now();
    const [status] = await this.scheduler.store.complete([
      outcome.success
        ? { token, outcome: 'success', result: outcome.result as JsonValue | undefined, startedAt: now, durationMs: 0 }
        : { token, outcome: 'failure', error: outcome.error, startedAt: now, durationMs: 0, retryAt: outcome.retryAt },
    ]);
    return status === 'ok';
  }

  async now(): Promise<number> {
    await this.scheduler.ready();
    return this.scheduler.store.now();
  }

  async close(): Promise<void> {
    try {
      await this.#server.close();
    } finally {
      await this.scheduler.stop(); // a memory store persists its file here
    }
  }
}
