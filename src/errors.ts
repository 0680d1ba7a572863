/**
 * Typed errors. Every error schedkit throws on purpose is a `SchedkitError` with a stable
 * `code` (never reworded between releases) so callers and the HTTP layer can branch on it.
 */
export class SchedkitError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SchedkitError';
    this.code = code;
  }
}

/** Bad input: names the offending field in `field` and in the message. */
export class ValidationError extends SchedkitError {
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('ERR_VALIDATION', `${field}: ${message}`, options);
    this.name = 'ValidationError';
    this.field = field;
  }
}

/** A cron expression (or its time zone) that croner refuses. */
export class InvalidCronError extends SchedkitError {
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('ERR_INVALID_CRON', `${field}: ${message}`, options);
    this.name = 'InvalidCronError';
    this.field = field;
  }
}

/** `define()` was called twice for one task name. */
export class DuplicateTaskError extends SchedkitError {
  readonly task: string;
  constructor(task: string) {
    super('ERR_DUPLICATE_TASK', `define: task "${task}" is already defined`);
    this.name = 'DuplicateTaskError';
    this.task = task;
  }
}

/** A task that has no handler in this process where one is required. */
export class UnknownTaskError extends SchedkitError {
  readonly task: string;
  constructor(task: string, detail = 'no handler is defined for it in this scheduler') {
    super('ERR_UNKNOWN_TASK', `task "${task}": ${detail}`);
    this.name = 'UnknownTaskError';
    this.task = task;
  }
}

/** No schedule with this `(task, uid)`. */
export class ScheduleNotFoundError extends SchedkitError {
  readonly task: string;
  readonly uid: string;
  constructor(task: string, uid: string) {
    super('ERR_SCHEDULE_NOT_FOUND', `no schedule "${uid}" of task "${task}"`);
    this.name = 'ScheduleNotFoundError';
    this.task = task;
    this.uid = uid;
  }
}

/** The scheduler was stopped (or is stopping): it takes no more commands. */
export class SchedulerStoppedError extends SchedkitError {
  constructor(operation: string) {
    super('ERR_STOPPED', `${operation}: the scheduler is stopped`);
    this.name = 'SchedulerStoppedError';
  }
}

/** A run that exceeded its `timeout`; its handler's `signal` was aborted with this. */
export class RunTimeoutError extends SchedkitError {
  readonly task: string;
  readonly timeoutMs: number;
  constructor(task: string, timeoutMs: number, detail?: string) {
    super('ERR_RUN_TIMEOUT', `task "${task}": run timed out after ${timeoutMs} ms${detail === undefined ? '' : `; ${detail}`}`);
    this.name = 'RunTimeoutError';
    this.task = task;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The run's lease was lost (it expired, or `cancel-previous` superseded it): another
 * executor may now run the occurrence, so this one must not complete it.
 */
export class LeaseLostError extends SchedkitError {
  constructor(task: string, uid: string, reason: string) {
    super('ERR_LEASE_LOST', `task "${task}" uid "${uid}": lease lost (${reason})`);
    this.name = 'LeaseLostError';
  }
}

/**
 * The store could not do what was asked (I/O, connection, corrupt data): `ERR_STORE`; or,
 * more precisely, `ERR_STORE_OOM`: Redis is out of memory and refused a write.
 */
export class StoreError extends SchedkitError {
  constructor(message: string, options?: { cause?: unknown; code?: 'ERR_STORE' | 'ERR_STORE_OOM' }) {
    const { code = 'ERR_STORE', ...rest } = options ?? {};
    super(code, message, options === undefined ? undefined : rest);
    this.name = 'StoreError';
  }
}
