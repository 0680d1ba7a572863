/**
 * The index page at `/`: a static list of the API (no data, so it needs no token).
 * A real dashboard is a later issue.
 */
const ROUTES: readonly (readonly [string, string, string])[] = [
  ['PUT', '/api/pushTask/:name', 'schedule an immediate occurrence of task :name (JSON body = params) → {success, id}'],
  ['GET', '/api/popTask/:name?wait=&lease=&retry=', 'take one due occurrence → 200 {task} or 202; wait = long poll (s); lease = reliable pop'],
  ['POST', '/api/ackTask/:name/:id', 'complete a leased pop (JSON body = result)'],
  ['POST', '/api/nackTask/:name/:id', 'fail a leased pop ({error, retry, delay}); retried while attempts remain'],
  ['POST', '/api/renewTask/:name/:id?lease=', 'extend a leased pop'],
  ['GET', '/api/tasks?task=', 'list schedules (TaskReports)'],
  ['GET', '/api/tasks/:task/:uid', 'one schedule'],
  ['PUT', '/api/tasks/:task/:uid', 'create or replace a schedule ({in|at|every|cron, tz, params, enabled})'],
  ['PATCH', '/api/tasks/:task/:uid', 'update a schedule ({enabled, params, schedule})'],
  ['DELETE', '/api/tasks/:task/:uid', 'cancel a schedule'],
  ['POST', '/api/tasks/:task/:uid/trigger', 'run a schedule now (its own occurrence)'],
  ['POST', '/api/tasks/:task/:uid/enable', 'enable a schedule'],
  ['POST', '/api/tasks/:task/:uid/disable', 'disable a schedule'],
  ['GET', '/api/registry', 'snapshot (schedward TaskRunnerRegistryDump)'],
  ['PUT', '/api/registry', 'load a snapshot'],
  ['GET', '/api/depths', 'due / scheduled / running counts per task'],
  ['GET', '/healthz', 'liveness (no token needed)'],
];

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function indexPage(tokenRequired: boolean): string {
  const rows = ROUTES.map(([method, path, what]) => `<tr><td><code>${method}</code></td><td><code>${escape(path)}</code></td><td>${escape(what)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>schedkit</title>
<style>body{font:14px/1.5 system-ui,sans-serif;margin:2rem;max-width:60rem}td{padding:.2rem .8rem;vertical-align:top}code{font-size:13px}</style>
</head><body>
<h1>schedkit</h1>
<p>HTTP API${tokenRequired ? ' — every <code>/api</code> route needs <code>Authorization: Bearer &lt;token&gt;</code>' : ''}. Errors are JSON <code>{error, code}</code>.</p>
<table>
${rows}
</table>
</body></html>
`;
}
