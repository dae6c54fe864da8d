// @ts-check
/** Sign in and sign up. */

import { h } from '../dom.js';
import * as api from '../api.js';
import { field, formError, showError } from '../forms.js';
import { zoneNames } from '../time.js';

/** @param {HTMLElement} main */
export function signIn(main) {
  const email = h('input', { type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', null, 'Sign in'),
    formError(),
    field('Email', email, { name: 'email' }),
    field('Password', password, { name: 'password' }),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    h('p', null, 'New here? ', h('a', { href: '#/signup' }, 'Create an account')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api.login(email.value.trim(), password.value);
      location.hash = '#/';
    } catch (error) {
      showError(form, error);
    }
  });
  main.replaceChildren(form);
  email.focus();
}

/** @param {HTMLElement} main */
export function signUp(main) {
  const name = h('input', { type: 'text', autocomplete: 'name', required: true });
  const email = h('input', { type: 'email', autocomplete: 'email', required: true });
  const password = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const zone = h('input', { type: 'text', list: 'zones-signup', value: Intl.DateTimeFormat().resolvedOptions().timeZone, required: true, autocomplete: 'off' });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', null, 'Create an account'),
    formError(),
    field('Name', name, { name: 'display_name' }),
    field('Email', email, { name: 'email' }),
    field('Password', password, { name: 'password', hint: 'At least 8 characters; not a common password.' }),
    field('Time zone', zone, { name: 'time_zone', hint: 'Your week is shown in this zone.' }),
    h('datalist', { id: 'zones-signup' }, zoneNames().map((z) => h('option', { value: z }))),
    h('button', { type: 'submit', class: 'primary' }, 'Create account'),
    h('p', null, 'Have an account? ', h('a', { href: '#/signin' }, 'Sign in')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api.register({ email: email.value.trim(), password: password.value, display_name: name.value.trim(), time_zone: zone.value.trim() });
      location.hash = '#/';
    } catch (error) {
      showError(form, error);
    }
  });
  main.replaceChildren(form);
  name.focus();
}
