/**
 * `schedkit/compat/schedward/async`: schedward/async's `TaskManager`, whose
 * `makeTaskRegistrySnapshot()` resolves the registry; `launch()` and `stop()` also return
 * promises here (their callbacks still work).
 */
import { TaskManager as CallbackTaskManager, type TaskRunnerRegistryDump } from '../TaskManager.js';

// schedward/async's contract: these return promises where the callback API returns nothing.
/* eslint-disable @typescript-eslint/no-misused-promises */
export class TaskManager extends CallbackTaskManager {
  /** Resolves once the scheduler has started (the callback, when given, runs first). */
  override launch(concurrency: number, callback?: () => void): Promise<void> {
    return this.launchAsync(concurrency).then(() => callback?.());
  }

  /** Resolves once the scheduler has stopped (queued commands are stored first). */
  override stop(callback?: () => void): Promise<void> {
    return this.stopAsync().then(() => callback?.());
  }

  /** Resolves with a snapshot of every pending timeout. */
  override makeTaskRegistrySnapshot(): Promise<TaskRunnerRegistryDump> {
    return this.snapshotAsync();
  }
}
/* eslint-enable @typescript-eslint/no-misused-promises */

export { TaskSchedule, IDLE_ERROR } from '../TaskManager.js';
export type { RegistryEntry, TaskManagerEvents, TaskManagerOptions, TaskRunnerRegistryDump, TimeoutParams, TimeoutResponse } from '../TaskManager.js';
