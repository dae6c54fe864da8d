// @ts-check
/** The profile: name and time zone, password, and the calendar feed address to subscribe to. */

import { h, toast } from '../dom.js';
import * as api from '../api.js';
import { field, formError, showError } from '../forms.js';
import { zoneNames } from '../time.js';

/**
 * @param {HTMLElement} main
 * @param {{me: {id: string, display_name: string, time_zone: string}, reloadMe: () => Promise<void>}} context
 */
export async function profilePage(main, { reloadMe }) {
  const me = await api.get('/v1/users/me');
  const name = h('input', { type: 'text', autocomplete: 'name', required: true, value: me.display_name });
  const zone = h('input', { type: 'text', list: 'zones-profile', autocomplete: 'off', required: true, value: me.time_zone });
  const details = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'profile-title' },
    h('h1', { id: 'profile-title' }, 'Profile'),
    h('p', { class: 'muted' }, me.email),
    formError(),
    field('Name', name, { name: 'display_name' }),
    field('Time zone', zone, { name: 'time_zone', hint: 'Your week is shown in this zone.' }),
    h('datalist', { id: 'zones-profile' }, zoneNames().map((z) => h('option', { value: z }))),
    h('button', { type: 'submit', class: 'primary' }, 'Save profile'));
  details.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api.patch('/v1/users/me', { display_name: name.value.trim(), time_zone: zone.value.trim() }, { ifMatch: me.version });
      await reloadMe();
      toast('Profile saved.');
      location.hash = '#/';
    } catch (error) {
      showError(details, error);
    }
  });

  const current = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const fresh = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const password = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title' }, 'Password'),
    h('p', { class: 'hint' }, 'Changing it signs you out everywhere, here too.'),
    formError(),
    field('Current password', current, { name: 'current_password' }),
    field('New password', fresh, { name: 'new_password', hint: 'At least 8 characters; not a common password.' }),
    h('button', { type: 'submit' }, 'Change password'));
  password.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api.post('/v1/users/me/password', { current_password: current.value, new_password: fresh.value });
      toast('Password changed. Please sign in again.');
      await api.logout().catch(() => {});
    } catch (error) {
      showError(password, error);
    }
  });

  const feedUrl = h('input', { type: 'text', readonly: true, id: 'feed-url', 'aria-describedby': 'feed-hint', value: '' });
  const feed = h('section', { class: 'card', 'aria-labelledby': 'feed-title' },
    h('h2', { id: 'feed-title' }, 'Calendar feed'),
    h('p', { class: 'hint', id: 'feed-hint' }, 'Subscribe to this address in Google Calendar, Outlook or Apple Calendar to see your meetings there. Keep it secret: anyone with it can read your calendar.'),
    h('div', { class: 'field' }, h('label', { for: 'feed-url' }, 'Feed address'), feedUrl),
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: async () => {
        feedUrl.select();
        try {
          await navigator.clipboard.writeText(feedUrl.value);
          toast('Address copied.');
        } catch {
          toast('Select the address and copy it.');
        }
      } }, 'Copy address'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm('Make a new address? The old one stops working.')) return;
        try {
          feedUrl.value = (await api.post('/v1/calendar/feed/rotate')).url;
          toast('New address made; the old one no longer works.');
        } catch (error) {
          toast(error instanceof Error ? error.message : String(error));
        }
      } }, 'Make a new address')));

  main.replaceChildren(h('div', { class: 'stack' }, details, password, feed));
  name.focus();
  try {
    feedUrl.value = (await api.get('/v1/calendar/feed')).url;
  } catch (error) {
    feedUrl.value = '';
    feedUrl.placeholder = `Not available: ${error instanceof Error ? error.message : error}`;
  }
}
