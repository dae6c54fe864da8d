// Browser tests of what an organizer changes after scheduling: attendees invited and removed,
// and one occurrence of a series moved, cancelled, answered alone, or changed with the ones
// after it (started by web/check, its address in MEETINGS_BASE_URL).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE, assertAccessible, assertFitsWidth, dateInZone, inTwoBrowsers, launch, schedule, signUp,
} from './helpers.js';

/** @type {import('playwright-core').Browser} */
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** The day `weeks` weeks after `first` (`YYYY-MM-DD`). */
function weeksAfter(first, weeks) {
  const date = new Date(`${first}T12:00:00Z`);
  date.setUTCDate(date.getUTCDate() + 7 * weeks);
  return date.toISOString().slice(0, 10);
}

/** Opens the week of `day` and returns that day's column once the agenda is loaded. */
async function dayColumn(page, day) {
  await page.goto(`${BASE}/#/week/${day}`);
  const section = page.locator(`section[data-date="${day}"]`);
  await section.waitFor();
  await page.locator('.week[aria-busy="false"]').waitFor();
  return section;
}

/** At phone width (375 px) the screen fits and passes axe; then back to the desktop size. */
async function onPhone(page, screen) {
  const desktop = page.viewportSize();
  await page.setViewportSize({ width: 375, height: 740 });
  await assertFitsWidth(page, screen);
  await assertAccessible(page, `${screen} at 375 px`);
  await page.setViewportSize(desktop);
}

/** A request through the app's API module inside the page (with the page's session). */
function call(page, method, path, body) {
  return page.evaluate(async ([m, p, b]) => {
    // @ts-ignore the app's module is loaded
    const api = await import('/js/api.js');
    return api.api(m, p, b ?? undefined);
  }, [method, path, body ?? null]);
}

test('the organizer invites someone after scheduling and removes them again; the invitee sees both live', async () => {
  await inTwoBrowsers(browser, async (ada, bob) => {
    const suffix = Date.now().toString(36);
    await signUp(ada, `Ada Host ${suffix}`);
    const bobName = `Bob Later ${suffix}`;
    await signUp(bob, bobName);
    const day = dateInZone(2);
    await dayColumn(bob, day);
    await bob.getByText('Live', { exact: true }).waitFor();

    const title = `Review ${suffix}`;
    await schedule(ada, { title, date: day });
    await ada.getByText('Nobody invited yet.').waitFor();
    const box = ada.getByRole('combobox', { name: 'Invite someone' });
    await box.fill(bobName);
    await ada.getByRole('option', { name: new RegExp(bobName) }).first().waitFor();
    await box.press('Enter');
    await ada.locator('.attendees li', { hasText: bobName }).getByText('Not answered').waitFor({ timeout: 10000 });
    await assertAccessible(ada, 'meeting page with the invite box');
    await onPhone(ada, 'meeting page with the invite box');

    // Bob's week shows it without a reload, and loses it again when he is removed.
    const event = bob.getByRole('link', { name: new RegExp(title) });
    await event.waitFor({ timeout: 10000 });
    await ada.getByRole('button', { name: `Remove ${bobName}` }).click();
    await ada.getByText('Nobody invited yet.').waitFor({ timeout: 10000 });
    await event.waitFor({ state: 'detached', timeout: 10000 });
  });
});

