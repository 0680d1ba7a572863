/**
 * RedisStore on a 3-master Redis Cluster started by the test (`redis-cli --cluster create`
 * on loopback ports): the whole conformance suite, and partitions spread over every master.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisStore } from '../src/index.js';
import { storeConformance } from './conformance.js';
import { randomPrefix, useRedisCluster } from './redis-harness.js';

const redisCluster = useRedisCluster(3);

const nodes = (): { host: string; port: number }[] => redisCluster.cluster.nodes;

storeConformance('RedisStore on a 3-master Redis Cluster', () => new RedisStore({ cluster: nodes(), prefix: randomPrefix() }));

describe('RedisStore on Redis Cluster', () => {
  it('spreads the partitions over every master; each partition lives on one', async () => {
    const store = new RedisStore({ cluster: nodes(), prefix: randomPrefix(), partitions: 16 });
    await store.open();
    try {
      await store.upsertMany(Array.from({ length: 400 }, (_, i) => ({ task: 't', uid: `u${i}`, spec: { kind: 'once' as const }, first: { in: 3_600_000 }, enabled: true, timeout: 0 })));
      const perMaster: Set<number>[] = [];
      for (const node of nodes()) {
        const raw = new Redis(node.port, node.host);
        const found = new Set<number>();
        let cursor = '0';
        do {
          const [next, keys] = await raw.scan(cursor, 'MATCH', `${store.prefix}:*`, 'COUNT', 1000);
          cursor = next;
          for (const key of keys) {
            const m = /\{[^}:]+(?::[^}:]+)*:(\d+)\}/.exec(key);
            if (m !== null) found.add(Number(m[1]));
          }
        } while (cursor !== '0');
        await raw.quit();
        perMaster.push(found);
      }
      expect(perMaster.every((s) => s.size > 0)).toBe(true);
      const all = perMaster.flatMap((s) => [...s]);
      expect(new Set(all).size).toBe(16);
      expect(all).toHaveLength(16); // no partition on two masters
      expect(await store.list()).toHaveLength(400);
      expect(await store.clear()).toBe(400);
    } finally {
      await store.close();
    }
  });
});
