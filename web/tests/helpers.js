// Shared by the browser tests: the browser, sign-up through the UI, axe-core, phone width.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const BASE = process.env.MEETINGS_BASE_URL ?? 'http://127.0.0.1:8080';
export const ZONE = 'Europe/Berlin';
export const PASSWORD = 'correct horse battery staple';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/** A context in the users' zone, desktop-sized unless told. */
export async function newContext(browser, viewport = { width: 1280, height: 900 }) {
  return browser.newContext({ timezoneId: ZONE, locale: 'en-GB', viewport });
}

let counter = 0;
export function uniqueEmail(name) {
  counter += 1;
  return `${name.toLowerCase().replace(/[^a-z0-9]+/g, ".")}-${Date.now()}-${process.pid}-${counter}@example.com`;
}

/** Fails the test on any uncaught page error (a broken module fails loudly). */
export function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  return () => assert.deepEqual(errors.map(String), []);
}

/**
 * Two people, each in a browser context of their own, for `body(first, second)`; both closed
 * afterwards, and an uncaught error on either page fails the test.
 */
export async function inTwoBrowsers(browser, body) {
  const contexts = [await newContext(browser), await newContext(browser)];
  try {
    const [first, second] = await Promise.all(contexts.map((context) => context.newPage()));
    const checks = [watchErrors(first), watchErrors(second)];
    await body(first, second);
    for (const check of checks) check();
  } finally {
    for (const context of contexts) await context.close();
  }
}

/** Signs up through the form and waits for the week view. */
export async function signUp(page, name, email = uniqueEmail(name)) {
  await page.goto(`${BASE}/#/signup`);
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Time zone').fill(ZONE);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { level: 1, name: /^Week of/ }).waitFor();
  return { name, email };
}

/** Signs in through the form. */
export async function signIn(page, email) {
  await page.goto(`${BASE}/#/signin`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: /^Week of/ }).waitFor();
}

/** axe-core on the page as it is: no serious or critical violation. */
export async function assertAccessible(page, screen) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    // @ts-ignore injected above
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  assert.deepEqual(violations, [], `axe on ${screen}`);
}

/** Nothing wider than the viewport (no sideways scrolling). */
export async function assertFitsWidth(page, screen) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  assert.ok(scroll <= width, `${screen}: content is ${scroll}px wide in a ${width}px window`);
}

/** `YYYY-MM-DD` in the users' zone, `days` from today. */
export function dateInZone(days = 0) {
  const now = new Date(Date.now() + days * 86400000);
  return new Intl.DateTimeFormat('en-CA', { timeZone: ZONE, year: 'numeric', month: '2-digit', day: '2-digit' }).format(now);
}

/** Schedules through the form; returns the meeting id. */
export async function schedule(page, { title, date, start = '10:00', end = '11:00', invite = [] }) {
  await page.getByRole('link', { name: 'New meeting' }).first().click();
  await page.getByRole('heading', { level: 1, name: 'New meeting' }).waitFor();
  await page.getByLabel('Title').fill(title);
  await page.getByLabel('Date').fill(date);
  await page.getByLabel('Starts').fill(start);
  await page.getByLabel('Ends').fill(end);
  for (const name of invite) {
    const box = page.getByRole('combobox', { name: 'Invite people' });
    await box.fill(name);
    await page.getByRole('option', { name: new RegExp(name) }).first().waitFor();
    await box.press('Enter');
    await page.getByRole('list', { name: 'Invited' }).getByText(name).waitFor();
  }
  await page.getByRole('button', { name: 'Schedule' }).click();
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
  return new URL(page.url()).hash.split('/')[2];
}

/** The refresh token the page's browser keeps (the app's own store), or null. */
export function storedRefreshToken(page) {
  return page.evaluate(async () => {
    // @ts-ignore the app's module is loaded
    const store = await import('/js/store.js');
    return store.storedToken();
  });
}
