// @ts-check
/**
 * A meeting: details, attendees and their responses, respond / cancel / start / end, invite
 * and remove attendees (organizer), live chat and who is here. With `occurrence` (its original
 * start) the page shows that one occurrence of a series: its times, the answers to it, and the
 * actions on it alone. Follows `meeting:<id>`: events refresh the details and append chat;
 * after a reconnect the subscription resumes where it stopped, a `reset` refetches.
 */

import { h, replace, toast } from '../dom.js';
import * as api from '../api.js';
import * as live from '../live.js';
import { rangeLabel, timeLabel } from '../time.js';
import { formError, showError } from '../forms.js';
import { attendeePicker } from './picker.js';
import { answerTo, moveForm, occurrenceOf, occurrencePath } from './occurrence.js';

/**
 * @typedef {{user_id: string, display_name: string, optional: boolean, response: string, occurrence_responses?: Record<string, string>}} Attendee
 * @typedef {{id: string, title: string, description?: string | null, organizer: {id: string, display_name: string}, starts_at: string, ends_at: string, time_zone: string, location?: string | null, status: string, attendees: Attendee[], version: number, recurrence?: {rrule: string} | null, occurrences?: {occurrence: string, starts_at: string, ends_at: string, cancelled: boolean}[]}} Meeting
 * @typedef {{message_id: string, author_id: string, text: string, posted_at: string}} Message
 */

const RESPONSE_LABELS = /** @type {Record<string, string>} */ ({
  accepted: 'Accepted', declined: 'Declined', tentative: 'Maybe', needs_action: 'Not answered', pending: 'Not answered',
});

/**
 * @param {HTMLElement} main
 * @param {{me: {id: string, time_zone: string}}} context
 * @param {string} meetingId
 * @param {string | null} [occurrenceKey] one occurrence of a series (its original start)
 * @returns {() => void}
 */
