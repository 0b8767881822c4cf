// Fill in a questionnaire on the phone: conditional display, autosave (to the server, and to the
// phone while offline), resume later, submit and see the score.
import { requestJson } from "./lib/api.js";
import { gettext, isChinesePage } from "./lib/i18n.js";
import { visibleItems } from "./lib/fu-conditions.js";

const config = JSON.parse(document.getElementById("questionnaire-config").textContent);
const SAVE_STATE = {
  saved: () => gettext("Saved"),
  saving: () => gettext("Saving…"),
  offline: () => gettext("Not saved yet (offline); kept on this phone"),
  submitted: () => gettext("Submitted"),
};
const form = document.getElementById("questionnaire-form");
const saveState = document.getElementById("save-state");
const errorBox = document.getElementById("form-error");
const submitButton = document.getElementById("submit-questionnaire");
const localKey = `yixin-questionnaire-${config.assignment_id}`;

const local = JSON.parse(localStorage.getItem(localKey) || "{}");
const answers = { ...config.answers, ...(local.unsaved || {}) };
let unsaved = { ...(local.unsaved || {}) };
let saveTimer = null;
let saving = false;
const definition = config.definition;

function keepLocal() {
  localStorage.setItem(localKey, JSON.stringify({ unsaved }));
}

function setSaveState(key) {
  saveState.textContent = SAVE_STATE[key]();
  saveState.dataset.state = key;
}

async function save() {
  if (saving || !Object.keys(unsaved).length) return;
  saving = true;
  const batch = unsaved;
  unsaved = {};
  setSaveState("saving");
  try {
    await requestJson(config.api, { method: "PATCH", body: { answers: batch } });
    keepLocal();
    setSaveState("saved");
  } catch (err) {
    unsaved = { ...batch, ...unsaved };
    keepLocal();
    setSaveState(err.status === 0 ? "offline" : "saved");
    if (err.status && err.status !== 0) showError(err.message);
  } finally {
    saving = false;
    if (Object.keys(unsaved).length) scheduleSave();
  }
}

function scheduleSave() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, 600);
}

function setAnswer(linkId, value) {
  const empty = value === "" || value === null || (Array.isArray(value) && !value.length);
  if (empty) delete answers[linkId];
  else answers[linkId] = value;
  unsaved[linkId] = empty ? null : value;
  keepLocal();
  applyVisibility();
  scheduleSave();
}

// Instruments carry English wording beside the Chinese; an English page shows it when present.
const english = !isChinesePage();
function optionLabel(option) {
  return (english && option.label_en) || option.label;
}
function itemText(item) {
  return (english && item.text_en) || item.text;
}

