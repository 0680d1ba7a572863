import { randomBytes } from 'node:crypto';
import type { ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { SchedkitError, StoreError, ValidationError } from '../../errors.js';
import { ownEntry, setOwn, toJson } from '../../json.js';
import type { ScheduleSpec } from '../../timing/spec.js';
import {
  type ClaimRequest,
  type ClaimResult,
  type ClaimedRun,
  type Completion,
  type CompletionStatus,
  type FirstDue,
  type ListFilter,
  type LostLease,
  type OccurrenceKind,
  type RegistryDump,
  type ScheduleInput,
  type SchedulePatch,
  type ScheduleState,
  type SkippedOccurrence,
  type Store,
  type TaskPolicy,
} from '../Store.js';
import { cronTimes, entryOf, fieldsOf, parseJson, parseTimes, refillCron, stateOf } from './codec.js';
import { Connections } from './connections.js';
import { checkPrefix, decodeId, encodeId, FORMAT, Keys } from './keys.js';
import { run, type RedisClient, type ScriptName } from './scripts.js';

export interface RedisStoreOptions {
  /** One Redis server. Default `redis://127.0.0.1:6379` when no other target is given. */
  url?: string;
  /** An ioredis client (or Cluster) you own: the store does not quit it on close. */
  client?: RedisClient;
  /** Several standalone servers: partition p lives on `instances[p % n]`. */
  instances?: readonly string[];
  /** Redis Cluster seed nodes. */
  cluster?: readonly ClusterNode[];
  /** Options for the connections the store opens (`keyPrefix` is not supported: use `prefix`). */
  redisOptions?: RedisOptions;
  /** Options for the Cluster client (with `cluster`). */
  clusterOptions?: ClusterOptions;
  /** Namespace of every key and channel. Default `'schedkit'`. */
  prefix?: string;
  /**
   * Partitions of the namespace (default 16). Fixed when the namespace is first used: a
   * store opened with another count is refused. Each partition is one hash tag (one
   * Cluster slot); more partitions spread load over more cluster nodes or `instances`.
   */
  partitions?: number;
  /** How many upcoming due times a cron schedule keeps precomputed (default 32). */
  cronLookahead?: number;
  /**
   * Called with errors of partitions that failed while others answered. Default: a started
   * `Scheduler` on this store emits them as `error`; with none, a process warning.
   */
  onError?: (err: Error) => void;
}

type Json = string;

/** No superseded tokens (shared: most claimed runs supersede nothing). */
const NONE: readonly string[] = Object.freeze([]);
/** Due-set members read per call when listing plain one-shots. */
const PLAIN_BATCH = 1000;
/** Upserts per script call. */
const UPSERT_CHUNK = 500;
/** Claim rounds per `claim()` after the probe (refills and budget re-allocation). */
const CLAIM_ROUNDS = 4;
/** Margin around our estimate of the Redis clock when precomputing cron times. */
const CLOCK_MARGIN_MS = 5000;
/**
 * While a backlog lasts (the previous claim used its whole budget), the next claim within
 * this long reuses that claim's per-partition due counts instead of probing every
 * partition first. Leases and new due times of other partitions are seen at the next probe.
 */
const BACKLOG_HINT_MS = 250;
/**
 * Between probes, the per-partition next due times a claim learned stand in for probing
 * every partition: only partitions due by now (+ PROBE_SLACK_MS) are asked. Anything that
 * can make a partition due earlier publishes a wake-up (upsert, update, trigger, retry,
 * release of held-back runs; lease expiry is in the next due time), and every wake-up
 * notification, resubscription or failure drops what we know, so the next claim probes
 * all partitions again; so does age (PROBE_CACHE_MS), and so does a store nobody listens to.
 */
const PROBE_CACHE_MS = 1000;
const PROBE_SLACK_MS = 1;

interface KnownDue {
  readonly key: string;
  /** When it was learned: wall clock and monotonic clock (see isFresh). */
  readonly at: number;
  readonly mono: number;
  /** #epoch when the claim that learned it began: any notification since makes it void. */
  readonly epoch: number;
  /** Per partition: next due time, null = nothing pending. */
  readonly nextDue: (number | null)[];
}

interface ClaimHint {
  readonly key: string;
  readonly at: number;
  readonly mono: number;
  readonly counts: (number[] | undefined)[];
  readonly nextDue: (number | null)[];
}

interface PartitionClaim {
  readonly now: number;
  readonly runs: ClaimedRun[];
  readonly perTask: number[];
  readonly skipped: SkippedOccurrence[];
  readonly lost: LostLease[];
  readonly refills: Refill[];
  /** NaN: nothing pending. */
  readonly nextDue: number;
  readonly counts: number[];
}

interface Refill {
  readonly p: number;
  readonly enc: string;
  readonly gen: string;
  readonly nv: string;
  readonly due: number;
  readonly list: number[];
  readonly spec: ScheduleSpec;
}

/**
 * The Redis store: schedules, occurrences, leases, reports and locks in Redis, shared by
 * any number of processes. Every state change is one Lua script on one partition, judged
 * by the server's clock (`TIME`); see lua/includes/lib.lua for the key layout.
 */
export class RedisStore implements Store {
  readonly kind = 'redis';
  readonly #options: RedisStoreOptions;
  readonly #keys: Keys;
  readonly #lookahead: number;
  readonly #listeners = new Set<(dueAt: number) => void>();
  /** Who hears partition failures when no `onError` was given (started schedulers). */
  readonly #errorListeners = new Set<(err: Error) => void>();
  #conn: Connections | undefined;
  #opening: Promise<void> | undefined;
  #refs = 0;
  /** Redis clock minus local clock (ms), from the latest script that reported its time. */
  #offset = 0;
  #rotation = 0;
  #hint: ClaimHint | undefined;
  #known: KnownDue | undefined;
  /** Counts wake-up notifications and resubscriptions (see KnownDue). */
  #epoch = 0;
  /** Subscribe confirmations of the current connection's wake-up subscribers. */
  #subscribed = 0;

  constructor(options: RedisStoreOptions = {}) {
    const targets = ['url', 'client', 'instances', 'cluster'].filter((k) => options[k as keyof RedisStoreOptions] !== undefined);
    if (targets.length > 1) throw new ValidationError('RedisStore', `takes one of url, client, instances, cluster; got ${targets.join(', ')}`);
    if (options.instances !== undefined && (!Array.isArray(options.instances) || options.instances.length === 0)) {
      throw new ValidationError('RedisStore.instances', 'must be a non-empty array of redis:// URLs');
    }
    if (options.redisOptions?.keyPrefix !== undefined) throw new ValidationError('RedisStore.redisOptions.keyPrefix', 'is not supported: use `prefix`');
    const partitions = options.partitions ?? 16;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 16384) throw new ValidationError('RedisStore.partitions', 'must be an integer between 1 and 16384');
    const lookahead = options.cronLookahead ?? 32;
    if (!Number.isInteger(lookahead) || lookahead < 2 || lookahead > 1000) throw new ValidationError('RedisStore.cronLookahead', 'must be an integer between 2 and 1000');
    this.#options = options;
    this.#keys = new Keys(checkPrefix(options.prefix ?? 'schedkit'), partitions);
    this.#lookahead = lookahead;
  }

  get prefix(): string {
    return this.#keys.prefix;
  }

  get partitions(): number {
    return this.#keys.partitions;
  }

  /** Which shard client serves partition `p` (diagnostics and tests). */
  clientFor(p: number): RedisClient {
    return this.#c().forPartition(p);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Reference-counted: several schedulers may share one store; the last `close()` disconnects. */
  async open(): Promise<void> {
    this.#refs++;
    if (this.#conn !== undefined && this.#opening === undefined) return;
    this.#opening ??= this.#connect().finally(() => {
      this.#opening = undefined;
    });
    try {
      await this.#opening;
    } catch (err) {
      this.#refs--;
      throw err;
    }
  }

  async #connect(): Promise<void> {
    const conn = new Connections(this.#options);
    this.#conn = conn;
    this.#known = undefined;
    this.#subscribed = 0;
    try {
      await conn.connect();
      const want = String(this.#keys.partitions);
      for (const client of conn.shards) {
        const [partitions, format] = (await run(client, 'init', [this.#keys.meta], [want, FORMAT])) as [string, string];
        if (partitions !== want) {
          throw new StoreError(`RedisStore: namespace "${this.#keys.prefix}" has ${partitions} partitions; this store was opened with ${want} (the count is fixed when a namespace is first used)`);
        }
        if (format !== FORMAT) throw new StoreError(`RedisStore: namespace "${this.#keys.prefix}" uses key format ${format}; this release reads format ${FORMAT}`);
      }
      await this.#syncClock();
      if (this.#listeners.size > 0) this.#listen(conn);
    } catch (err) {
      this.#conn = undefined;
      // ioredis rejects a failed connect with a bare "Connection is closed."; the reason (wrong
      // password, ACL, TLS, refused) came as the client's 'error' event: name it in the error.
      const reason = conn.lastError;
      await conn.close().catch(() => undefined);
      if (err instanceof SchedkitError || reason === undefined || (err instanceof Error && err.message === reason.message)) throw toStoreError('open', err);
      throw new StoreError(`RedisStore.open: ${err instanceof Error ? err.message : String(err)} (${reason.message})`, { cause: reason });
    }
  }

  async close(): Promise<void> {
    if (this.#conn === undefined) return;
    if (this.#refs > 0) this.#refs--;
    if (this.#refs > 0) return;
    await this.#opening?.catch(() => undefined);
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close();
  }

  async now(): Promise<number> {
    return this.#guard('now', () => this.#syncClock());
  }

  async #syncClock(): Promise<number> {
    const before = Date.now();
    const [sec, usec] = await this.#c().forPartition(0).time();
    const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    this.#offset = now - Math.round((before + Date.now()) / 2);
    return now;
  }

  #observe(now: number): void {
    this.#offset = now - Date.now();
  }

  /** Our estimate of the Redis clock (only used to precompute cron times; scripts judge). */
  #estimate(): number {
    return Date.now() + this.#offset;
  }

  // ---------------------------------------------------------------- schedules

  async upsert(input: ScheduleInput): Promise<number | null> {
    const [due] = await this.#upsertAll([input]);
    return due ?? null;
  }

  async upsertMany(inputs: readonly ScheduleInput[]): Promise<void> {
    await this.#upsertAll(inputs);
  }

  #upsertAll(inputs: readonly ScheduleInput[]): Promise<(number | null)[]> {
    return this.#guard('upsert', async () => {
      const out: (number | null)[] = new Array<number | null>(inputs.length).fill(null);
      let todo = inputs.map((_, i) => i);
      for (let attempt = 0; todo.length > 0; attempt++) {
        if (attempt === 2) throw new StoreError('RedisStore.upsert: could not precompute cron times: the Redis clock keeps moving away from ours');
        if (attempt > 0) await this.#syncClock();
        const byPartition = new Map<number, number[]>();
        for (const i of todo) {
          const input = inputs[i] as ScheduleInput;
          const p = this.#keys.partitionOf(input.task, input.uid);
          const list = byPartition.get(p) ?? [];
          list.push(i);
          byPartition.set(p, list);
        }
        const retry: number[] = [];
        await Promise.all(
          [...byPartition].map(async ([p, indexes]) => {
            // Chunks of one partition in order: a later duplicate (task, uid) wins.
            for (let from = 0; from < indexes.length; from += UPSERT_CHUNK) {
              const chunk = indexes.slice(from, from + UPSERT_CHUNK);
              const args: (string | number)[] = [String(chunk.length)];
              for (const i of chunk) args.push(...this.#upsertArgs(inputs[i] as ScheduleInput));
              const [now, dues] = (await this.#script(p, 'upsert', args)) as [string, string[]];
              this.#observe(Number(now));
              chunk.forEach((i, j) => {
                const due = dues[j] ?? '';
                if (due === '!') retry.push(i);
                else out[i] = due === '' ? null : Number(due);
              });
            }
          }),
        );
        todo = retry;
      }
      return out;
    });
  }

  #upsertArgs(input: ScheduleInput): string[] {
    const spec = input.spec;
    const kind = spec.kind === 'once' ? 'o' : spec.kind === 'every' ? 'e' : 'c';
    const every = spec.kind === 'every' ? String(spec.every) : '';
    const cron = spec.kind === 'cron' ? spec.cron : '';
    const tz = spec.kind === 'cron' ? (spec.tz ?? '') : '';
    const [mode, value] = firstArgs(input.first);
    const { list, ended } = this.#cronCandidates(spec, input.first);
    return [
      encodeId(input.task, input.uid),
      kind,
      every,
      cron,
      tz,
      input.params === undefined ? '' : JSON.stringify(input.params),
      input.enabled ? '1' : '0',
      String(input.timeout),
      mode,
      value,
      list,
      ended,
    ];
  }

  /** Cron due times around the first due time (the script keeps those after the one it picks). */
  #cronCandidates(spec: ScheduleSpec, first: FirstDue): { list: string; ended: string } {
    if (spec.kind !== 'cron') return { list: '', ended: '0' };
    let after: number;
    let through: number;
    if ('at' in first) {
      after = first.at;
      through = first.at;
    } else {
      const base = this.#estimate() + ('in' in first ? first.in : 0);
      after = base - CLOCK_MARGIN_MS;
      through = base + CLOCK_MARGIN_MS;
    }
    const { times, ended } = cronTimes(spec, after - ('at' in first ? 1 : 0), through, this.#lookahead);
    return { list: times.join(','), ended: ended ? '1' : '0' };
  }

  remove(task: string, uid: string): Promise<boolean> {
    return this.#guard('remove', async () => {
      const p = this.#keys.partitionOf(task, uid);
      return (await this.#script(p, 'remove', [encodeId(task, uid)])) === 1;
    });
  }

  get(task: string, uid: string): Promise<ScheduleState | null> {
    return this.#guard('get', async () => {
      const p = this.#keys.partitionOf(task, uid);
      const enc = encodeId(task, uid);
      const client = this.#c().forPartition(p);
      const [fields, history] = await Promise.all([client.hgetall(this.#keys.schedule(p, enc)), client.lrange(this.#keys.history(p, enc), 0, -1)]);
      if (fields['g'] !== undefined) return stateOf(task, uid, fields, history);
      const due = await client.zscore(this.#keys.due(p, task), enc);
      if (due !== null) return stateOf(task, uid, plainFields(due), []);
      const [running] = await this.#runningPlain(p, [enc]);
      return running === undefined ? null : stateOf(task, uid, running.fields, []);
    });
  }

  list(filter: ListFilter = {}): Promise<ScheduleState[]> {
    return this.#guard('list', async () => {
      const keys = await this.#scan(this.#keys.scanSchedules(filter.task));
      const out: ScheduleState[] = [];
      await Promise.all(
        keys.map(async ({ p, rest: enc }) => {
          const { task, uid } = decodeId(enc);
          if (filter.task !== undefined && task !== filter.task) return;
          const client = this.#c().forPartition(p);
          const [fields, history] = await Promise.all([client.hgetall(this.#keys.schedule(p, enc)), client.lrange(this.#keys.history(p, enc), 0, -1)]);
          if (fields['g'] !== undefined) out.push(stateOf(task, uid, fields, history));
        }),
      );
      const hashed = new Set(keys.map(({ p, rest }) => `${p}|${rest}`));
      await this.#plainOneShots(filter.task, (batch) => {
        for (const { p, enc, due } of batch) {
          if (hashed.has(`${p}|${enc}`)) continue;
          hashed.add(`${p}|${enc}`);
          const { task, uid } = decodeId(enc);
          out.push(stateOf(task, uid, plainFields(due), []));
        }
      });
      await this.#eachRunningPlain((p, running) => {
        for (const { enc, fields } of running) {
          if (hashed.has(`${p}|${enc}`)) continue;
          const { task, uid } = decodeId(enc);
          if (filter.task === undefined || task === filter.task) out.push(stateOf(task, uid, fields, []));
        }
      });
      return out;
    });
  }

  update(task: string, uid: string, patch: SchedulePatch): Promise<ScheduleState | null> {
    return this.#guard('update', async () => {
      const p = this.#keys.partitionOf(task, uid);
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) await this.#syncClock();
        const args: string[] = [encodeId(task, uid)];
        const hasParams = patch.params !== undefined || 'params' in patch;
        args.push(hasParams ? '1' : '0', patch.params === undefined ? '' : JSON.stringify(patch.params));
        args.push(patch.timeout === undefined ? '' : String(patch.timeout));
        args.push(patch.enabled === undefined ? '' : patch.enabled ? '1' : '0');
        if (patch.spec === undefined) {
          args.push('0', '', '', '', '', '', '', '', '');
        } else {
          const spec = patch.spec;
          const first = patch.first ?? { next: true };
          const [mode, value] = firstArgs(first);
          const { list, ended } = this.#cronCandidates(spec, first);
          args.push(
            '1',
            spec.kind === 'once' ? 'o' : spec.kind === 'every' ? 'e' : 'c',
            spec.kind === 'every' ? String(spec.every) : '',
            spec.kind === 'cron' ? spec.cron : '',
            spec.kind === 'cron' ? (spec.tz ?? '') : '',
            mode,
            value,
            list,
            ended,
          );
        }
        const res = (await this.#script(p, 'update', args)) as [string, unknown[], string[]] | ['!'] | null;
        if (res === null) return null;
        if (res[0] === '!') {
          if (attempt >= 1) throw new StoreError('RedisStore.update: could not precompute cron times: the Redis clock keeps moving away from ours');
          continue;
        }
        const [now, flat, history] = res as [string, unknown[], string[]];
        this.#observe(Number(now));
        return stateOf(task, uid, fieldsOf(flat), history);
      }
    });
  }

  trigger(task: string, uid: string): Promise<boolean> {
    return this.#guard('trigger', async () => {
      const p = this.#keys.partitionOf(task, uid);
      return (await this.#script(p, 'trigger', [encodeId(task, uid)])) === 1;
    });
  }

  depths(): Promise<Map<string, { due: number; scheduled: number; running: number }>> {
    return this.#guard('depths', async () => {
      const out = new Map<string, { due: number; scheduled: number; running: number }>();
      const all = await Promise.all(this.#all().map((p) => this.#script(p, 'depths', []) as Promise<(string | number)[]>));
      for (const flat of all) {
        for (let i = 0; i + 3 < flat.length; i += 4) {
          const task = String(flat[i]);
          const c = out.get(task) ?? { due: 0, scheduled: 0, running: 0 };
          c.due += Number(flat[i + 1]);
          c.scheduled += Number(flat[i + 2]);
          c.running += Number(flat[i + 3]);
          out.set(task, c);
        }
      }
      return out;
    });
  }

  // ---------------------------------------------------------------- claiming

  /**
   * Claims across partitions. A probe round (limit 0: reaps expired leases, counts what is
   * due, finds the next due time) runs on every partition at once; then the budget goes to
   * the partitions that have due occurrences (rotating which comes first, for fairness), so
   * a claim never takes more than its limits and never gives runs back. Cron lists that ran
   * out are refilled between rounds.
   */
  claim(request: ClaimRequest): Promise<ClaimResult> {
    return this.#guard('claim', async () => {
      const tasks = [...request.tasks];
      const P = this.#keys.partitions;
      const start = this.#rotation++ % P;
      const order = Array.from({ length: P }, (_, i) => (start + i) % P);
      const taskLeft = tasks.map(([, policy]) => Math.max(0, Math.min(policy.limit, request.limit)));
      let left = Math.max(0, request.limit);
      const runs: ClaimedRun[] = [];
      const skipped: SkippedOccurrence[] = [];
      const lost: LostLease[] = [];
      const key = taskKey(tasks);
      const hint = this.#hint;
      this.#hint = undefined;
      const backlog = hint !== undefined && hint.key === key && isFresh(hint.at, hint.mono, BACKLOG_HINT_MS);
      const known = this.#known;
      this.#known = undefined;
      const epoch = this.#epoch;
      const useKnown =
        !backlog &&
        known !== undefined &&
        known.key === key &&
        known.epoch === epoch &&
        isFresh(known.at, known.mono, PROBE_CACHE_MS) &&
        this.#listeners.size > 0 &&
        this.#subscribed >= this.#c().shards.length;
      const failed = new Set<number>();
      const counts: (number[] | undefined)[] = backlog ? hint.counts.slice() : new Array<number[] | undefined>(P);
      const nextDue: (number | null)[] = backlog ? hint.nextDue.slice() : new Array<number | null>(P).fill(null);
      let refills: Refill[] = [];
      let now = 0;
      let failures = 0;
      let firstError: unknown;
      const zero = tasks.map(() => 0);

      const round = async (alloc: Map<number, number[]>): Promise<void> => {
        await Promise.all(
          [...alloc].map(async ([p, limits]) => {
            let r: PartitionClaim;
            try {
              r = await this.#claimPartition(p, tasks, limits);
            } catch (err) {
              failures++;
              firstError ??= err;
              counts[p] = undefined;
              // Not the due time its probe reported: that one is due now, and the claim just
              // failed on it (Redis out of memory refuses the lease's write); the failures
              // branch below brings us back within a second.
              nextDue[p] = null;
              failed.add(p);
              return;
            }
            now = Math.max(now, r.now);
            runs.push(...r.runs);
            skipped.push(...r.skipped);
            lost.push(...r.lost);
            refills.push(...r.refills);
            counts[p] = r.counts;
            nextDue[p] = Number.isNaN(r.nextDue) ? null : r.nextDue;
            // Give back the budget this partition did not use (skips, overlaps, races).
            limits.forEach((given, i) => {
              const unused = given - (r.perTask[i] ?? 0);
              taskLeft[i] = (taskLeft[i] as number) + unused;
              left += unused;
            });
          }),
        );
      };

      if (!backlog) {
        let probe = order;
        if (useKnown) {
          const horizon = this.#estimate() + PROBE_SLACK_MS;
          probe = order.filter((p) => {
            const due = known.nextDue[p] ?? null;
            if (due !== null && due <= horizon) return true;
            nextDue[p] = due;
            return false;
          });
        }
        if (useKnown && probe.length > 0) {
          // The partitions known to be due: claim from them straight away, the budget split
          // between them (their answers count what is left for the rounds below).
          const alloc = new Map<number, number[]>();
          const k = probe.length;
          const total = left;
          probe.forEach((p, j) => {
            let share = Math.floor(total / k) + (j < total % k ? 1 : 0);
            const limits = zero.slice();
            for (let i = 0; i < tasks.length && share > 0; i++) {
              const give = Math.min(taskLeft[i] as number, share);
              limits[i] = give;
              taskLeft[i] = (taskLeft[i] as number) - give;
              left -= give;
              share -= give;
            }
            alloc.set(p, limits);
          });
          await round(alloc);
        } else if (probe.length > 0) {
          await round(new Map(probe.map((p) => [p, zero.slice()])));
        }
        if (failures === P) throw firstError;
      }
      for (let r = 0; r < CLAIM_ROUNDS; r++) {
        if (refills.length > 0) {
          const todo = refills;
          refills = [];
          await this.#refill(todo, request.tasks, now);
        }
        if (left <= 0) break;
        const alloc = new Map<number, number[]>();
        for (let i = 0; i < tasks.length && left > 0; i++) {
          for (const p of order) {
            if (left <= 0 || (taskLeft[i] as number) <= 0) break;
            const due = counts[p]?.[i] ?? 0;
            if (due <= 0) continue;
            const give = Math.min(due, taskLeft[i] as number, left);
            const limits = alloc.get(p) ?? zero.slice();
            limits[i] = (limits[i] as number) + give;
            alloc.set(p, limits);
            taskLeft[i] = (taskLeft[i] as number) - give;
            left -= give;
          }
        }
        if (alloc.size === 0) break;
        await round(alloc);
      }
      if (refills.length > 0) await this.#refill(refills, request.tasks, now);
      if (left <= 0 && runs.length > 0) this.#hint = { key, at: Date.now(), mono: performance.now(), counts, nextDue };
      // Only what this claim probed (or knew, still valid) and claimed: not a backlog hint's older counts.
      if (failures === 0 && !backlog) {
        this.#known = useKnown ? { key, at: known.at, mono: known.mono, epoch, nextDue: nextDue.slice() } : { key, at: Date.now(), mono: performance.now(), epoch, nextDue: nextDue.slice() };
      }
      if (now === 0) now = this.#estimate();
      else this.#observe(now);
      let next: number | null = null;
      for (const d of nextDue) if (d !== null && (next === null || d < next)) next = d;
      if (failures > 0) {
        // A partition did not answer: report it, and come back soon for it. With nothing
        // claimed, not at once (what is due may be due where claims fail, as when Redis is
        // out of memory): that looped, claiming hundreds of times a second.
        this.#reportPartial(firstError);
        next = next === null || runs.length === 0 ? now + 1000 : Math.min(next, now + 1000);
      }
      return { runs, skipped, lost, nextDueAt: next, now };
    });
  }

  async #claimPartition(p: number, tasks: readonly [string, TaskPolicy][], limits: readonly number[]): Promise<PartitionClaim> {
    let total = 0;
    for (const limit of limits) total += limit;
    const args: (string | number)[] = [nonce(), String(p), String(total), String(Math.max(1, Math.floor(this.#lookahead / 4))), String(tasks.length)];
    for (let i = 0; i < tasks.length; i++) {
      const entry = tasks[i] as [string, TaskPolicy];
      const policy = entry[1];
      args.push(entry[0], policy.overlap, policy.misfire, String(policy.catchupWindow), String(policy.attempts), String(policy.leaseMs), String(limits[i] ?? 0));
    }
    const reply = (await this.#script(p, 'claim', args)) as ClaimReply;
    return parseClaim(p, tasks, reply);
  }

  /** Writes more precomputed due times for cron schedules (compare-and-set on their version). */
  async #refill(refills: readonly Refill[], tasks: ReadonlyMap<string, TaskPolicy>, now: number): Promise<void> {
    await Promise.all(
      refills.map(async (r) => {
        const window = tasks.get(decodeId(r.enc).task)?.catchupWindow ?? 0;
        const { times, ended } = refillCron(r.spec, r.due, r.list, now, window, this.#lookahead);
        await this.#script(r.p, 'refill', [r.enc, r.gen, r.nv, times.join(','), ended ? '1' : '0']);
      }),
    );
  }

  #reportPartial(err: unknown): void {
    const error = toStoreError('claim', err);
    if (this.#options.onError !== undefined) this.#options.onError(error);
    else if (this.#errorListeners.size > 0) for (const listener of this.#errorListeners) listener(error);
    else process.emitWarning(`schedkit: ${error.message}`, { code: 'SCHEDKIT_REDIS_PARTITION' });
  }

  onBackgroundError(listener: (err: Error) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  renew(tokens: readonly string[], leaseMs: number): Promise<boolean[]> {
    return this.#guard('renew', async () => {
      const out = new Array<boolean>(tokens.length).fill(false);
      await Promise.all(
        [...this.#byPartition(tokens)].map(async ([p, at]) => {
          const ok = (await this.#script(p, 'renew', [String(leaseMs), ...at.map((i) => tokens[i] as string)])) as number[];
          at.forEach((i, j) => {
            out[i] = ok[j] === 1;
          });
        }),
      );
      return out;
    });
  }

  complete(completions: readonly Completion[]): Promise<CompletionStatus[]> {
    return this.#guard('complete', async () => {
      const out = new Array<CompletionStatus>(completions.length).fill('lease-lost');
      await Promise.all(
        [...this.#byPartition(completions.map(tokenOf))].map(async ([p, at]) => {
          // One string for the batch (lua/complete-1.lua): runs separated by \x1e, token and
          // completion by \x1f. Each argument cost Redis about as much as the run's other
          // work, and ioredis too.
          let batch = '';
          for (let k = 0; k < at.length; k++) {
            const c = completions[at[k] as number] as Completion;
            let packed: string;
            if (c.outcome === 'success') packed = `s${c.startedAt}|${c.durationMs}|${resultJson(c.result)}`;
            else if (c.outcome === 'failure') packed = `f${c.startedAt}|${c.durationMs}|${c.retryAt ?? ''}|${separatorFree(c.error ?? 'failed')}`;
            else packed = 'a';
            batch += batch === '' ? `${c.token}\x1f${packed}` : `\x1e${c.token}\x1f${packed}`;
          }
          const args = [String(at.length), batch];
          // One character per completion: 'o' ok, 'l' lease-lost.
          const statuses = (await this.#script(p, 'complete', args)) as string;
          at.forEach((i, j) => {
            out[i] = statuses[j] === 'o' ? 'ok' : 'lease-lost';
          });
        }),
      );
      return out;
    });
  }

  /**
   * The indexes of `tokens` by the partition each names (`<p>.<nonce>.<salt>.<group>.<n>/<enc>`);
   * foreign tokens are in none (they stay lease-lost). Indexes, not [item, index] pairs: one
   * array less per run.
   */
  #byPartition(tokens: readonly string[]): Map<number, number[]> {
    const out = new Map<number, number[]>();
    tokens.forEach((t, i) => {
      const dot = t.indexOf('.');
      const p = Number(t.slice(0, dot));
      if (dot <= 0 || !Number.isInteger(p) || p < 0 || p >= this.#keys.partitions) return;
      // The scripts split "token/enc" at its first '/' (lease tokens never hold one).
      if (t.indexOf('/', dot) < 0) return;
      // Ours never hold control characters (a completion batch is split on two of them).
      if (CONTROL.test(t)) return;
      const list = out.get(p);
      if (list === undefined) out.set(p, [i]);
      else list.push(i);
    });
    return out;
  }

  subscribe(listener: (dueAt: number) => void): () => void {
    this.#listeners.add(listener);
    const conn = this.#conn;
    if (conn !== undefined && this.#opening === undefined) {
      this.#listen(conn);
    }
    return () => {
      this.#listeners.delete(listener);
    };
  }

  #listen(conn: Connections): void {
    const notify = (dueAt: number): void => {
      for (const listener of this.#listeners) listener(dueAt);
    };
    conn.subscribe(
      this.#keys.channel,
      (message) => {
        this.#known = undefined;
        this.#epoch++;
        const dueAt = Number(message);
        if (Number.isFinite(dueAt)) notify(dueAt);
      },
      () => {
        this.#known = undefined;
        this.#epoch++;
        if (this.#conn === conn) this.#subscribed++;
        notify(this.#estimate());
      },
    );
  }

  // ---------------------------------------------------------------- locks

  acquireLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    return this.#guard('acquireLock', async () => {
      const k = this.#keys.lock(key);
      const res = await this.#c().forPartition(this.#keys.lockPartition(key)).set(k, token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
      return res === 'OK';
    });
  }

  releaseLock(key: string, token: string): Promise<boolean> {
    return this.#guard('releaseLock', async () => {
      const client = this.#c().forPartition(this.#keys.lockPartition(key));
      return (await run(client, 'lockRelease', [this.#keys.lock(key)], [token])) === 1;
    });
  }

  extendLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    return this.#guard('extendLock', async () => {
      const client = this.#c().forPartition(this.#keys.lockPartition(key));
      return (await run(client, 'lockExtend', [this.#keys.lock(key)], [token, String(Math.max(1, Math.ceil(ttlMs)))])) === 1;
    });
  }

  // ---------------------------------------------------------------- snapshots

  snapshot(): Promise<RegistryDump> {
    return this.#guard('snapshot', async () => {
      const keys = await this.#scan(this.#keys.scanSchedules());
      const out: RegistryDump = {};
      const entries = await Promise.all(
        keys.map(async ({ p, rest: enc }) => {
          const fields = await this.#c().forPartition(p).hgetall(this.#keys.schedule(p, enc));
          return { ...decodeId(enc), entry: fields['g'] === undefined ? null : entryOf(fields) };
        }),
      );
      for (const { task, uid, entry } of entries) {
        if (entry !== null) setOwn(ownEntry(out, task, () => ({})), uid, entry);
      }
      const hashed = new Set(keys.map(({ p, rest }) => `${p}|${rest}`));
      const add = (p: number, enc: string, fields: Record<string, string>): void => {
        if (hashed.has(`${p}|${enc}`)) return;
        hashed.add(`${p}|${enc}`);
        const { task, uid } = decodeId(enc);
        const entry = entryOf(fields);
        if (entry !== null) setOwn(ownEntry(out, task, () => ({})), uid, entry);
      };
      await this.#plainOneShots(undefined, (batch) => {
        for (const { p, enc, due } of batch) add(p, enc, plainFields(due));
      });
      await this.#eachRunningPlain((p, running) => {
        for (const { enc, fields } of running) add(p, enc, fields);
      });
      return out;
    });
  }

  /** Deletes every key of the namespace except its metadata (SCAN + UNLINK in bounded batches). */
  clear(): Promise<number> {
    return this.#guard('clear', async () => {
      // Plain one-shots have no hash: counted first, as the due-set members without one.
      let schedules = 0;
      await this.#plainOneShots(undefined, async (batch) => {
        // One batch is one due set: one partition, one slot.
        const first = batch[0] as { p: number };
        const pipeline = this.#c().forPartition(first.p).pipeline();
        for (const { p, enc } of batch) pipeline.exists(this.#keys.schedule(p, enc));
        const found = (await pipeline.exec()) ?? [];
        schedules += found.filter(([err, n]) => err === null && n === 0).length;
      });
      // So do plain one-shots running without a hash (their B:o entries).
      await this.#eachRunningPlain((_p, running) => {
        schedules += running.length;
      });
      await this.#scanBatches(this.#keys.scanAll(), async (node, found) => {
        const mine = found.filter((key) => this.#keys.parse(key) !== null);
        schedules += mine.filter((key) => this.#keys.parse(key)?.type === 's').length;
        if (mine.length > 0) {
          const pipeline = node.pipeline();
          for (const key of mine) pipeline.unlink(key);
          await pipeline.exec();
        }
      });
      return schedules;
    });
  }

  // ---------------------------------------------------------------- helpers

  #c(): Connections {
    if (this.#conn === undefined) throw new StoreError('RedisStore: the store is closed (call open() first)');
    return this.#conn;
  }

  #all(): number[] {
    return Array.from({ length: this.#keys.partitions }, (_, p) => p);
  }

  #script(p: number, name: ScriptName, args: readonly (string | number)[]): Promise<unknown> {
    return run(this.#c().forPartition(p), name, [this.#keys.partitionMeta(p)], [this.#keys.base(p), this.#keys.channel], args);
  }

  /**
   * The members of the due sets (of one task, or all), in bounded batches (ZRANGE by rank,
   * 1000 at a time): what finds plain one-shots, which have no hash (lua/includes/lib.lua,
   * materialize). Callers skip the members whose schedule they found as a hash.
   */
  async #plainOneShots(task: string | undefined, each: (batch: { p: number; enc: string; due: string }[]) => Promise<void> | void): Promise<void> {
    const sets = new Map<string, number>();
    await this.#scanBatches(this.#keys.scanDue(task), (_node, keys) => {
      for (const key of keys) {
        const parsed = this.#keys.parse(key);
        if (parsed !== null && parsed.type === 'd' && (task === undefined || parsed.rest === task)) sets.set(key, parsed.p);
      }
      return Promise.resolve();
    });
    for (const [key, p] of sets) {
      const client = this.#c().forPartition(p);
      for (let from = 0; ; from += PLAIN_BATCH) {
        const flat = await client.zrange(key, from, from + PLAIN_BATCH - 1, 'WITHSCORES');
        const batch: { p: number; enc: string; due: string }[] = [];
        for (let i = 0; i + 1 < flat.length; i += 2) batch.push({ p, enc: flat[i] as string, due: flat[i + 1] as string });
        if (batch.length > 0) await each(batch);
        if (flat.length < 2 * PLAIN_BATCH) break;
      }
    }
  }

  /**
   * Plain one-shots of partition p running without a hash (lua/includes/lib.lua, lift): the
   * fields their hash would have (running, claimed), from their B:o entries and their lease
   * groups, for those of `encs` that are running so.
   */
  async #runningPlain(p: number, encs: readonly string[], depth = 0): Promise<{ enc: string; fields: Record<string, string> }[]> {
    if (encs.length === 0) return [];
    const client = this.#c().forPartition(p);
    // "<token>|<dueAt>"; the token is "<group>.<n>".
    const values = await client.hmget(this.#keys.plainRuns(p), ...encs);
    const held: { enc: string; token: string; due: string; group: string }[] = [];
    encs.forEach((enc, i) => {
      const v = values[i];
      if (v === null || v === undefined) return;
      const bar = v.indexOf('|');
      const token = v.slice(0, bar);
      held.push({ enc, token, due: v.slice(bar + 1), group: token.slice(0, token.lastIndexOf('.')) });
    });
    if (held.length === 0) return [];
    // "<group>/" -> "<maxAttempts>|<startedAt>".
    const groups = [...new Set(held.map((h) => h.group))];
    const metas = await client.hmget(this.#keys.leaseGroups(p), ...groups.map((g) => `${g}/`));
    const started = new Map<string, string>();
    groups.forEach((g, i) => {
      const meta = metas[i];
      if (meta !== null && meta !== undefined) started.set(g, meta.slice(meta.indexOf('|') + 1));
    });
    // A run may have finished (or been reaped or lifted) between the two reads, while others
    // keep its group. Its B:o entry read again tells: a lease token is never given twice, so
    // an entry that is still the same was there all along, running when its group was read.
    // One that changed is a new run of a one-shot scheduled again under its uid: read anew.
    const again = await client.hmget(this.#keys.plainRuns(p), ...held.map((h) => h.enc));
    const out: { enc: string; fields: Record<string, string> }[] = [];
    const changed: string[] = [];
    held.forEach(({ enc, token, due, group }, i) => {
      const v = again[i];
      const at = started.get(group);
      if (v === `${token}|${due}` && at !== undefined) out.push({ enc, fields: { g: token, d: due, ru: '1', tk: token, lx: at, at: '1', cl: '1' } });
      else if (v !== null && v !== undefined && v !== `${token}|${due}` && depth < 2) changed.push(enc);
    });
    if (changed.length > 0) out.push(...(await this.#runningPlain(p, changed, depth + 1)));
    return out;
  }

  /**
   * Every partition's plain one-shots running without a hash. Their B:o hash holds one entry
   * per run in progress (bounded by the executors' concurrency): read whole, in batches.
   */
  async #eachRunningPlain(each: (p: number, running: { enc: string; fields: Record<string, string> }[]) => void): Promise<void> {
    await Promise.all(
      this.#all().map(async (p) => {
        // Less the field that keeps the hash a hash table (lua/includes/lib.lua, hashtable).
        const encs = Object.keys(await this.#c().forPartition(p).hgetall(this.#keys.plainRuns(p))).filter((enc) => enc !== '~');
        for (let i = 0; i < encs.length; i += PLAIN_BATCH) each(p, await this.#runningPlain(p, encs.slice(i, i + PLAIN_BATCH)));
      }),
    );
  }

  /** SCANs every node for keys of this namespace matching `pattern`, deduplicated. */
  async #scan(pattern: string): Promise<{ p: number; type: string; rest: string }[]> {
    const seen = new Set<string>();
    const out: { p: number; type: string; rest: string }[] = [];
    await this.#scanBatches(pattern, (_node, keys) => {
      for (const key of keys) {
        if (seen.has(key)) continue;
        seen.add(key);
        const parsed = this.#keys.parse(key);
        if (parsed !== null && parsed.type === 's') out.push(parsed);
      }
      return Promise.resolve();
    });
    return out;
  }

  /** Runs `each` on every SCAN batch (COUNT 1000) of every node, nodes in parallel, batches in order. */
  async #scanBatches(pattern: string, each: (node: Redis, keys: string[]) => Promise<void>): Promise<void> {
    await Promise.all(
      this.#c()
        .scanNodes()
        .map(async (node) => {
          let cursor = '0';
          do {
            const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
            cursor = next;
            await each(node, keys);
          } while (cursor !== '0');
        }),
    );
  }

  async #guard<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toStoreError(operation, err);
    }
  }
}

