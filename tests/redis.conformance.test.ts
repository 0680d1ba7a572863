import { RedisStore } from '../src/index.js';
import { storeConformance } from './conformance.js';
import { randomPrefix, useRedisServer } from './redis-harness.js';

const redis = useRedisServer();

storeConformance('RedisStore', () => new RedisStore({ url: redis.url, prefix: randomPrefix() }));
