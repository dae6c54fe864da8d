// @ts-check
/**
 * The one websocket of this tab (`/v1/ws`): authenticates first, (re)subscribes its channels,
 * resumes each with `since` after a reconnect (exponential backoff), re-authenticates with
 * each fresh token, and hands events, presence and resets to whoever listens on a channel.
 */

import * as api from './api.js';

/**
 * @typedef {{type: string, channel?: string, position?: string, event?: any, users?: string[], user_id?: string, code?: string, message?: string}} Frame
 * @typedef {(frame: Frame) => void} Listener
 * @typedef {'offline' | 'connecting' | 'live' | 'reconnecting'} State
 */

/** @type {WebSocket | null} */
let socket = null;
/** @type {State} */
let state = 'offline';
let ready = false;
let attempts = 0;
/** @type {any} */
let retryTimer = null;
/** @type {any} */
let pingTimer = null;
/** Channels wanted, each with the last position seen (to resume from). @type {Map<string, {since: string | null, listeners: Set<Listener>}>} */
const channels = new Map();
/** @type {Set<(state: State) => void>} */
const stateListeners = new Set();

/** @param {(state: State) => void} listener */
export function onState(listener) {
  stateListeners.add(listener);
  listener(state);
}

/** @param {State} next */
function setState(next) {
  state = next;
  for (const listener of stateListeners) listener(next);
}

/** @param {any} frame */
function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

/** Opens the socket (when signed in and not open yet). */
export function connect() {
  if (socket || !api.token()) return;
  clearTimeout(retryTimer);
  setState(attempts === 0 ? 'connecting' : 'reconnecting');
  const url = new URL('/v1/ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url);
  socket = ws;
  ready = false;
  ws.addEventListener('open', () => send({ type: 'auth', token: api.token() }));
  ws.addEventListener('message', (message) => {
    /** @type {Frame} */
    let frame;
    try {
      frame = JSON.parse(String(message.data));
    } catch {
      return;
    }
    onFrame(frame);
  });
  ws.addEventListener('close', (event) => {
    if (socket !== ws) return;
    socket = null;
    ready = false;
    clearInterval(pingTimer);
    if (!api.token()) {
      setState('offline');
      return;
    }
    setState('reconnecting');
    if (event.code === 4401) {
      // Expired or revoked: a fresh token first (signs out when the session is over).
      void api.refresh().then((ok) => { if (ok) scheduleReconnect(); });
    } else {
      scheduleReconnect();
    }
  });
}

function scheduleReconnect() {
  attempts += 1;
  // 0.5 s, 1 s, 2 s … up to 20 s, with jitter so many tabs do not come back in step.
  const base = Math.min(20000, 500 * 2 ** (attempts - 1));
  retryTimer = setTimeout(connect, base / 2 + Math.random() * base / 2);
}

/** Closes the socket for good (sign-out). */
export function disconnect() {
  clearTimeout(retryTimer);
  clearInterval(pingTimer);
  const ws = socket;
  socket = null;
  ready = false;
  attempts = 0;
  channels.clear();
  ws?.close(1000);
  setState('offline');
}

/** Drops the connection now and reconnects (the network went away and came back). */
export function reconnectNow() {
  const ws = socket;
  socket = null;
  ws?.close(1000);
  attempts = 0;
  connect();
}

/** @param {string} channel */
function subscribeFrame(channel) {
  const entry = channels.get(channel);
  /** @type {any} */
  const frame = { type: 'subscribe', channel };
  if (entry?.since) frame.since = entry.since;
  send(frame);
}

/** @param {Frame} frame */
function onFrame(frame) {
  if (frame.type === 'ready') {
    if (!ready) {
      ready = true;
      attempts = 0;
      setState('live');
      for (const channel of channels.keys()) subscribeFrame(channel);
      clearInterval(pingTimer);
      pingTimer = setInterval(() => send({ type: 'ping' }), 25000);
    }
    return;
  }
  if (!frame.channel) return;
  const entry = channels.get(frame.channel);
  if (!entry) return;
  if ((frame.type === 'subscribed' || frame.type === 'event') && frame.position) {
    if (frame.type === 'event' || !entry.since) entry.since = frame.position;
  }
  if (frame.type === 'reset') entry.since = null;
  for (const listener of entry.listeners) listener(frame);
}

/**
 * Listens on a channel; subscribes when it is the first listener. Returns the unsubscribe.
 * @param {string} channel
 * @param {Listener} listener
 * @returns {() => void}
 */
export function subscribe(channel, listener) {
  let entry = channels.get(channel);
  if (!entry) {
    entry = { since: null, listeners: new Set() };
    channels.set(channel, entry);
    if (ready) subscribeFrame(channel);
  }
  entry.listeners.add(listener);
  return () => {
    const current = channels.get(channel);
    if (!current) return;
    current.listeners.delete(listener);
    if (current.listeners.size === 0) {
      channels.delete(channel);
      if (ready) send({ type: 'unsubscribe', channel });
    }
  };
}

api.onToken((fresh) => {
  // A fresh token on an open socket keeps it alive past the old token's expiry.
  if (ready) send({ type: 'auth', token: fresh });
});
api.onSessionChange((signedIn) => {
  if (signedIn) connect();
  else disconnect();
});
addEventListener('online', () => { if (api.token() && state === 'reconnecting') reconnectNow(); });