export function meetingPage(main, { me }, meetingId, occurrenceKey = null) {
  const zone = me.time_zone;
  /** @type {Meeting | null} */
  let meeting = null;
  /** @type {Map<string, Message>} */
  const messages = new Map();
  /** @type {Set<string>} */
  let present = new Set();
  let disposed = false;
  let historyLoaded = false;

  const details = h('section', { class: 'card', 'aria-labelledby': 'meeting-title' }, h('p', { role: 'status' }, 'Loading…'));
  const presence = h('ul', { class: 'presence', 'aria-label': 'Here now' });
  const chatLog = h('ol', { class: 'chat-log', 'aria-label': 'Messages', 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: '0' });
  const chatInput = h('textarea', { id: 'chat-input', rows: 2, maxlength: 4000, required: true, 'aria-describedby': 'chat-input-error' });
  const chatForm = h('form', { class: 'chat-form', novalidate: true },
    formError(),
    h('label', { for: 'chat-input' }, 'Message'),
    chatInput,
    h('p', { class: 'error', id: 'chat-input-error', 'data-error-for': 'text' }),
    h('button', { type: 'submit', class: 'primary' }, 'Send'));
  const chat = h('section', { class: 'card chat', 'aria-labelledby': 'chat-title' },
    h('h2', { id: 'chat-title' }, 'Chat'),
    h('h3', { class: 'small' }, 'Here now'),
    presence,
    chatLog,
    chatForm);
  // The organizer's invite box lives outside the re-rendered details, so a live update does
  // not wipe what is being typed.
  /** @type {string[]} */
  const notInvitable = [];
  const invite = attendeePicker({
    exclude: notInvitable,
    label: 'Invite someone',
    onPick: (person) => act(`${person.display_name} invited.`, () => api.post(`/v1/meetings/${meetingId}/attendees`, { user_id: person.id }, { ifMatch: meeting?.version })),
  });
  const manage = h('section', { class: 'card', 'aria-labelledby': 'invite-title', hidden: true },
    h('h2', { id: 'invite-title' }, 'Invite'), invite.element);
  main.replaceChildren(h('div', { class: 'meeting-layout' }, h('div', { class: 'meeting-main' }, details, manage), chat));

  /** @param {string} userId */
  function nameOf(userId) {
    if (userId === me.id) return 'You';
    if (!meeting) return 'Someone';
    if (meeting.organizer.id === userId) return meeting.organizer.display_name;
    return meeting.attendees.find((a) => a.user_id === userId)?.display_name ?? 'Someone';
  }

  /** @param {string} [upTo] a position the meeting must include: an event seen live */
  async function loadMeeting(upTo) {
    try {
      const fresh = /** @type {Meeting} */ (await api.get(`/v1/meetings/${meetingId}`, upTo ? { minPosition: upTo } : undefined));
      if (disposed) return;
      meeting = fresh;
      renderDetails();
      renderPresence();
      renderChat();
    } catch (error) {
      if (disposed) return;
      replace(details, h('h1', { id: 'meeting-title' }, 'Meeting'),
        h('p', { role: 'alert' }, error instanceof api.ApiError && error.status === 404 ? 'This meeting does not exist or is not visible to you.' : `Could not load it: ${error instanceof Error ? error.message : error}`),
        h('a', { href: '#/' }, 'Back to the week'));
    }
  }

  /** @param {string} [upTo] a position the history must include */
  async function loadMessages(upTo) {
    let cursor = '';
    try {
      for (let page = 0; page < 20; page += 1) {
        const data = await api.get(`/v1/meetings/${meetingId}/messages?limit=500${cursor ? `&after=${encodeURIComponent(cursor)}` : ''}`, upTo ? { minPosition: upTo } : undefined);
        for (const m of /** @type {Message[]} */ (data.items)) messages.set(m.message_id, m);
        if (!data.next_cursor) break;
        cursor = data.next_cursor;
      }
      if (!disposed) renderChat();
    } catch (error) {
      if (!disposed && !(error instanceof api.ApiError && error.status === 404)) toast('Could not load the chat history.');
    }
  }

  /** @param {string} label @param {() => Promise<any>} action */
  async function act(label, action) {
    const summary = /** @type {HTMLElement | null} */ (details.querySelector('.form-error'));
    if (!summary) return;
    summary.textContent = '';
    try {
      await action();
      toast(label);
      await loadMeeting();
    } catch (error) {
      if (error instanceof api.ApiError && error.conflict) {
        summary.replaceChildren('Changed meanwhile — ', h('button', { type: 'button', class: 'link', onclick: () => location.reload() }, 'reload'), '.');
      } else {
        summary.textContent = error instanceof Error ? error.message : String(error);
      }
      summary.focus();
    }
  }

  function renderDetails() {
    if (!meeting) return;
    const m = meeting;
    const isOrganizer = m.organizer.id === me.id;
    const mine = m.attendees.find((a) => a.user_id === me.id);
    const open = m.status !== 'cancelled' && m.status !== 'ended';
    const one = occurrenceKey && m.recurrence ? occurrenceOf(m, occurrenceKey) : null;
    const answer = (/** @type {Attendee} */ a) => (one ? answerTo(a, one.key) : a.response);
    const focused = document.activeElement && details.contains(document.activeElement) ? document.activeElement.getAttribute('data-action') : null;
    replace(details,
      h('h1', { id: 'meeting-title' }, m.title),
      h('p', { class: `status status-${m.status}` }, h('span', { class: 'visually-hidden' }, 'Status: '), m.status.replace('_', ' ')),
      one ? h('p', { class: 'occurrence-note' }, one.cancelled ? 'This occurrence is cancelled. ' : 'One occurrence of a repeating meeting. ',
        h('a', { href: `#/meetings/${m.id}` }, 'The whole series')) : null,
      h('dl', { class: 'facts' },
        h('dt', null, 'When'), h('dd', null, one ? rangeLabel(one.starts_at, one.ends_at, zone) : rangeLabel(m.starts_at, m.ends_at, zone), m.time_zone !== zone ? h('span', { class: 'muted' }, ` (scheduled in ${m.time_zone})`) : null),
        m.recurrence ? [h('dt', null, 'Repeats'), h('dd', null, m.recurrence.rrule)] : null,
        m.location ? [h('dt', null, 'Where'), h('dd', null, m.location)] : null,
        h('dt', null, 'Organizer'), h('dd', null, isOrganizer ? `${m.organizer.display_name} (you)` : m.organizer.display_name)),
      m.description ? h('p', { class: 'description' }, m.description) : null,
      h('p', { class: 'form-error', role: 'alert', tabindex: '-1' }),
      mine && open && !one?.cancelled ? h('fieldset', { class: 'respond' },
        h('legend', null, one ? 'Your answer for this occurrence' : 'Your answer'),
        ['accepted', 'tentative', 'declined'].map((response) => h('button', {
          type: 'button', 'data-action': `respond-${response}`, 'aria-pressed': String(answer(mine) === response),
          onclick: () => act('Answer sent.', () => api.post(`/v1/meetings/${m.id}/response`, one ? { response, occurrence: one.key } : { response })),
        }, { accepted: 'Accept', tentative: 'Maybe', declined: 'Decline' }[response]))) : null,
      isOrganizer && open && one ? h('div', { class: 'actions' },
        one.cancelled
          ? h('button', { type: 'button', 'data-action': 'restore-occurrence', onclick: () => void occurrenceChange('Occurrence back on.', { cancelled: false }) }, 'Restore this occurrence')
          : [
            h('button', { type: 'button', 'data-action': 'move-occurrence', 'aria-expanded': 'false', onclick: (/** @type {Event} */ e) => toggleMove(/** @type {HTMLElement} */ (e.currentTarget), m, one) }, 'Move this occurrence…'),
            h('button', { type: 'button', class: 'danger', 'data-action': 'cancel-occurrence', onclick: () => {
              if (confirm('Cancel this occurrence for everyone? The others stay.')) void occurrenceChange('Occurrence cancelled.', { cancelled: true });
            } }, 'Cancel this occurrence'),
          ],
        h('a', { class: 'button', href: `#/meetings/${m.id}/edit?from=${encodeURIComponent(one.key)}`, 'data-action': 'split' }, 'Change this and following…')) : null,
      isOrganizer && open ? h('div', { class: 'actions' },
        h('a', { class: 'button', href: `#/meetings/${m.id}/edit`, 'data-action': 'edit' }, m.recurrence ? 'Edit the series' : 'Edit'),
        m.status === 'scheduled' && !m.recurrence ? h('button', { type: 'button', 'data-action': 'start', onclick: () => act('Meeting started.', () => api.post(`/v1/meetings/${m.id}/start`)) }, 'Start') : null,
        m.status === 'in_progress' ? h('button', { type: 'button', 'data-action': 'end', onclick: () => act('Meeting ended.', () => api.post(`/v1/meetings/${m.id}/end`)) }, 'End') : null,
        h('button', { type: 'button', class: 'danger', 'data-action': 'cancel', onclick: () => {
          if (confirm(m.recurrence ? 'Cancel every occurrence of this meeting for everyone?' : 'Cancel this meeting for everyone?')) void act('Meeting cancelled.', () => api.post(`/v1/meetings/${m.id}/cancel`, {}));
        } }, m.recurrence ? 'Cancel the series' : 'Cancel meeting')) : null,
      h('h2', null, `Attendees (${m.attendees.length})`),
      m.attendees.length ? h('ul', { class: 'attendees' }, m.attendees.map((a) => h('li', { 'data-user-id': a.user_id },
        h('span', null, a.user_id === me.id ? `${a.display_name} (you)` : a.display_name, a.optional ? h('span', { class: 'muted' }, ' (optional)') : null),
        h('span', { class: `response response-${answer(a)}` }, RESPONSE_LABELS[answer(a)] ?? answer(a)),
        isOrganizer && open ? h('button', {
          type: 'button', class: 'link danger', 'data-action': `remove-${a.user_id}`, 'aria-label': `Remove ${a.display_name}`,
          onclick: () => act(`${a.display_name} removed.`, () => api.api('DELETE', `/v1/meetings/${m.id}/attendees/${a.user_id}`, undefined, { ifMatch: m.version })),
        }, 'Remove') : null))) : h('p', { class: 'muted' }, 'Nobody invited yet.'),
      h('a', { href: '#/' }, 'Back to the week'));
    if (focused) /** @type {HTMLElement | null} */ (details.querySelector(`[data-action="${focused}"]`))?.focus();
    notInvitable.splice(0, notInvitable.length, m.organizer.id, ...m.attendees.map((a) => a.user_id));
    manage.hidden = !(isOrganizer && open);
  }

  /** @param {string} label @param {{cancelled?: boolean}} change */
  function occurrenceChange(label, change) {
    if (!meeting || !occurrenceKey) return Promise.resolve();
    const { id, version } = meeting;
    return act(label, () => api.patch(`/v1/meetings/${id}/occurrences/${occurrencePath(occurrenceKey)}`, change, { ifMatch: version }));
  }

  /**
   * Opens (or closes) the form moving this occurrence, below the button.
   * @param {HTMLElement} button @param {Meeting} m @param {import('./occurrence.js').Occurrence} one
   */
  function toggleMove(button, m, one) {
    const shown = details.querySelector('.move-occurrence');
    if (shown) {
      shown.remove();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    const form = moveForm({
      meetingId: m.id, version: m.version, zone: m.time_zone, occurrence: one,
      done: () => { toast('Occurrence moved.'); void loadMeeting(); },
    });
    button.closest('.actions')?.after(form);
    button.setAttribute('aria-expanded', 'true');
    /** @type {HTMLElement | null} */ (form.querySelector('input'))?.focus();
  }

  function renderPresence() {
    presence.replaceChildren(...[...present].map((id) => h('li', { 'data-user-id': id }, nameOf(id))));
    if (present.size === 0) presence.appendChild(h('li', { class: 'muted' }, 'Nobody'));
  }

  function renderChat() {
    const atBottom = chatLog.scrollHeight - chatLog.scrollTop - chatLog.clientHeight < 40;
    const sorted = [...messages.values()].sort((a, b) => Date.parse(a.posted_at) - Date.parse(b.posted_at));
    chatLog.replaceChildren(...sorted.map((m) => h('li', { class: m.author_id === me.id ? 'mine' : '', 'data-message-id': m.message_id },
      h('span', { class: 'author' }, nameOf(m.author_id)), ' ',
      h('time', { datetime: m.posted_at }, timeLabel(m.posted_at, zone)),
      h('p', null, m.text))));
    if (sorted.length === 0) chatLog.appendChild(h('li', { class: 'muted' }, 'No messages yet.'));
    if (atBottom) chatLog.scrollTop = chatLog.scrollHeight;
  }

  chatForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = chatInput.value.trim();
    if (!text) return;
    const button = /** @type {HTMLButtonElement} */ (chatForm.querySelector('button'));
    button.disabled = true;
    try {
      const result = await api.post(`/v1/meetings/${meetingId}/messages`, { text });
      chatInput.value = '';
      if (result.message_id && !messages.has(result.message_id)) {
        messages.set(result.message_id, { message_id: result.message_id, author_id: me.id, text, posted_at: new Date().toISOString() });
        renderChat();
      }
    } catch (error) {
      showError(chatForm, error, { text: 'text' });
    } finally {
      button.disabled = false;
      chatInput.focus();
    }
  });
  chatInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      chatForm.requestSubmit();
    }
  });

  /** @type {any} */
  let refetch = null;
  const stop = live.subscribe(`meeting:${meetingId}`, (frame) => {
    if (frame.type === 'subscribed' && !historyLoaded) {
      // First subscription: history up to its position, live events after (deduplicated by id);
      // the meeting read again up to it too (events before it are not delivered live).
      historyLoaded = true;
      void loadMessages(frame.position);
      if (frame.position) void loadMeeting(frame.position);
    } else if (frame.type === 'event' && frame.event) {
      const ev = frame.event;
      const data = ev.data?.[ev.type] ?? ev.data ?? {};
      if (ev.type === 'ChatMessagePosted') {
        messages.set(data.message_id, { message_id: data.message_id, author_id: data.author_id, text: data.text, posted_at: data.at });
        renderChat();
      } else {
        // Live delivery can be ahead of the query API: the read waits for this event.
        const upTo = frame.position;
        clearTimeout(refetch);
        refetch = setTimeout(() => loadMeeting(upTo), 50);
      }
    } else if (frame.type === 'reset') {
      void loadMeeting();
      void loadMessages();
    } else if (frame.type === 'presence') {
      present = new Set(frame.users ?? []);
      renderPresence();
    } else if (frame.type === 'join' && frame.user_id) {
      present.add(frame.user_id);
      renderPresence();
    } else if (frame.type === 'leave' && frame.user_id) {
      present.delete(frame.user_id);
      renderPresence();
    } else if (frame.type === 'error') {
      toast(frame.code === 'forbidden' ? 'You are no longer part of this meeting.' : `Live updates stopped: ${frame.message ?? frame.code}`);
    }
  });
  void loadMeeting();
  void loadMessages();
  return () => { disposed = true; stop(); clearTimeout(refetch); };
}
