// @ts-check
/**
 * The week view of `/v1/me/agenda` in the user's time zone: seven days from Monday, a today
 * marker, overlapping meetings side by side; follows `user:me` so changes appear live.
 */

import { h, replace } from '../dom.js';
import * as api from '../api.js';
import * as live from '../live.js';
import { addDays, dayLabel, mondayOf, timeLabel, today, zonedToUtc } from '../time.js';

/**
 * @typedef {{meeting_id: string, starts_at: string, ends_at: string, title: string, status: string, my_response?: string | null, occurrence?: string}} AgendaItem
 * @typedef {{item: AgendaItem, top: number, height: number, column: number, columns: number}} Placed
 */

/**
 * Lays out one day's meetings: each overlapping cluster shares the width, each meeting in the
 * first free column. `top`/`height` are fractions of the day.
 * @param {AgendaItem[]} items
 * @param {number} dayStart ms
 * @param {number} dayEnd ms
 * @returns {Placed[]}
 */
export function layoutDay(items, dayStart, dayEnd) {
  const span = dayEnd - dayStart;
  const sorted = [...items].sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at) || Date.parse(b.ends_at) - Date.parse(a.ends_at));
  /** @type {Placed[]} */
  const placed = [];
  /** @type {Placed[]} */
  let cluster = [];
  let clusterEnd = -Infinity;
  /** @type {number[]} end time of each column in the cluster */
  let columnEnds = [];
  const close = () => {
    for (const p of cluster) p.columns = columnEnds.length;
    cluster = [];
    columnEnds = [];
  };
  for (const item of sorted) {
    const start = Math.max(Date.parse(item.starts_at), dayStart);
    const end = Math.min(Math.max(Date.parse(item.ends_at), start + 15 * 60000), dayEnd);
    if (start >= clusterEnd) close();
    let column = columnEnds.findIndex((columnEnd) => columnEnd <= start);
    if (column === -1) {
      column = columnEnds.length;
      columnEnds.push(end);
    } else {
      columnEnds[column] = end;
    }
    clusterEnd = cluster.length ? Math.max(clusterEnd, end) : end;
    /** @type {Placed} */
    const p = { item, top: (start - dayStart) / span, height: Math.max((end - start) / span, 0.012), column, columns: 1 };
    cluster.push(p);
    placed.push(p);
  }
  close();
  return placed;
}

const RESPONSES = /** @type {Record<string, string>} */ ({ accepted: 'accepted', declined: 'declined', tentative: 'maybe', needs_action: 'not answered', pending: 'not answered' });

/**
 * @param {HTMLElement} main
 * @param {{me: {time_zone: string}}} context
 * @param {string | undefined} dateParam a day in the week to show, `YYYY-MM-DD`
 * @returns {() => void} cleanup
 */
