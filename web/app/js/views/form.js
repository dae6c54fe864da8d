// @ts-check
/** Create a meeting, or edit one's details (organizer; `If-Match` its version: a conflict says so). */

import { h } from '../dom.js';
import * as api from '../api.js';
import { field, formError, showError } from '../forms.js';
import { isoDate, isoTime, rangeLabel, wall, zoneNames, zonedToUtc } from '../time.js';
import { attendeePicker } from './picker.js';

const ALIASES = { starts_at: 'start', ends_at: 'end', 'attendees[].user_id': 'attendees' };

/**
 * @param {HTMLElement} main
 * @param {{me: {id: string, time_zone: string}}} context
 * @param {{date?: string, meetingId?: string}} options
 */
export async function meetingForm(main, { me }, { date, meetingId }) {
  /** @type {any} */
  let existing = null;
  if (meetingId) {
    main.replaceChildren(h('p', { role: 'status' }, 'Loading…'));
    existing = await api.get(`/v1/meetings/${meetingId}`);
  }
  const zoneValue = existing?.time_zone ?? me.time_zone;
  const startWall = existing ? wall(new Date(existing.starts_at), zoneValue) : null;
  const endWall = existing ? wall(new Date(existing.ends_at), zoneValue) : null;

  const title = h('input', { type: 'text', required: true, maxlength: 200, value: existing?.title ?? '' });
  const day = h('input', { type: 'date', required: true, value: startWall ? isoDate(startWall) : (date ?? isoDate(wall(new Date(), zoneValue))) });
  const start = h('input', { type: 'time', required: true, value: startWall ? isoTime(startWall) : '10:00' });
  const end = h('input', { type: 'time', required: true, value: endWall ? isoTime(endWall) : '11:00' });
  const zone = h('input', { type: 'text', list: 'zones-form', required: true, autocomplete: 'off', value: zoneValue });
  const location = h('input', { type: 'text', maxlength: 500, value: existing?.location ?? '' });
  const description = h('textarea', { rows: 4, maxlength: 10000 });
  description.value = existing?.description ?? '';
  const picker = existing ? null : attendeePicker({ exclude: [me.id] });

  // Find a time: free slots of this length for everyone invited (and me), from the chosen
  // start over the following week; choosing one fills the date and times.
  const suggestionList = h('ul', { class: 'suggestions', 'aria-label': 'Suggested times' });
  const suggestionStatus = h('p', { class: 'hint', role: 'status' });
  const suggestions = h('div', { class: 'field' },
    h('button', { type: 'button', onclick: suggest }, 'Suggest times'),
    suggestionStatus,
    suggestionList);
  async function suggest() {
    const tz = zone.value.trim();
    suggestionList.replaceChildren();
    let from;
    let minutes;
    try {
      from = zonedToUtc(day.value, start.value, tz);
      minutes = Math.round((zonedToUtc(day.value, end.value, tz).getTime() - from.getTime()) / 60000);
      if (Number.isNaN(from.getTime()) || !(minutes > 0)) throw new Error('bad');
    } catch {
      suggestionStatus.textContent = 'Choose a date, a start before the end, and a time zone first.';
      return;
    }
    if (from.getTime() < Date.now()) from = new Date(Math.ceil(Date.now() / 900000) * 900000);
    const people = [me.id, ...(picker?.picked().map((p) => p.id) ?? [])];
    suggestionStatus.textContent = 'Looking for free times…';
    try {
      const data = await api.post('/v1/find-times', {
        user_ids: people, duration_minutes: minutes,
        from: from.toISOString(), to: new Date(from.getTime() + 7 * 86400000).toISOString(),
      });
      /** @type {{starts_at: string, ends_at: string, available: string[]}[]} */
      const found = data.suggestions.slice(0, 5);
      suggestionStatus.textContent = found.length ? `${found.length} suggestions.` : 'No free time found in the week from this start.';
      suggestionList.replaceChildren(...found.map((s) => h('li', null, h('button', {
        type: 'button', class: 'suggestion',
        onclick: () => {
          const s0 = wall(new Date(s.starts_at), tz);
          day.value = isoDate(s0);
          start.value = isoTime(s0);
          end.value = isoTime(wall(new Date(s.ends_at), tz));
          suggestionStatus.textContent = `Chosen: ${rangeLabel(s.starts_at, s.ends_at, tz)}.`;
          suggestionList.replaceChildren();
          start.focus();
        },
      }, rangeLabel(s.starts_at, s.ends_at, tz), h('span', { class: 'muted' }, ` · ${s.available.length} of ${people.length} free`)))));
    } catch (error) {
      suggestionStatus.textContent = `No suggestions: ${error instanceof Error ? error.message : error}`;
    }
  }

  const form = h('form', { class: 'card', novalidate: true },
    h('h1', null, existing ? `Edit “${existing.title}”` : 'New meeting'),
    formError(),
    field('Title', title, { name: 'title' }),
    h('div', { class: 'row' },
      field('Date', day, { name: 'date' }),
      field('Starts', start, { name: 'start' }),
      field('Ends', end, { name: 'end' })),
    field('Time zone', zone, { name: 'time_zone', hint: 'The date and times above are in this zone.' }),
    h('datalist', { id: 'zones-form' }, zoneNames().map((z) => h('option', { value: z }))),
    field('Location', location, { name: 'location' }),
    field('Description', description, { name: 'description' }),
    picker?.element,
    picker ? suggestions : null,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, existing ? 'Save changes' : 'Schedule'),
      h('a', { class: 'button', href: existing ? `#/meetings/${existing.id}` : '#/' }, 'Cancel')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type=submit]'));
    submit.disabled = true;
    try {
      const tz = zone.value.trim();
      let startsAt;
      let endsAt;
      try {
        startsAt = zonedToUtc(day.value, start.value, tz);
        endsAt = zonedToUtc(day.value, end.value, tz);
        if (Number.isNaN(startsAt.getTime()) || Number.isNaN(endsAt.getTime())) throw new Error('bad');
      } catch {
        showError(form, new api.ApiError(422, { detail: 'Check the date, times and zone.', errors: [
          { field: 'date', message: day.value ? '' : 'Choose a date.' },
          { field: 'time_zone', message: 'Choose a time zone from the list (for example Europe/Berlin).' },
        ].filter((e) => e.message) }));
        return;
      }
      /** @type {any} */
      const body = {
        title: title.value.trim(),
        starts_at: startsAt.toISOString(),
        ends_at: endsAt.toISOString(),
        time_zone: tz,
        location: location.value.trim() || null,
        description: description.value.trim() || null,
      };
      if (existing) {
        // Only what changed: an unchanged field is no edit (and no conflict).
        for (const key of Object.keys(body)) {
          const before = existing[key] ?? null;
          const same = key.endsWith('_at') ? Date.parse(before) === Date.parse(body[key]) : before === body[key];
          if (same) delete body[key];
        }
        await api.patch(`/v1/meetings/${existing.id}`, body, { ifMatch: existing.version });
        location_(`#/meetings/${existing.id}`);
      } else {
        if (!body.location) delete body.location;
        if (!body.description) delete body.description;
        body.attendees = picker?.picked().map((p) => ({ user_id: p.id })) ?? [];
        const created = await api.post('/v1/meetings', body);
        location_(`#/meetings/${created.id}`);
      }
    } catch (error) {
      showError(form, error, ALIASES);
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(form);
  title.focus();
}

/** @param {string} hash */
function location_(hash) {
  window.location.hash = hash;
}
