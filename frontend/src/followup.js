// Shared behaviour of the follow-up pages: the unread badge (live through the inbox socket),
// forms that post JSON to the API, score charts, the cohort view and the questionnaire builder.
import { Chart, registerables } from "chart.js";
import annotationPlugin from "chartjs-plugin-annotation";
import { ReconnectingSocket, websocketUrl } from "./lib/socket.js";
import { requestJson } from "./lib/api.js";
import { formatDate } from "./lib/format.js";
import { gettext } from "./lib/i18n.js";

Chart.register(...registerables, annotationPlugin);

// --- unread badges and the live inbox ---------------------------------------------------------
// One inbox socket per page: when a message arrives or the user reads a conversation (in any tab),
// the server pushes inbox.update and the page re-reads the counts, the header badge, and the rows
// of a live inbox list (newest first, with the last message's preview).
const badge = document.getElementById("fu-unread-badge");
const navLink = document.getElementById("nav-followup");
const liveInbox = document.querySelector("[data-live-inbox]");

function conversationName(conversation) {
  if (liveInbox.dataset.liveInbox === "patient") {
    const me = Number(document.body.dataset.userId || 0);
    return conversation.members.filter((m) => m.user_id !== me).map((m) => m.name).join(" ");
  }
  const p = conversation.patient;
  return `${p.name || p.mrn} · ${p.mrn}`;
}

function renderInbox(conversations) {
  const rows = new Map([...liveInbox.querySelectorAll("li[data-conversation]")].map((li) => [li.dataset.conversation, li]));
  conversations.forEach((c) => {
    let row = rows.get(String(c.id));
    if (!row) {
      row = document.createElement("li");
      row.dataset.conversation = String(c.id);
      const link = document.createElement("a");
      link.className = "conversation-link";
      link.href = c.url;
      link.textContent = conversationName(c);
      const count = document.createElement("span");
      count.className = "fu-count unread fu-count-inline";
      const time = document.createElement("span");
      time.className = "fu-muted fu-inbox-time";
      const preview = document.createElement("span");
      preview.className = "fu-preview";
      row.append(link, " ", count, " ", time, document.createElement("br"), preview);
    }
    const count = row.querySelector(".fu-count");
    count.textContent = String(c.unread_count || 0);
    count.hidden = !c.unread_count;
    if (c.last_message) {
      row.querySelector(".fu-inbox-time").textContent = formatDate(c.last_message.created_at, { time: true });
      row.querySelector(".fu-preview").textContent = c.last_message.preview;
    }
    liveInbox.append(row); // in the API's order: the newest conversation first
  });
  const empty = liveInbox.querySelector(".fu-inbox-empty");
  if (empty && conversations.length) empty.remove();
}

async function refreshInbox() {
  try {
    const inbox = await requestJson("/api/followup/conversations/");
    if (badge) {
      badge.textContent = String(inbox.unread_total);
      badge.hidden = inbox.unread_total === 0;
    }
    document.body.dataset.unread = String(inbox.unread_total);
    if (liveInbox) renderInbox(inbox.results);
    if (navLink) {
      const notifications = await requestJson("/api/followup/notifications/");
      const total = inbox.unread_total + (notifications.unread || 0);
      let navBadge = document.getElementById("nav-followup-unread");
      if (!navBadge && total) {
        navBadge = document.createElement("span");
        navBadge.className = "badge";
        navBadge.id = "nav-followup-unread";
        navLink.append(" ", navBadge);
      }
      if (navBadge) {
        navBadge.textContent = String(total);
        navBadge.hidden = total === 0;
      }
    }
    document.body.dataset.inboxRefreshed = String(Number(document.body.dataset.inboxRefreshed || 0) + 1);
  } catch (_) {
    // The badges are a convenience; the inbox page shows the counts on reload.
  }
}
if (badge || liveInbox || navLink) {
  new ReconnectingSocket(websocketUrl("/ws/followup/inbox/"), {
    onOpen: refreshInbox,
    onMessage: (frame) => {
      if (frame.type === "inbox.update" || frame.type === "notification") refreshInbox();
    },
  }).start();
}

