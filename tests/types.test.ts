import { describe, expect, expectTypeOf, it } from 'vitest';
import { MemoryStore, Scheduler, type JsonValue, type Lock, type RegistryDump, type RunContext, type ScheduledRef, type TaskReport } from '../src/index.js';

// Type-level tests: checked by `tsc --noEmit` (part of npm test); the runtime part is trivial.

/** Type-checks `fn` without running it (for assertions whose expressions have effects). */
function typeOnly(fn: () => void): void {
  void fn;
}
describe('public types', () => {
  it('have no `any` leaks and the documented shapes', () => {
    const s = new Scheduler({ store: new MemoryStore() });

    s.define('typed', (run) => {
      expectTypeOf(run).toEqualTypeOf<RunContext>();
      expectTypeOf(run.params).toEqualTypeOf<JsonValue | undefined>();
      expectTypeOf(run.params).not.toBeAny();
      expectTypeOf(run.dueAt).toEqualTypeOf<Date>();
      expectTypeOf(run.signal).toEqualTypeOf<AbortSignal>();
      expectTypeOf(run.kind).toEqualTypeOf<'scheduled' | 'trigger' | 'retry' | 'catchup' | 'buffered'>();
    });
    s.define<{ to: string }>('email', (run) => {
      expectTypeOf(run.params.to).toEqualTypeOf<string>();
    });

    typeOnly(() => {
      expectTypeOf(s.schedule('t', { in: '5s' })).resolves.toEqualTypeOf<ScheduledRef>();
      expectTypeOf(s.get('t', 'u')).resolves.toEqualTypeOf<TaskReport | null>();
      expectTypeOf(s.list()).resolves.toEqualTypeOf<TaskReport[]>();
      expectTypeOf(s.snapshot()).resolves.toEqualTypeOf<RegistryDump>();
      expectTypeOf(s.lock('k')).resolves.toEqualTypeOf<Lock | null>();
      expectTypeOf(s.withLock('k', () => 42)).resolves.toEqualTypeOf<number>();
      // @ts-expect-error: schedule options are checked
      void s.schedule('t', { inn: 5 });
    });

    expectTypeOf<TaskReport['lastResult']>().toEqualTypeOf<JsonValue | null>();
    expectTypeOf<TaskReport['lastExecutedAt']>().toEqualTypeOf<Date | null>();
    expectTypeOf<TaskReport['isRunning']>().toEqualTypeOf<boolean>();
    expectTypeOf<TaskReport['params']>().not.toBeAny();

    s.on('run:success', (e) => {
      expectTypeOf(e.result).toEqualTypeOf<JsonValue | null>();
      expectTypeOf(e.durationMs).toEqualTypeOf<number>();
    });
    s.on('run:failure', (e) => {
      expectTypeOf(e.error).toEqualTypeOf<Error>();
      expectTypeOf(e.willRetry).toEqualTypeOf<boolean>();
    });
    s.on('run:skipped', (e) => expectTypeOf(e.reason).toEqualTypeOf<'overlap' | 'misfire'>());

    // @ts-expect-error: unknown overlap policy (and at run time a ValidationError)
    expect(() => s.define('bad', () => 1, { overlap: 'sometimes' })).toThrow(/overlap/);
    // @ts-expect-error: unknown event
    s.on('run:nope', () => undefined);
  });
});