export function weekView(main, { me }, dateParam) {
  const zone = me.time_zone;
  const todayDate = today(zone);
  const monday = mondayOf(dateParam && /^\d{4}-\d{2}-\d{2}$/.test(dateParam) ? dateParam : todayDate);
  const days = Array.from({ length: 7 }, (_, i) => addDays(monday, i));
  const bounds = [...days, addDays(monday, 7)].map((d) => zonedToUtc(d, '00:00', zone).getTime());
  const title = `Week of ${dayLabel(monday)}`;

  const grid = h('div', { class: 'week', 'aria-busy': 'true' });
  const status = h('p', { class: 'muted', role: 'status' });
  main.replaceChildren(
    h('div', { class: 'toolbar' },
      h('h1', null, title, h('span', { class: 'visually-hidden' }, ` (${zone})`)),
      h('nav', { class: 'week-nav', 'aria-label': 'Weeks' },
        h('a', { class: 'button', href: `#/week/${addDays(monday, -7)}` }, h('span', { 'aria-hidden': 'true' }, '← '), 'Previous week'),
        h('a', { class: 'button', href: `#/week/${todayDate}`, 'aria-current': days.includes(todayDate) ? 'true' : null }, 'This week'),
        h('a', { class: 'button', href: `#/week/${addDays(monday, 7)}` }, 'Next week', h('span', { 'aria-hidden': 'true' }, ' →'))),
      h('a', { class: 'button primary', href: `#/new?date=${days.includes(todayDate) ? todayDate : monday}` }, 'New meeting')),
    h('p', { class: 'muted zone-note' }, `Times in ${zone}.`),
    status,
    grid);

  let generation = 0;
  /** @param {string} [upTo] a position the answer must include: one seen live */
  async function load(upTo) {
    const mine = ++generation;
    try {
      const from = new Date(bounds[0]).toISOString();
      const to = new Date(bounds[7]).toISOString();
      const data = await api.get(`/v1/me/agenda?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, upTo ? { minPosition: upTo } : undefined);
      if (mine !== generation) return;
      render(/** @type {AgendaItem[]} */ (data.items));
      status.textContent = '';
    } catch (error) {
      if (mine !== generation) return;
      status.textContent = `Could not load the week: ${error instanceof Error ? error.message : error}`;
    }
  }

  /** @param {AgendaItem[]} items */
  function render(items) {
    const started = performance.now();
    const now = Date.now();
    const columns = days.map((date, i) => {
      const dayItems = items.filter((it) => Date.parse(it.starts_at) < bounds[i + 1] && Date.parse(it.ends_at) > bounds[i]);
      const placed = layoutDay(dayItems, bounds[i], bounds[i + 1]);
      const isToday = date === todayDate;
      const body = h('ol', { class: 'day-body' },
        placed.map((p) => {
          const cancelled = p.item.status === 'cancelled';
          const response = p.item.my_response ? RESPONSES[p.item.my_response] ?? p.item.my_response : null;
          const link = h('a', {
            class: `event${cancelled ? ' cancelled' : ''}${p.item.my_response === 'declined' ? ' declined' : ''}`,
            href: `#/meetings/${p.item.meeting_id}${p.item.occurrence ? `?occurrence=${encodeURIComponent(p.item.occurrence)}` : ''}`,
            'data-meeting-id': p.item.meeting_id,
          },
          h('span', { class: 'event-time' }, `${timeLabel(p.item.starts_at, zone)}–${timeLabel(p.item.ends_at, zone)}`),
          ' ',
          h('span', { class: 'event-title' }, p.item.title),
          cancelled ? h('span', { class: 'tag' }, ' (cancelled)') : null,
          response ? h('span', { class: 'visually-hidden' }, `, you: ${response}`) : null);
          const li = h('li', { class: 'slot' }, link);
          li.style.setProperty('--top', String(p.top));
          li.style.setProperty('--height', String(p.height));
          li.style.setProperty('--col', String(p.column));
          li.style.setProperty('--cols', String(p.columns));
          return li;
        }));
      if (isToday && now >= bounds[i] && now < bounds[i + 1]) {
        const marker = h('div', { class: 'now', 'aria-hidden': 'true' });
        marker.style.setProperty('--top', String((now - bounds[i]) / (bounds[i + 1] - bounds[i])));
        body.appendChild(marker);
      }
      return h('section', { class: `day${isToday ? ' today' : ''}`, 'aria-labelledby': `day-${date}`, 'data-date': date },
        h('h2', { id: `day-${date}` }, dayLabel(date), isToday ? h('span', { class: 'today-badge' }, ' today') : null),
        dayItems.length ? null : h('p', { class: 'empty' }, 'No meetings'),
        body);
    });
    const hours = h('div', { class: 'hours', 'aria-hidden': 'true' },
      Array.from({ length: 24 }, (_, hr) => h('span', null, `${String(hr).padStart(2, '0')}:00`)));
    replace(grid, hours, columns);
    grid.setAttribute('aria-busy', 'false');
    grid.dataset.renderMs = (performance.now() - started).toFixed(1);
    grid.dataset.count = String(items.length);
  }

  void load();
  /** @type {any} */
  let timer = null;
  // The live feed and the query API are fed separately, so an event can arrive before the
  // agenda has it: a read prompted by one waits for it (`X-Min-Position`). `subscribed` gives
  // the position live delivery starts after; events before it that the first read missed are
  // caught by reading up to it once more.
  const stop = live.subscribe('user:me', (frame) => {
    if (frame.type === 'event' || (frame.type === 'subscribed' && frame.position) || frame.type === 'reset') {
      const upTo = frame.position;
      clearTimeout(timer);
      timer = setTimeout(() => load(upTo), 100);
    }
  });
  // Keep the today marker moving.
  const tick = setInterval(() => { if (todayDate !== today(zone)) void load(); }, 60000);
  return () => { stop(); clearInterval(tick); clearTimeout(timer); generation += 1; };
}

