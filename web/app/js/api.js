// @ts-check
/**
 * The HTTP side: the session (access token in memory, refresh token shared by the origin's
 * tabs in `store.js`, refreshed quietly before it expires), JSON requests with problem+json
 * errors, waits on 429 and 503 `Retry-After`, and read-your-writes through `X-Min-Position`.
 *
 * Tabs share one refresh token and rotate it one at a time (a Web Lock around each refresh,
 * reading the newest token inside it and keeping the next before letting go): a refresh
 * token is spent once and a spent one presented again revokes the whole session, so two tabs
 * racing with the same token would sign both out. Signing out in one tab signs out the
 * others; signing in joins them.
 */

import { announce, dropToken, keepToken, onAnnouncement, storedToken } from './store.js';

/**
 * A problem+json answer (RFC 9457), or a network failure (`status` 0).
 */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{title?: string, detail?: string, errors?: {field: string, message: string}[]}} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    /** @type {{field: string, message: string}[]} */
    this.errors = problem.errors ?? [];
  }

  /** Someone else changed it first (409 conflict, 412 stale `If-Match`). */
  get conflict() {
    return this.status === 409 || this.status === 412;
  }
}

/** @typedef {{access_token: string, refresh_token: string, expires_in: number, user_id: string}} Tokens */

/** @type {{token: string | null, userId: string | null, timer: any, minPosition: string | null}} */
const session = { token: null, userId: null, timer: null, minPosition: null };

/** @type {Set<(signedIn: boolean) => void>} */
const sessionListeners = new Set();
/** @type {Set<(token: string) => void>} */
const tokenListeners = new Set();

/** @param {(signedIn: boolean) => void} listener */
export function onSessionChange(listener) {
  sessionListeners.add(listener);
}

/** Called with each new access token (the websocket re-authenticates with it). @param {(token: string) => void} listener */
export function onToken(listener) {
  tokenListeners.add(listener);
}

export function token() {
  return session.token;
}

export function userId() {
  return session.userId;
}

/** Keeps the new refresh token (committed before this resolves) and uses the access token. @param {Tokens} tokens */
async function accept(tokens) {
  await keepToken(tokens.refresh_token);
  const wasSignedIn = session.token !== null;
  session.token = tokens.access_token;
  session.userId = tokens.user_id;
  clearTimeout(session.timer);
  // Refresh well before expiry (at 80 % of the lifetime, at least 5 s ahead).
  const lead = Math.max(5, tokens.expires_in * 0.2);
  session.timer = setTimeout(() => { void refresh(); }, Math.max(1, tokens.expires_in - lead) * 1000);
  for (const listener of tokenListeners) listener(tokens.access_token);
  if (!wasSignedIn) for (const listener of sessionListeners) listener(true);
}

/** Signed out here; `everywhere` also drops the shared refresh token (the other tabs follow). */
function forget(everywhere = true) {
  const wasSignedIn = session.token !== null;
  clearTimeout(session.timer);
  session.token = null;
  session.userId = null;
  session.minPosition = null;
  if (everywhere) {
    void dropToken().finally(() => announce('out'));
  }
  if (wasSignedIn) for (const listener of sessionListeners) listener(false);
}

// Another tab signed out, or in (then this one continues its session).
onAnnouncement((what) => {
  if (what === 'out') forget(false);
  else if (session.token === null) void refresh();
});

/**
 * Runs `work` while no other tab of this origin runs its own refresh (Web Locks; without them,
 * outside a secure context, it runs at once and two tabs may still race).
 * @template T
 * @param {() => Promise<T>} work
 * @returns {Promise<T>}
 */
function exclusively(work) {
  return navigator.locks ? /** @type {Promise<T>} */ (navigator.locks.request('meetings.refresh', work)) : work();
}

/** @type {Promise<boolean> | null} */
let refreshing = null;

/**
 * Trades the stored refresh token for new tokens; signs out when it is refused. Concurrent
 * callers share one request (a refresh token is spent once).
 * @returns {Promise<boolean>} whether a session is now active
 */
export function refresh() {
  if (refreshing) return refreshing;
  refreshing = exclusively(async () => {
    // Read inside the lock: another tab may have just rotated it.
    const refreshToken = await storedToken();
    if (!refreshToken) {
      forget(false);
      return false;
    }
    try {
      await accept(await raw('POST', '/v1/auth/refresh', { refresh_token: refreshToken }));
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status !== 0 && error.status < 500) {
        // Refused: unless another tab replaced the token meanwhile, the session is over.
        forget((await storedToken()) === refreshToken);
        return false;
      }
      // Network or server trouble: try again soon, keep the session meanwhile.
      clearTimeout(session.timer);
      session.timer = setTimeout(() => { void refresh(); }, 5000);
      return session.token !== null;
    }
  }).finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * @param {string} email
 * @param {string} password
 */
