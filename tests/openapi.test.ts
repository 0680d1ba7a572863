/**
 * The OpenAPI document at `/docs/json` and the page at `/docs`: every route the server
 * registers under /api is documented (a drift test), the route schemas are in it, the HTTP
 * schemas' fields match the library's option types, and the token guards the document.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { serviceTracker, type Harness } from './service-harness.js';
import type { ScheduleOptions, UpdateOptions } from '../src/types.js';

const start = serviceTracker();

interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean;
}
interface Operation {
  summary?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: { name: string; in: string; required?: boolean; schema: Schema }[];
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, { description: string }>;
}
interface Document {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components?: { securitySchemes?: Record<string, unknown> };
  security?: unknown[];
}

async function documentOf(h: Harness, headers: Record<string, string> = {}): Promise<Document> {
  const res = await fetch(`${h.url}/docs/json`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as Document;
}

/** `/api/tasks/:task/:uid` → `/api/tasks/{task}/{uid}`. */
function openapiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function operation(doc: Document, method: string, url: string): Operation {
  const op = doc.paths[openapiPath(url)]?.[method.toLowerCase()];
  if (op === undefined) throw new Error(`${method} ${url} is not in the OpenAPI document`);
  return op;
}

function bodyProperties(op: Operation): string[] {
  return Object.keys(op.requestBody?.content['application/json']?.schema.properties ?? {}).sort();
}

describe('OpenAPI document', () => {
  it('documents every registered /api route (drift test), and nothing that is not served', async () => {
    const h = await start();
    const doc = await documentOf(h);
    const api = h.server.routes.filter((r) => r.url.startsWith('/api/') || r.url === '/api');
    // The management and worker API as of this writing; the check below covers any added later.
    expect(api.length).toBeGreaterThanOrEqual(17);
    for (const route of api) {
      const op = operation(doc, route.method, route.url);
      expect(op.summary, `${route.method} ${route.url} has a summary`).toBeTruthy();
      expect(op.tags?.length, `${route.method} ${route.url} has a tag`).toBe(1);
      expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['2XX', 'default']));
    }
    // The other documented routes; the pages are not part of the API.
    operation(doc, 'GET', '/metrics');
    operation(doc, 'GET', '/healthz');
    for (const hidden of ['/', '/docs', '/docs/json', '/assets/dashboard.js']) expect(doc.paths[hidden]).toBeUndefined();
    // Everything documented is served.
    const served = new Set(h.server.routes.map((r) => `${r.method.toLowerCase()} ${openapiPath(r.url)}`));
    for (const [path, item] of Object.entries(doc.paths)) for (const method of Object.keys(item)) expect(served).toContain(`${method} ${path}`);
  });

  it("carries the route schemas: path, query and body parameters", async () => {
    const h = await start();
    const doc = await documentOf(h);
    expect(doc.openapi).toMatch(/^3\./);
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(doc.info).toMatchObject({ title: 'schedkit', version: pkg.version });

    const pop = operation(doc, 'GET', '/api/popTask/:name');
    expect(pop.parameters?.filter((p) => p.in === 'query').map((p) => p.name).sort()).toEqual(['lease', 'retry', 'wait']);
    expect(pop.parameters?.find((p) => p.in === 'path')).toMatchObject({ name: 'name', required: true, schema: { type: 'string', minLength: 1, maxLength: 512 } });

    const nack = operation(doc, 'POST', '/api/nackTask/:name/:id');
    expect(nack.parameters?.filter((p) => p.in === 'path').map((p) => p.name).sort()).toEqual(['id', 'name']);
    expect(bodyProperties(nack)).toEqual(['delay', 'error', 'retry']);

    const put = operation(doc, 'PUT', '/api/tasks/:task/:uid');
    expect(put.requestBody?.content['application/json']?.schema.additionalProperties).toBe(false);
    expect(operation(doc, 'GET', '/api/tasks').parameters?.map((p) => p.name)).toEqual(['task']);
  });

  it("keeps the HTTP bodies in step with the library's option types", async () => {
    // Adding an option to ScheduleOptions or UpdateOptions without adding it here fails to
    // compile; adding it here without adding it to the route's schema fails the test.
    const scheduleKeys: Record<keyof Omit<ScheduleOptions, 'uid'>, true> = { in: true, at: true, every: true, cron: true, tz: true, params: true, enabled: true };
    const updateKeys: Record<keyof UpdateOptions, true> = { enabled: true, params: true, schedule: true };
    const timingKeys: Record<keyof NonNullable<UpdateOptions['schedule']>, true> = { in: true, at: true, every: true, cron: true, tz: true };
    const h = await start();
    const doc = await documentOf(h);
    expect(bodyProperties(operation(doc, 'PUT', '/api/tasks/:task/:uid'))).toEqual(Object.keys(scheduleKeys).sort());
    const patch = operation(doc, 'PATCH', '/api/tasks/:task/:uid');
    expect(bodyProperties(patch)).toEqual(Object.keys(updateKeys).sort());
    expect(Object.keys(patch.requestBody?.content['application/json']?.schema.properties?.['schedule']?.properties ?? {}).sort()).toEqual(Object.keys(timingKeys).sort());
  });

  it('needs the token when the server has one, and says so in the document', async () => {
    const token = 'docs-token-for-tests';
    const h = await start({ token });
    for (const headers of [{}, { authorization: 'Bearer nope' }] as Record<string, string>[]) {
      const res = await fetch(`${h.url}/docs/json`, { headers });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    }
    const doc = await documentOf(h, { authorization: `Bearer ${token}` });
    expect(doc.components?.securitySchemes).toEqual({ bearer: { type: 'http', scheme: 'bearer' } });
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(operation(doc, 'GET', '/healthz').security).toEqual([]);
    expect(operation(doc, 'GET', '/api/tasks').security).toBeUndefined();

    // The pages hold no data and are served without the token, with a strict CSP.
    for (const page of ['/docs', '/']) {
      const res = await fetch(`${h.url}${page}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    }
    const script = await fetch(`${h.url}/assets/docs.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
  });

  it('without a token, the document declares no security', async () => {
    const h = await start();
    const doc = await documentOf(h);
    expect(doc.security).toBeUndefined();
    expect(doc.components?.securitySchemes).toBeUndefined();
  });
});
