/**
 * Where RedisStore's partitions live: one server (`url` or `client`), several standalone
 * servers (`instances`: partition p on instances[p mod n]), or a Redis Cluster (`cluster`,
 * where the hash tags spread partitions over the slots). Owns the connections it opened.
 */
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import { defineScripts, type RedisClient } from './scripts.js';

export interface ConnectionOptions {
  url?: string | undefined;
  client?: RedisClient | undefined;
  instances?: readonly string[] | undefined;
  cluster?: readonly ClusterNode[] | undefined;
  redisOptions?: RedisOptions | undefined;
  clusterOptions?: ClusterOptions | undefined;
}

/**
 * Defaults for connections we open: commands fail fast-ish while Redis is down (the executor
 * retries). No auto-pipelining on standalone connections: ioredis still pipelines (it writes
 * without waiting for replies), and its auto-pipeline object per event-loop tick was a large
 * share of the garbage behind the steady-load p99 (`node bench/redis.mjs`, 2,000/s: p99
 * 9.6–13.6 ms with it, 4.2–5.9 ms without; drain rate unchanged). `redisOptions` can turn it on.
 */
const DEFAULTS: RedisOptions = { lazyConnect: true, enableAutoPipelining: false, maxRetriesPerRequest: 2 };

export class Connections {
  /** One client per shard; partition p uses `shards[p % shards.length]`. */
  readonly shards: RedisClient[];
  readonly #owned: boolean;
  readonly #subscribers: RedisClient[] = [];
  #lastError: Error | undefined;

  constructor(options: ConnectionOptions) {
    const onError = (err: Error): void => {
      this.#lastError = err; // ioredis reconnects by itself; calls fail with StoreError meanwhile
    };
    if (options.client !== undefined) {
      this.shards = [options.client];
      this.#owned = false;
    } else if (options.cluster !== undefined) {
      const cluster = new Cluster([...options.cluster], {
        lazyConnect: true,
        enableAutoPipelining: true,
        ...options.clusterOptions,
        redisOptions: { maxRetriesPerRequest: 2, ...options.redisOptions, ...options.clusterOptions?.redisOptions },
      });
      cluster.on('error', onError);
      this.shards = [cluster];
      this.#owned = true;
    } else {
      const urls = options.instances ?? [options.url ?? 'redis://127.0.0.1:6379'];
      this.shards = urls.map((url) => {
        const client = new Redis(url, { ...DEFAULTS, ...options.redisOptions });
        client.on('error', onError);
        return client;
      });
      this.#owned = true;
    }
    for (const client of this.shards) defineScripts(client);
  }

  get lastError(): Error | undefined {
    return this.#lastError;
  }

  get isCluster(): boolean {
    return this.shards[0] instanceof Cluster;
  }

  forPartition(p: number): RedisClient {
    return this.shards[p % this.shards.length] as RedisClient;
  }

  async connect(): Promise<void> {
    if (!this.#owned) return;
    await Promise.all(
      this.shards.map(async (client) => {
        if (client.status === 'wait') await client.connect();
      }),
    );
  }

  /** The servers to SCAN: each standalone shard, or every cluster master. */
  scanNodes(): Redis[] {
    const out: Redis[] = [];
    for (const client of this.shards) {
      if (client instanceof Cluster) out.push(...client.nodes('master'));
      else out.push(client);
    }
    return out;
  }

  /**
   * Subscribes to `channel` on every shard (lazily, once); calls `onMessage` with each
   * payload, and `onReady` once subscribed and after every reconnect of a subscriber (a
   * notification published while we were not subscribed is lost: the listener re-checks).
   */
  subscribe(channel: string, onMessage: (message: string) => void, onReady: () => void): void {
    if (this.#subscribers.length > 0) return;
    for (const client of this.shards) {
      const sub = client.duplicate();
      let subscribed = false;
      sub.on('error', (err: Error) => {
        this.#lastError = err;
      });
      sub.on('message', (ch: string, message: string) => {
        if (ch === channel) onMessage(message);
      });
      sub.on('ready', () => {
        if (subscribed) onReady();
      });
      this.#subscribers.push(sub);
      void sub.subscribe(channel).then(
        () => {
          subscribed = true;
          onReady();
        },
        (err: unknown) => {
          this.#lastError = err instanceof Error ? err : new Error(String(err));
        },
      );
    }
  }

  /** Closes what we opened: subscribers always, shards when they are ours. */
  async close(): Promise<void> {
    const subs = this.#subscribers.splice(0);
    const all = [...subs, ...(this.#owned ? this.shards : [])];
    await Promise.all(
      all.map(async (client) => {
        try {
          if (client.status !== 'ready') client.disconnect();
          else await client.quit();
        } catch {
          client.disconnect();
        }
      }),
    );
  }
}