export async function login(email, password) {
  await accept(await raw('POST', '/v1/auth/login', { email, password }));
  announce('in');
}

/**
 * Registers, then signs in.
 * @param {{email: string, password: string, display_name: string, time_zone: string}} account
 */
export async function register(account) {
  const created = await raw('POST', '/v1/auth/register', account);
  await login(account.email, account.password);
  // The first reads (the profile) must see the registration.
  session.minPosition = created.position;
}

/** Ends the session on the server (its tokens and websockets stop working) and here. */
export async function logout() {
  const refreshToken = await storedToken();
  try {
    // Needs the session's own access token (and ends every one of its tokens).
    if (refreshToken && session.token) await api('POST', '/v1/auth/logout', { refresh_token: refreshToken });
  } finally {
    // Gone from this browser before the sign-in screen shows.
    await dropToken();
    forget(false);
    announce('out');
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @type {(text: string) => void} */
let notify = () => {};
/** Where waits on 429/503 are announced. @param {(text: string) => void} fn */
export function onNotice(fn) {
  notify = fn;
}

/**
 * One request without the session's token handling; throws {@link ApiError}.
 * @param {string} method
 * @param {string} path
 * @param {any} [body]
 * @param {Record<string, string>} [headers]
 * @returns {Promise<any>}
 */
async function raw(method, path, body, headers = {}) {
  const init = /** @type {RequestInit} */ ({ method, headers: { accept: 'application/json', ...headers } });
  if (body !== undefined) {
    /** @type {any} */ (init.headers)['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  for (let attempt = 0; ; attempt += 1) {
    /** @type {Response} */
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { title: 'Network error', detail: 'The server cannot be reached. Check your connection and try again.' });
    }
    if ((response.status === 429 || response.status === 503) && attempt < 3) {
      const wait = Math.min(30, Number(response.headers.get('retry-after')) || 1);
      notify(response.status === 429
        ? `Too many requests — waiting ${wait} s before trying again.`
        : `The server is busy — trying again in ${wait} s.`);
      await sleep(wait * 1000);
      continue;
    }
    if (response.status === 204) return null;
    const type = response.headers.get('content-type') ?? '';
    const data = type.includes('json') ? await response.json().catch(() => ({})) : {};
    if (!response.ok) throw new ApiError(response.status, data);
    const etag = response.headers.get('etag');
    if (etag && data && typeof data === 'object' && !Array.isArray(data)) {
      Object.defineProperty(data, 'etag', { value: etag, enumerable: false });
    }
    return data;
  }
}

/**
 * An authenticated request. Commands (non-GET) carry an `Idempotency-Key`, so a retry after
 * 429 is safe; their `position` is then sent as `X-Min-Position` on reads, so the next read
 * sees the write. A 401 refreshes the token once and retries.
 * @param {string} method
 * @param {string} path
 * @param {any} [body]
 * @param {{ifMatch?: string | number, minPosition?: string}} [options]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, options = {}) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (method === 'GET') {
    const min = options.minPosition ?? session.minPosition;
    if (min) headers['x-min-position'] = min;
  } else {
    headers['idempotency-key'] = crypto.randomUUID();
  }
  if (options.ifMatch !== undefined) headers['if-match'] = `"${options.ifMatch}"`;
  for (let attempt = 0; ; attempt += 1) {
    if (!session.token) throw new ApiError(401, { title: 'Signed out', detail: 'Please sign in again.' });
    try {
      const result = await raw(method, path, body, { ...headers, authorization: `Bearer ${session.token}` });
      if (method !== 'GET' && result && typeof result.position === 'string') session.minPosition = result.position;
      return result;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && attempt === 0 && (await refresh())) continue;
      throw error;
    }
  }
}

/** @param {string} path @param {{minPosition?: string}} [options] */
export const get = (path, options) => api('GET', path, undefined, options);
/** @param {string} path @param {any} [body] @param {{ifMatch?: string | number}} [options] */
export const post = (path, body, options) => api('POST', path, body ?? {}, options);
/** @param {string} path @param {any} body @param {{ifMatch?: string | number}} [options] */
export const patch = (path, body, options) => api('PATCH', path, body, options);
