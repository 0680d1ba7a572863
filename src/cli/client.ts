/**
 * The CLI's commands on a `Transport` (a running service over HTTP, or a store directly).
 * Each resolves what to print on stdout: the service's JSON with `--json`, readable text
 * otherwise. Error answers become `ServiceError` (printed as `{ error, code }`, exit 1).
 */
import { ownEntry, setOwn, type JsonValue } from '../json.js';
import type { RegistryDump, RegistryEntry } from '../store/Store.js';
import { parseDuration } from '../timing/duration.js';
import { ServiceError, type Transport } from './transport.js';

export { ClientError, ServiceError } from './transport.js';

interface ReportLike {
  task: string;
  uid: string;
  schedule: { kind: string; every?: number; cron?: string; tz?: string };
  enabled: boolean;
  params?: unknown;
  nextRunAt: string | null;
  lastExecutedAt: string | null;
  lastError: string | null;
  lastResult?: unknown;
  pending: number;
  running: number;
}

function seg(value: string): string {
  return encodeURIComponent(value);
}

/** Calls the API; resolves the body of a 2xx (or of a status in `accept`), else throws `ServiceError`. */
async function call(t: Transport, method: string, path: string, body?: unknown, accept: readonly number[] = []): Promise<{ status: number; body: unknown }> {
  const answer = await t.request(method, path, body);
  if ((answer.status >= 200 && answer.status < 300) || accept.includes(answer.status)) return answer;
  const b = answer.body as { error?: unknown; code?: unknown; field?: unknown } | undefined;
  const error = typeof b?.error === 'string' ? b.error : `HTTP ${answer.status}`;
  const code = typeof b?.code === 'string' ? b.code : 'ERR_HTTP';
  throw new ServiceError(answer.status, { error, code, ...(typeof b?.field === 'string' ? { field: b.field } : {}) }, `${method} /${path.split('?')[0] ?? ''}`);
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function scheduleText(s: ReportLike['schedule']): string {
  if (s.kind === 'every') return `every ${String(s.every)}ms`;
  if (s.kind === 'cron') return `cron ${s.cron ?? ''}${s.tz === undefined ? '' : ` ${s.tz}`}`;
  return 'once';
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  return `${rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')}\n`;
}

function reportText(r: ReportLike): string {
  const lines: [string, string][] = [
    ['task', r.task],
    ['uid', r.uid],
    ['schedule', scheduleText(r.schedule)],
    ['enabled', r.enabled ? 'yes' : 'no'],
    ['next run', r.nextRunAt ?? '-'],
    ['last run', r.lastExecutedAt ?? '-'],
    ['pending', String(r.pending)],
    ['running', String(r.running)],
  ];
  if (r.params !== undefined) lines.push(['params', JSON.stringify(r.params)]);
  if (r.lastError !== null) lines.push(['last error', r.lastError]);
  else if (r.lastResult !== undefined && r.lastResult !== null) lines.push(['last result', JSON.stringify(r.lastResult)]);
  const width = Math.max(...lines.map(([k]) => k.length));
  return `${lines.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`).join('\n')}\n`;
}

export interface Output {
  readonly json: boolean;
}

export async function listCommand(t: Transport, opts: Output & { task?: string | undefined }): Promise<string> {
  const query = opts.task === undefined ? '' : `?task=${seg(opts.task)}`;
  const { body } = await call(t, 'GET', `api/tasks${query}`);
  const tasks = (body as { tasks: ReportLike[] }).tasks;
  if (opts.json) return json(tasks);
  if (tasks.length === 0) return 'no schedules\n';
  const rows = [['TASK', 'UID', 'SCHEDULE', 'ENABLED', 'NEXT RUN', 'LAST RUN', 'PENDING', 'RUNNING']];
  for (const r of tasks) {
    rows.push([r.task, r.uid, scheduleText(r.schedule), r.enabled ? 'yes' : 'no', r.nextRunAt ?? '-', r.lastExecutedAt ?? '-', String(r.pending), String(r.running)]);
  }
  return table(rows);
}

export async function getCommand(t: Transport, task: string, uid: string, opts: Output): Promise<string> {
  const { body } = await call(t, 'GET', `api/tasks/${seg(task)}/${seg(uid)}`);
  return opts.json ? json(body) : reportText(body as ReportLike);
}

export interface ScheduleBody {
  in?: string | number;
  at?: string | number;
  every?: string | number;
  cron?: string;
  tz?: string;
  params?: JsonValue;
  enabled?: boolean;
}

export async function scheduleCommand(t: Transport, task: string, uid: string, body: ScheduleBody, opts: Output): Promise<string> {
  const answer = await call(t, 'PUT', `api/tasks/${seg(task)}/${seg(uid)}`, body);
  if (opts.json) return json(answer.body);
  const r = answer.body as ReportLike;
  return `scheduled ${r.task} ${r.uid}: ${scheduleText(r.schedule)}${r.enabled ? '' : ' (disabled)'}, next run ${r.nextRunAt ?? '-'}\n`;
}

export async function actionCommand(t: Transport, action: 'trigger' | 'enable' | 'disable', task: string, uid: string, opts: Output): Promise<string> {
  const { body } = await call(t, 'POST', `api/tasks/${seg(task)}/${seg(uid)}/${action}`);
  if (opts.json) return json(body);
  return `${action === 'trigger' ? 'triggered' : `${action}d`} ${task} ${uid}\n`;
}

export async function cancelCommand(t: Transport, task: string, uid: string, opts: Output): Promise<string> {
  const { body } = await call(t, 'DELETE', `api/tasks/${seg(task)}/${seg(uid)}`);
  return opts.json ? json(body) : `cancelled ${task} ${uid}\n`;
}

export async function pushCommand(t: Transport, task: string, params: JsonValue, opts: Output & { in?: string | undefined }): Promise<string> {
  const query = opts.in === undefined ? '' : `?in=${seg(opts.in)}`;
  const { body } = await call(t, 'PUT', `api/pushTask/${seg(task)}${query}`, params);
  return opts.json ? json(body) : `${(body as { id: string }).id}\n`;
}

/** Pops one task; with nothing available prints `null` (`--json`) or a note, exit 0 either way. */
export async function popCommand(t: Transport, task: string, opts: Output & { wait?: string | undefined; lease?: string | undefined; retry?: string | undefined }): Promise<string> {
  const query = new URLSearchParams();
  if (opts.wait !== undefined) query.set('wait', opts.wait);
  if (opts.lease !== undefined) query.set('lease', opts.lease);
  if (opts.retry !== undefined) query.set('retry', opts.retry);
  const q = query.size === 0 ? '' : `?${query.toString()}`;
  const { status, body } = await call(t, 'GET', `api/popTask/${seg(task)}${q}`, undefined);
  if (status === 202) return opts.json ? 'null\n' : 'no task available\n';
  if (opts.json) return json(body);
  const b = body as { task: { id: string } & Record<string, unknown>; uid: string; attempt: number; leaseExpiresAt?: string };
  const { id, ...params } = b.task;
  const lease = b.leaseExpiresAt === undefined ? '' : `  lease until ${b.leaseExpiresAt}`;
  return `id ${id}  uid ${b.uid}  attempt ${String(b.attempt)}${lease}\n${JSON.stringify(params)}\n`;
}

export async function ackCommand(t: Transport, task: string, id: string, result: JsonValue | undefined, opts: Output): Promise<string> {
  if (t.complete !== undefined) {
    if (!(await t.complete(id, { success: true, result }))) throw leaseLost(task, id);
    return opts.json ? json({ success: true, id }) : `acked ${task} ${id}\n`;
  }
  const { body } = await call(t, 'POST', `api/ackTask/${seg(task)}/${seg(id)}`, result === undefined ? undefined : result);
  return opts.json ? json(body) : `acked ${task} ${id}\n`;
}

export async function nackCommand(t: Transport, task: string, id: string, nack: { error?: string | undefined; retry?: boolean | number | undefined; delay?: string | undefined }, opts: Output): Promise<string> {
  if (t.complete !== undefined && t.now !== undefined) {
    // This process never saw the pop: the attempts it allowed are unknown, so a direct nack
    // retries only when asked to (--delay or --retry).
    const retrying = nack.delay !== undefined || (nack.retry !== undefined && nack.retry !== false);
    const retryAt = retrying ? (await t.now()) + (nack.delay === undefined ? 1000 : parseDuration(nack.delay, '--delay')) : undefined;
    if (!(await t.complete(id, { success: false, error: nack.error ?? 'failed (nackTask)', retryAt }))) throw leaseLost(task, id);
    const body = { success: true, id, retrying, retryAt: retryAt === undefined ? null : new Date(retryAt).toISOString() };
    return opts.json ? json(body) : `nacked ${task} ${id}${retrying ? `, retry at ${body.retryAt ?? ''}` : ''}\n`;
  }
  const body: Record<string, unknown> = {};
  if (nack.error !== undefined) body['error'] = nack.error;
  if (nack.retry !== undefined) body['retry'] = nack.retry;
  if (nack.delay !== undefined) body['delay'] = nack.delay;
  const answer = await call(t, 'POST', `api/nackTask/${seg(task)}/${seg(id)}`, body);
  if (opts.json) return json(answer.body);
  const b = answer.body as { retrying: boolean; retryAt: string | null; attempt: number };
  return `nacked ${task} ${id}${b.retrying ? `, retry at ${b.retryAt ?? ''}` : ', no more attempts'}\n`;
}

function leaseLost(task: string, id: string): ServiceError {
  return new ServiceError(
    409,
    { error: `task "${task}": no lease "${id}" is held (it expired and may have been redelivered, was already acknowledged, or never existed)`, code: 'ERR_LEASE_LOST' },
    'store',
  );
}

export function countSchedules(dump: RegistryDump): number {
  let n = 0;
  for (const uids of Object.values(dump)) n += Object.keys(uids).length;
  return n;
}

export async function snapshotCommand(t: Transport): Promise<RegistryDump> {
  const { body } = await call(t, 'GET', 'api/registry');
  return body as RegistryDump;
}

/** Largest chunk of a `load` (serialized); well under the service's 1 MiB body limit. */
export const LOAD_CHUNK_BYTES = 256 * 1024;
/** At most this many schedules per chunk. */
export const LOAD_CHUNK_ENTRIES = 2000;

/** Splits a dump into chunks of at most `LOAD_CHUNK_ENTRIES` schedules and about `LOAD_CHUNK_BYTES`. */
export function chunkDump(dump: RegistryDump, maxEntries = LOAD_CHUNK_ENTRIES, maxBytes = LOAD_CHUNK_BYTES): RegistryDump[] {
  const chunks: RegistryDump[] = [];
  let current: RegistryDump = {};
  let entries = 0;
  let bytes = 2;
  for (const [task, uids] of Object.entries(dump)) {
    if (typeof uids !== 'object' || uids === null || Array.isArray(uids)) {
      // Let the service name the bad field.
      chunks.push({ [task]: uids });
      continue;
    }
    for (const [uid, entry] of Object.entries(uids as Record<string, RegistryEntry>)) {
      const size = JSON.stringify(entry).length + task.length + uid.length + 12;
      if (entries > 0 && (entries >= maxEntries || bytes + size > maxBytes)) {
        chunks.push(current);
        current = {};
        entries = 0;
        bytes = 2;
      }
      setOwn(ownEntry(current, task, () => ({})), uid, entry);
      entries++;
      bytes += size;
    }
  }
  if (entries > 0 || chunks.length === 0) chunks.push(current);
  return chunks;
}

/** Loads a dump in chunks; `progress(done, total)` after each. Resolves how many were loaded. */
export async function loadCommand(t: Transport, dump: RegistryDump, progress?: (done: number, total: number) => void): Promise<number> {
  const chunks = chunkDump(dump);
  const total = countSchedules(dump);
  let loaded = 0;
  for (const chunk of chunks) {
    const { body } = await call(t, 'PUT', 'api/registry', chunk);
    loaded += (body as { loaded: number }).loaded;
    progress?.(loaded, total);
  }
  return loaded;
}

/** A one-line progress bar for a TTY: `[#####-----]  50% 5000/10000`. */
export function progressBar(done: number, total: number, width = 30): string {
  const ratio = total === 0 ? 1 : Math.min(1, done / total);
  const filled = Math.round(ratio * width);
  return `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(ratio * 100)).padStart(3)}% ${done}/${total}`;
}
