// Federated task page: live state of the round, clients (state, loss, Dice, reputation,
// participation, credits) and per-round charts. The database is the truth: the websocket
// only says "something changed" and the page re-reads the task through the API.
import { requestJson, csrfTokenFromCookie } from "./lib/api.js";
import { gettext, labelOf } from "./lib/i18n.js";
import { ReconnectingSocket, SOCKET_STATE_LABELS, websocketUrl } from "./lib/socket.js";
import { drawLines } from "./lib/fed-charts.js";

import { wireInvitations } from "./lib/fed-invitations.js";
import { wireTaskForm } from "./lib/fed-task-form.js";

const configElement = document.getElementById("federation-config");
const config = configElement ? JSON.parse(configElement.textContent) : null;
// Labels of the codes the task API sends (federation.models' choices), looked up when shown.
const TASK_STATUS = {
  draft: () => gettext("Draft"),
  queued: () => gettext("Queued"),
  running: () => gettext("Running"),
  paused: () => gettext("Paused"),
  cancelled: () => gettext("Cancelled"),
  completed: () => gettext("Completed"),
  failed: () => gettext("Failed"),
};
const CLIENT_STATUS = {
  answered: () => gettext("Answered"),
  absent: () => gettext("Absent"),
  failed: () => gettext("Failed"),
  not_selected: () => gettext("Not selected"),
};

const charts = new Map();

function fmt(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function render(task) {
  document.getElementById("task-status").textContent = labelOf(TASK_STATUS, task.status);
  document.getElementById("task-status").className = `badge badge-${task.status}`;
  document.getElementById("task-round").textContent = task.current_round;
  const rounds = task.rounds_completed || [];
  const last = rounds[rounds.length - 1];
  const answered = new Map();
  for (const r of rounds) for (const c of r.clients) {
    const row = answered.get(c.client_id) || { answered: 0, asked: 0 };
    if (c.status !== "not_selected") row.asked += 1;
    if (c.status === "answered") row.answered += 1;
    answered.set(c.client_id, row);
  }
  for (const tr of document.querySelectorAll("#clients tbody tr")) {
    const id = tr.dataset.client;
    const c = last ? last.clients.find((x) => x.client_id === id) : null;
    tr.querySelector(".state").textContent = c ? labelOf(CLIENT_STATUS, c.status) : "—";
    tr.querySelector(".loss").textContent = c ? fmt(c.metrics.loss) : "—";
    tr.querySelector(".dice").textContent = c ? fmt(c.metrics["dice-local"]) : "—";
    tr.querySelector(".reputation").textContent = c && c.reputation != null ? fmt(c.reputation) : "—";
    const p = answered.get(id);
    tr.querySelector(".participation").textContent = p ? `${p.answered} / ${p.asked}` : "—";
    const credit = (task.credits || {})[id];
    tr.querySelector(".credit").textContent = credit ? `${(credit.share * 100).toFixed(1)} %` : "—";
  }
  document.getElementById("ledger-state").textContent = task.ledger_verified ? `✔ ${gettext("ledger verified")}` : `✘ ${gettext("ledger check failed")}`;
  const labels = rounds.map((r) => r.round_number);
  const clientIds = [...document.querySelectorAll("#clients tbody tr")].map((tr) => tr.dataset.client);
  drawLines(document.getElementById("chart-loss"), charts, {
    labels, yLabel: gettext("Training loss"),
    series: clientIds.map((id) => ({ label: id, values: rounds.map((r) => r.clients.find((c) => c.client_id === id)?.metrics?.loss ?? null) })),
  });
  drawLines(document.getElementById("chart-dice"), charts, {
    labels, yLabel: gettext("Validation Dice"),
    series: [
      { label: gettext("Validation Dice"), values: rounds.map((r) => r.metrics.val_dice ?? null) },
      { label: gettext("Dice on own data"), values: rounds.map((r) => r.metrics.dice_local ?? null) },
    ],
  });
}

async function refresh() {
  try {
    render(await requestJson(config.api_url));
  } catch (err) {
    document.getElementById("action-message").textContent = err.message;
  }
}

async function act(url, body) {
  const message = document.getElementById("action-message");
  try {
    await requestJson(url, { method: "POST", body: body || {}, csrfToken: csrfTokenFromCookie() });
    message.textContent = "";
  } catch (err) {
    message.textContent = err.message;
  }
  refresh();
}

function startTaskPage() {
for (const button of document.querySelectorAll("#task-actions [data-action]")) {
  button.addEventListener("click", () => act(config.actions[button.dataset.action]));
}
const registerButton = document.getElementById("register-deploy");
if (registerButton) registerButton.addEventListener("click", () => act(config.register_url, { deploy: true }));

new ReconnectingSocket(websocketUrl(config.ws_path), {
  onOpen: refresh,
  onMessage: refresh,
  onStateChange: (state) => { document.getElementById("ws-state").textContent = SOCKET_STATE_LABELS[state] ? SOCKET_STATE_LABELS[state]() : ""; },
}).start();
refresh();
}

if (config) startTaskPage();
wireInvitations(document.getElementById("invitations"));
wireTaskForm(document.getElementById("task-create-form"));
