/** For store implementers: the contract and its types, and the registry loader. */
export type * from './Store.js';
export { HISTORY_LIMIT } from './Store.js';
export { MemoryStore } from './memory/MemoryStore.js';
export type { MemoryStoreOptions } from './memory/MemoryStore.js';
export { loadRegistry } from './registry.js';
export { nextDue, dueTimesBetween, latestDueAtOrBefore } from '../timing/spec.js';
export type { ScheduleSpec } from '../timing/spec.js';
