// @ts-check
/**
 * Create a meeting, or edit one's details (organizer; `If-Match` its version: a conflict says
 * so). With `from` (an occurrence's original start) the edit changes that occurrence of a series
 * and the ones after it: the series is split there ("this and following").
 */

import { h } from '../dom.js';
import * as api from '../api.js';
import { field, formError, showError } from '../forms.js';
import { isoDate, isoTime, rangeLabel, wall, zoneNames, zonedToUtc } from '../time.js';
import { attendeePicker } from './picker.js';
import { occurrenceOf, occurrencePath } from './occurrence.js';

const ALIASES = {
  starts_at: 'start', ends_at: 'end', 'attendees[].user_id': 'attendees',
  recurrence: 'repeats', 'recurrence.rrule': 'repeats',
};

/** The repeat choices offered, as the start of an RFC 5545 rule (the zone is the meeting's). */
const REPEATS = [
  ['', 'Does not repeat'],
  ['FREQ=DAILY', 'Every day'],
  ['FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR', 'Every weekday (Monday to Friday)'],
  ['FREQ=WEEKLY', 'Every week on the same day'],
  ['FREQ=WEEKLY;INTERVAL=2', 'Every two weeks on the same day'],
  ['FREQ=MONTHLY', 'Every month on the same date'],
];

/**
 * Splits a stored rule into the offered repeat (or the rule itself, kept as it is) and its end.
 * @param {string | undefined} rrule
 */
function parseRule(rrule) {
  if (!rrule) return { repeat: '', count: '', until: '' };
  const parts = rrule.split(';');
  const count = parts.find((p) => p.startsWith('COUNT='))?.slice(6) ?? '';
  const untilRaw = parts.find((p) => p.startsWith('UNTIL='))?.slice(6) ?? '';
  const until = untilRaw ? `${untilRaw.slice(0, 4)}-${untilRaw.slice(4, 6)}-${untilRaw.slice(6, 8)}` : '';
  const repeat = parts.filter((p) => !p.startsWith('COUNT=') && !p.startsWith('UNTIL=')).join(';');
  return { repeat, count, until };
}

/**
 * @param {HTMLElement} main
 * @param {{me: {id: string, time_zone: string}}} context
 * @param {{date?: string, meetingId?: string, from?: string}} options
 */
