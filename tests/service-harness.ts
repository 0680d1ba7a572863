import { afterEach } from 'vitest';
import { MemoryStore, Scheduler } from '../src/index.js';
import { createServer, type SchedkitServer, type ServerOptions } from '../src/http/server.js';

/** A scheduler on a fresh MemoryStore behind a server listening on 127.0.0.1:0. */
export interface Harness {
  readonly url: string;
  readonly scheduler: Scheduler;
  readonly store: MemoryStore;
  readonly server: SchedkitServer;
}

export interface HarnessSetup {
  /** Run the tasks `define` adds in this process (default false: a producer, as for remote workers). */
  readonly execute?: boolean;
  readonly define?: (scheduler: Scheduler) => void;
}

/** Returns `start()`; every service it starts is closed (server, then scheduler) after each test. */
export function serviceTracker(): (options?: Partial<ServerOptions>, setup?: HarnessSetup) => Promise<Harness> {
  const open: Harness[] = [];
  afterEach(async () => {
    for (const h of open.splice(0)) {
      await h.server.close();
      await h.scheduler.stop({ timeout: 1000 });
    }
  });
  return async (options = {}, setup = {}) => {
    const store = new MemoryStore();
    const scheduler = new Scheduler({ store });
    scheduler.on('error', () => undefined);
    setup.define?.(scheduler);
    await scheduler.start({ execute: setup.execute ?? false });
    const server = createServer({ scheduler, port: 0, ...options });
    const url = await server.listen();
    const h = { url, scheduler, store, server };
    open.push(h);
    return h;
  };
}
