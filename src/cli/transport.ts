/**
 * How CLI commands reach schedkit: over HTTP to a running `schedkit serve` (`HttpTransport`),
 * or directly to a store (`StoreTransport`: the same HTTP API built in this process on a
 * `Scheduler` and called with fastify's `inject`, no socket; see ./direct.ts). Both answer
 * the same JSON, so every command behaves alike either way, errors (`{ error, code }`)
 * included. This module stays light (no fastify, no store): HTTP commands start fast.
 */

export interface Answer {
  readonly status: number;
  readonly body: unknown;
}

export interface Transport {
  /** `path` is relative to the API root, e.g. `api/tasks`. Rejects only when the service cannot be reached. */
  request(method: string, path: string, body?: unknown): Promise<Answer>;
  /** What the commands talk to, for messages. */
  readonly target: string;
  /** True for a store opened in this process. */
  readonly direct: boolean;
  close(): Promise<void>;
  /**
   * Direct only: completes a lease in the store (a leased pop made by another process, whose
   * in-process lease table this one does not have). Resolves false when the store no longer
   * knows the lease.
   */
  complete?(id: string, outcome: Outcome): Promise<boolean>;
  /** Direct only: the store's clock. */
  now?(): Promise<number>;
}

export type Outcome = { success: true; result: unknown } | { success: false; error: string; retryAt: number | undefined };

/** The service could not be reached, or answered something that is not schedkit's JSON. */
export class ClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientError';
  }
}

/** An error answer of the service (`{ error, code }`). */
export class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly body: { error: string; code: string; field?: string },
    readonly where: string,
  ) {
    super(`${where}: ${where === 'store' ? '' : `HTTP ${status}: `}${body.error} (${body.code})`);
    this.name = 'ServiceError';
  }
}

export class HttpTransport implements Transport {
  readonly direct = false;
  constructor(
    readonly target: string,
    readonly token: string | undefined,
  ) {}

  async request(method: string, path: string, body?: unknown): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token !== undefined) headers['authorization'] = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let url: URL;
    try {
      url = new URL(path, this.target.endsWith('/') ? this.target : `${this.target}/`);
    } catch {
      throw new ClientError(`not a valid service URL: "${this.target}"`);
    }
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ClientError(`cannot reach ${this.target}: ${cause?.code ?? cause?.message ?? (err as Error).message} (is \`schedkit serve\` running? set --url or SCHEDKIT_URL)`);
    }
    const text = await res.text();
    try {
      return { status: res.status, body: text.length === 0 ? undefined : JSON.parse(text) };
    } catch {
      throw new ClientError(`${method} ${url.pathname}: HTTP ${res.status} with a body that is not JSON (is ${this.target} a schedkit service?)`);
    }
  }

  async close(): Promise<void> {
    return Promise.resolve();
  }
}
