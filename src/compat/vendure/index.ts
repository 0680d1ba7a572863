/**
 * `schedkit/compat/vendure`: a Vendure `SchedulerStrategy` on schedkit. In `vendure-config.ts`:
 * `schedulerOptions: { schedulerStrategy: new SchedkitSchedulerStrategy({ redis: { url } }) }`
 * in place of `DefaultSchedulerStrategy` (and the `DefaultSchedulerPlugin`).
 */
export { SchedkitSchedulerStrategy } from './SchedkitSchedulerStrategy.js';
export type { SchedkitSchedulerStrategyOptions } from './SchedkitSchedulerStrategy.js';
export type {
  CronJob,
  InjectableStrategy,
  Injector,
  ScheduledTask,
  ScheduledTaskConfig,
  ScheduledTaskExecutionArgs,
  SchedulerStrategy,
  TaskReport,
  UpdateScheduledTaskInput,
} from './types.js';
