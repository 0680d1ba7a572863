/**
 * The service's Prometheus metrics, in a registry of its own (never prom-client's global
 * one, so several servers in one process, and tests, do not collide).
 *
 * Runs are counted where they are decided: the scheduler's typed events for in-process
 * handlers, and the worker queue (`QueueObserver`) for occurrences popped by HTTP workers.
 * A run is counted once per attempt; each lost lease and each skipped occurrence is
 * reported by exactly one store claim, so whichever side made that claim counts it.
 *
 * Exported:
 * - `schedkit_runs_total{task,outcome}`: finished attempts, outcome success|failure|lost|skipped.
 *   A run fenced off after losing its lease counts as lost and, when its handler ends, as failure
 *   (as the scheduler's events say).
 * - `schedkit_run_lateness_seconds{task}`: start time − due time of every started run (its
 *   `_count` is the number of runs started). Pops are measured on the store's clock.
 * - `schedkit_runs_running`: handlers running in this process's scheduler.
 * - `schedkit_http_leases_held`: leased pops handed to HTTP workers and not yet acked, nacked or expired.
 * - `schedkit_queue_depth{task,state}`: the store's due / scheduled / running counts (all processes).
 * - `schedkit_lease_losses_total{task}`: leases that expired before their run completed.
 */
import type { FastifyBaseLogger } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Scheduler } from '../scheduler.js';
import type { ClaimedRun, ClaimResult } from '../store/Store.js';
import type { RunEvent } from '../types.js';
import type { HeldLease, QueueObserver } from './queue.js';

export type Outcome = 'success' | 'failure' | 'lost' | 'skipped';

/**
 * Lateness buckets (seconds): a healthy scheduler starts runs within milliseconds; the long
 * tail is a stalled executor, a worker nobody runs, or a catch-up after downtime.
 */
export const LATENESS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];

export interface MetricsOptions {
  readonly scheduler: Scheduler;
  /** Leased pops held by HTTP workers right now. */
  readonly leasesHeld: () => number;
  readonly log: FastifyBaseLogger;
  /** Also export Node's process metrics (CPU, memory, event loop, GC). */
  readonly processMetrics: boolean;
}

/** Cumulative counts read from the registry (what `/api/stats` differentiates). */
export interface MetricTotals {
  readonly runs: Record<Outcome, number>;
  readonly leaseLosses: number;
  /** Runs started, and the sum of their lateness in seconds. */
  readonly started: number;
  readonly latenessSum: number;
  /** Cumulative bucket counts by upper bound (`le`), ascending, `Infinity` last. */
  readonly latenessBuckets: readonly (readonly [number, number])[];
}

export class ServiceMetrics implements QueueObserver {
  readonly registry = new Registry();
  readonly #runs: Counter<'task' | 'outcome'>;
  readonly #lateness: Histogram<'task'>;
  readonly #leaseLosses: Counter<'task'>;
  #detach: () => void;

