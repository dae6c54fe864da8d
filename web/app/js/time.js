// @ts-check
/** Calendar arithmetic in a named IANA time zone, with the platform's Intl data. */

/** @type {Map<string, Intl.DateTimeFormat>} */
const formats = new Map();

/** @param {string} timeZone */
function partsFormat(timeZone) {
  let format = formats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: 'numeric', second: 'numeric', weekday: 'short',
    });
    formats.set(timeZone, format);
  }
  return format;
}

/**
 * @typedef {{year: number, month: number, day: number, hour: number, minute: number, weekday: number}} Wall
 * `month` 1–12, `weekday` 1 (Monday) – 7 (Sunday).
 */

const WEEKDAYS = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/**
 * The wall-clock time of `date` in `timeZone`.
 * @param {Date} date
 * @param {string} timeZone
 * @returns {Wall}
 */
export function wall(date, timeZone) {
  /** @type {Record<string, string>} */
  const p = {};
  for (const part of partsFormat(timeZone).formatToParts(date)) p[part.type] = part.value;
  return {
    year: Number(p.year), month: Number(p.month), day: Number(p.day),
    hour: Number(p.hour), minute: Number(p.minute),
    weekday: WEEKDAYS[/** @type {keyof typeof WEEKDAYS} */ (p.weekday)],
  };
}

/**
 * Offset of `timeZone` from UTC at `date`, in milliseconds.
 * @param {Date} date
 * @param {string} timeZone
 */
function offset(date, timeZone) {
  const w = wall(date, timeZone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute);
  return asUtc - (date.getTime() - (date.getTime() % 60000));
}

/**
 * The instant at which the wall clock in `timeZone` shows the given time (the earlier one
 * when it shows it twice, the later offset's when it never does).
 * @param {string} date `YYYY-MM-DD`
 * @param {string} time `HH:MM`
 * @param {string} timeZone
 */
export function zonedToUtc(date, time, timeZone) {
  const [y, mo, d] = date.split('-').map(Number);
  const [hh, mm] = time.split(':').map(Number);
  const guess = Date.UTC(y, mo - 1, d, hh, mm);
  const first = guess - offset(new Date(guess), timeZone);
  const firstOffset = offset(new Date(first), timeZone);
  if (guess - firstOffset === first) return new Date(first);
  const second = guess - firstOffset;
  // In a gap (the clock jumps forward) neither fits exactly: take the later instant.
  return new Date(offset(new Date(second), timeZone) === firstOffset ? second : Math.max(first, second));
}

/** @param {number} n */
const pad = (n) => String(n).padStart(2, '0');

/**
 * `YYYY-MM-DD` of a wall time or of year/month/day.
 * @param {{year: number, month: number, day: number}} w
 */
export function isoDate(w) {
  return `${w.year}-${pad(w.month)}-${pad(w.day)}`;
}

/** @param {{hour: number, minute: number}} w */
export function isoTime(w) {
  return `${pad(w.hour)}:${pad(w.minute)}`;
}

/**
 * Adds days to a `YYYY-MM-DD` date (calendar arithmetic, no zone).
 * @param {string} date
 * @param {number} days
 */
export function addDays(date, days) {
  const [y, m, d] = date.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + days));
  return isoDate({ year: t.getUTCFullYear(), month: t.getUTCMonth() + 1, day: t.getUTCDate() });
}

/**
 * Monday of the week that holds `date`.
 * @param {string} date
 */
export function mondayOf(date) {
  const [y, m, d] = date.split('-').map(Number);
  const weekday = (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7; // Monday 0
  return addDays(date, -weekday);
}

/**
 * Today's date in `timeZone`.
 * @param {string} timeZone
 */
export function today(timeZone) {
  return isoDate(wall(new Date(), timeZone));
}

/**
 * A human day label: "Mon 7 Dec".
 * @param {string} date
 */
export function dayLabel(date) {
  const [y, m, d] = date.split('-').map(Number);
  return new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' })
    .format(new Date(Date.UTC(y, m - 1, d)));
}

/**
 * "Mon 7 Dec, 10:00–11:00" in `timeZone`.
 * @param {string} start RFC 3339
 * @param {string} end RFC 3339
 * @param {string} timeZone
 */
export function rangeLabel(start, end, timeZone) {
  const s = new Date(start);
  const e = new Date(end);
  const day = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', timeZone });
  const tm = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone });
  const sameDay = isoDate(wall(s, timeZone)) === isoDate(wall(e, timeZone));
  return sameDay
    ? `${day.format(s)}, ${tm.format(s)}–${tm.format(e)}`
    : `${day.format(s)} ${tm.format(s)} – ${day.format(e)} ${tm.format(e)}`;
}

/**
 * "10:00" in `timeZone`.
 * @param {string} instant
 * @param {string} timeZone
 */
export function timeLabel(instant, timeZone) {
  // Building a formatter costs far more than using one: one per zone.
  let format = timeFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone });
    timeFormats.set(timeZone, format);
  }
  return format.format(new Date(instant));
}

/** @type {Map<string, Intl.DateTimeFormat>} */
const timeFormats = new Map();

/** IANA zone names the browser knows (for the zone picker). */
export function zoneNames() {
  const intl = /** @type {any} */ (Intl);
  return typeof intl.supportedValuesOf === 'function' ? /** @type {string[]} */ (intl.supportedValuesOf('timeZone')) : ['UTC'];
}
