// UI strings for the scripts.
//
// Visible strings are translated server-side: a template renders them inside
// <template id="..."> as <span data-i18n="key">translated text</span>, and the study
// page's viewer_config may add an "i18n" object. The bilingual defaults below only
// cover a template that forgot a key.

export function readTemplateStrings(templateId) {
  const strings = {};
  const tpl = document.getElementById(templateId);
  const root = tpl && (tpl.content || tpl);
  if (!root) return strings;
  root.querySelectorAll("[data-i18n]").forEach((el) => {
    strings[el.getAttribute("data-i18n")] = el.textContent.trim();
  });
  return strings;
}

/** Return a translate function over defaults <- template strings <- extra strings. */
export function makeTranslator(defaults, ...sources) {
  const table = Object.assign({}, defaults, ...sources.filter(Boolean));
  return function t(key, params) {
    let text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : key;
    if (params) {
      text = text.replace(/\{(\w+)\}/g, (m, name) => (params[name] === undefined ? m : String(params[name])));
    }
    return text;
  };
}

export function isChinesePage() {
  return (document.documentElement.lang || "zh-hans").toLowerCase().startsWith("zh");
}
