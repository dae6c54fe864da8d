// @ts-check
/**
 * Attendee picker: a combobox searching `/v1/users?q=` as one types (ARIA 1.2 combobox with
 * a listbox; arrows move, Enter picks, Escape closes), the picked people as removable chips.
 */

import { h, uid } from '../dom.js';
import * as api from '../api.js';

/** @typedef {{id: string, display_name: string, email?: string}} Person */

/**
 * With `onPick` each chosen person is handed over at once (no chips): the meeting page invites
 * them. `exclude` is read at each search, so its owner may update it.
 * @param {{exclude: string[], initial?: Person[], onChange?: (people: Person[]) => void, onPick?: (person: Person) => Promise<void> | void, label?: string}} options
 */
export function attendeePicker({ exclude, initial = [], onChange, onPick, label = 'Invite people' }) {
  /** @type {Person[]} */
  const picked = [...initial];
  const id = uid('attendees');
  const listId = `${id}-list`;
  const input = h('input', {
    id, type: 'text', role: 'combobox', autocomplete: 'off', 'aria-autocomplete': 'list',
    'aria-expanded': 'false', 'aria-controls': listId, 'aria-describedby': `${id}-hint ${id}-error`,
  });
  const list = h('ul', { id: listId, role: 'listbox', class: 'listbox', 'aria-label': 'Matching people', hidden: true });
  const chips = h('ul', { class: 'chips', 'aria-label': 'Invited' });
  const status = h('p', { class: 'visually-hidden', role: 'status' });
  /** @type {Person[]} */
  let options = [];
  let active = -1;
  let generation = 0;
  /** @type {any} */
  let timer = null;

  function renderChips() {
    chips.replaceChildren(...picked.map((person) => h('li', { class: 'chip' },
      h('span', null, person.display_name),
      h('button', {
        type: 'button', class: 'chip-remove', 'aria-label': `Remove ${person.display_name}`,
        onclick: () => {
          picked.splice(picked.indexOf(person), 1);
          renderChips();
          onChange?.(picked);
          input.focus();
        },
      }, '×'))));
  }

  function close() {
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  }

  /** @param {number} index */
  function setActive(index) {
    active = index;
    for (const [i, li] of [...list.children].entries()) li.setAttribute('aria-selected', String(i === index));
    if (index >= 0) input.setAttribute('aria-activedescendant', `${listId}-${index}`);
    else input.removeAttribute('aria-activedescendant');
  }

  /** @param {Person} person */
  function pick(person) {
    if (onPick) {
      input.value = '';
      close();
      void onPick(person);
      return;
    }
    if (!picked.some((p) => p.id === person.id)) picked.push(person);
    renderChips();
    onChange?.(picked);
    input.value = '';
    close();
    status.textContent = `${person.display_name} invited.`;
    input.focus();
  }

  async function search() {
    const q = input.value.trim();
    const mine = ++generation;
    if (!q) {
      close();
      return;
    }
    try {
      const data = await api.get(`/v1/users?q=${encodeURIComponent(q)}&limit=8`);
      if (mine !== generation) return;
      options = /** @type {Person[]} */ (data.items).filter((p) => !exclude.includes(p.id) && !picked.some((x) => x.id === p.id));
    } catch {
      if (mine !== generation) return;
      options = [];
    }
    list.replaceChildren(...options.map((person, i) => h('li', {
      id: `${listId}-${i}`, role: 'option', 'aria-selected': 'false',
      onmousedown: (/** @type {Event} */ e) => e.preventDefault(),
      onclick: () => pick(person),
    }, person.display_name, person.email ? h('span', { class: 'muted' }, ` ${person.email}`) : null)));
    if (options.length === 0) list.appendChild(h('li', { class: 'muted', 'aria-disabled': 'true' }, 'Nobody found'));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    setActive(options.length ? 0 : -1);
    status.textContent = `${options.length} ${options.length === 1 ? 'person' : 'people'} found.`;
  }

  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(search, 150);
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown' && options.length) {
      event.preventDefault();
      if (list.hidden) void search();
      else setActive((active + 1) % options.length);
    } else if (event.key === 'ArrowUp' && options.length) {
      event.preventDefault();
      setActive((active - 1 + options.length) % options.length);
    } else if (event.key === 'Enter' && !list.hidden) {
      event.preventDefault();
      if (active >= 0 && options[active]) pick(options[active]);
    } else if (event.key === 'Escape' && !list.hidden) {
      event.preventDefault();
      close();
    }
  });
  input.addEventListener('blur', () => setTimeout(close, 100));
  renderChips();

  const element = h('div', { class: 'field picker', 'data-field': 'attendees' },
    h('label', { for: id }, label),
    h('p', { class: 'hint', id: `${id}-hint` }, 'Type a name or email, then choose with the arrow keys and Enter.'),
    h('div', { class: 'combo' }, input, list),
    onPick ? null : chips,
    status,
    h('p', { class: 'error', id: `${id}-error`, 'data-error-for': 'attendees' }));
  return { element, picked: () => [...picked] };
}