// --- forms posting JSON to the API --------------------------------------------------------------
function formJson(form) {
  const body = {};
  let url = form.dataset.api;
  form.querySelectorAll("[name]").forEach((el) => {
    if (el.dataset.path) {
      url = form.dataset.apiTemplate.replace(`{${el.name}}`, encodeURIComponent(el.value));
      return;
    }
    let value = el.value;
    if (value === "" && el.dataset.type === "int") return;
    if (el.dataset.type === "int") value = Number(value);
    if (el.dataset.type === "int-list") value = value.split(/[,\s，]+/).filter(Boolean).map(Number);
    if (value === "" && !el.required) return;
    body[el.name] = value;
  });
  return { url, body };
}

document.querySelectorAll("form.fu-api-form").forEach((form) => {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { url, body } = formJson(form);
    const error = form.querySelector(".fu-form-error");
    try {
      await requestJson(url, { method: form.dataset.method || "POST", body });
      window.location.reload();
    } catch (err) {
      if (error) error.textContent = err.message;
    }
  });
});

// --- a patient's scores over time: one chart per instrument on its own range, with its bands ----
const resultsCharts = document.getElementById("results-charts");
if (resultsCharts) {
  const series = JSON.parse(document.getElementById("results-series").textContent);
  const scales = JSON.parse(document.getElementById("results-scales").textContent);
  const bandColours = ["rgba(47, 158, 68, 0.12)", "rgba(250, 176, 5, 0.14)", "rgba(247, 103, 7, 0.15)",
    "rgba(224, 49, 49, 0.15)", "rgba(156, 54, 181, 0.16)"];
  Object.entries(series).forEach(([code, points]) => {
    const scale = scales[code] || { title: code, min: 0, max: null, bands: [] };
    const figure = document.createElement("figure");
    figure.className = "fu-chart-figure";
    figure.dataset.instrument = code;
    const caption = document.createElement("figcaption");
    caption.textContent = scale.title;
    const box = document.createElement("div");
    box.className = "fu-chart";
    const canvas = document.createElement("canvas");
    canvas.setAttribute("aria-label", scale.title);
    box.append(canvas);
    figure.append(caption, box);
    resultsCharts.append(figure);
    const annotations = {};
    scale.bands.forEach((band, i) => {
      annotations[`band-${band.code}`] = {
        type: "box", yMin: band.min, yMax: band.max + (i < scale.bands.length - 1 ? 0.999 : 0),
        backgroundColor: bandColours[Math.min(i, bandColours.length - 1)], borderWidth: 0,
        label: { display: true, content: band.label, position: { x: "end", y: "center" }, color: "#495057",
          font: { size: 11 } },
      };
    });
    const chart = new Chart(canvas, {
      type: "line",
      data: {
        labels: points.map((p) => formatDate(p.submitted_at)),
        datasets: [{ label: scale.title, data: points.map((p) => p.total), borderColor: "#0b7285",
          backgroundColor: "#0b7285", tension: 0.2 }],
      },
      options: {
        maintainAspectRatio: false,
        plugins: { legend: { display: false }, annotation: { annotations } },
        scales: { y: { min: scale.min, ...(scale.max !== null ? { max: scale.max } : {}), ticks: { precision: 0 } } },
      },
    });
    figure.dataset.yMin = String(chart.scales.y.min);
    figure.dataset.yMax = String(chart.scales.y.max);
    figure.dataset.bands = String(scale.bands.length);
  });
  document.body.dataset.chart = "ready";
}

