/**
 * The Lua scripts, one file per operation in ./lua (BullMQ style: `claim-1.lua` takes one
 * KEY), each opening with a header of its KEYS, ARGV and return value. Shared code lives in
 * ./lua/includes and is inlined where a script says `--@include "name"`. Scripts are
 * registered with ioredis `defineCommand` under a versioned name (`schedkit_v5_claim`), so
 * two releases with different scripts can share one Redis; calls go out as EVALSHA of the
 * script's SHA and fall back to that command on NOSCRIPT (see run).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { HISTORY_LIMIT } from '../Store.js';
import { MAX_CATCHUP } from './codec.js';

export type RedisClient = Redis | Cluster;

const VERSION = 'v5';
const LUA_DIR = new URL('./lua/', import.meta.url);

export const SCRIPT_FILES = {
  init: 'init-1.lua',
  upsert: 'upsert-1.lua',
  update: 'update-1.lua',
  remove: 'remove-1.lua',
  trigger: 'trigger-1.lua',
  claim: 'claim-1.lua',
  renew: 'renew-1.lua',
  complete: 'complete-1.lua',
  refill: 'refill-1.lua',
  depths: 'depths-1.lua',
  lockRelease: 'lock-release-1.lua',
  lockExtend: 'lock-extend-1.lua',
} as const;

export type ScriptName = keyof typeof SCRIPT_FILES;

interface Loaded {
  readonly command: string;
  readonly numberOfKeys: number;
  readonly lua: string;
  /** SHA1 of `lua`: what EVALSHA names it by. */
  readonly sha: string;
}

let loaded: Map<ScriptName, Loaded> | undefined;

/** `'1', '2', … '128'`: claim-1.lua's token numbers as string constants (see DIGITS there). */
const DIGITS = Array.from({ length: 128 }, (_, i) => `'${i + 1}'`).join(', ');

function read(file: string): string {
  return readFileSync(new URL(file, LUA_DIR), 'utf8');
}

function expand(source: string, seen: Set<string>): string {
  return source.replace(/^--@include "([\w-]+)"$/gm, (_, name: string) => {
    if (seen.has(name)) return '';
    seen.add(name);
    return expand(read(`includes/${name}.lua`), seen);
  });
}

/** Reads and expands every script (once per process). */
export function scripts(): Map<ScriptName, Loaded> {
  if (loaded === undefined) {
    const map = new Map<ScriptName, Loaded>();
    for (const [name, file] of Object.entries(SCRIPT_FILES) as [ScriptName, string][]) {
      const keys = /-(\d+)\.lua$/.exec(file);
      const lua = expand(read(file), new Set())
        .replaceAll('{{HISTORY_LIMIT}}', String(HISTORY_LIMIT))
        .replaceAll('{{MAX_CATCHUP}}', String(MAX_CATCHUP))
        .replaceAll('{{DIGITS}}', DIGITS);
      const command = `schedkit_${VERSION}_${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
      map.set(name, { command, numberOfKeys: Number(keys?.[1] ?? 0), lua, sha: createHash('sha1').update(lua).digest('hex') });
    }
    loaded = map;
  }
  return loaded;
}

/** Registers every script on a client (idempotent). */
export function defineScripts(client: RedisClient): void {
  for (const s of scripts().values()) {
    client.defineCommand(s.command, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
}

type CommandFn = (...args: (string | number)[]) => Promise<unknown>;

const NO_ARGS: readonly (string | number)[] = [];

/**
 * Runs a registered script: `keys`, then `args`, then `more`. It goes out as a plain EVALSHA
 * of the script's SHA; only a NOSCRIPT answer (a new connection, a restarted or flushed
 * Redis) takes the command `defineCommand` registered, which loads the script (EVAL) and runs
 * it. Not the registered command every time: ioredis runs those through one shared function
 * (Script#execute) that spreads the arguments in a loop and constructs a class of its own per
 * script. Once V8 had compiled that loop on-stack for one script (a long argument list, as
 * a big scheduleMany sends), every call of another script entered that code and bailed out
 * of it again (--trace-deopt: ~1,600 bailouts in a drain of 50,000 runs, one per call).
 */
export function run(client: RedisClient, name: ScriptName, keys: readonly string[], args: readonly (string | number)[], more: readonly (string | number)[] = NO_ARGS): Promise<unknown> {
  const s = scripts().get(name) as Loaded;
  return client.call('evalsha', evalshaArgs(s, keys, args, more)).catch((err: unknown) => {
    if (!(err instanceof Error) || !err.message.includes('NOSCRIPT')) throw err;
    const fn = (client as unknown as Record<string, CommandFn | undefined>)[s.command];
    if (fn === undefined) throw new Error(`script ${s.command} is not defined on this client`);
    return fn.call(client, ...keys, ...args, ...more);
  });
}

/** EVALSHA's arguments, copied in plain loops (no spread: see run). */
function evalshaArgs(s: Loaded, keys: readonly string[], args: readonly (string | number)[], more: readonly (string | number)[]): (string | number)[] {
  const out: (string | number)[] = [s.sha, s.numberOfKeys];
  for (let i = 0; i < keys.length; i++) out.push(keys[i] as string);
  for (let i = 0; i < args.length; i++) out.push(args[i] as string | number);
  for (let i = 0; i < more.length; i++) out.push(more[i] as string | number);
  return out;
}
