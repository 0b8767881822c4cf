// Knowledge-graph links in clinical text: report impressions, finding kinds, the patient's summary.
//
// Three kinds of links, one side panel:
// - elements with data-kg-term="肺结节" (a finding kind shown in the page's language) become one
//   link when the graph knows that Chinese name;
// - elements with data-kg-text (staff pages) have their text sent to POST /api/kg/mentions/; each
//   entity the graph names becomes a <button class="kg-term"> around the same words;
// - <button class="kg-term" data-kg-label data-kg-name> rendered by the server (the patient's
//   report page, whose buttons also carry data-kg-lay="1") need no lookup.
// A click opens the side panel (#kg-panel, from templates/knowledge_graph/_kg_panel.html) filled
// from GET /api/kg/panel/<label>/<name>/: description (or the plain-language wording), checks,
// department and related diseases. Everything is built with DOM calls (no innerHTML, no inline
// style), so the Content-Security-Policy holds.

import { requestJson } from "./api.js";
import { gettext, interpolate } from "./i18n.js";

function termButton(text, label, name, lay) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "kg-term";
  button.textContent = text;
  button.dataset.kgLabel = label;
  button.dataset.kgName = name;
  if (lay) button.dataset.kgLay = "1";
  return button;
}

/** Replace the text of `element` by plain pieces and term buttons for `mentions` (offsets into its text). */
export function linkMentions(element, mentions, { lay = false } = {}) {
  const text = element.textContent;
  if (!mentions.length) return 0;
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const m of mentions) {
    if (m.start < at || text.slice(m.start, m.end) !== m.text) continue; // stale or overlapping
    if (m.start > at) fragment.appendChild(document.createTextNode(text.slice(at, m.start)));
    fragment.appendChild(termButton(m.text, m.label, m.name, lay));
    at = m.end;
  }
  if (at < text.length) fragment.appendChild(document.createTextNode(text.slice(at)));
  element.replaceChildren(fragment);
  element.classList.add("kg-linked");
  return mentions.length;
}

function section(title, content) {
  const block = document.createElement("section");
  block.className = "kg-panel-section";
  const h = document.createElement("h3");
  h.textContent = title;
  block.appendChild(h);
  block.appendChild(content);
  return block;
}

function nameList(names, label, lay) {
  if (!names.length) {
    const p = document.createElement("p");
    p.textContent = "—";
    return p;
  }
  const ul = document.createElement("ul");
  ul.className = "kg-panel-list";
  for (const name of names) {
    const li = document.createElement("li");
    li.appendChild(label ? termButton(name, label, name, lay) : document.createTextNode(name));
    ul.appendChild(li);
  }
  return ul;
}

export class KgPanel {
  constructor(root) {
    this.root = root;
    this.body = root.querySelector(".kg-panel-body");
    this.title = root.querySelector(".kg-panel-title");
    this.root.querySelector(".kg-panel-close").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.root.hidden) this.close();
    });
    this.controller = null;
  }

  close() {
    this.root.hidden = true;
    if (this.controller) this.controller.abort();
  }

  async open(label, name, lay) {
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    this.root.hidden = false;
    this.root.dataset.kgName = name;
    this.title.textContent = name;
    const status = document.createElement("p");
    status.className = "kg-panel-status";
    status.textContent = gettext("Loading…");
    this.body.replaceChildren(status);
    const url = `/api/kg/panel/${encodeURIComponent(label)}/${encodeURIComponent(name)}/${lay ? "?lay=1" : ""}`;
    let panel;
    try {
      panel = await requestJson(url, { signal: this.controller.signal });
    } catch (err) {
      if (err && err.name === "AbortError") return;
      status.textContent = interpolate(gettext("Could not load: %(message)s"), { message: err.message });
      status.classList.add("kg-panel-error");
      return;
    }
    this.render(panel, lay);
  }

  render(panel, lay) {
    const s = panel.sections_text || {};
    const parts = [];
    const kind = document.createElement("p");
    kind.className = "kg-panel-kind";
    kind.textContent = panel.label_text;
    parts.push(kind);
    const describe = (key, text) => {
      const p = document.createElement("p");
      p.className = `kg-panel-${key}`;
      p.textContent = text || "—";
      parts.push(section(s[key] || key, p));
    };
    if (lay && panel.lay_text) describe("lay_text", panel.lay_text);
    else describe("description", panel.description);
    parts.push(section(s.checks || "checks", nameList(panel.checks, "Check", lay)));
    parts.push(section(s.departments || "departments", nameList(panel.departments, "", lay)));
    parts.push(section(s.related_diseases || "related_diseases", nameList(panel.related_diseases, "Disease", lay)));
    if (!lay) {
      const more = document.createElement("a");
      more.className = "kg-panel-more";
      more.href = `/kg/entity/${encodeURIComponent(panel.label)}/${encodeURIComponent(panel.name)}/`;
      more.textContent = gettext("Open in the knowledge graph");
      parts.push(more);
    }
    this.body.replaceChildren(...parts);
    this.root.dataset.kgLoaded = panel.name;
  }
}

/** Link every [data-kg-text] under `root` and open the panel on any .kg-term click. */
export async function initKgLinks(root = document) {
  const panelRoot = document.getElementById("kg-panel");
  if (!panelRoot) return null;
  const panel = new KgPanel(panelRoot);
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest(".kg-term");
    if (!button) return;
    event.preventDefault();
    panel.open(button.dataset.kgLabel, button.dataset.kgName, button.dataset.kgLay === "1");
  });
  // The panel partial renders {% csrf_token %}: a signed report's page has no other form.
  const csrfToken = (panelRoot.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";
  const targets = Array.from(root.querySelectorAll("[data-kg-text]")).filter((el) => el.textContent.trim());
  if (targets.length) {
    try {
      const data = await requestJson("/api/kg/mentions/", {
        method: "POST",
        csrfToken,
        body: { texts: targets.map((el) => el.textContent.slice(0, 5000)) },
      });
      targets.forEach((el, i) => linkMentions(el, data.results[i] || []));
    } catch (err) {
      // The text stays readable without links; say why on the panel root for the curious.
      panelRoot.dataset.kgError = String(err.message || err);
    }
  }
  // A term (a finding kind, shown in the page's language) linked by its Chinese name when the graph knows it.
  const terms = Array.from(root.querySelectorAll("[data-kg-term]"));
  if (terms.length) {
    try {
      const data = await requestJson("/api/kg/mentions/", {
        method: "POST",
        csrfToken,
        body: { texts: terms.map((el) => el.dataset.kgTerm) },
      });
      terms.forEach((el, i) => {
        const whole = (data.results[i] || []).find((m) => m.start === 0 && m.end === el.dataset.kgTerm.length);
        if (!whole) return;
        const button = termButton(el.textContent, whole.label, whole.name, false);
        el.replaceChildren(button);
        el.classList.add("kg-linked");
      });
    } catch (err) {
      panelRoot.dataset.kgError = String(err.message || err);
    }
  }
  document.body.dataset.kgReady = "1";
  return panel;
}