  constructor(options: MetricsOptions) {
    const { scheduler, leasesHeld, log } = options;
    const registers = [this.registry];
    this.#runs = new Counter({ name: 'schedkit_runs_total', help: 'Finished run attempts by task and outcome (success, failure, lost, skipped).', labelNames: ['task', 'outcome'], registers });
    this.#lateness = new Histogram({
      name: 'schedkit_run_lateness_seconds',
      help: 'How late runs started: start time minus due time, in seconds (count = runs started).',
      labelNames: ['task'],
      buckets: LATENESS_BUCKETS,
      registers,
    });
    this.#leaseLosses = new Counter({ name: 'schedkit_lease_losses_total', help: 'Leases that expired before their run completed, by task.', labelNames: ['task'], registers });
    new Gauge({
      name: 'schedkit_runs_running',
      help: "Handlers running now in this process's scheduler.",
      registers,
      collect() {
        this.set(scheduler.running);
      },
    });
    new Gauge({
      name: 'schedkit_pool_workers',
      help: 'Worker threads of the pool for module handlers: size (at most), alive, busy. All 0 before a module handler is defined.',
      labelNames: ['state'],
      registers,
      collect() {
        const pool = scheduler.pool;
        this.set({ state: 'size' }, pool?.size ?? 0);
        this.set({ state: 'alive' }, pool?.threads ?? 0);
        this.set({ state: 'busy' }, pool?.busy ?? 0);
      },
    });
    new Gauge({
      name: 'schedkit_pool_queue_length',
      help: 'Pooled runs waiting for a free worker thread.',
      registers,
      collect() {
        this.set(scheduler.pool?.queued ?? 0);
      },
    });
    new Gauge({
      name: 'schedkit_http_leases_held',
      help: 'Leased pops handed to HTTP workers by this server and not yet acknowledged, failed or expired.',
      registers,
      collect() {
        this.set(leasesHeld());
      },
    });
    new Gauge({
      name: 'schedkit_queue_depth',
      help: "Occurrences per task in the store (all processes): state due (due now, waiting), scheduled (later), running (leased).",
      labelNames: ['task', 'state'],
      registers,
      async collect() {
        // Tasks that went away must not linger with their last value.
        this.reset();
        const state = scheduler.state;
        if (state === 'stopping' || state === 'stopped') return;
        try {
          await scheduler.ready();
          for (const [task, d] of await scheduler.store.depths()) {
            this.set({ task, state: 'due' }, d.due);
            this.set({ task, state: 'scheduled' }, d.scheduled);
            this.set({ task, state: 'running' }, d.running);
          }
        } catch (err) {
          // A store outage must not cost the scrape every other metric: depths are left out.
          log.warn({ err }, 'metrics: reading queue depths failed');
        }
      },
    });
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });

    // In-process runs, as the scheduler reports them (lateness on the store's clock).
    const onStart = (e: RunEvent & { readonly startedAt: Date }): void => this.#started(e.task, e.dueAt.getTime(), e.startedAt.getTime());
    const onSuccess = (e: RunEvent): void => this.#finished(e.task, 'success');
    const onFailure = (e: RunEvent): void => this.#finished(e.task, 'failure');
    const onSkipped = (e: { readonly task: string }): void => this.#finished(e.task, 'skipped');
    const onLost = (e: RunEvent): void => this.#lost(e.task);
    scheduler.on('run:start', onStart).on('run:success', onSuccess).on('run:failure', onFailure).on('run:skipped', onSkipped).on('run:lost', onLost);
    this.#detach = () => {
      scheduler.off('run:start', onStart).off('run:success', onSuccess).off('run:failure', onFailure).off('run:skipped', onSkipped).off('run:lost', onLost);
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops listening to the scheduler. The registry stays readable. */
  close(): void {
    this.#detach();
    this.#detach = () => undefined;
  }

  async totals(): Promise<MetricTotals> {
    const runs: Record<Outcome, number> = { success: 0, failure: 0, lost: 0, skipped: 0 };
    for (const v of (await this.#runs.get()).values) {
      const outcome = v.labels.outcome as Outcome | undefined;
      if (outcome !== undefined && outcome in runs) runs[outcome] += v.value;
    }
    let leaseLosses = 0;
    for (const v of (await this.#leaseLosses.get()).values) leaseLosses += v.value;
    let started = 0;
    let latenessSum = 0;
    const buckets = new Map<number, number>();
    for (const v of (await this.#lateness.get()).values) {
      const name = (v as { metricName?: string }).metricName ?? '';
      if (name.endsWith('_count')) started += v.value;
      else if (name.endsWith('_sum')) latenessSum += v.value;
      else if (name.endsWith('_bucket')) {
        const le = (v.labels as { le?: string | number }).le;
        const bound = le === '+Inf' || le === undefined ? Infinity : Number(le);
        buckets.set(bound, (buckets.get(bound) ?? 0) + v.value);
      }
    }
    const latenessBuckets = [...buckets].sort((a, b) => a[0] - b[0]);
    return { runs, leaseLosses, started, latenessSum, latenessBuckets };
  }

  // ------------------------------------------------------------------ QueueObserver

  claimed(result: ClaimResult): void {
    for (const lost of result.lost) this.#lost(lost.task);
    for (const skip of result.skipped) this.#finished(skip.task, 'skipped');
  }

  popped(run: ClaimedRun, now: number, leased: boolean): void {
    this.#started(run.task, run.dueAt, now);
    if (!leased) this.#finished(run.task, 'success');
  }

  acked(lease: HeldLease): void {
    this.#finished(lease.task, 'success');
  }

  nacked(lease: HeldLease): void {
    this.#finished(lease.task, 'failure');
  }

  // ------------------------------------------------------------------ internals

  #started(task: string, dueAt: number, now: number): void {
    this.#lateness.observe({ task }, Math.max(0, now - dueAt) / 1000);
  }

  #finished(task: string, outcome: Outcome): void {
    this.#runs.inc({ task, outcome });
  }

  #lost(task: string): void {
    this.#runs.inc({ task, outcome: 'lost' });
    this.#leaseLosses.inc({ task });
  }
}