/**
 * Whether what a claim learned at wall-clock time `at` (monotonic `mono`) is younger than `ms`
 * by both clocks. A wall clock that jumped (either way) or a suspended machine makes it stale,
 * so the next claim probes every partition: those scripts bring Redis's time back, which our
 * estimate of it (from the wall clock) needs after a jump. Judged by the wall clock alone, a
 * jump back of an hour kept it "fresh" for an hour, while the stale estimate filtered every
 * partition out: the executors claimed nothing.
 */
function isFresh(at: number, mono: number, ms: number): boolean {
  const wall = Date.now() - at;
  const steady = performance.now() - mono;
  return wall >= 0 && wall < ms && steady >= 0 && steady < ms;
}

/** The fields of a plain one-shot kept as its due-set member only (a new incarnation, due at its score). */
function plainFields(due: string): Record<string, string> {
  return { g: '0', d: due };
}

function firstArgs(first: FirstDue): [string, string] {
  if ('at' in first) return ['at', String(first.at)];
  if ('in' in first) return ['in', String(first.in)];
  return ['next', ''];
}

// eslint-disable-next-line no-control-regex -- control characters are what it finds
const CONTROL = /[\x00-\x1f]/;
// eslint-disable-next-line no-control-regex -- the separators of lua/complete-1.lua's batch string
const SEPARATORS = /[\x1e\x1f]/g;