function renderItem(item) {
  const box = document.createElement("fieldset");
  box.className = "fu-q";
  box.dataset.linkId = item.link_id;
  const legend = document.createElement("legend");
  legend.textContent = itemText(item);
  if (item.required) legend.classList.add("fu-required");
  box.append(legend);
  const name = `q-${item.link_id}`;
  const current = answers[item.link_id];
  if (item.type === "single_choice" || item.type === "multiple_choice") {
    const multi = item.type === "multiple_choice";
    item.options.forEach((option) => {
      const label = document.createElement("label");
      label.className = "fu-option";
      const input = document.createElement("input");
      input.type = multi ? "checkbox" : "radio";
      input.name = name;
      input.value = option.value;
      input.checked = multi ? Array.isArray(current) && current.includes(option.value) : current === option.value;
      input.addEventListener("change", () => {
        if (multi) {
          setAnswer(item.link_id, [...box.querySelectorAll("input:checked")].map((el) => el.value));
        } else {
          setAnswer(item.link_id, input.value);
        }
      });
      label.append(input, document.createTextNode(optionLabel(option)));
      box.append(label);
    });
  } else if (item.type === "likert") {
    const row = document.createElement("div");
    row.className = "fu-likert";
    for (let v = item.min; v <= item.max; v += 1) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = name;
      input.value = String(v);
      input.checked = current === v;
      input.addEventListener("change", () => setAnswer(item.link_id, v));
      label.append(input, document.createElement("br"), document.createTextNode(String(v)));
      row.append(label);
    }
    box.append(row);
    if (item.min_label || item.max_label) {
      const hint = document.createElement("div");
      hint.className = "fu-muted";
      hint.textContent = `${item.min}: ${item.min_label || ""}  ·  ${item.max}: ${item.max_label || ""}`;
      box.append(hint);
    }
  } else if (item.type === "number") {
    const input = document.createElement("input");
    input.type = "number";
    input.inputMode = "decimal";
    input.name = name;
    if (item.min !== undefined && item.min !== null) input.min = item.min;
    if (item.max !== undefined && item.max !== null) input.max = item.max;
    input.step = "any";
    if (current !== undefined) input.value = current;
    input.addEventListener("input", () => setAnswer(item.link_id, input.value === "" ? null : Number(input.value)));
    box.append(input);
    if (item.unit) {
      const unit = document.createElement("span");
      unit.className = "fu-muted";
      unit.textContent = ` ${item.unit}${item.min != null && item.max != null ? ` (${item.min}–${item.max})` : ""}`;
      box.append(unit);
    }
  } else if (item.type === "date") {
    const input = document.createElement("input");
    input.type = "date";
    input.name = name;
    if (current) input.value = current;
    input.addEventListener("change", () => setAnswer(item.link_id, input.value || null));
    box.append(input);
  } else {
    const input = document.createElement("textarea");
    input.name = name;
    input.rows = 3;
    input.maxLength = item.max_length || 2000;
    if (current) input.value = current;
    input.addEventListener("input", () => setAnswer(item.link_id, input.value));
    box.append(input);
  }
  const error = document.createElement("div");
  error.className = "fu-error";
  box.append(error);
  return box;
}

function applyVisibility() {
  const shown = new Set(visibleItems(definition, answers));
  form.querySelectorAll(".fu-q").forEach((box) => {
    box.hidden = !shown.has(box.dataset.linkId);
  });
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function showResult(score) {
  const result = document.getElementById("result");
  document.getElementById("score-total").textContent = score.total === null || score.total === undefined ? "—" : String(Math.round(score.total * 10) / 10);
  const band = document.getElementById("score-band");
  band.textContent = score.band_label || "";
  band.classList.toggle("attention", Boolean(score.attention));
  result.hidden = false;
  form.querySelectorAll("input, textarea").forEach((el) => { el.disabled = true; });
  submitButton.hidden = true;
  document.body.dataset.submitted = "true";
}

submitButton.addEventListener("click", async () => {
  clearTimeout(saveTimer);
  form.querySelectorAll(".fu-error").forEach((el) => { el.textContent = ""; });
  const shown = visibleItems(definition, answers);
  const missing = definition.items.filter((i) => i.required && shown.includes(i.link_id) && (answers[i.link_id] === undefined));
  if (missing.length) {
    missing.forEach((i) => { form.querySelector(`[data-link-id="${i.link_id}"] .fu-error`).textContent = gettext("Please answer this question."); });
    form.querySelector(`[data-link-id="${missing[0].link_id}"]`).scrollIntoView({ behavior: "smooth", block: "center" });
    return;
  }
  submitButton.disabled = true;
  try {
    const data = await requestJson(config.submit, { method: "POST", body: { answers: unsaved } });
    unsaved = {};
    localStorage.removeItem(localKey);
    setSaveState("submitted");
    showError("");
    showResult(data.score);
  } catch (err) {
    showError(err.message);
  } finally {
    submitButton.disabled = false;
  }
});

definition.items.forEach((item) => form.append(renderItem(item)));
applyVisibility();
if (config.status === "completed") {
  showResult(config.score);
} else if (Object.keys(unsaved).length) {
  scheduleSave();
}
window.addEventListener("online", () => scheduleSave());
window.addEventListener("pagehide", () => keepLocal());