export async function meetingForm(main, { me }, { date, meetingId, from }) {
  /** @type {any} */
  let existing = null;
  if (meetingId) {
    main.replaceChildren(h('p', { role: 'status' }, 'Loading…'));
    existing = await api.get(`/v1/meetings/${meetingId}`);
  }
  // Splitting: the form starts from that occurrence's own times.
  const split = from && existing?.recurrence ? occurrenceOf(existing, from) : null;
  const base = split ?? existing;
  const zoneValue = existing?.time_zone ?? me.time_zone;
  const startWall = base ? wall(new Date(base.starts_at), zoneValue) : null;
  const endWall = base ? wall(new Date(base.ends_at), zoneValue) : null;

  const title = h('input', { type: 'text', required: true, maxlength: 200, value: existing?.title ?? '' });
  const day = h('input', { type: 'date', required: true, value: startWall ? isoDate(startWall) : (date ?? isoDate(wall(new Date(), zoneValue))) });
  const start = h('input', { type: 'time', required: true, value: startWall ? isoTime(startWall) : '10:00' });
  const end = h('input', { type: 'time', required: true, value: endWall ? isoTime(endWall) : '11:00' });
  const zone = h('input', { type: 'text', list: 'zones-form', required: true, autocomplete: 'off', value: zoneValue });
  const location = h('input', { type: 'text', maxlength: 500, value: existing?.location ?? '' });
  const description = h('textarea', { rows: 4, maxlength: 10000 });
  description.value = existing?.description ?? '';
  const picker = existing ? null : attendeePicker({ exclude: [me.id] });

  // Repeats: a rule from the list (a stored rule the list does not offer stays as it is),
  // ending never, after a number of times, or on a date (inclusive, in the meeting's zone).
  const rule = parseRule(existing?.recurrence?.rrule);
  const offered = REPEATS.some(([value]) => value === rule.repeat);
  const repeats = h('select', null,
    ...REPEATS.map(([value, label]) => h('option', { value, selected: value === rule.repeat }, label)),
    offered ? null : h('option', { value: rule.repeat, selected: true }, `As set elsewhere (${rule.repeat})`));
  const times = h('input', { type: 'number', min: 1, max: 999, inputmode: 'numeric', value: rule.count });
  const until = h('input', { type: 'date', value: rule.until });
  const ends = h('fieldset', { class: 'row repeat-end' },
    h('legend', null, 'Ends (leave both empty: never)'),
    field('After this many times', times, { name: 'count' }),
    field('Last day', until, { name: 'until' }));
  const showEnds = () => { ends.hidden = !repeats.value; };
  repeats.addEventListener('change', showEnds);
  showEnds();

  /** The `recurrence` of the form: `null` when it does not repeat. */
  function recurrence() {
    if (!repeats.value) return null;
    let rrule = repeats.value;
    if (times.value) rrule += `;COUNT=${Number(times.value)}`;
    else if (until.value) {
      // The end of that day in the meeting's zone, as UTC (RFC 5545 with a zoned start).
      const end = zonedToUtc(until.value, '23:59', zone.value.trim());
      rrule += `;UNTIL=${end.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')}`;
    }
    return { rrule };
  }
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
    h('h1', null, split ? `Change “${existing.title}” from this occurrence on` : existing ? `Edit “${existing.title}”` : 'New meeting'),
    split ? h('p', { class: 'hint' }, 'The occurrences before this one stay as they are; this one and the ones after it become a series of their own with these details.') : null,
    formError(),
    field('Title', title, { name: 'title' }),
    h('div', { class: 'row' },
      field('Date', day, { name: 'date' }),
      field('Starts', start, { name: 'start' }),
      field('Ends', end, { name: 'end' })),
    field('Time zone', zone, { name: 'time_zone', hint: 'The date and times above are in this zone.' }),
    h('datalist', { id: 'zones-form' }, zoneNames().map((z) => h('option', { value: z }))),
    field('Repeats', repeats, { name: 'repeats' }),
    ends,
    field('Location', location, { name: 'location' }),
    field('Description', description, { name: 'description' }),
    picker?.element,
    picker ? suggestions : null,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, split ? 'Change this and following' : existing ? 'Save changes' : 'Schedule'),
      h('a', {
        class: 'button',
        href: split ? `#/meetings/${existing.id}?occurrence=${encodeURIComponent(split.key)}` : existing ? `#/meetings/${existing.id}` : '#/',
      }, 'Cancel')));

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
        recurrence: recurrence(),
      };
      if (existing) {
        // Only what changed: an unchanged field is no edit (and no conflict).
        for (const key of Object.keys(body)) {
          const before = (split && key.endsWith('_at') ? split[/** @type {'starts_at' | 'ends_at'} */ (key)] : existing[key]) ?? null;
          const same = key.endsWith('_at')
            ? Date.parse(before) === Date.parse(body[key])
            : key === 'recurrence'
              ? (before?.rrule ?? null) === (body[key]?.rrule ?? null)
              : before === body[key];
          if (same) delete body[key];
        }
        if (split) {
          // A new time moves the whole new series: send both ends (the API wants a pair).
          if ('starts_at' in body || 'ends_at' in body) Object.assign(body, { starts_at: startsAt.toISOString(), ends_at: endsAt.toISOString() });
          const created = await api.post(`/v1/meetings/${existing.id}/occurrences/${occurrencePath(split.key)}/split`, body, { ifMatch: existing.version });
          location_(`#/meetings/${created.id}`);
        } else {
          await api.patch(`/v1/meetings/${existing.id}`, body, { ifMatch: existing.version });
          location_(`#/meetings/${existing.id}`);
        }
      } else {
        if (!body.location) delete body.location;
        if (!body.description) delete body.description;
        if (!body.recurrence) delete body.recurrence;
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
