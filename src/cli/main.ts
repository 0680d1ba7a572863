#!/usr/bin/env node
/**
 * The `schedkit` command. Exit codes: 0 success, 1 failure, 2 usage error.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SchedkitError } from '../errors.js';
import type { JsonValue } from '../json.js';
import type { RegistryDump } from '../store/Store.js';
import {
  ackCommand,
  actionCommand,
  cancelCommand,
  countSchedules,
  getCommand,
  listCommand,
  loadCommand,
  nackCommand,
  popCommand,
  progressBar,
  pushCommand,
  scheduleCommand,
  snapshotCommand,
  type ScheduleBody,
} from './client.js';
import type { StoreSpec } from './store.js';
import { ClientError, HttpTransport, ServiceError, type Transport } from './transport.js';

// The service's defaults (DEFAULT_HOST / DEFAULT_PORT of ../http/server.ts, which tests/cli-commands
// checks): not imported, so that HTTP commands do not load fastify and start faster.
const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 8080;
const DEFAULT_DATA = './.schedkit/registry.json';
const DEFAULT_URL = `http://${DEFAULT_HOST}:${DEFAULT_PORT}`;

const STORE_OPTIONS = `Store options (every command):
  --store memory|redis://HOST:PORT[/DB]   Act on this store directly (env SCHEDKIT_STORE);
                                          with serve: the store the service runs on
  --cluster HOST:PORT[,HOST:PORT...]      A Redis Cluster instead (seed nodes)
  --prefix PREFIX                         Redis key namespace (env SCHEDKIT_PREFIX, default schedkit)
  --data FILE                             The embedded (memory) store's file
                                          (env SCHEDKIT_DATA, default ${DEFAULT_DATA})`;

const USAGE = `Usage: schedkit <command> [options]

Commands:
  serve                         Run the HTTP service (embedded store, or --store / --cluster)
  list [--task TASK]            List schedules (a table; --json for JSON)
  get <task> <uid>              One schedule
  schedule <task> <uid> (--in D | --at T | --every D | --cron EXPR [--tz Z])
           [--params JSON] [--disabled]
                                Create or replace a schedule
  enable <task> <uid>           Enable a schedule
  disable <task> <uid>          Disable a schedule
  cancel <task> <uid>           Cancel (delete) a schedule
  trigger <task> <uid>          Run a schedule now
  push <task> [--params JSON] [--in D]
                                Push a task (params from --params or JSON on stdin)
  pop <task> [--wait S] [--lease D] [--retry N]
                                Pop a due task (leased with --lease: then ack or nack it)
  ack <task> <id> [--result JSON]
                                Complete a leased pop
  nack <task> <id> [--error MSG] [--retry N|false] [--delay D]
                                Fail a leased pop
  snapshot [--out FILE]         Export every schedule (schedward registry dump)
  load FILE                     Import a snapshot (FILE or - for stdin)

Client options (every command but serve):
  --url URL          Service URL   (env SCHEDKIT_URL, default ${DEFAULT_URL})
  --token TOKEN      Bearer token  (env SCHEDKIT_TOKEN)
  --json             Print JSON

${STORE_OPTIONS}
  Without --store / --cluster, commands talk to the service at --url.

Options:
  -h, --help            Show this help (or a command's: schedkit serve --help)
  -v, --version         Show the version

Exit codes: 0 success, 1 failure (the service's { error, code } on stderr), 2 usage error.
`;

const SERVE_USAGE = `Usage: schedkit serve [options]

Runs the HTTP API (registry push/pop, leased pops, schedule management, dashboard) on the
embedded store, persisted to a file so schedules survive restarts, or on Redis.

Options:
  --host HOST    Interface to listen on   (env SCHEDKIT_HOST,  default ${DEFAULT_HOST})
  --port PORT    Port, 0 = any free port  (env SCHEDKIT_PORT,  default ${DEFAULT_PORT})
  --token TOKEN  Bearer token for /api    (env SCHEDKIT_TOKEN; required unless HOST is loopback)
  -h, --help     Show this help

${STORE_OPTIONS}

Env SCHEDKIT_LOG_LEVEL sets the log level on stderr (default warn).
Prints "schedkit listening on <url>" once ready; SIGTERM or SIGINT stops it gracefully.
`;

const CLIENT_USAGE = 'Run `schedkit --help` for the commands and their options.\n';

class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string = CLIENT_USAGE,
  ) {
    super(message);
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(args: string[], options: T, usage: string, positionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message, usage);
  }
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

function parsePort(text: string, source: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`${source}: must be an integer from 0 to 65535, got "${text}"`, SERVE_USAGE);
  return port;
}

const STORE_ARGS = {
  store: { type: 'string' },
  cluster: { type: 'string' },
  prefix: { type: 'string' },
  data: { type: 'string' },
} as const;

const CLIENT_ARGS = {
  ...STORE_ARGS,
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Each client command's own options (beside CLIENT_ARGS) and its positional arguments. */
const COMMANDS: Record<string, { options: Record<string, { type: 'string' | 'boolean' }>; args: readonly string[]; maxArgs?: number }> = {
  list: { options: { task: { type: 'string' } }, args: [] },
  get: { options: {}, args: ['task', 'uid'] },
  schedule: {
    options: { in: { type: 'string' }, at: { type: 'string' }, every: { type: 'string' }, cron: { type: 'string' }, tz: { type: 'string' }, params: { type: 'string' }, disabled: { type: 'boolean' } },
    args: ['task', 'uid'],
  },
  enable: { options: {}, args: ['task', 'uid'] },
  disable: { options: {}, args: ['task', 'uid'] },
  cancel: { options: {}, args: ['task', 'uid'] },
  trigger: { options: {}, args: ['task', 'uid'] },
  push: { options: { params: { type: 'string' }, in: { type: 'string' } }, args: ['task'] },
  pop: { options: { wait: { type: 'string' }, lease: { type: 'string' }, retry: { type: 'string' } }, args: ['task'] },
  ack: { options: { result: { type: 'string' } }, args: ['task', 'id'] },
  nack: { options: { error: { type: 'string' }, retry: { type: 'string' }, delay: { type: 'string' } }, args: ['task', 'id'] },
  snapshot: { options: { out: { type: 'string' } }, args: [] },
  load: { options: {}, args: ['file'] },
};

