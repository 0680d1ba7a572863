/**
 * Structural copies of Vendure's scheduler interfaces (`SchedulerStrategy`, `ScheduledTask`,
 * `ScheduledTaskConfig`, `TaskReport`, `UpdateScheduledTaskInput`, from @vendure/core 3.3+
 * and the seed document 004). They are copied, not imported, because @vendure/core pulls in
 * a whole e-commerce framework (NestJS, TypeORM, GraphQL) that a scheduler must not depend
 * on. TypeScript compares types structurally, so a class that implements these interfaces
 * is accepted where Vendure expects its own; only what the strategy uses is spelled out, and
 * Vendure's `any`s are `unknown` here (an `unknown` result is assignable to Vendure's `any`).
 */

/** Vendure's `Injector` (what `ScheduledTask.execute` needs); the strategy only passes it on. */
export interface Injector {
  get<T = unknown>(typeOrToken: unknown): T;
}

/** Vendure's `InjectableStrategy`: `init` on bootstrap, `destroy` on shutdown. */
export interface InjectableStrategy {
  init?: (injector: Injector) => void | Promise<void>;
  destroy?: () => void | Promise<void>;
}

/** The part of croner's `Cron` (the `job` Vendure passes on each tick) the strategy reads. */
export interface CronJob {
  getPattern(): string | undefined;
}

/** Arguments of a task's `execute` function. */
export interface ScheduledTaskExecutionArgs<C extends Record<string, unknown> = Record<string, unknown>> {
  injector: Injector;
  /** Vendure's `RequestContext` for the default channel. */
  scheduledContext: unknown;
  params: C;
}

/** Vendure's `ScheduledTaskConfig`. */
export interface ScheduledTaskConfig<C extends Record<string, unknown> = Record<string, unknown>> {
  id: string;
  description?: string;
  params?: C;
  /** A cron expression (5 fields, or 6 with seconds), or a cron-time-generator function. */
  schedule: string | ((cronTime: never) => string);
  /** Default 60 000 ms. A number of ms or a duration string (`'30s'`, `'5m'`). */
  timeout?: number | string;
  /** Default true. */
  preventOverlap?: boolean;
  execute(args: ScheduledTaskExecutionArgs<C>): Promise<unknown>;
}

/** Vendure's `ScheduledTask` class, structurally. */
export interface ScheduledTask<C extends Record<string, unknown> = Record<string, unknown>> {
  readonly id: string;
  readonly options: ScheduledTaskConfig<C>;
  execute(injector: Injector): Promise<unknown>;
}

/** Vendure's `TaskReport`. */
export interface TaskReport {
  id: string;
  lastExecutedAt: Date | null;
  isRunning: boolean;
  lastResult: unknown;
  enabled: boolean;
}

/** Vendure's generated `UpdateScheduledTaskInput`. */
export interface UpdateScheduledTaskInput {
  id: string;
  enabled?: boolean | null;
}

/** Vendure's `SchedulerStrategy`. */
export interface SchedulerStrategy extends InjectableStrategy {
  registerTask?(task: ScheduledTask): void;
  /** Vendure: `(job?: Cron) => Promise<any> | any`. */
  executeTask(task: ScheduledTask): (job?: CronJob) => unknown;
  getTasks(): Promise<TaskReport[]>;
  getTask(id: string): Promise<TaskReport | undefined>;
  triggerTask(task: ScheduledTask): Promise<void>;
  updateTask(input: UpdateScheduledTaskInput): Promise<TaskReport>;
}
