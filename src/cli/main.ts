#!/usr/bin/env node
/**
 * The `schedkit` command. Exit codes: 0 success, 1 failure, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SchedkitError } from '../errors.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../http/server.js';
import { ClientError, listCommand, triggerCommand } from './client.js';
import { serve } from './serve.js';

const DEFAULT_DATA = './.schedkit/registry.json';
const DEFAULT_URL = `http://${DEFAULT_HOST}:${DEFAULT_PORT}`;

const USAGE = `Usage: schedkit <command> [options]

Commands:
  serve                 Run the HTTP service on the embedded store
  list                  List the schedules of a running service
  trigger <task> <uid>  Run a schedule of a running service now

Options:
  -h, --help            Show this help (or a command's: schedkit serve --help)
  -v, --version         Show the version
`;

const SERVE_USAGE = `Usage: schedkit serve [options]

Runs the HTTP API (registry push/pop, leased pops, schedule management) on the
embedded store, persisted to a file so schedules survive restarts.

Options:
  --data FILE    Registry file            (env SCHEDKIT_DATA,  default ${DEFAULT_DATA})
  --host HOST    Interface to listen on   (env SCHEDKIT_HOST,  default ${DEFAULT_HOST})
  --port PORT    Port, 0 = any free port  (env SCHEDKIT_PORT,  default ${DEFAULT_PORT})
  --token TOKEN  Bearer token for /api    (env SCHEDKIT_TOKEN; required unless HOST is loopback)
  -h, --help     Show this help

Env SCHEDKIT_LOG_LEVEL sets the log level on stderr (default warn).
Prints "schedkit listening on <url>" once ready; SIGTERM or SIGINT stops it gracefully.
`;

const CLIENT_USAGE = `Usage: schedkit list [--task TASK] [--json] [--url URL] [--token TOKEN]
       schedkit trigger <task> <uid> [--url URL] [--token TOKEN]

Options:
  --url URL      Service URL   (env SCHEDKIT_URL, default ${DEFAULT_URL})
  --token TOKEN  Bearer token  (env SCHEDKIT_TOKEN)
`;

class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string = USAGE,
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
  switch (command) {
    case 'serve': {
      const { values } = parse(
        rest,
        {
          data: { type: 'string' },
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
      await serve({
        data: values.data ?? env('SCHEDKIT_DATA') ?? DEFAULT_DATA,
        host: values.host ?? env('SCHEDKIT_HOST') ?? DEFAULT_HOST,
        port: portText === undefined ? DEFAULT_PORT : parsePort(portText, values.port === undefined ? 'SCHEDKIT_PORT' : '--port'),
        token: values.token ?? env('SCHEDKIT_TOKEN'),
        logLevel: env('SCHEDKIT_LOG_LEVEL') ?? 'warn',
      });
      return null;
    }
    case 'list':
    case 'trigger': {
      const { values, positionals } = parse(
        rest,
        { url: { type: 'string' }, token: { type: 'string' }, task: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
        CLIENT_USAGE,
        true,
      );
      if (values.help === true) {
        process.stdout.write(CLIENT_USAGE);
        return 0;
      }
      const client = { url: values.url ?? env('SCHEDKIT_URL') ?? DEFAULT_URL, token: values.token ?? env('SCHEDKIT_TOKEN') };
      if (command === 'list') {
        if (positionals.length > 0) throw new UsageError(`list takes no arguments, got "${positionals.join(' ')}"`, CLIENT_USAGE);
        process.stdout.write(await listCommand(client, { task: values.task, json: values.json === true }));
      } else {
        if (positionals.length !== 2 || values.task !== undefined || values.json !== undefined) throw new UsageError('trigger takes exactly <task> <uid>', CLIENT_USAGE);
        process.stdout.write(await triggerCommand(client, positionals[0] as string, positionals[1] as string));
      }
      return 0;
    }
    default:
      throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== null) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`schedkit: ${err.message}\n\n${err.usage}`);
      process.exitCode = 2;
    } else if (err instanceof SchedkitError && (err.code === 'ERR_INSECURE_BIND' || err.code === 'ERR_VALIDATION')) {
      process.stderr.write(`schedkit: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof SchedkitError || err instanceof ClientError) {
      process.stderr.write(`schedkit: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      const e = err as NodeJS.ErrnoException;
      process.stderr.write(`schedkit: ${e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL' ? e.message : (e.stack ?? String(err))}\n`);
      process.exitCode = 1;
    }
  },
);
