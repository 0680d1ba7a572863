/**
 * `schedkit/compat/schedward`: schedward's API on schedkit. Change
 * `import { TaskManager } from 'schedward'` to `import { TaskManager } from 'schedkit/compat/schedward'`.
 */
export { TaskManager, TaskSchedule, IDLE_ERROR } from './TaskManager.js';
export type { RegistryEntry, TaskManagerEvents, TaskManagerOptions, TaskRunnerRegistryDump, TimeoutParams, TimeoutResponse } from './TaskManager.js';