/** lua/claim-1.lua's reply: now, runs (one string), skipped, lost, refill, nextDue, counts. */
type ClaimReply = [
  string,
  string,
  [string, string, string][],
  [string, string, string, string, string, string][],
  [string, string, string, string, string, string, string, string][],
  string,
  number[],
];

/**
 * A claim's reply, read. The runs' loop is its own function, and what is rare (skips, lost
 * leases, cron refills) another: V8 optimizes a function as a whole, and recompiling this when
 * a rare branch was first taken cost a cold drain ~30 ms of CPU more than once (--trace-deopt).
 */
function parseClaim(p: number, tasks: readonly [string, TaskPolicy][], reply: ClaimReply): PartitionClaim {
  const now = Number(reply[0]);
  const perTask = new Array<number>(tasks.length).fill(0);
  const runs = parseRuns(p, tasks, reply[1], now, perTask);
  const rare = reply[2].length > 0 || reply[3].length > 0 || reply[4].length > 0 ? parseRare(p, reply) : NO_RARE;
  // nextDue is NaN for nothing pending: always a number, so these objects keep one shape.
  return { now, runs, perTask, skipped: rare.skipped, lost: rare.lost, refills: rare.refills, nextDue: reply[5] === '' ? NaN : Number(reply[5]), counts: reply[6].map(Number) };
}

