export { Scheduler, toReport } from './scheduler.js';
export { MemoryStore } from './store/memory/MemoryStore.js';
export type { MemoryStoreOptions } from './store/memory/MemoryStore.js';
export { RedisStore } from './store/redis/RedisStore.js';
export type { RedisStoreOptions } from './store/redis/RedisStore.js';
export {
  SchedkitError,
  ValidationError,
  InvalidCronError,
  DuplicateTaskError,
  UnknownTaskError,
  ScheduleNotFoundError,
  SchedulerStoppedError,
  RunTimeoutError,
  LeaseLostError,
  StoreError,
} from './errors.js';
export { parseDuration } from './timing/duration.js';
export { WorkerCrashError, WorkerRunError } from './runner/pool.js';
export type { PoolStats } from './runner/pool.js';
export type {
  Duration,
  JsonValue,
  Lock,
  LockOptions,
  MisfirePolicy,
  ModuleHandler,
  OccurrenceKind,
  OverlapPolicy,
  PoolOptions,
  RetryOptions,
  RunContext,
  RunEvent,
  RunRecord,
  ScheduledRef,
  ScheduleInfo,
  ScheduleOptions,
  SchedulerEvents,
  SchedulerOptions,
  StartOptions,
  StopOptions,
  TaskHandler,
  TaskOptions,
  TaskReport,
  UpdateOptions,
} from './types.js';
export type { RegistryDump, RegistryEntry, Store } from './store/Store.js';
