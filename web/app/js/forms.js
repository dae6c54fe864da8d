// @ts-check
/** Form fields with labels and error slots, and showing a problem+json answer on them. */

import { h, uid } from './dom.js';
import { ApiError } from './api.js';

/**
 * A labelled control with a hint and an error slot tied to it by `aria-describedby`.
 * `name` is the API field whose errors show here.
 * @param {string} label
 * @param {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} control
 * @param {{name: string, hint?: string}} options
 */
export function field(label, control, { name, hint }) {
  const id = control.id || uid(name);
  control.id = id;
  control.name = control.name || name;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  control.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
  return h('div', { class: 'field', 'data-field': name },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    control,
    h('p', { class: 'error', id: errorId, 'data-error-for': name }));
}

/** @param {HTMLFormElement} form */
export function clearErrors(form) {
  for (const el of form.querySelectorAll('[data-error-for]')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const summary = form.querySelector('.form-error');
  if (summary) summary.textContent = '';
}

/**
 * Shows an error on the form: each `errors[].field` next to its field (`aliases` maps API
 * names to the form's), the rest — and conflicts, as "changed meanwhile — reload" — on top.
 * Focuses the first field in error, or the summary.
 * @param {HTMLFormElement} form
 * @param {unknown} error
 * @param {Record<string, string>} [aliases]
 */
export function showError(form, error, aliases = {}) {
  clearErrors(form);
  const summary = /** @type {HTMLElement | null} */ (form.querySelector('.form-error'));
  /** @type {HTMLElement | null} */
  let focus = null;
  const unplaced = [];
  if (error instanceof ApiError && !error.conflict) {
    for (const { field: name, message } of error.errors) {
      const key = aliases[name] ?? name;
      const slot = form.querySelector(`[data-error-for="${CSS.escape(key)}"]`);
      if (!slot) {
        unplaced.push(`${name}: ${message}`);
        continue;
      }
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      const control = /** @type {HTMLElement | null} */ (slot.parentElement?.querySelector('input, select, textarea') ?? null);
      control?.setAttribute('aria-invalid', 'true');
      focus = focus ?? control;
    }
  }
  if (summary) {
    if (error instanceof ApiError && error.conflict) {
      summary.replaceChildren('Changed meanwhile — ',
        h('button', { type: 'button', class: 'link', onclick: () => location.reload() }, 'reload'),
        ' to see the current version.');
      summary.setAttribute('data-conflict', '');
    } else if (error instanceof ApiError) {
      summary.textContent = [error.errors.length && !unplaced.length ? 'Please correct the fields marked below.' : error.message, ...unplaced].join(' ');
    } else {
      summary.textContent = 'Something went wrong. Please try again.';
      console.error(error);
    }
    if (!focus) focus = summary;
  }
  focus?.focus();
}

/** The error summary at the top of a form (focusable, announced). */
export function formError() {
  return h('p', { class: 'form-error', role: 'alert', tabindex: '-1' });
}