/**
 * The runs of a claim reply: one string (lua/claim-1.lua), runs separated by \x1e, each
 * "token/enc\x1fdueAt\x1fextra"; extra is '' for attempt 1 of a scheduled occurrence without
 * params that supersedes nothing, else "attempt|kind|superseded|params". A run's token, for
 * the executor, is "token/enc" as it stands: what renew and complete take back (wireToken).
 * Counts them per task.
 */
function parseRuns(p: number, tasks: readonly [string, TaskPolicy][], raw: string, now: number, perTask: number[]): ClaimedRun[] {
  const runs: ClaimedRun[] = [];
  // The runs of a claim are mostly of one task: its enc prefix ("<n>:<task>") decoded once.
  let prefix = '';
  let prefixTask = '';
  for (let at = 0; at < raw.length; ) {
    let end = raw.indexOf('\x1e', at);
    if (end < 0) end = raw.length;
    const slash = raw.indexOf('/', at);
    const a1 = raw.indexOf('\x1f', at);
    const a2 = raw.indexOf('\x1f', a1 + 1);
    if (slash < 0 || a1 < slash || a2 < 0 || a2 > end) throw new StoreError(`RedisStore: corrupt claim reply from partition ${p}`);
    const token = raw.slice(at, a1);
    const enc = raw.slice(slash + 1, a1);
    let task: string;
    let uid: string;
    if (prefix !== '' && enc.startsWith(prefix)) {
      task = prefixTask;
      uid = enc.slice(prefix.length);
    } else {
      ({ task, uid } = decodeId(enc));
      prefix = enc.slice(0, enc.length - uid.length);
      prefixTask = task;
    }
    const dueAt = Number(raw.slice(a1 + 1, a2));
    const extra = raw.slice(a2 + 1, end);
    at = end + 1;
    let i = 0;
    while (i < tasks.length && (tasks[i] as [string, TaskPolicy])[0] !== task) i++;
    // Every run of a task in one claim shares its lease group: granted now, for the task's lease.
    let leaseExpiresAt = now;
    if (i < tasks.length) {
      perTask[i] = (perTask[i] as number) + 1;
      leaseExpiresAt += (tasks[i] as [string, TaskPolicy])[1].leaseMs;
    }
    if (extra === '') {
      runs.push({ token, task, uid, params: undefined, dueAt, attempt: 1, kind: 'scheduled', leaseExpiresAt, supersedes: NONE });
      continue;
    }
    const a = extra.indexOf('|');
    const b = extra.indexOf('|', a + 1);
    const c = extra.indexOf('|', b + 1);
    const superseded = extra.slice(b + 1, c);
    runs.push({
      token,
      task,
      uid,
      params: parseJson(extra.slice(c + 1), 'params'),
      dueAt,
      attempt: Number(extra.slice(0, a)),
      kind: extra.slice(a + 1, b) as OccurrenceKind,
      leaseExpiresAt,
      // Runs of the same schedule: the same enc.
      supersedes: superseded === '' ? NONE : superseded.split(' ').map((t) => wireToken(t, enc)),
    });
  }
  return runs;
}