test('one occurrence of a weekly series: moved, cancelled, answered alone, and changed with the ones after it', async () => {
  await inTwoBrowsers(browser, async (ada, bob) => {
    ada.on('dialog', (dialog) => { void dialog.accept(); });
    const suffix = Date.now().toString(36);
    await signUp(ada, `Ada Series ${suffix}`);
    await signUp(bob, `Bob Series ${suffix}`);
    const bobId = (await call(bob, 'GET', '/v1/users/me')).id;
    const title = `Standup ${suffix}`;
    const first = dateInZone(1);
    // 09:00–10:00 Berlin time from tomorrow on, four weeks (the rule keeps the local time).
    const offsetHours = Number(new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', timeZoneName: 'shortOffset' })
      .formatToParts(new Date(`${first}T09:00:00Z`)).find((p) => p.type === 'timeZoneName')?.value.replace('GMT', '') || 0);
    const [y, m, d] = first.split('-').map(Number);
    const at = (hour) => new Date(Date.UTC(y, m - 1, d, hour - offsetHours)).toISOString();
    const { id } = await call(ada, 'POST', '/v1/meetings', {
      title, starts_at: at(9), ends_at: at(10), time_zone: 'Europe/Berlin',
      attendees: [{ user_id: bobId }], recurrence: { rrule: 'FREQ=WEEKLY;COUNT=4' },
    });

    // Week 2: move that occurrence to 11:00–11:30.
    let column = await dayColumn(ada, weeksAfter(first, 1));
    await column.getByRole('link', { name: new RegExp(title) }).click();
    await ada.getByText('One occurrence of a repeating meeting.').waitFor();
    await assertAccessible(ada, 'occurrence page (organizer)');
    await ada.getByRole('button', { name: 'Move this occurrence…' }).click();
    await onPhone(ada, 'occurrence page with the move form');
    await ada.getByLabel('New start').fill('11:00');
    await ada.getByLabel('New end').fill('11:30');
    await ada.getByRole('button', { name: 'Move this occurrence', exact: true }).click();
    await ada.getByText(/11:00/).first().waitFor({ timeout: 10000 });
    column = await dayColumn(ada, weeksAfter(first, 1));
    await column.getByRole('link', { name: new RegExp(`11:00.*${title}`) }).waitFor({ timeout: 10000 });

    // Week 3: cancel that occurrence alone.
    column = await dayColumn(ada, weeksAfter(first, 2));
    await column.getByRole('link', { name: new RegExp(title) }).click();
    await ada.getByRole('button', { name: 'Cancel this occurrence' }).click();
    await ada.getByText('This occurrence is cancelled.').waitFor({ timeout: 10000 });
    column = await dayColumn(ada, weeksAfter(first, 2));
    await column.getByRole('link', { name: new RegExp(`${title}.*cancelled`) }).waitFor({ timeout: 10000 });
    // The other weeks go on.
    column = await dayColumn(ada, first);
    assert.equal(await column.getByRole('link', { name: new RegExp(`${title}.*cancelled`) }).count(), 0);

    // Bob declines week 2 alone: his answer to the series stays open.
    column = await dayColumn(bob, weeksAfter(first, 1));
    await column.getByRole('link', { name: new RegExp(title) }).click();
    await bob.getByRole('group', { name: 'Your answer for this occurrence' }).waitFor();
    await bob.getByRole('button', { name: 'Decline' }).click();
    await bob.getByRole('button', { name: 'Decline', pressed: true }).waitFor({ timeout: 10000 });
    const answers = (await call(bob, 'GET', `/v1/meetings/${id}`)).attendees[0];
    assert.equal(answers.response, 'needs_action');
    assert.deepEqual(Object.values(answers.occurrence_responses), ['declined']);
    await bob.getByRole('link', { name: 'The whole series' }).click();
    await bob.getByRole('group', { name: 'Your answer' }).waitFor();
    assert.equal(await bob.getByRole('button', { name: 'Decline', pressed: true }).count(), 0);

    // Week 4: change it and what follows: a new series with a new title from there on.
    column = await dayColumn(ada, weeksAfter(first, 3));
    await column.getByRole('link', { name: new RegExp(title) }).click();
    await ada.getByRole('link', { name: 'Change this and following…' }).click();
    await ada.getByRole('heading', { level: 1, name: /from this occurrence on/ }).waitFor();
    // Cancel goes back to the occurrence; then on to the form again.
    await ada.getByRole('link', { name: 'Cancel' }).click();
    await ada.getByText('One occurrence of a repeating meeting.').waitFor();
    await ada.getByRole('link', { name: 'Change this and following…' }).click();
    await ada.getByRole('heading', { level: 1, name: /from this occurrence on/ }).waitFor();
    await assertAccessible(ada, 'this-and-following form');
    await onPhone(ada, 'this-and-following form');
    const later = `${title} (new format)`;
    await ada.getByLabel('Title').fill(later);
    await ada.getByRole('button', { name: 'Change this and following' }).click();
    await ada.getByRole('heading', { level: 1, name: later }).waitFor({ timeout: 10000 });
    const newId = new URL(ada.url()).hash.split('/')[2].split('?')[0];
    assert.notEqual(newId, id);
    column = await dayColumn(ada, weeksAfter(first, 3));
    await column.getByRole('link', { name: new RegExp(later.replace(/[()]/g, '\\$&')) }).waitFor({ timeout: 10000 });
    column = await dayColumn(ada, first);
    await column.locator('.event-title').getByText(title, { exact: true }).waitFor();
    const original = (await call(ada, 'GET', `/v1/meetings/${id}`)).recurrence.rrule;
    assert.match(original, /UNTIL=/, 'the first series ends before the split');
  });
});
