// Chart.js line charts of per-round metrics for the federated task page.
import { Chart, LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip } from "chart.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

const COLORS = ["#0b7285", "#e8590c", "#5f3dc4", "#2b8a3e", "#c92a2a", "#1864ab"];

/** Create (once) or update a line chart: series = [{label, values}], labels = round numbers. */
export function drawLines(canvas, charts, { labels, series, yLabel }) {
  const datasets = series.map((s, i) => ({
    label: s.label, data: s.values, borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
    spanGaps: true, tension: 0.2,
  }));
  const existing = charts.get(canvas.id);
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets = datasets;
    existing.update();
    return existing;
  }
  const chart = new Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: { animation: false, scales: { y: { title: { display: true, text: yLabel } } } },
  });
  charts.set(canvas.id, chart);
  return chart;
}
