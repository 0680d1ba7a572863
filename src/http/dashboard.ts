/**
 * The dashboard at `/`: one static page (no data in it, so it needs no token), a stylesheet
 * and a script, all plain: no framework, no build step. The script polls the JSON API —
 * `/api/tasks`, `/api/depths`, `/api/stats`, `/healthz` — every 1.5 s and updates a keyed
 * table in place, so a switch being toggled or a button being pressed is never re-created
 * under the pointer.
 *
 * The script is a `String.raw` template: keep `${` and backticks out of it.
 */
import { TOKEN_FORM_HTML } from './client.js';

/** A route as the page's API list shows it. */
export interface RouteInfo {
  readonly method: string;
  readonly url: string;
  readonly summary: string | undefined;
  /** Query parameter names. */
  readonly query: readonly string[];
  /** Left out of the OpenAPI document and the page's API list (the pages themselves). */
  readonly hidden: boolean;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function dashboardHtml(tokenRequired: boolean, routes: readonly RouteInfo[]): string {
  const apiRows = routes
    .map((r) => {
      const query = r.query.length > 0 ? `?${r.query.map((q) => `${q}=`).join('&')}` : '';
      return `<tr><td><code>${escapeHtml(r.method)}</code></td><td><code>${escapeHtml(r.url + query)}</code></td><td>${escapeHtml(r.summary ?? '')}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>schedkit</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body data-token-required="${tokenRequired ? 'true' : 'false'}">
<header class="top">
  <h1>schedkit</h1>
  <span id="status" class="pill">connecting…</span>
  <span id="server" class="muted"></span>
  <nav><a href="/docs">API docs</a><button id="forget-token" type="button" class="link"${tokenRequired ? '' : ' hidden'}>forget token</button></nav>
</header>
${TOKEN_FORM_HTML}
<main>
<section class="grid">
  <div class="card">
    <h2>Runs <small>last 5 minutes, from the metrics</small></h2>
    <div class="totals">
      <div><span class="k">started</span><span id="stat-started" class="v">–</span></div>
      <div><span class="k ok">success</span><span id="stat-success" class="v">–</span></div>
      <div><span class="k bad">failure</span><span id="stat-failure" class="v">–</span></div>
      <div><span class="k warn">lost</span><span id="stat-lost" class="v">–</span></div>
      <div><span class="k">skipped</span><span id="stat-skipped" class="v">–</span></div>
      <div><span class="k">lateness (avg)</span><span id="stat-lateness" class="v">–</span></div>
      <div><span class="k">running here</span><span id="stat-running" class="v">–</span></div>
      <div><span class="k">worker leases</span><span id="stat-leases" class="v">–</span></div>
    </div>
    <canvas id="chart" role="img" aria-label="Runs finished per second (bars) and p95 start lateness (line) over the last 5 minutes"></canvas>
    <div class="legend"><span class="sw ok"></span>success <span class="sw bad"></span>failure <span class="sw warn"></span>lost <span class="sw skip"></span>skipped <span class="sw line"></span>p95 lateness <span class="sw dash"></span>mean lateness</div>
  </div>
  <div class="card">
    <h2>Queue depths</h2>
    <table id="depths" class="compact"><thead><tr><th>Task</th><th class="num">Due</th><th class="num">Scheduled</th><th class="num">Running</th></tr></thead><tbody></tbody></table>
    <p id="depths-empty" class="muted">No tasks yet.</p>
  </div>
</section>
<section class="card">
  <div class="toolbar">
    <h2>Schedules <small id="count"></small></h2>
    <input id="filter" type="search" placeholder="filter by task or uid" aria-label="Filter schedules by task or uid">
  </div>
  <div class="scroll">
  <table id="schedules">
    <thead><tr><th>Task</th><th>UID</th><th>Schedule</th><th>Next run</th><th>Last run</th><th>Running</th><th>Last result / error</th><th>Enabled</th><th></th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
  <p id="empty" class="muted" hidden>No schedules yet. Create one with <code>PUT /api/tasks/:task/:uid</code> and a body such as <code>{"every": "5m"}</code> or <code>{"cron": "0 9 * * 1-5"}</code>.</p>
</section>
<details class="card api">
  <summary>HTTP API</summary>
  <p>JSON in and out; errors are <code>{error, code}</code>.${tokenRequired ? ' Every route but <code>/healthz</code> and the pages needs <code>Authorization: Bearer &lt;token&gt;</code>.' : ''} OpenAPI document: <a href="/docs">/docs</a>.</p>
  <table class="compact">
${apiRows}
  </table>
</details>
</main>
<div id="toast" role="status" aria-live="polite" hidden></div>
<script src="/assets/dashboard.js"></script>
</body>
</html>
`;
}

export const DASHBOARD_CSS = String.raw`
:root {
  --bg: #f6f7f9; --card: #fff; --fg: #1d2330; --muted: #667085; --line: #e3e6eb;
  --ok: #2f9e61; --bad: #d64545; --warn: #e08a1e; --skip: #9aa3b2; --accent: #3a63d8;
  color-scheme: light;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
code, .mono { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.top { display: flex; align-items: center; gap: 12px; padding: 10px 20px; background: #1d2330; color: #fff; }
.top h1 { font-size: 18px; margin: 0; letter-spacing: .02em; }
.top nav { margin-left: auto; display: flex; gap: 14px; align-items: center; }
.top a, .top .link { color: #c9d4ff; }
.top .muted { color: #aab3c5; }
.pill { padding: 1px 9px; border-radius: 999px; font-size: 12px; background: #475067; }
.pill.ok { background: var(--ok); } .pill.bad { background: var(--bad); } .pill.warn { background: var(--warn); }
.link { background: none; border: 0; padding: 0; font: inherit; cursor: pointer; text-decoration: underline; }
.auth { display: flex; gap: 8px; align-items: center; padding: 10px 20px; background: #fff4e0; border-bottom: 1px solid #f0d9a8; }
.auth input { width: 22rem; max-width: 50vw; padding: 4px 8px; }
main { padding: 16px 20px 40px; display: flex; flex-direction: column; gap: 16px; }
.grid { display: grid; grid-template-columns: minmax(0, 2fr) minmax(16rem, 1fr); gap: 16px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
h2 { font-size: 15px; margin: 0 0 8px; }
h2 small, .muted { color: var(--muted); font-weight: normal; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(7.5rem, 1fr)); gap: 6px 12px; margin-bottom: 8px; }
.totals div { display: flex; flex-direction: column; }
.totals .k { font-size: 11.5px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.totals .v { font-size: 18px; font-variant-numeric: tabular-nums; }
.k.ok { color: var(--ok); } .k.bad { color: var(--bad); } .k.warn { color: var(--warn); }
#chart { width: 100%; height: 190px; display: block; }
.legend { font-size: 12px; color: var(--muted); display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: -6px; }
.sw.ok { background: var(--ok); } .sw.bad { background: var(--bad); } .sw.warn { background: var(--warn); } .sw.skip { background: var(--skip); }
.sw.line { height: 3px; background: var(--accent); } .sw.dash { height: 0; border-top: 2px dashed var(--accent); }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 12px; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); padding: 6px 8px; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
table.compact td, table.compact th { padding: 3px 8px; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.toolbar { display: flex; align-items: baseline; gap: 12px; }
.toolbar input { margin-left: auto; width: 16rem; padding: 4px 8px; }
#schedules td { max-width: 22rem; overflow-wrap: anywhere; }
#schedules .sub { color: var(--muted); font-size: 12px; }
#schedules tr.disabled td:not(.act) { opacity: .55; }
#schedules .task { font-weight: 600; }
.result { font-size: 12.5px; }
.result.error { color: var(--bad); }
.result.ok { color: #22633f; }
.running { color: var(--accent); font-weight: 600; }
button.run { padding: 3px 10px; border: 1px solid var(--accent); color: var(--accent); background: #fff; border-radius: 5px; cursor: pointer; white-space: nowrap; }
button.run:hover { background: #eef2ff; } button.run:disabled { opacity: .5; cursor: progress; }
.switch { position: relative; display: inline-block; width: 34px; height: 18px; }
.switch input { opacity: 0; width: 100%; height: 100%; margin: 0; position: absolute; cursor: pointer; z-index: 1; }
.switch span { position: absolute; inset: 0; background: #c4cad4; border-radius: 18px; transition: background .15s; }
.switch span::before { content: ""; position: absolute; width: 14px; height: 14px; left: 2px; top: 2px; background: #fff; border-radius: 50%; transition: transform .15s; }
.switch input:checked + span { background: var(--ok); }
.switch input:checked + span::before { transform: translateX(16px); }
.switch input:focus-visible + span { outline: 2px solid var(--accent); outline-offset: 2px; }
details.api summary { cursor: pointer; font-weight: 600; }
#toast { position: fixed; right: 16px; bottom: 16px; background: #1d2330; color: #fff; padding: 8px 14px; border-radius: 6px; max-width: 40rem; overflow-wrap: anywhere; }
#toast.bad { background: var(--bad); }
/* the /docs page */
.op { border-top: 1px solid var(--line); padding: 10px 0; }
.op-head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.method { display: inline-block; min-width: 4.2em; text-align: center; font: 700 11.5px/1.6 ui-monospace, monospace; color: #fff; border-radius: 4px; padding: 0 6px; background: var(--skip); }
.method.get { background: var(--accent); } .method.post { background: var(--ok); } .method.put { background: var(--warn); }
.method.patch { background: #8a5cd6; } .method.delete { background: var(--bad); }
.op .path { font-weight: 600; }
.op table { width: auto; margin: 6px 0; }
pre { background: #f3f4f6; padding: 8px 10px; border-radius: 6px; overflow: auto; max-height: 30rem; font: 12px/1.4 ui-monospace, monospace; }
.responses { margin: 4px 0; padding-left: 20px; color: var(--muted); }
`;

export const DASHBOARD_JS = String.raw`
const POLL_MS = 1500;
const HIDDEN_POLL_MS = 10000;
const MAX_ROWS = 500;
const CHART_POINTS = 150;

adoptUrlToken();

// ------------------------------------------------------------------ formatting

function pad(n) {
  return String(n).padStart(2, '0');
}

function absolute(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

/** "in 4 min 5 s", "12 s ago", "now". */
function relative(iso, now) {
  const diff = Date.parse(iso) - now;
  const s = Math.round(Math.abs(diff) / 1000);
  if (s < 1) return 'now';
  let text;
  if (s < 60) text = s + ' s';
  else if (s < 600) text = Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  else if (s < 3600) text = Math.round(s / 60) + ' min';
  else if (s < 86400) text = Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  else text = Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  return diff > 0 ? 'in ' + text : text + ' ago';
}

function seconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms';
  if (s < 120) return s.toFixed(1) + ' s';
  return (s / 60).toFixed(1) + ' min';
}

function millis(ms) {
  if (ms === null || ms === undefined) return '';
  return ms < 1 ? '<1 ms' : ms < 1000 ? Math.round(ms) + ' ms' : seconds(ms / 1000);
}

const UNITS = [[86400000, 'day', 'd'], [3600000, 'hour', 'h'], [60000, 'minute', 'm'], [1000, 'second', 's'], [1, 'millisecond', 'ms']];

/** 300000 → ["5 minutes", "5m"]; 60000 → ["minute", "1m"]. */
function period(ms) {
  for (const [size, word, short] of UNITS) {
    if (ms % size === 0) {
      const n = ms / size;
      return [n === 1 ? word : n + ' ' + word + 's', n + short];
    }
  }
  return [ms + ' ms', ms + 'ms'];
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const DAY_NAMES = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const NICKNAMES = {
  '@yearly': 'every year on Jan 1 at 00:00', '@annually': 'every year on Jan 1 at 00:00',
  '@monthly': 'on day 1 of every month at 00:00', '@weekly': 'every Sunday at 00:00',
  '@daily': 'every day at 00:00', '@midnight': 'every day at 00:00', '@hourly': 'every hour at minute 0',
};
const NUMBER = /^\d+$/;
const NUMBERS = /^\d+(,\d+)*$/;

function stepOf(field) {
  const m = /^\*\/(\d+)$/.exec(field);
  return m ? Number(m[1]) : null;
}

function dayNumber(text) {
  const t = text.toLowerCase();
  if (t in DAY_NAMES) return DAY_NAMES[t];
  return NUMBER.test(t) ? Number(t) % 7 : null;
}

/** The day-of-week field in words ("on weekdays", "on Monday and Friday"), null when unusual. */
function weekdays(field) {
  const f = field.toLowerCase();
  if (f === '1-5' || f === 'mon-fri') return 'on weekdays';
  if (f === '0,6' || f === '6,0' || f === 'sat,sun' || f === 'sun,sat' || f === '6-7') return 'on weekends';
  const range = /^(\w+)-(\w+)$/.exec(f);
  if (range) {
    const a = dayNumber(range[1]);
    const b = dayNumber(range[2]);
    return a === null || b === null ? null : 'from ' + DAYS[a] + ' to ' + DAYS[b];
  }
  const days = f.split(',').map(dayNumber);
  if (days.some((d) => d === null)) return null;
  const names = days.map((d) => DAYS[d]);
  return 'on ' + (names.length === 1 ? names[0] : names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1]);
}

/** The day part: '' for every day, null when it has no simple words. */
function dayPart(dom, month, dow) {
  if (dom === '*' && month === '*' && dow === '*') return '';
  if (dom === '*' && month === '*') return weekdays(dow);
  if (dow !== '*' && dow !== '?') return null;
  if (!NUMBERS.test(dom)) return null;
  const days = dom.split(',').join(', ');
  if (month === '*') return 'on day' + (dom.includes(',') ? 's ' : ' ') + days + ' of every month';
  if (NUMBER.test(month) && Number(month) >= 1 && Number(month) <= 12) return 'every year on ' + MONTHS[Number(month) - 1] + ' ' + days;
  return null;
}

/** A cron expression (5 fields, or 6 with seconds first) in words; null when unusual. */
function cronWords(expr) {
  const trimmed = expr.trim();
  if (trimmed.toLowerCase() in NICKNAMES) return NICKNAMES[trimmed.toLowerCase()];
  const f = trimmed.split(/\s+/);
  let sec = '0';
  if (f.length === 6) sec = f.shift();
  if (f.length !== 5) return null;
  const [min, hour, dom, month, dow] = f;
  const day = dayPart(dom, month, dow);
  if (day === null) return null;
  const on = day ? ', ' + day : '';
  if (sec !== '0') {
    if (min !== '*' || hour !== '*' || day !== '') return null;
    if (sec === '*') return 'every second';
    const step = stepOf(sec);
    if (step) return 'every ' + step + ' seconds';
    return NUMBER.test(sec) ? 'every minute at second ' + sec : null;
  }
  if (min === '*' && hour === '*') return 'every minute' + on;
  const minStep = stepOf(min);
  if (minStep && hour === '*') return 'every ' + minStep + ' minutes' + on;
  if (NUMBERS.test(min) && hour === '*') return 'every hour at minute' + (min.includes(',') ? 's ' : ' ') + min.split(',').join(', ') + on;
  const hourStep = stepOf(hour);
  if (NUMBER.test(min) && hourStep) return 'every ' + hourStep + ' hours at minute ' + min + on;
  if (NUMBER.test(min) && NUMBERS.test(hour)) {
    const times = hour.split(',').map((h) => pad(h) + ':' + pad(min));
    return (day || 'every day') + ' at ' + times.join(', ');
  }
  return null;
}

/** [words, as written] for a report's schedule. */
function describeSchedule(schedule, nextRunAt) {
  if (schedule.kind === 'every') {
    const [words, short] = period(schedule.every);
    return ['every ' + words, 'every ' + short];
  }
  if (schedule.kind === 'cron') {
    const zone = schedule.tz ? ' (' + schedule.tz + ')' : '';
    const words = cronWords(schedule.cron);
    return [(words || 'cron ' + schedule.cron) + zone, schedule.cron];
  }
  return ['once', nextRunAt ? 'at ' + absolute(nextRunAt) : ''];
}

function resultText(t) {
  if (t.lastError !== null && t.lastError !== undefined) return ['error', t.lastError];
  if (t.lastResult === null || t.lastResult === undefined) return ['', t.lastExecutedAt ? 'ok' : '—'];
  return ['ok', typeof t.lastResult === 'string' ? t.lastResult : JSON.stringify(t.lastResult)];
}

function clip(text, n) {
  return text.length > n ? text.slice(0, n - 1) + '…' : text;
}

// ------------------------------------------------------------------ status and toasts

function setStatus(kind, text) {
  const pill = $('status');
  pill.className = 'pill ' + kind;
  setText(pill, text);
}

let toastTimer = null;
function toast(text, bad) {
  const node = $('toast');
  setText(node, text);
  node.className = bad ? 'bad' : '';
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 3500);
}

// ------------------------------------------------------------------ schedules table

const tbody = $('schedules').tBodies[0];
/** key → row; tr → row. */
const rows = new Map();
const rowByTr = new WeakMap();
let latestTasks = [];

function keyOf(t) {
  return JSON.stringify([t.task, t.uid]);
}

function pathOf(t) {
  return '/api/tasks/' + encodeURIComponent(t.task) + '/' + encodeURIComponent(t.uid);
}

function cell(tr, className) {
  const td = el('td', className);
  tr.append(td);
  return td;
}

function makeRow() {
  const tr = el('tr');
  const row = { tr, data: null, busy: false, actionAt: 0 };
  row.task = cell(tr, 'task');
  const uid = cell(tr, 'uid');
  row.uid = uid.appendChild(el('code'));
  const schedule = cell(tr, 'schedule');
  row.words = schedule.appendChild(el('div', 'words'));
  row.expr = schedule.appendChild(el('code', 'sub expr'));
  const next = cell(tr, 'next');
  row.nextRel = next.appendChild(el('div'));
  row.nextAbs = next.appendChild(el('div', 'sub'));
  const last = cell(tr, 'last');
  row.lastRel = last.appendChild(el('div'));
  row.lastAbs = last.appendChild(el('div', 'sub'));
  row.running = cell(tr, 'run-state');
  const result = cell(tr, 'outcome');
  row.result = result.appendChild(el('div', 'result'));
  row.counts = result.appendChild(el('div', 'sub'));
  const sw = cell(tr, 'act').appendChild(el('label', 'switch'));
  row.switch = sw.appendChild(el('input', 'toggle'));
  row.switch.type = 'checkbox';
  row.switch.setAttribute('role', 'switch');
  sw.append(el('span'));
  row.button = cell(tr, 'act').appendChild(el('button', 'run', 'Run now'));
  row.button.type = 'button';
  rowByTr.set(tr, row);
  return row;
}

function updateRow(row, t, now) {
  row.data = t;
  const name = t.task + ' / ' + t.uid;
  row.tr.dataset.task = t.task;
  row.tr.dataset.uid = t.uid;
  row.tr.classList.toggle('disabled', !t.enabled);
  setText(row.task, t.task);
  setText(row.uid, t.uid);
  const [words, written] = describeSchedule(t.schedule, t.nextRunAt);
  setText(row.words, words);
  setText(row.expr, written);
  if (t.nextRunAt) {
    // Past due: waiting for an executor (a worker that pops it, or a free slot).
    const when = Date.parse(t.nextRunAt) <= now ? 'due ' + relative(t.nextRunAt, now) : relative(t.nextRunAt, now);
    setText(row.nextRel, (t.enabled ? '' : 'paused · ') + when);
    setText(row.nextAbs, absolute(t.nextRunAt));
  } else {
    setText(row.nextRel, t.pending > 0 ? 'queued' : '—');
    setText(row.nextAbs, '');
  }
  setTitle(row.nextAbs, t.nextRunAt || '');
  if (t.lastExecutedAt) {
    setText(row.lastRel, relative(t.lastExecutedAt, now));
    setText(row.lastAbs, absolute(t.lastExecutedAt) + (t.lastDurationMs !== null ? ' · took ' + millis(t.lastDurationMs) : ''));
  } else {
    setText(row.lastRel, 'never');
    setText(row.lastAbs, '');
  }
  setTitle(row.lastAbs, t.lastExecutedAt || '');
  let running = '—';
  if (t.running > 0) running = '● running' + (t.running > 1 ? ' ×' + t.running : '');
  else if (t.pending > 0) running = t.pending + ' queued';
  setText(row.running, running);
  row.running.classList.toggle('running', t.running > 0);
  const [kind, text] = resultText(t);
  setText(row.result, clip(text, 160));
  setTitle(row.result, text.length > 160 ? clip(text, 4000) : '');
  row.result.className = 'result ' + kind;
  setText(row.counts, '✓ ' + t.successes + '  ✗ ' + t.failures + (t.skips > 0 ? '  skipped ' + t.skips : ''));
  if (!row.busy) row.switch.checked = t.enabled;
  row.switch.setAttribute('aria-label', 'Enabled: ' + name);
  row.button.setAttribute('aria-label', 'Run ' + name + ' now');
}

function matches(t, filter) {
  return !filter || t.task.toLowerCase().includes(filter) || t.uid.toLowerCase().includes(filter);
}

/** Renders the list; rows changed by an action after fetchedAt keep their newer state. */
function renderTasks(tasks, fetchedAt) {
  latestTasks = tasks;
  const now = Date.now();
  const filter = $('filter').value.trim().toLowerCase();
  const sorted = tasks.filter((t) => matches(t, filter)).sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  const shown = sorted.slice(0, MAX_ROWS);
  const seen = new Set();
  let before = tbody.firstChild;
  for (const t of shown) {
    const key = keyOf(t);
    let row = rows.get(key);
    if (row === undefined) {
      row = makeRow();
      rows.set(key, row);
    }
    seen.add(key);
    if (!row.busy && row.actionAt <= fetchedAt) updateRow(row, t, now);
    if (row.tr !== before) tbody.insertBefore(row.tr, before);
    else before = before.nextSibling;
  }
  for (const [key, row] of rows) {
    if (!seen.has(key)) {
      row.tr.remove();
      rows.delete(key);
    }
  }
  $('empty').hidden = tasks.length > 0;
  const total = tasks.length;
  setText($('count'), sorted.length > shown.length ? 'showing ' + shown.length + ' of ' + sorted.length + ' (filter to narrow)' : filter ? sorted.length + ' of ' + total : total + (total === 1 ? ' schedule' : ' schedules'));
}

function rowOf(node) {
  const tr = node.closest('tr');
  return tr ? rowByTr.get(tr) : undefined;
}

function actionFailed(err) {
  if (err instanceof AuthError) needToken(err.message);
  else toast(err.message, true);
}

tbody.addEventListener('click', async (event) => {
  const button = event.target.closest('button.run');
  if (!button) return;
  const row = rowOf(button);
  if (!row || !row.data) return;
  const t = row.data;
  button.disabled = true;
  row.actionAt = Date.now();
  try {
    const report = await api('POST', pathOf(t) + '/trigger');
    row.actionAt = Date.now();
    updateRow(row, report, Date.now());
    toast('Queued a run of ' + t.task + ' / ' + t.uid);
  } catch (err) {
    actionFailed(err);
  } finally {
    button.disabled = false;
  }
});

tbody.addEventListener('change', async (event) => {
  const input = event.target;
  if (!input.matches('input.toggle')) return;
  const row = rowOf(input);
  if (!row || !row.data) return;
  const t = row.data;
  const enabled = input.checked;
  row.busy = true;
  row.actionAt = Date.now();
  try {
    const report = await api('POST', pathOf(t) + (enabled ? '/enable' : '/disable'));
    row.busy = false;
    row.actionAt = Date.now();
    updateRow(row, report, Date.now());
  } catch (err) {
    row.busy = false;
    input.checked = !enabled;
    actionFailed(err);
  }
});

$('filter').addEventListener('input', () => renderTasks(latestTasks, Infinity));

// ------------------------------------------------------------------ depths and stats

function renderDepths(depths) {
  const entries = Object.entries(depths).sort((a, b) => b[1].due - a[1].due || (a[0] < b[0] ? -1 : 1));
  const body = $('depths').tBodies[0];
  const frag = document.createDocumentFragment();
  for (const [task, d] of entries.slice(0, 50)) {
    const tr = el('tr');
    tr.append(el('td', '', task), el('td', 'num', d.due), el('td', 'num', d.scheduled), el('td', 'num', d.running));
    frag.append(tr);
  }
  body.replaceChildren(frag);
  $('depths-empty').hidden = entries.length > 0;
}

let lastStats = null;

function renderStats(stats) {
  lastStats = stats;
  const t = stats.totals;
  setText($('stat-started'), t.started);
  setText($('stat-success'), t.success);
  setText($('stat-failure'), t.failure);
  setText($('stat-lost'), t.lost);
  setText($('stat-skipped'), t.skipped);
  setText($('stat-lateness'), seconds(t.latenessAvg));
  setText($('stat-running'), stats.running);
  setText($('stat-leases'), stats.httpLeases);
  drawChart(stats);
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(stats) {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (w === 0 || h === 0) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const L = 46, R = 52, T = 18, B = 20;
  const pw = w - L - R;
  const ph = h - T - B;
  const series = stats.series.slice(-CHART_POINTS);
  const perSecond = 1000 / stats.intervalMs;
  const rates = series.map((p) => (p.success + p.failure + p.lost + p.skipped) * perSecond);
  const late = series.map((p) => p.latenessP95).filter((v) => v !== null);
  const maxRate = niceMax(Math.max(1, ...rates));
  const maxLate = niceMax(Math.max(0.01, ...late));
  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = T + ph - (ph * i) / 4;
    ctx.strokeStyle = color('--line');
    ctx.beginPath();
    ctx.moveTo(L, Math.round(y) + 0.5);
    ctx.lineTo(L + pw, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = color('--muted');
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const rate = (maxRate * i) / 4;
    ctx.fillText(rate >= 10 ? rate.toFixed(0) : String(Math.round(rate * 100) / 100), L - 6, y);
    ctx.textAlign = 'left';
    ctx.fillStyle = color('--accent');
    ctx.fillText(seconds((maxLate * i) / 4).replace('.0 ', ' '), L + pw + 6, y);
  }
  ctx.fillStyle = color('--muted');
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left';
  ctx.fillText('runs/s', 4, 0);
  ctx.textAlign = 'right';
  ctx.fillStyle = color('--accent');
  ctx.fillText('lateness', w - 2, 0);
  ctx.fillStyle = color('--muted');
  ctx.textAlign = 'center';
  ctx.fillText('−5 min', L + 14, h - 14);
  ctx.fillText('−2.5 min', L + pw / 2, h - 14);
  ctx.textAlign = 'right';
  ctx.fillText('now', L + pw, h - 14);
  const slot = pw / CHART_POINTS;
  const x0 = L + pw - series.length * slot;
  const colors = [['success', color('--ok')], ['failure', color('--bad')], ['lost', color('--warn')], ['skipped', color('--skip')]];
  series.forEach((p, i) => {
    let y = T + ph;
    for (const [key, fill] of colors) {
      const bh = (p[key] * perSecond * ph) / maxRate;
      if (bh <= 0) continue;
      ctx.fillStyle = fill;
      ctx.fillRect(x0 + i * slot + 0.5, y - bh, Math.max(1, slot - 1), bh);
      y -= bh;
    }
  });
  const line = (key, dash) => {
    ctx.strokeStyle = color('--accent');
    ctx.lineWidth = 2;
    ctx.setLineDash(dash);
    ctx.beginPath();
    let drawing = false;
    series.forEach((p, i) => {
      const v = p[key];
      if (v === null) {
        drawing = false;
        return;
      }
      const x = x0 + (i + 0.5) * slot;
      const y = T + ph - (Math.min(v, maxLate) * ph) / maxLate;
      if (drawing) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
    ctx.setLineDash([]);
  };
  line('latenessP95', []);
  line('latenessAvg', [4, 3]);
  if (series.length === 0) {
    ctx.fillStyle = color('--muted');
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('collecting… (one point every ' + stats.intervalMs / 1000 + ' s)', L + pw / 2, T + ph / 2);
  }
}

window.addEventListener('resize', () => {
  if (lastStats) drawChart(lastStats);
});

function renderHealth(health) {
  setText($('server'), 'store: ' + health.store + ' · scheduler: ' + health.scheduler);
}

// ------------------------------------------------------------------ polling

let timer = null;
let inFlight = false;
let paused = false;

function needToken(message) {
  paused = true;
  clearTimeout(timer);
  setStatus('warn', 'token needed');
  showTokenForm(message);
}

const showTokenForm = tokenForm(() => refreshNow());

async function refresh() {
  if (inFlight) return;
  inFlight = true;
  const fetchedAt = Date.now();
  try {
    const [list, depths, stats, health] = await Promise.all([api('GET', '/api/tasks'), api('GET', '/api/depths'), api('GET', '/api/stats'), api('GET', '/healthz')]);
    renderTasks(list.tasks, fetchedAt);
    renderDepths(depths);
    renderStats(stats);
    renderHealth(health);
    setStatus('ok', 'live');
    $('auth').hidden = true;
  } catch (err) {
    if (err instanceof AuthError) needToken(err.message);
    else setStatus('bad', 'offline: ' + err.message);
  } finally {
    inFlight = false;
    if (!paused) {
      clearTimeout(timer);
      timer = setTimeout(refresh, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }
}

function refreshNow() {
  paused = false;
  clearTimeout(timer);
  void refresh();
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && !paused) refreshNow();
});

if (document.body.dataset.tokenRequired === 'true' && !currentToken()) needToken('this server needs a token');
else refreshNow();
`;
