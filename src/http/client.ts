/**
 * Browser-side code shared by the dashboard and the docs page (plain JS, sent as a string:
 * no build step, no framework). It keeps the bearer token in sessionStorage — taken from
 * `?token=` (then removed from the address bar) or typed into the page's token form — and
 * sends it with every request.
 *
 * Everything the pages show that comes from the API is user data (task names, uids,
 * results, errors): it is only ever put into the page with `textContent` or attribute
 * setters, never parsed as HTML. The pages are also served with a CSP that allows no
 * inline script, as a second line of defence.
 *
 * Written as a `String.raw` template: keep `${` and backticks out of the code below.
 */
export const CLIENT_JS = String.raw`
'use strict';
const TOKEN_KEY = 'schedkit.token';

class AuthError extends Error {}

/** Moves ?token= into sessionStorage and drops it from the URL (history, screenshots, referrers). */
function adoptUrlToken() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  if (token !== '') sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete('token');
  history.replaceState(null, '', url.pathname + url.search + url.hash);
}

function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/** JSON API call; throws AuthError on 401 and Error(message) on other failures. */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  const token = currentToken();
  if (token) headers.authorization = 'Bearer ' + token;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) throw new AuthError(token ? 'the token was refused' : 'this server needs a token');
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new Error(data && typeof data.error === 'string' ? data.error : res.status + ' ' + res.statusText);
  return data;
}

function $(id) {
  return document.getElementById(id);
}

/** An element with a class and text (text via textContent: never HTML). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setText(node, text) {
  const value = text === undefined || text === null ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function setTitle(node, text) {
  if (text) node.setAttribute('title', text);
  else node.removeAttribute('title');
}

/**
 * The token form: shown when the server answers 401. onToken() is called once a token was
 * entered. Returns show(message).
 */
function tokenForm(onToken) {
  const form = $('auth');
  const input = $('token-input');
  const message = $('auth-message');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    input.value = '';
    form.hidden = true;
    onToken();
  });
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    form.hidden = false;
    setText(message, 'token forgotten');
    input.focus();
  });
  return (text) => {
    setText(message, text);
    form.hidden = false;
    if (document.activeElement !== input) input.focus();
  };
}
`;

/** The token form's markup (ids used by CLIENT_JS). */
export const TOKEN_FORM_HTML = `<form id="auth" class="auth" hidden autocomplete="off">
  <label for="token-input">Bearer token</label>
  <input id="token-input" type="password" spellcheck="false" placeholder="paste the server's token">
  <button type="submit">Use token</button>
  <span id="auth-message" class="muted"></span>
</form>`;

/** Security headers of every page and asset: no inline script, only this origin. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};