// --- cohort view --------------------------------------------------------------------------------
const cohortConfig = document.getElementById("cohort-config");
if (cohortConfig) {
  const cfg = JSON.parse(cohortConfig.textContent);
  const group = new URLSearchParams(window.location.search).get("group_id");
  requestJson(`${cfg.cohort_api}${group ? `?group_id=${encodeURIComponent(group)}` : ""}`).then((data) => {
    const tbody = document.querySelector("#cohort-table tbody");
    data.patients.forEach((p) => {
      const row = tbody.insertRow();
      [p.mrn, p.total === null ? "—" : String(p.total), p.band_label || p.band || "", formatDate(p.submitted_at)].forEach((v) => {
        row.insertCell().textContent = v;
      });
    });
    new Chart(document.getElementById("cohort-chart"), {
      type: "bar",
      data: { labels: Object.keys(data.band_counts), datasets: [{ label: "n", data: Object.values(data.band_counts), backgroundColor: "#0b7285" }] },
      options: { maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    document.body.dataset.chart = "ready";
  });
}

// --- questionnaire builder ----------------------------------------------------------------------
const builderConfig = document.getElementById("builder-config");
if (builderConfig) {
  const cfg = JSON.parse(builderConfig.textContent);
  const items = [];
  const json = document.getElementById("b-json");
  const list = document.getElementById("b-items");
  const result = document.getElementById("b-result");

  const definition = () => {
    const defn = { items: items.map((i) => i.toItem()) };
    const scored = defn.items.filter((i) => ["single_choice", "likert"].includes(i.type) && (i.type === "likert" || i.options.every((o) => o.score !== undefined)));
    if (scored.length) defn.scoring = { method: "sum", items: scored.map((i) => i.link_id), bands: [] };
    return defn;
  };
  const refresh = () => { json.value = JSON.stringify(definition(), null, 1); };

  function addItem(type) {
    const index = items.length + 1;
    const box = document.createElement("div");
    box.className = "fu-builder-item";
    box.innerHTML = `<div class="form-row"><strong>q${index} · ${type}</strong> <label><input type="checkbox" class="b-required"> *</label></div>
      <div class="form-row"><input class="b-text input-wide" placeholder="?"></div>
      ${["single_choice", "multiple_choice"].includes(type) ? '<div class="form-row"><textarea class="b-options" rows="3"></textarea></div>' : ""}
      ${type === "likert" ? '<div class="form-row"><input class="b-min" type="number" value="1"> – <input class="b-max" type="number" value="5"></div>' : ""}
      ${type === "number" ? '<div class="form-row"><input class="b-unit" placeholder="kg"> <input class="b-min" type="number"> <input class="b-max" type="number"></div>' : ""}
      <div class="form-row"><input class="b-when" placeholder="q1=1"></div>`;
    list.append(box);
    const q = (sel) => box.querySelector(sel);
    // Placeholders in the page's language, set through the DOM (translations are not HTML).
    if (q(".b-options")) q(".b-options").placeholder = gettext("0|No|0\n1|Yes|1");
    if (type === "number") {
      q(".b-min").placeholder = gettext("min");
      q(".b-max").placeholder = gettext("max");
    }
    items.push({
      toItem() {
        const item = { link_id: `q${index}`, type, text: q(".b-text").value || `q${index}`, required: q(".b-required").checked };
        if (q(".b-options")) {
          item.options = q(".b-options").value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
            const [value, label, score] = line.split("|");
            const option = { value: value.trim(), label: (label || value).trim() };
            if (score !== undefined && score.trim() !== "") option.score = Number(score);
            return option;
          });
        }
        if (type === "likert") Object.assign(item, { min: Number(q(".b-min").value), max: Number(q(".b-max").value) });
        if (type === "number") {
          item.unit = q(".b-unit").value;
          if (q(".b-min").value !== "") item.min = Number(q(".b-min").value);
          if (q(".b-max").value !== "") item.max = Number(q(".b-max").value);
        }
        const when = q(".b-when").value.trim().match(/^(\w+)\s*(>=|<=|!=|=|>|<)\s*(.+)$/);
        if (when) item.enable_when = [{ question: when[1], operator: when[2], answer: when[3] }];
        return item;
      },
    });
    box.addEventListener("input", refresh);
    refresh();
  }

  document.getElementById("b-add").addEventListener("click", () => addItem(document.getElementById("b-type").value));
  document.getElementById("b-save").addEventListener("click", async () => {
    result.hidden = false;
    try {
      const body = { code: document.getElementById("b-code").value, title: document.getElementById("b-title").value, definition: JSON.parse(json.value) };
      const saved = await requestJson(cfg.api, { method: "POST", body });
      result.className = "alert alert-success";
      result.textContent = `${saved.title} v${saved.version} ✓`;
    } catch (err) {
      result.className = "alert alert-error";
      result.textContent = err.message;
    }
  });
  document.getElementById("b-fhir").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    result.hidden = false;
    try {
      const saved = await requestJson(cfg.import_api, { method: "POST", body: JSON.parse(await file.text()) });
      result.className = "alert alert-success";
      result.textContent = `${saved.title} v${saved.version} ✓`;
    } catch (err) {
      result.className = "alert alert-error";
      result.textContent = err.message;
    }
  });
}
