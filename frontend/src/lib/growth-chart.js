// Figures over time: per matched finding and segment, one line chart per figure (volume, long axis, short
// axis, mean HU) on a real time axis — a linear x scale over epoch milliseconds, so studies are spaced by
// the days between them, with ticks at the study dates formatted by formatDate (the page's date format).
// Reads the JSON of each section of templates/diagnosis/_growth_charts.html
// (diagnosis.selectors_growth.growth_page_payload: words already in the page's language).
import { Chart, LinearScale, LineController, LineElement, PointElement, Tooltip } from "chart.js";
import { formatDate, formatNumber } from "./format.js";

Chart.register(LinearScale, LineController, LineElement, PointElement, Tooltip);

const DAY_MS = 86_400_000;
const COLORS = { volume_ml: "#1f77b4", long_axis_mm: "#d62728", short_axis_mm: "#ff7f0e", mean_hu: "#2ca02c" };
const DIGITS = { volume_ml: 3, long_axis_mm: 1, short_axis_mm: 1, mean_hu: 1 };

/** The ISO date (UTC) of a time point in epoch milliseconds. */
export function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Return the "(+1.2, +30.0%)" text of a change, or "" at the first time point. */
export function changeText(change, pct, digits) {
  if (change === null || change === undefined) return "";
  const sign = (v) => (v > 0 ? "+" : "");
  const parts = [`${sign(change)}${formatNumber(change, digits)}`];
  if (pct !== null && pct !== undefined) parts.push(`${sign(pct)}${formatNumber(pct, 1)}%`);
  return ` (${parts.join(", ")})`;
}

/** Build the chart.js configuration of one figure of one series (exported for tests in the browser). */
export function growthChartConfig(series, figure, labels) {
  const points = series.points.filter((p) => p.t_ms !== null && p[figure] !== null && p[figure] !== undefined);
  const times = points.map((p) => p.t_ms);
  const span = Math.max(times[times.length - 1] - times[0], DAY_MS);
  const color = COLORS[figure] || "#1f77b4";
  return {
    type: "line",
    data: {
      datasets: [{
        label: labels.figures[figure],
        data: points.map((p) => ({ x: p.t_ms, y: p[figure], point: p })),
        borderColor: color,
        backgroundColor: color,
        pointRadius: 4,
        tension: 0,
      }],
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items) => formatDate(isoDay(items[0].parsed.x)),
            label: (item) => {
              const p = item.raw.point;
              return `${labels.figures[figure]}: ${formatNumber(p[figure], DIGITS[figure])}`
                + changeText(p[`${figure}_change`], p[`${figure}_change_pct`], DIGITS[figure]);
            },
          },
        },
      },
      scales: {
        x: {
          type: "linear",
          min: times[0] - span * 0.06,
          max: times[times.length - 1] + span * 0.06,
          title: { display: true, text: labels.x },
          // One tick per study date, placed at its date (the axis itself is continuous time).
          afterBuildTicks: (axis) => { axis.ticks = [...new Set(times)].map((value) => ({ value })); },
          ticks: { callback: (value) => formatDate(isoDay(value)), maxRotation: 0, autoSkip: true },
        },
        y: { type: "linear", beginAtZero: false, title: { display: true, text: labels.figures[figure] } },
      },
    },
  };
}

/** Draw every growth section of the page; returns the charts (each canvas carries data-figure). */
export function startGrowthCharts(root = document) {
  const charts = [];
  for (const section of root.querySelectorAll(".growth-section:not([data-drawn])")) {
    const script = section.querySelector('script[type="application/json"]');
    let data = null;
    try {
      data = JSON.parse(script ? script.textContent : "null");
    } catch {
      data = null;
    }
    if (!data) continue;
    section.dataset.drawn = "1";
    for (const series of data.series || []) {
      const holder = [...section.querySelectorAll(".growth-series")].find((el) => el.dataset.series === series.key);
      const grid = holder && holder.querySelector(".growth-chart-grid");
      if (!grid) continue;
      for (const { key: figure } of data.figures || []) {
        const dated = series.points.filter((p) => p.t_ms !== null && p[figure] !== null && p[figure] !== undefined);
        if (dated.length < 2) continue;
        const figureEl = document.createElement("figure");
        figureEl.className = "growth-chart";
        figureEl.dataset.figure = figure;
        const caption = document.createElement("figcaption");
        caption.textContent = data.labels.figures[figure];
        const box = document.createElement("div");
        box.className = "chart-box";
        const canvas = document.createElement("canvas");
        box.appendChild(canvas);
        figureEl.append(caption, box);
        grid.appendChild(figureEl);
        const chart = new Chart(canvas, growthChartConfig(series, figure, data.labels));
        canvas.yixinChart = chart;
        charts.push(chart);
      }
    }
  }
  return charts;
}