/** The token a run is known by outside the store: the lease token and the schedule's enc (see lua/includes/lib.lua). */
function wireToken(token: string, enc: string): string {
  return `${token}/${enc}`;
}

interface RareParts {
  readonly skipped: SkippedOccurrence[];
  readonly lost: LostLease[];
  readonly refills: Refill[];
}
const NO_RARE: RareParts = { skipped: [], lost: [], refills: [] };

/** Skipped occurrences, lost leases and cron lists to refill, of a claim reply. */
function parseRare(p: number, reply: ClaimReply): RareParts {
  return {
    skipped: reply[2].map(([enc, dueAt, reason]): SkippedOccurrence => ({ ...decodeId(enc), dueAt: Number(dueAt), reason: reason as 'overlap' | 'misfire' })),
    lost: reply[3].map(([token, enc, dueAt, attempt, kind, requeued]): LostLease => ({ token: wireToken(token, enc), ...decodeId(enc), dueAt: Number(dueAt), attempt: Number(attempt), kind: kind as OccurrenceKind, requeued: requeued === '1' })),
    refills: reply[4].map(([enc, gen, nv, due, nx, , cron, tz]): Refill => ({
      p,
      enc,
      gen,
      nv,
      due: Number(due),
      list: parseTimes(nx),
      spec: tz === '' ? { kind: 'cron', cron } : { kind: 'cron', cron, tz },
    })),
  };
}