function parseJsonArg(text: string, option: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new UsageError(`${option}: not valid JSON (${(err as Error).message})`);
  }
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

function storeSpec(values: { store?: string | undefined; cluster?: string | undefined; prefix?: string | undefined; data?: string | undefined }): StoreSpec {
  return {
    store: values.store ?? env('SCHEDKIT_STORE'),
    cluster: values.cluster,
    prefix: values.prefix ?? env('SCHEDKIT_PREFIX'),
    data: values.data ?? env('SCHEDKIT_DATA') ?? DEFAULT_DATA,
  };
}

/** Runs a command; resolves its exit code, or null while `serve` keeps the process alive. */
async function main(argv: string[]): Promise<number | null> {
  const [command, ...rest] = argv;
  if (command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command === 'serve') {
    const { values } = parse(
      rest,
      {
        ...STORE_ARGS,
        host: { type: 'string' },
        port: { type: 'string' },
        token: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      SERVE_USAGE,
    );
    if (values.help === true) {
      process.stdout.write(SERVE_USAGE);
      return 0;
    }
    const portText = values.port ?? env('SCHEDKIT_PORT');
    const { serve } = await import('./serve.js');
    await serve({
      store: storeSpec(values),
      host: values.host ?? env('SCHEDKIT_HOST') ?? DEFAULT_HOST,
      port: portText === undefined ? DEFAULT_PORT : parsePort(portText, values.port === undefined ? 'SCHEDKIT_PORT' : '--port'),
      token: values.token ?? env('SCHEDKIT_TOKEN'),
      logLevel: env('SCHEDKIT_LOG_LEVEL') ?? 'warn',
    });
    return null;
  }
  const spec = command === undefined ? undefined : COMMANDS[command];
  if (command === undefined || spec === undefined) throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`, USAGE);

  const { values, positionals } = parse(rest, { ...CLIENT_ARGS, ...spec.options }, CLIENT_USAGE, true);
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== spec.args.length) {
    const want = spec.args.length === 0 ? 'no arguments' : spec.args.map((a) => `<${a}>`).join(' ');
    throw new UsageError(`${command} takes ${want}, got ${positionals.length === 0 ? 'none' : `"${positionals.join(' ')}"`}`);
  }
  const opt = values as Record<string, string | boolean | undefined>;
  const str = (name: string): string | undefined => opt[name] as string | undefined;
  const [a = '', b = ''] = positionals;
  const out = { json: values.json === true };

  // Everything that can be a usage error is checked before connecting.
  let scheduleBody: ScheduleBody | undefined;
  if (command === 'schedule') {
    const timings = (['in', 'at', 'every', 'cron'] as const).filter((k) => str(k) !== undefined);
    if (timings.length !== 1) throw new UsageError(`schedule takes exactly one of --in, --at, --every, --cron${timings.length > 1 ? `, got ${timings.map((k) => `--${k}`).join(' ')}` : ''}`);
    if (str('tz') !== undefined && str('cron') === undefined) throw new UsageError('--tz only applies with --cron');
    const timing = timings[0] as 'in' | 'at' | 'every' | 'cron';
    const value = str(timing) as string;
    // A bare number is milliseconds (epoch ms for --at), as in the API; the service validates the rest.
    scheduleBody = { [timing]: /^\d+$/.test(value) ? Number(value) : value };
    if (str('tz') !== undefined) scheduleBody.tz = str('tz');
    if (str('params') !== undefined) scheduleBody.params = parseJsonArg(str('params') as string, '--params');
    if (opt['disabled'] === true) scheduleBody.enabled = false;
  }
  let params: JsonValue | undefined;
  if (command === 'push') params = str('params') === undefined ? undefined : parseJsonArg(str('params') as string, '--params');
  let result: JsonValue | undefined;
  if (command === 'ack' && str('result') !== undefined) result = parseJsonArg(str('result') as string, '--result');
  let retry: boolean | number | undefined;
  if (command === 'nack' && str('retry') !== undefined) {
    const r = str('retry') as string;
    retry = r === 'false' ? false : r === 'true' ? true : /^\d+$/.test(r) ? Number(r) : Number.NaN;
    if (Number.isNaN(retry)) throw new UsageError(`--retry: expected a number of attempts, true or false, got "${r}"`);
  }
  let dump: RegistryDump | undefined;
  if (command === 'load') {
    let text: string;
    try {
      text = a === '-' ? await readStdin() : readFileSync(a, 'utf8');
    } catch (err) {
      throw new UsageError(`load: cannot read ${a}: ${(err as Error).message}`);
    }
    const parsed = parseJsonArg(text, a === '-' ? 'stdin' : a);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`load: ${a} must hold a JSON object (a snapshot: { task: { uid: entry } })`);
    dump = parsed as unknown as RegistryDump;
  }
  if (command === 'push' && params === undefined) {
    if (process.stdin.isTTY) params = {};
    else {
      const text = (await readStdin()).trim();
      params = text.length === 0 ? {} : parseJsonArg(text, 'stdin');
    }
  }

  // Flags beat the environment: --url talks HTTP even when SCHEDKIT_STORE is set.
  const storeFlag = values.store !== undefined || values.cluster !== undefined;
  if (storeFlag && str('url') !== undefined) throw new UsageError('give either --url (a service) or --store / --cluster (a store), not both');
  const store = storeSpec(values);
  const direct = storeFlag || (str('url') === undefined && store.store !== undefined);
  const transport: Transport = direct
    ? new (await import('./direct.js')).StoreTransport(store)
    : new HttpTransport(str('url') ?? env('SCHEDKIT_URL') ?? DEFAULT_URL, str('token') ?? env('SCHEDKIT_TOKEN'));
  try {
    switch (command) {
      case 'list':
        process.stdout.write(await listCommand(transport, { ...out, task: str('task') }));
        break;
      case 'get':
        process.stdout.write(await getCommand(transport, a, b, out));
        break;
      case 'schedule':
        process.stdout.write(await scheduleCommand(transport, a, b, scheduleBody as ScheduleBody, out));
        break;
      case 'enable':
      case 'disable':
      case 'trigger':
        process.stdout.write(await actionCommand(transport, command, a, b, out));
        break;
      case 'cancel':
        process.stdout.write(await cancelCommand(transport, a, b, out));
        break;
      case 'push':
        process.stdout.write(await pushCommand(transport, a, params ?? {}, { ...out, in: str('in') }));
        break;
      case 'pop':
        process.stdout.write(await popCommand(transport, a, { ...out, wait: str('wait'), lease: str('lease'), retry: str('retry') }));
        break;
      case 'ack':
        process.stdout.write(await ackCommand(transport, a, b, result, out));
        break;
      case 'nack':
        process.stdout.write(await nackCommand(transport, a, b, { error: str('error'), retry, delay: str('delay') }, out));
        break;
      case 'snapshot': {
        const snap = await snapshotCommand(transport);
        const file = str('out');
        if (file === undefined) {
          process.stdout.write(`${JSON.stringify(snap, null, 2)}\n`);
        } else {
          const tmp = `${file}.${process.pid}.tmp`;
          writeFileSync(tmp, `${JSON.stringify(snap, null, 2)}\n`);
          renameSync(tmp, file);
          const n = countSchedules(snap);
          process.stdout.write(out.json ? `${JSON.stringify({ file, schedules: n })}\n` : `wrote ${n} schedules to ${file}\n`);
        }
        break;
      }
      case 'load': {
        const bar = !out.json && process.stderr.isTTY === true;
        const loaded = await loadCommand(transport, dump as RegistryDump, bar ? (done, total) => process.stderr.write(progressBar(done, total)) : undefined);
        if (bar) process.stderr.write('\n');
        process.stdout.write(out.json ? `${JSON.stringify({ loaded })}\n` : `loaded ${loaded} schedules\n`);
        break;
      }
    }
  } finally {
    await transport.close();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== null) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`schedkit: ${err.message}\n\n${err.usage}`);
      process.exitCode = 2;
    } else if (err instanceof ServiceError) {
      // The service's own { error, code }: one JSON line, after a readable one.
      process.stderr.write(`schedkit: ${err.message}\n${JSON.stringify(err.body)}\n`);
      process.exitCode = 1;
    } else if (err instanceof SchedkitError && (err.code === 'ERR_INSECURE_BIND' || err.code === 'ERR_VALIDATION')) {
      process.stderr.write(`schedkit: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof SchedkitError || err instanceof ClientError) {
      process.stderr.write(`schedkit: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      const e = err as NodeJS.ErrnoException;
      process.stderr.write(`schedkit: ${e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL' || e.code === 'ECONNREFUSED' ? e.message : (e.stack ?? String(err))}\n`);
      process.exitCode = 1;
    }
  },
);
