/**
 * `schedkit list` and `schedkit trigger`: talk to a running `schedkit serve` over HTTP.
 */
export interface ClientOptions {
  readonly url: string;
  readonly token: string | undefined;
}

export class ClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientError';
  }
}

async function call(opts: ClientOptions, method: string, path: string): Promise<unknown> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
  let res: Response;
  const url = new URL(path, opts.url.endsWith('/') ? opts.url : `${opts.url}/`);
  try {
    res = await fetch(url, { method, headers });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new ClientError(`cannot reach ${opts.url}: ${cause?.code ?? cause?.message ?? (err as Error).message} (is \`schedkit serve\` running? set --url or SCHEDKIT_URL)`);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text.length === 0 ? undefined : JSON.parse(text);
  } catch {
    throw new ClientError(`${method} ${url.pathname}: HTTP ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) {
    const e = body as { error?: string; code?: string } | undefined;
    throw new ClientError(`${method} ${url.pathname}: HTTP ${res.status}: ${e?.error ?? 'error'}${e?.code === undefined ? '' : ` (${e.code})`}`);
  }
  return body;
}

interface ReportLike {
  task: string;
  uid: string;
  schedule: { kind: string; every?: number; cron?: string; tz?: string };
  enabled: boolean;
  nextRunAt: string | null;
  lastExecutedAt: string | null;
  lastError: string | null;
  pending: number;
  running: number;
}

function scheduleText(s: ReportLike['schedule']): string {
  if (s.kind === 'every') return `every ${String(s.every)}ms`;
  if (s.kind === 'cron') return `cron ${s.cron ?? ''}${s.tz === undefined ? '' : ` ${s.tz}`}`;
  return 'once';
}

export async function listCommand(opts: ClientOptions, filter: { task?: string | undefined; json: boolean }): Promise<string> {
  const query = filter.task === undefined ? '' : `?task=${encodeURIComponent(filter.task)}`;
  const body = (await call(opts, 'GET', `api/tasks${query}`)) as { tasks: ReportLike[] };
  if (filter.json) return `${JSON.stringify(body.tasks, null, 2)}\n`;
  if (body.tasks.length === 0) return 'no schedules\n';
  const rows = [['TASK', 'UID', 'SCHEDULE', 'ENABLED', 'NEXT RUN', 'LAST RUN', 'PENDING', 'RUNNING']];
  for (const r of body.tasks) {
    rows.push([r.task, r.uid, scheduleText(r.schedule), r.enabled ? 'yes' : 'no', r.nextRunAt ?? '-', r.lastExecutedAt ?? '-', String(r.pending), String(r.running)]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  return `${rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')}\n`;
}

export async function triggerCommand(opts: ClientOptions, task: string, uid: string): Promise<string> {
  await call(opts, 'POST', `api/tasks/${encodeURIComponent(task)}/${encodeURIComponent(uid)}/trigger`);
  return `triggered ${task} ${uid}\n`;
}
