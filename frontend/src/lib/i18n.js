// UI strings for the scripts: Django's JavaScript catalogue.
//
// templates/base.html loads /jsi18n/ (portal/jsi18n.py, domain "djangojs") before every bundle; it
// defines window.django.gettext & co. with the Chinese of locale/zh_Hans/LC_MESSAGES/djangojs.po under
// zh-hans and the msgids under English. msgids are English. Bundles import these wrappers instead of
// touching the globals; without a catalogue (the front-end harness, a failed load) they return the
// msgid, so the page still reads in English.
//
// Every call takes string literals, so that tests/test_translations_complete.py (xgettext) finds each
// msgid and fails when djangojs.po has no Chinese for it. Placeholders are Django's named ones,
// "%(name)s", filled by interpolate().

function catalogue() {
  const django = globalThis.django;
  return django && typeof django.gettext === "function" ? django : null;
}

/** Translate `msgid`. */
export function gettext(msgid) {
  const c = catalogue();
  return c ? c.gettext(msgid) : msgid;
}

/** Translate a message with a count: `singular` when `count` is 1 in English; Chinese has one form. */
export function ngettext(singular, plural, count) {
  const c = catalogue();
  return c ? c.ngettext(singular, plural, count) : count === 1 ? singular : plural;
}

/** Translate `msgid` in `context` (the msgctxt that separates two meanings of one English word). */
export function pgettext(context, msgid) {
  const c = catalogue();
  return c && typeof c.pgettext === "function" ? c.pgettext(context, msgid) : msgid;
}

/** Fill the "%(name)s" placeholders of a translated `format` from `params` (unknown names stay as they are). */
export function interpolate(format, params) {
  return String(format).replace(/%\((\w+)\)s/g, (m, name) =>
    params && params[name] !== undefined && params[name] !== null ? String(params[name]) : m,
  );
}

export function isChinesePage() {
  return (document.documentElement.lang || "zh-hans").toLowerCase().startsWith("zh");
}

/** The label of `value` in `table` (code → function returning the translated label), or `value`
 * itself when the table does not know it. */
export function labelOf(table, value) {
  return Object.prototype.hasOwnProperty.call(table, value) ? table[value]() : value;
}
