// @ts-check
/**
 * The refresh token the origin's tabs share, kept in IndexedDB. Not in localStorage: Chromium
 * gives each tab's renderer its own copy of localStorage and updates the others' copies
 * asynchronously, so a tab could read a token another tab had just spent; a committed
 * IndexedDB transaction is what every later one reads, in any tab, which the rotation under a
 * Web Lock (`api.js`) relies on. Tabs tell each other of sign-in and sign-out on a
 * BroadcastChannel.
 */

const DATABASE = 'meetings';
const STORE = 'session';
const KEY = 'refresh_token';

/** @type {Promise<IDBDatabase> | null} */
let opening = null;

function database() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => { request.result.createObjectStore(STORE); };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opening;
}

/**
 * One transaction on the store; resolves when it has committed.
 * @param {IDBTransactionMode} mode
 * @param {(store: IDBObjectStore) => IDBRequest} action
 * @returns {Promise<any>}
 */
async function run(mode, action) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode, { durability: 'strict' });
    const request = action(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/**
 * Where the token is kept when IndexedDB cannot be used (a browser that refuses it, as some
 * private modes did): this tab alone, until it closes.
 * @type {string | null}
 */
let fallback = null;

/** The kept refresh token, if any. @returns {Promise<string | null>} */
export async function storedToken() {
  try {
    const value = await run('readonly', (store) => store.get(KEY));
    return typeof value === 'string' ? value : null;
  } catch {
    return fallback;
  }
}

/** @param {string} token */
export async function keepToken(token) {
  try {
    await run('readwrite', (store) => store.put(token, KEY));
  } catch {
    fallback = token;
  }
}

export async function dropToken() {
  fallback = null;
  try {
    await run('readwrite', (store) => store.delete(KEY));
  } catch {
    // Nothing was kept there.
  }
}

const channel = new BroadcastChannel('meetings.session');

/** Tells the other tabs this one signed in or out. @param {'in' | 'out'} what */
export function announce(what) {
  channel.postMessage(what);
}

/** @param {(what: 'in' | 'out') => void} listener */
export function onAnnouncement(listener) {
  channel.addEventListener('message', (event) => listener(event.data));
}
