// Browser tests of the session in the system Chromium: sign out, reload, quiet refreshes, and
// several tabs sharing one session (started by web/check, its address in MEETINGS_BASE_URL).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE, dateInZone, launch, newContext, schedule, signIn, signUp, storedRefreshToken, watchErrors,
} from './helpers.js';

/** @type {import('playwright-core').Browser} */
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('signing out ends the session: the refresh token is gone and the API refuses it', async () => {
  const context = await newContext(browser);
  try {
    const page = await context.newPage();
    const { email } = await signUp(page, `Fay Out ${Date.now().toString(36)}`);
    const refreshToken = await storedRefreshToken(page);
    assert.ok(refreshToken);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    assert.equal(await storedRefreshToken(page), null);
    const response = await fetch(`${BASE}/v1/auth/refresh`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: refreshToken }),
    });
    assert.equal(response.status, 401);
    // A reload keeps nobody signed in.
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    // Signing in again starts a new session.
    await signIn(page, email);
    assert.notEqual(await storedRefreshToken(page), refreshToken);
  } finally {
    await context.close();
  }
});

test('a reload continues the session from the tab’s refresh token', async () => {
  const context = await newContext(browser);
  try {
    const page = await context.newPage();
    await signUp(page, `Gus Reload ${Date.now().toString(36)}`);
    await page.reload();
    await page.getByRole('heading', { level: 1, name: /^Week of/ }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
  } finally {
    await context.close();
  }
});

test('access tokens are refreshed quietly: the session and its one websocket outlive several', async () => {
  const ttl = Number(process.env.MEETINGS_TEST_TOKEN_TTL ?? 20);
  const context = await newContext(browser);
  try {
    const page = await context.newPage();
    const ok = watchErrors(page);
    /** @type {import('playwright-core').WebSocket[]} */
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws));
    await signUp(page, `Ida Long ${Date.now().toString(36)}`);
    await page.getByText('Live', { exact: true }).waitFor();
    const first = await storedRefreshToken(page);
    // Two lifetimes and a bit: the first token is long expired (and the gateway closes a
    // socket whose token expires without a renewal).
    await page.waitForTimeout((2 * ttl + 5) * 1000);
    const later = await storedRefreshToken(page);
    assert.notEqual(later, first, 'the refresh token was rotated by a quiet refresh');
    assert.equal(sockets.length, 1, 'one websocket the whole time');
    assert.equal(sockets[0].isClosed(), false);
    await page.getByText('Live', { exact: true }).waitFor();
    const id = await schedule(page, { title: 'Still signed in', date: dateInZone(5) });
    assert.match(id, /^[0-9a-f-]{36}$/);
    ok();
  } finally {
    await context.close();
  }
});

test('two tabs share one session: refreshing at the same moment signs neither out, signing out in one signs out both', async () => {
  const context = await newContext(browser);
  try {
    const first = await context.newPage();
    const firstOk = watchErrors(first);
    const name = `Jo Tabs ${Date.now().toString(36)}`;
    await signUp(first, name);
    // A second tab (as a duplicated one) continues the same session without signing in.
    const second = await context.newPage();
    const secondOk = watchErrors(second);
    await second.goto(`${BASE}/`);
    await second.getByRole('heading', { level: 1, name: /^Week of/ }).waitFor();

    // Both rotate the one refresh token at the same moment, again and again: a spent token
    // presented twice would revoke the session and sign both out.
    const refreshBoth = () => Promise.all([first, second].map((page) => page.evaluate(async () => {
      // @ts-ignore the app's module is loaded
      const api = await import('/js/api.js');
      return api.refresh();
    })));
    for (let round = 0; round < 5; round += 1) {
      assert.deepEqual(await refreshBoth(), [true, true], `round ${round}: both still signed in`);
    }
    for (const page of [first, second]) {
      const shown = await page.evaluate(async () => {
        // @ts-ignore the app's module is loaded
        const api = await import('/js/api.js');
        return (await api.get('/v1/users/me')).display_name;
      });
      assert.equal(shown, name);
    }

    await first.getByRole('button', { name: 'Sign out' }).click();
    await first.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await second.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor({ timeout: 10000 });
    assert.equal(await storedRefreshToken(second), null);
    firstOk();
    secondOk();
  } finally {
    await context.close();
  }
});
