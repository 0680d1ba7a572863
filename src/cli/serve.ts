/**
 * `schedkit serve`: the HTTP service on the embedded store, persisted to a file so
 * schedules survive restarts, or on Redis (`--store redis://…`, `--cluster`). Shuts down
 * gracefully on SIGTERM / SIGINT.
 */
import { pino } from 'pino';
import { createServer } from '../http/server.js';
import { Scheduler } from '../scheduler.js';
import { openStore, type StoreSpec } from './store.js';

export interface ServeOptions {
  readonly store: StoreSpec;
  readonly host: string;
  readonly port: number;
  readonly token: string | undefined;
  readonly logLevel: string;
}

/** How long a graceful shutdown may take before the process exits anyway. */
const SHUTDOWN_TIMEOUT_MS = 35_000;

/**
 * Starts serving; resolves once listening (the process then lives until a signal).
 * Throws on a bad option (`SchedkitError`) or when the store or the port cannot be opened.
 */
export async function serve(opts: ServeOptions): Promise<void> {
  const logger = pino({ name: 'schedkit', level: opts.logLevel }, pino.destination({ dest: 2, sync: true }));
  const { store, description } = openStore(opts.store);
  const scheduler = new Scheduler({ store });
  scheduler.on('error', (err) => logger.error({ err }, 'scheduler error'));
  // Validates host/token before anything is opened.
  const server = createServer({ scheduler, token: opts.token, host: opts.host, port: opts.port, logger, processMetrics: true });
  let url: string;
  try {
    await scheduler.start({ execute: false });
    url = await server.listen();
  } catch (err) {
    await scheduler.stop().catch(() => undefined);
    throw err;
  }
  process.stdout.write(`schedkit listening on ${url} (${description})\n`);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn(`${signal} again: exiting without waiting`);
      process.exit(1);
    }
    stopping = true;
    logger.info(`${signal}: shutting down`);
    const force = setTimeout(() => {
      logger.error('shutdown took too long: exiting');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    force.unref();
    void (async () => {
      let code = 0;
      try {
        await server.close();
      } catch (err) {
        code = 1;
        logger.error({ err }, 'closing the HTTP server failed');
      }
      try {
        await scheduler.stop(); // persists the embedded store's file
      } catch (err) {
        code = 1;
        logger.error({ err }, 'stopping the scheduler failed (the data file may be stale)');
      }
      process.exit(code);
    })();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}
