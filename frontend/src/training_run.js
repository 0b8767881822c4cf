// The training-run page: a live chart of the training loss and validation Dice per epoch, the
// run's status, a cancel button and, once done, the registered model.
//
// The row is the truth: the page reads the run through the API on load and whenever the socket
// (re)connects or notifies; a socket message carries the same payload as the API.
import { Chart, LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip } from "chart.js";

import { requestJson } from "./lib/api.js";
import { gettext, interpolate, labelOf } from "./lib/i18n.js";
import { ReconnectingSocket, SOCKET_STATE_LABELS, websocketUrl } from "./lib/socket.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

const STATUS_LABELS = {
  queued: () => gettext("Queued"),
  running: () => gettext("Running"),
  succeeded: () => gettext("Succeeded"),
  failed: () => gettext("Failed"),
  cancelled: () => gettext("Cancelled"),
};
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

const config = JSON.parse(document.getElementById("training-run-config").textContent);
const $ = (id) => document.getElementById(id);
let chart = null;

function drawChart(epochs) {
  const labels = epochs.map((e) => e.epoch);
  const datasets = [
    { label: gettext("Training loss"), data: epochs.map((e) => e.loss), borderColor: "#e8590c", backgroundColor: "#e8590c", yAxisID: "loss", spanGaps: true },
    { label: gettext("Validation Dice"), data: epochs.map((e) => e.mean_dice), borderColor: "#0b7285", backgroundColor: "#0b7285", yAxisID: "dice", spanGaps: true },
  ];
  // The epochs drawn so far, for people's assistive tools and the browser test alike.
  $("training-run-chart").dataset.epochs = String(labels.length);
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update();
    return;
  }
  chart = new Chart($("training-run-chart"), {
    type: "line",
    data: { labels, datasets },
    options: {
      animation: false,
      scales: {
        x: { title: { display: true, text: gettext("Epoch") } },
        loss: { type: "linear", position: "left", title: { display: true, text: gettext("Training loss") } },
        dice: { type: "linear", position: "right", min: 0, max: 1, grid: { drawOnChartArea: false },
                title: { display: true, text: gettext("Validation Dice") } },
      },
    },
  });
}

function render(run) {
  const root = $("training-run");
  root.dataset.status = run.status;
  $("training-run-status").textContent = labelOf(STATUS_LABELS, run.status);
  $("training-run-epochs").textContent = `${run.epochs.length} / ${run.settings.epochs}`;
  const error = $("training-run-error");
  error.hidden = !run.error_message;
  error.textContent = run.error_message || "";
  const model = run.segmentation_model;
  $("training-run-model").hidden = !model;
  if (model) {
    const link = $("training-run-model-link");
    link.href = model.bundle_url;
    link.textContent = interpolate(gettext("%(name)s version %(version)s"), { name: model.name, version: model.version });
  }
  $("training-run-cancel").hidden = !config.can_cancel || FINISHED.has(run.status);
  drawChart(run.epochs);
}

async function reload() {
  try {
    render(await requestJson(config.api_url));
  } catch (error) {
    $("training-run-live").textContent = error.message;
  }
}

$("training-run-cancel").addEventListener("click", async () => {
  if (!window.confirm(gettext("Stop this training run? The epochs trained so far are kept in the chart."))) return;
  try {
    render(await requestJson(config.cancel_url, { method: "POST" }));
  } catch (error) {
    $("training-run-live").textContent = error.message;
  }
});

render(config.run);
if (!FINISHED.has(config.run.status)) {
  const socket = new ReconnectingSocket(websocketUrl(config.socket_path), {
    onOpen: () => reload(),
    onMessage: (message) => {
      if (message.type !== "training.progress") return;
      render(message.run);
      if (FINISHED.has(message.run.status)) socket.stop();
    },
    onStateChange: (state) => {
      $("training-run-live").textContent = SOCKET_STATE_LABELS[state] ? SOCKET_STATE_LABELS[state]() : "";
    },
  });
  socket.start();
}
