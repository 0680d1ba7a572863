/**
 * `/api/stats`: the dashboard's throughput and lateness chart, computed from the same
 * Prometheus registry as `/metrics` (so the two never disagree). A timer samples the
 * cumulative counters every `STATS_INTERVAL_MS` and keeps the differences of the last
 * `STATS_POINTS` intervals; p95 lateness per interval is interpolated from the histogram's
 * buckets the way PromQL's `histogram_quantile` does.
 */
import type { MetricTotals, Outcome, ServiceMetrics } from './metrics.js';

export const STATS_INTERVAL_MS = 2000;
/** Five minutes of history. */
export const STATS_POINTS = 150;

export interface StatsPoint {
  /** End of the interval (ISO). */
  readonly at: string;
  /** Runs started in the interval. */
  readonly started: number;
  readonly success: number;
  readonly failure: number;
  readonly lost: number;
  readonly skipped: number;
  /** Mean and p95 lateness (seconds) of the runs started in the interval; null when none started. */
  readonly latenessAvg: number | null;
  readonly latenessP95: number | null;
}

export interface ServiceStats {
  readonly intervalMs: number;
  /** Handlers running in this process, and leases held by HTTP workers of this server. */
  readonly running: number;
  readonly httpLeases: number;
  readonly totals: Readonly<Record<Outcome, number>> & { readonly started: number; readonly leaseLosses: number; readonly latenessAvg: number | null };
  /** Oldest first. */
  readonly series: readonly StatsPoint[];
}

export class StatsSampler {
  readonly #metrics: ServiceMetrics;
  readonly #series: StatsPoint[] = [];
  #last: MetricTotals | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sampling = false;

  constructor(metrics: ServiceMetrics) {
    this.#metrics = metrics;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    void this.#sample();
    this.#timer = setInterval(() => void this.#sample(), STATS_INTERVAL_MS);
    // Sampling alone must not keep a process alive.
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  get series(): readonly StatsPoint[] {
    return this.#series;
  }

  async #sample(): Promise<void> {
    if (this.#sampling) return;
    this.#sampling = true;
    try {
      const now = await this.#metrics.totals();
      const prev = this.#last;
      this.#last = now;
      if (prev === undefined) return;
      this.#series.push(difference(prev, now, new Date()));
      if (this.#series.length > STATS_POINTS) this.#series.splice(0, this.#series.length - STATS_POINTS);
    } finally {
      this.#sampling = false;
    }
  }
}

function difference(prev: MetricTotals, now: MetricTotals, at: Date): StatsPoint {
  const started = now.started - prev.started;
  const buckets = now.latenessBuckets.map(([le, count]) => [le, count - (prev.latenessBuckets.find(([b]) => b === le)?.[1] ?? 0)] as const);
  return {
    at: at.toISOString(),
    started,
    success: now.runs.success - prev.runs.success,
    failure: now.runs.failure - prev.runs.failure,
    lost: now.runs.lost - prev.runs.lost,
    skipped: now.runs.skipped - prev.runs.skipped,
    latenessAvg: started > 0 ? round((now.latenessSum - prev.latenessSum) / started) : null,
    latenessP95: started > 0 ? round(quantile(0.95, buckets)) : null,
  };
}

/**
 * The q-quantile of cumulative histogram buckets (ascending `le`, `Infinity` last), linearly
 * interpolated inside the bucket that holds it; in the `+Inf` bucket, the largest finite bound.
 */
export function quantile(q: number, buckets: readonly (readonly [number, number])[]): number {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return 0;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      return count === lowerCount ? le : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}

export async function serviceStats(metrics: ServiceMetrics, sampler: StatsSampler, running: number, httpLeases: number): Promise<ServiceStats> {
  const t = await metrics.totals();
  return {
    intervalMs: STATS_INTERVAL_MS,
    running,
    httpLeases,
    totals: { ...t.runs, started: t.started, leaseLosses: t.leaseLosses, latenessAvg: t.started > 0 ? round(t.latenessSum / t.started) : null },
    series: sampler.series,
  };
}

function round(seconds: number): number {
  return Math.round(seconds * 1e6) / 1e6;
}
