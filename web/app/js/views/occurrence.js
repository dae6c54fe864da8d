// @ts-check
/**
 * One occurrence of a repeating meeting, as the meeting page shows it: its own times (moved or
 * as the rule puts it), whether it is cancelled, each attendee's answer to it, and the
 * organizer's actions on it alone (move, cancel, restore) or on it and the ones after it (the
 * split, in the edit form).
 */

import { h } from '../dom.js';
import * as api from '../api.js';
import { field, formError, showError } from '../forms.js';
import { isoDate, isoTime, wall, zonedToUtc } from '../time.js';

/**
 * @typedef {{occurrence: string, starts_at: string, ends_at: string, cancelled: boolean}} Changed
 * @typedef {{starts_at: string, ends_at: string, occurrences?: Changed[], attendees: {response: string, occurrence_responses?: Record<string, string>}[]}} Series
 * @typedef {{key: string, starts_at: string, ends_at: string, cancelled: boolean}} Occurrence
 */

/** Same instant (the API and the agenda may spell a time differently). @param {string} a @param {string} b */
const same = (a, b) => Date.parse(a) === Date.parse(b);

/**
 * The occurrence of `series` that starts at `key` by its rule (its original start).
 * @param {Series} series
 * @param {string} key
 * @returns {Occurrence}
 */
export function occurrenceOf(series, key) {
  const changed = series.occurrences?.find((o) => same(o.occurrence, key));
  const length = Date.parse(series.ends_at) - Date.parse(series.starts_at);
  return {
    key,
    starts_at: changed?.starts_at ?? key,
    ends_at: changed?.ends_at ?? new Date(Date.parse(key) + length).toISOString(),
    cancelled: changed?.cancelled ?? false,
  };
}

/**
 * An attendee's answer to this occurrence: its own answer, else the one to the series.
 * @param {{response: string, occurrence_responses?: Record<string, string>}} attendee
 * @param {string} key
 */
export function answerTo(attendee, key) {
  const own = Object.entries(attendee.occurrence_responses ?? {}).find(([at]) => same(at, key));
  return own ? own[1] : attendee.response;
}

/** The occurrence's part of a path (its original start, percent-encoded). @param {string} key */
export const occurrencePath = (key) => encodeURIComponent(new Date(Date.parse(key)).toISOString().replace('.000Z', 'Z'));

/**
 * The organizer's form moving one occurrence: date, start and end in the meeting's zone.
 * @param {{meetingId: string, version: number, zone: string, occurrence: Occurrence, done: () => void}} options
 */
export function moveForm({ meetingId, version, zone, occurrence, done }) {
  const startWall = wall(new Date(occurrence.starts_at), zone);
  const day = h('input', { type: 'date', required: true, value: isoDate(startWall) });
  const start = h('input', { type: 'time', required: true, value: isoTime(startWall) });
  const end = h('input', { type: 'time', required: true, value: isoTime(wall(new Date(occurrence.ends_at), zone)) });
  const form = h('form', { class: 'move-occurrence', novalidate: true, 'aria-label': 'Move this occurrence' },
    formError(),
    h('div', { class: 'row' },
      field('New date', day, { name: 'date' }),
      field('New start', start, { name: 'starts_at' }),
      field('New end', end, { name: 'ends_at' })),
    h('p', { class: 'hint' }, `Times in ${zone}. The other occurrences stay as they are.`),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Move this occurrence')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const startsAt = zonedToUtc(day.value, start.value, zone);
      const endsAt = zonedToUtc(day.value, end.value, zone);
      await api.patch(`/v1/meetings/${meetingId}/occurrences/${occurrencePath(occurrence.key)}`,
        { starts_at: startsAt.toISOString(), ends_at: endsAt.toISOString() }, { ifMatch: version });
      done();
    } catch (error) {
      showError(form, error instanceof RangeError ? new api.ApiError(422, { detail: 'Choose a date and times.' }) : error);
    }
  });
  return form;
}
