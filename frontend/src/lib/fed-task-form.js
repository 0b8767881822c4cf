// The "new federated task" form on the federated training page: read the fields as the body of
// POST /api/federation/tasks/, keep secure aggregation and RTIFed apart (the server refuses the
// pair too), and show the API's errors next to the fields while the values stay as typed.
import { requestJson } from "./api.js";
import { gettext } from "./i18n.js";

const DP_FIELDS = ["dp_clipping_norm", "dp_epsilon", "dp_delta"];

function numberOrNull(input) {
  const text = input.value.trim();
  return text === "" ? null : Number(text);
}

/** Flatten a DRF error value (a string, a list, or an object keyed by list index or field) into strings. */
function flattenMessages(value) {
  if (value == null) return [];
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(flattenMessages);
  if (typeof value === "object") return Object.values(value).flatMap(flattenMessages);
  return [String(value)];
}

/** Read the form into the JSON body that the task-creation API takes. */
export function taskFormBody(form) {
  const field = (name) => form.elements.namedItem(name);
  const body = {
    name: field("name").value.trim(),
    architecture: field("architecture").value,
    label_table: [...form.querySelectorAll("#label-rows tbody tr")].map((row) => ({
      index: numberOrNull(row.querySelector(".label-index")),
      name: row.querySelector(".label-name").value.trim(),
    })),
    rounds: numberOrNull(field("rounds")),
    local_epochs: numberOrNull(field("local_epochs")),
    min_clients: numberOrNull(field("min_clients")),
    strategy: field("strategy").value,
    secure_aggregation: field("secure_aggregation").checked,
    differential_privacy: field("differential_privacy").checked,
    invite: [...form.querySelectorAll('input[name="invite"]:checked')].map((input) => input.value),
    datasets: [...field("datasets").selectedOptions].map((option) => option.value),
    validation_dataset: field("validation_dataset").value,
  };
  if (body.differential_privacy) for (const name of DP_FIELDS) body[name] = numberOrNull(field(name));
  return body;
}

class TaskForm {
  constructor(form) {
    this.form = form;
    this.alert = form.querySelector("#task-create-error");
    this.submit = form.querySelector("#task-create-submit");
    this.rows = form.querySelector("#label-rows tbody");
    this.blankRow = this.rows.rows[0].cloneNode(true);
    this.blankRow.querySelector(".label-name").value = "";
  }

  field(name) {
    return this.form.elements.namedItem(name);
  }

  wire() {
    for (const name of ["strategy", "secure_aggregation", "differential_privacy"]) {
      this.field(name).addEventListener("change", () => this.syncOptions());
    }
    this.form.querySelector("#label-add").addEventListener("click", () => this.addLabelRow());
    this.rows.addEventListener("click", (event) => {
      const button = event.target.closest(".label-remove");
      if (button && this.rows.rows.length > 1) {
        button.closest("tr").remove();
        this.syncOptions();
      }
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.syncOptions();
  }

  /** Disable whichever of secure aggregation / RTIFed excludes the other; show DP parameters when on. */
  syncOptions() {
    const secagg = this.field("secure_aggregation");
    const rtifed = this.field("strategy").value === "rtifed";
    if (rtifed) secagg.checked = false;
    secagg.disabled = rtifed;
    const rtifedOption = this.field("strategy").querySelector('option[value="rtifed"]');
    if (rtifedOption) rtifedOption.disabled = secagg.checked;
    this.form.querySelector("#dp-params").hidden = !this.field("differential_privacy").checked;
    const removable = this.rows.rows.length > 1;
    for (const button of this.rows.querySelectorAll(".label-remove")) button.disabled = !removable;
  }

  addLabelRow() {
    const indices = [...this.rows.querySelectorAll(".label-index")]
      .map((input) => Number(input.value))
      .filter(Number.isInteger);
    const row = this.blankRow.cloneNode(true);
    row.querySelector(".label-index").value = String(Math.max(0, ...indices) + 1);
    this.rows.appendChild(row);
    this.syncOptions();
    row.querySelector(".label-name").focus();
  }

  clearErrors() {
    this.alert.hidden = true;
    this.alert.replaceChildren();
    for (const list of this.form.querySelectorAll("[data-error-for]")) list.replaceChildren();
    for (const input of this.form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute("aria-invalid");
  }

  /** Put messages under a field; return false when the form has no such field. */
  showFieldError(name, messages) {
    const list = this.form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (!list) return false;
    for (const message of messages) {
      const item = document.createElement("li");
      item.textContent = message;
      list.appendChild(item);
    }
    const input = this.field(name);
    if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    return true;
  }

  /**
   * Show an ApiError: the server's message (already in the page's language), or for a validation
   * failure a pointer to the fields, whose messages go under each field.
   */
  showError(err) {
    const invalid = err.code === "invalid_input";
    const summary = invalid ? gettext("Please correct the fields marked below.") : err.message;
    const lines = [];
    if (invalid) {
      for (const [name, value] of Object.entries((err.payload && err.payload.fields) || {})) {
        const messages = flattenMessages(value);
        if (!this.showFieldError(name, messages)) lines.push(...messages.map((m) => `${name}: ${m}`));
      }
    }
    const strong = document.createElement("strong");
    strong.textContent = summary;
    this.alert.appendChild(strong);
    for (const line of lines) {
      const detail = document.createElement("div");
      detail.className = "muted";
      detail.textContent = line;
      this.alert.appendChild(detail);
    }
    this.alert.hidden = false;
    this.alert.scrollIntoView({ block: "nearest" });
  }

  async send() {
    this.clearErrors();
    const body = taskFormBody(this.form);
    if (body.label_table.some((label) => !label.name)) {
      this.showFieldError("label_table", [gettext("Every label needs a name.")]);
      this.showError({ code: "invalid_input", message: "", payload: {} });
      return;
    }
    this.submit.disabled = true;
    try {
      // getAttribute: data attributes read through the form element could be shadowed by a field's name.
      const task = await requestJson(this.form.getAttribute("data-api-url"), { method: "POST", body });
      window.location.assign(task.url);
    } catch (err) {
      this.showError(err);
      this.submit.disabled = false;
    }
  }
}

/** Wire the task-creation form (absent for users who cannot create tasks). */
export function wireTaskForm(form) {
  if (form) new TaskForm(form).wire();
}
