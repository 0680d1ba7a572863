/**
 * The dashboard in Debian's Chromium (driven by playwright-core), against a real service:
 * once without and once with a token. The page loads, a schedule made through the API shows
 * up, "Run now" runs it (its last run changes), the switch disables it (the API says so),
 * user data with HTML in it renders as text, and a screenshot goes to
 * test-results/dashboard.png.
 *
 * Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore, Scheduler } from '../src/index.js';
import { createServer, type SchedkitServer } from '../src/http/server.js';
import { waitFor } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
const SCREENSHOT_DIR = new URL('../test-results/', import.meta.url);
/** Generous: the page polls every 1.5 s, and CI machines are slow. */
const UI_WAIT_MS = 20_000;
const TEST_TIMEOUT_MS = 120_000;

const XSS_UID = '<img src=x onerror=alert(1)>';
const XSS_TASK = '<b onmouseover=alert(2)>html-task</b>';
const XSS_RESULT = '<script>alert(3)</script>';
const XSS_ERROR = '<img src=y onerror=alert(4)>';

let browser: Browser | undefined;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  await browser?.close();
});

interface Service {
  readonly url: string;
  readonly scheduler: Scheduler;
  readonly server: SchedkitServer;
  /** A JSON API call with the token (when there is one). */
  call(method: string, path: string, json?: unknown): Promise<{ status: number; body: unknown }>;
}

/** A scheduler running in-process handlers on a MemoryStore, behind the service on 127.0.0.1:0. */
async function startService(token: string | undefined): Promise<Service> {
  const scheduler = new Scheduler({ store: new MemoryStore() });
  scheduler.on('error', () => undefined);
  scheduler.define('greet', ({ uid }) => ({ greeted: uid }));
  scheduler.define('report', () => 'sent');
  scheduler.define('xss', () => XSS_RESULT);
  scheduler.define('flaky', ({ attempt }) => {
    if (Math.random() < 0.4) throw new Error(`upstream timed out (attempt ${attempt})`);
    return { rows: Math.floor(Math.random() * 100) };
  });
  scheduler.define('broken', () => {
    throw new Error(XSS_ERROR);
  });
  await scheduler.start();
  const server = createServer({ scheduler, host: '127.0.0.1', port: 0, token });
  const url = await server.listen();
  cleanups.push(async () => {
    await server.close();
    await scheduler.stop({ timeout: 1000 });
  });
  const call = async (method: string, path: string, json?: unknown): Promise<{ status: number; body: unknown }> => {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
    if (json !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${url}${path}`, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
    const text = await res.text();
    return { status: res.status, body: text.length > 0 ? (JSON.parse(text) as unknown) : undefined };
  };
  return { url, scheduler, server, call };
}

function schedulePath(task: string, uid: string): string {
  return `/api/tasks/${encodeURIComponent(task)}/${encodeURIComponent(uid)}`;
}

async function put(service: Service, task: string, uid: string, body: unknown): Promise<void> {
  const res = await service.call('PUT', schedulePath(task, uid), body);
  expect(res.status, `PUT ${task}/${uid}`).toBe(200);
}

interface Report {
  enabled: boolean;
  lastExecutedAt: string | null;
  successes: number;
  lastResult: unknown;
}

async function report(service: Service, task: string, uid: string): Promise<Report> {
  const res = await service.call('GET', schedulePath(task, uid));
  expect(res.status).toBe(200);
  return res.body as Report;
}

/** A page that records dialogs (an XSS would open one) and script errors. */
async function openPage(context: BrowserContext): Promise<{ page: Page; dialogs: string[]; errors: string[] }> {
  const page = await context.newPage();
  const dialogs: string[] = [];
  const errors: string[] = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  return { page, dialogs, errors };
}

function row(page: Page, task: string, uid: string): Locator {
  return page.locator(`#schedules tbody tr[data-task=${JSON.stringify(task)}][data-uid=${JSON.stringify(uid)}]`);
}

async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? '').trim();
}

async function untilText(locator: Locator, check: (value: string) => boolean, what: string): Promise<string> {
  let last = '';
  await waitFor(
    async () => {
      last = await text(locator);
      return check(last);
    },
    `${what} (last seen: ${JSON.stringify(last)})`,
    UI_WAIT_MS,
  );
  return last;
}