/** A claim's token nonce: 9 random bytes, base64url, drawn from a pool (one crypto call per 64 claims). */
let noncePool = Buffer.alloc(0);
let nonceAt = 0;
function nonce(): string {
  if (nonceAt + 9 > noncePool.length) {
    noncePool = randomBytes(9 * 64);
    nonceAt = 0;
  }
  nonceAt += 9;
  return noncePool.toString('base64url', nonceAt - 9, nonceAt);
}

/** The task names of a claim, as one string (what a backlog hint is for). */
function taskKey(tasks: readonly [string, TaskPolicy][]): string {
  let key = '';
  for (let i = 0; i < tasks.length; i++) key += i === 0 ? (tasks[i] as [string, TaskPolicy])[0] : `\u0000${(tasks[i] as [string, TaskPolicy])[0]}`;
  return key;
}

function tokenOf(c: Completion): string {
  return c.token;
}

/** Text without the separators of lua/complete-1.lua's batch string (\x1e, \x1f become U+FFFD). */
function separatorFree(text: string): string {
  return text.replace(SEPARATORS, '\uFFFD');
}

function resultJson(result: unknown): Json {
  if (result === undefined || result === null) return 'null';
  return JSON.stringify(toJson(result, 'result'));
}

function toStoreError(operation: string, err: unknown): SchedkitError {
  if (err instanceof SchedkitError) return err;
  const message = err instanceof Error ? err.message : String(err);
  // Redis over `maxmemory` (policy noeviction, or nothing left to evict) refuses writes with
  // an `OOM ...` reply; a script is refused before its first write, so it changed nothing.
  if (/^OOM\b/.test(message)) return new StoreError(`RedisStore.${operation}: Redis is out of memory and refused a write (${message})`, { cause: err, code: 'ERR_STORE_OOM' });
  return new StoreError(`RedisStore.${operation}: ${message}`, { cause: err });
}
