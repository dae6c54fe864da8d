// @ts-check
/** The app shell: session start-up, hash routes, navigation and the connection status. */

import { h, replace, toast } from './dom.js';
import * as api from './api.js';
import * as live from './live.js';
import { signIn, signUp } from './views/auth.js';
import { weekView } from './views/week.js';
import { meetingForm } from './views/form.js';
import { meetingPage } from './views/meeting.js';
import { profilePage } from './views/profile.js';

/** @typedef {{id: string, email: string, display_name: string, time_zone: string}} Me */

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
const conn = /** @type {HTMLElement} */ (document.getElementById('conn'));

/** @type {Me | null} */
let me = null;
/** @type {(() => void) | null} */
let cleanup = null;
let firstRoute = true;

api.onNotice(toast);
live.onState((state) => {
  conn.dataset.state = state;
  conn.textContent = { offline: '', connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' }[state];
});
api.onSessionChange((signedIn) => {
  if (signedIn) {
    if (/^#\/sign(in|up)/.test(location.hash)) location.hash = '#/';
    else void route();
  } else {
    me = null;
    renderNav();
    location.hash = '#/signin';
    void route();
  }
});

function renderNav() {
  if (!me) {
    replace(nav);
    return;
  }
  const user = me;
  replace(nav, h('ul', null,
    h('li', null, h('a', { href: '#/' }, 'Week')),
    h('li', null, h('a', { href: '#/new' }, 'New meeting')),
    h('li', null, h('a', { href: '#/profile', class: 'who' }, user.display_name)),
    h('li', null, h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'))));
}

async function signOut() {
  try {
    await api.logout();
  } catch {
    // Signed out here regardless; the server forgets the session when its tokens expire.
  }
}

async function loadMe() {
  me = /** @type {Me} */ (await api.get('/v1/users/me'));
  renderNav();
}

async function route() {
  cleanup?.();
  cleanup = null;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean);

  if (!api.token()) {
    if (parts[0] === 'signup') signUp(main);
    else signIn(main);
    document.title = parts[0] === 'signup' ? 'Create an account — Meetings' : 'Sign in — Meetings';
    return;
  }
  try {
    if (!me || me.id !== api.userId()) await loadMe();
  } catch (error) {
    replace(main, h('p', { role: 'alert' }, `Could not load your profile: ${error instanceof Error ? error.message : error}`));
    return;
  }
  const context = { me: /** @type {Me} */ (me) };
  if (parts[0] === 'signin' || parts[0] === 'signup') {
    location.hash = '#/';
    return;
  }
  if (parts[0] === 'meetings' && parts[1] && parts[2] === 'edit') {
    document.title = 'Edit meeting — Meetings';
    await meetingForm(main, context, { meetingId: parts[1], from: params.get('from') ?? undefined }).catch((error) => replace(main, h('p', { role: 'alert' }, error.message)));
  } else if (parts[0] === 'meetings' && parts[1]) {
    document.title = 'Meeting — Meetings';
    cleanup = meetingPage(main, context, parts[1], params.get('occurrence'));
  } else if (parts[0] === 'profile') {
    document.title = 'Profile — Meetings';
    await profilePage(main, { ...context, reloadMe: loadMe }).catch((error) => replace(main, h('p', { role: 'alert' }, error.message)));
  } else if (parts[0] === 'new') {
    document.title = 'New meeting — Meetings';
    await meetingForm(main, context, { date: params.get('date') ?? undefined });
  } else {
    document.title = 'Week — Meetings';
    cleanup = weekView(main, context, parts[0] === 'week' ? parts[1] : undefined);
  }
  // Move focus to the new screen for keyboard and screen reader users (not on first load).
  if (!firstRoute && !main.contains(document.activeElement)) main.focus();
  firstRoute = false;
}

addEventListener('hashchange', () => { void route(); });

async function start() {
  // A refresh token kept by this browser: continue the session without asking again.
  await api.refresh();
  if (api.token()) live.connect();
  await route();
}

void start();
