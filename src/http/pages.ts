/**
 * The browser pages: the dashboard at `/`, the API docs at `/docs`, and their script and
 * stylesheet. They hold no data (everything comes from the token-guarded API), so they are
 * served without the token; `OPEN_ROUTES` is the complete list of such routes.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { CLIENT_JS, PAGE_HEADERS } from './client.js';
import { DASHBOARD_CSS, DASHBOARD_JS, dashboardHtml, type RouteInfo } from './dashboard.js';
import { DOCS_JS, docsHtml } from './docs.js';

/** Routes served without the bearer token (exact route URLs). */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/', '/docs', '/assets/dashboard.css', '/assets/dashboard.js', '/assets/docs.js']);

export interface PagesOptions {
  readonly tokenRequired: boolean;
  /** The server's routes, read once the first page is asked for (all are registered by then). */
  readonly routes: () => readonly RouteInfo[];
}

/** Each script runs in its own scope: nothing leaks onto `window`. */
function script(...parts: string[]): string {
  return `(() => {\n${parts.join('\n')}\n})();\n`;
}

export function registerPages(app: FastifyInstance, options: PagesOptions): void {
  const hide = { hide: true } as const;
  let dashboard: string | undefined;
  let docs: string | undefined;
  const assets: Readonly<Record<string, readonly [string, string]>> = {
    '/assets/dashboard.css': ['text/css; charset=utf-8', DASHBOARD_CSS],
    '/assets/dashboard.js': ['text/javascript; charset=utf-8', script(CLIENT_JS, DASHBOARD_JS)],
    '/assets/docs.js': ['text/javascript; charset=utf-8', script(CLIENT_JS, DOCS_JS)],
  };

  app.get('/', { schema: hide }, async (_request, reply) => {
    dashboard ??= dashboardHtml(options.tokenRequired, options.routes().filter((r) => !r.hidden));
    return send(reply, 'text/html; charset=utf-8', dashboard);
  });
  app.get('/docs', { schema: hide }, async (_request, reply) => send(reply, 'text/html; charset=utf-8', (docs ??= docsHtml(options.tokenRequired))));
  for (const [url, [type, body]] of Object.entries(assets)) {
    app.get(url, { schema: hide }, async (_request, reply) => send(reply, type, body));
  }
}

function send(reply: FastifyReply, type: string, body: string): FastifyReply {
  return reply.headers(PAGE_HEADERS).type(type).send(body);
}