/** Some schedules of every kind, so the page (and the screenshot) has something to show. */
async function seed(service: Service): Promise<void> {
  await put(service, 'greet', 'morning', { every: '5m', params: { name: 'Ada' } });
  await put(service, 'report', 'weekdays', { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' });
  await put(service, 'report', 'every-5-min', { cron: '*/5 * * * *' });
  await put(service, 'report', 'monthly', { cron: '30 6 1 * *', enabled: false });
  await put(service, 'flaky', 'sync', { every: '2s' });
  await put(service, 'broken', 'nightly', { cron: '0 3 * * *' });
  await put(service, 'xss', XSS_UID, { in: '10m', params: { note: XSS_RESULT } });
  await put(service, XSS_TASK, 'one', { at: Date.now() + 3_600_000 });
  // Worker tasks: a queue with work waiting, some of it taken by a worker.
  for (let i = 0; i < 12; i++) expect((await service.call('PUT', '/api/pushTask/emails', { to: `user${i}@example.com` })).status).toBe(200);
  for (let i = 0; i < 5; i++) expect((await service.call('GET', '/api/popTask/emails')).status).toBe(200);
}

/** Everything the dashboard must do, on a page that is already showing the data. */
async function exerciseDashboard(service: Service, page: Page, dialogs: string[]): Promise<void> {
  // The seeded schedules are listed, with their schedules in words and as written.
  const weekdays = row(page, 'report', 'weekdays');
  await weekdays.waitFor({ timeout: UI_WAIT_MS });
  expect(await text(weekdays.locator('.words'))).toBe('on weekdays at 09:00 (Europe/Berlin)');
  expect(await text(weekdays.locator('.expr'))).toBe('0 9 * * 1-5');
  expect(await text(row(page, 'report', 'every-5-min').locator('.words'))).toBe('every 5 minutes');
  expect(await text(row(page, 'greet', 'morning').locator('.words'))).toBe('every 5 minutes');
  expect(await text(row(page, 'greet', 'morning').locator('.expr'))).toBe('every 5m');
  expect(await text(row(page, 'greet', 'morning').locator('td.next div').first())).toMatch(/^in \d+ min/);
  expect(await row(page, 'report', 'monthly').locator('input.toggle').isChecked()).toBe(false);

  // A schedule made through the API while the page is open appears (live refresh).
  // Feb 29 only: it cannot fire by itself while the test runs, so only "Run now" can run it.
  await put(service, 'greet', 'evening', { cron: '0 18 29 2 *', params: { name: 'Grace' } });
  const evening = row(page, 'greet', 'evening');
  await evening.waitFor({ timeout: UI_WAIT_MS });
  expect(await text(evening.locator('.words'))).toBe('every year on Feb 29 at 18:00');
  expect(await text(evening.locator('td.last div').first())).toBe('never');

  // "Run now" runs it: its last run and result change, on the page and in the store.
  expect((await report(service, 'greet', 'evening')).lastExecutedAt).toBeNull();
  await evening.getByRole('button', { name: /Run .* now/ }).click();
  await untilText(evening.locator('td.last div').first(), (v) => v !== 'never', 'the last run to change after "Run now"');
  await untilText(evening.locator('.result'), (v) => v.includes('"greeted":"evening"'), 'the result of the run');
  const ran = await report(service, 'greet', 'evening');
  expect(ran.lastExecutedAt).not.toBeNull();
  expect(ran.successes).toBe(1);
  expect(ran.lastResult).toEqual({ greeted: 'evening' });

  // The switch disables it: the API (the store) says so, and the page keeps it off.
  const toggle = evening.locator('input.toggle');
  expect(await toggle.isChecked()).toBe(true);
  await toggle.uncheck();
  await waitFor(async () => !(await report(service, 'greet', 'evening')).enabled, 'the schedule to be disabled in the store', UI_WAIT_MS);
  expect((await service.scheduler.store.get('greet', 'evening'))?.enabled).toBe(false);
  await untilText(evening.locator('td.next div').first(), (v) => v.startsWith('paused'), 'the row to show it paused');
  expect(await toggle.isChecked()).toBe(false);
  // ...and back on.
  await toggle.check();
  await waitFor(async () => (await report(service, 'greet', 'evening')).enabled, 'the schedule to be enabled again', UI_WAIT_MS);

  // User data with HTML in it is text: the uid, a task name, a handler's result, an error.
  await row(page, 'xss', XSS_UID).getByRole('button', { name: /Run .* now/ }).click();
  await service.call('POST', `${schedulePath('broken', 'nightly')}/trigger`);
  const xss = row(page, 'xss', XSS_UID);
  expect(await text(xss.locator('td.uid'))).toBe(XSS_UID);
  await untilText(xss.locator('.result'), (v) => v === XSS_RESULT, 'the HTML result shown as text');
  expect(await text(row(page, XSS_TASK, 'one').locator('td.task'))).toBe(XSS_TASK);
  await untilText(row(page, 'broken', 'nightly').locator('.result'), (v) => v === XSS_ERROR, 'the HTML error shown as text');
  await untilText(page.locator('#depths'), (v) => v.includes(XSS_TASK), 'the HTML task name in the depths table');
  expect(await page.locator('main img, main script, main b').count()).toBe(0);
  expect(dialogs).toEqual([]);

  // Queue depths and the run counters from the metrics.
  const emails = page.locator('#depths tbody tr').filter({ hasText: 'emails' });
  await untilText(emails, (v) => v.replace(/\s+/g, ' ').includes('7'), 'the emails queue depth');
  await untilText(page.locator('#stat-success'), (v) => Number(v) >= 7, 'successful runs counted');
}

/** Waits until the stats series holds some runs and the page has drawn them. */
async function chartHasData(service: Service, page: Page): Promise<void> {
  await waitFor(
    async () => {
      const stats = (await service.call('GET', '/api/stats')).body as { series: { started: number }[] };
      return stats.series.some((p) => p.started > 0);
    },
    'a chart point with runs',
    UI_WAIT_MS,
  );
  const drawnAt = await text(page.locator('#stat-started'));
  await untilText(page.locator('#stat-started'), (v) => v !== drawnAt, 'the page to refresh the stats');
}

describe('dashboard in Chromium', () => {
  it(
    'without a token: loads, lists, runs, disables, escapes; screenshot in test-results/dashboard.png',
    async () => {
      const service = await startService(undefined);
      await seed(service);
      const context = await browser!.newContext({ viewport: { width: 1440, height: 1000 } });
      cleanups.push(() => context.close());
      const { page, dialogs, errors } = await openPage(context);
      const res = await page.goto(`${service.url}/`);
      expect(res?.status()).toBe(200);
      expect(await page.title()).toBe('schedkit');
      await untilText(page.locator('#status'), (v) => v === 'live', 'the page to go live');
      expect(await page.locator('#auth').isVisible()).toBe(false);

      await exerciseDashboard(service, page, dialogs);
      await chartHasData(service, page);
      expect(errors).toEqual([]);

      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      await page.screenshot({ path: new URL('dashboard.png', SCREENSHOT_DIR).pathname, fullPage: true });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'with a token: asks for it, keeps it in sessionStorage, sends it, and takes ?token= from the URL',
    async () => {
      const token = 'dashboard-token-for-tests';
      const service = await startService(token);
      await seed(service);
      const context = await browser!.newContext({ viewport: { width: 1440, height: 1000 } });
      cleanups.push(() => context.close());
      const { page, dialogs, errors } = await openPage(context);

      // The page itself needs no token; the data does, so the page asks for it.
      expect((await page.goto(`${service.url}/`))?.status()).toBe(200);
      await page.locator('#auth').waitFor({ timeout: UI_WAIT_MS });
      expect(await text(page.locator('#status'))).toBe('token needed');
      expect(await page.locator('#schedules tbody tr').count()).toBe(0);

      // A wrong token is refused and asked for again.
      await page.locator('#token-input').fill('not-the-token');
      await page.getByRole('button', { name: 'Use token' }).click();
      await untilText(page.locator('#auth-message'), (v) => v.includes('refused'), 'the wrong token to be refused');
      expect(await page.locator('#auth').isVisible()).toBe(true);

      await page.locator('#token-input').fill(token);
      await page.getByRole('button', { name: 'Use token' }).click();
      await untilText(page.locator('#status'), (v) => v === 'live', 'the page to go live with the token');
      expect(await page.evaluate('sessionStorage.getItem("schedkit.token")')).toBe(token);

      await exerciseDashboard(service, page, dialogs);
      expect(errors.filter((e) => !e.includes('401'))).toEqual([]);

      // ?token= in a fresh tab: taken into sessionStorage and removed from the address bar.
      const fresh = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
      cleanups.push(() => fresh.close());
      const second = await openPage(fresh);
      await second.page.goto(`${service.url}/?token=${encodeURIComponent(token)}`);
      await untilText(second.page.locator('#status'), (v) => v === 'live', 'the ?token= page to go live');
      expect(second.page.url()).toBe(`${service.url}/`);
      await row(second.page, 'greet', 'morning').waitFor({ timeout: UI_WAIT_MS });
      expect(second.dialogs).toEqual([]);

      // The docs page uses the same token.
      await second.page.goto(`${service.url}/docs`);
      await untilText(second.page.locator('#status'), (v) => v.endsWith('paths'), 'the docs page to load the document');
      expect(await second.page.locator('.op .path', { hasText: '/api/popTask/{name}' }).count()).toBe(1);
    },
    TEST_TIMEOUT_MS,
  );
});
