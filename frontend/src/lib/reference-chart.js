// Reference ranges on the study page: for each figure, the patient's value as a point over a box plot
// of the published reference range and a box plot of the hospital's other patients, drawn with the
// chart.js box-plot plug-in (@sgratzl/chartjs-chart-boxplot). Reads
// {{ reference_chart|json_script:"reference-range-data" }} from templates/diagnosis/_reference_ranges.html.
import { Chart, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip } from "chart.js";
import { BoxPlotController, BoxAndWiskers } from "@sgratzl/chartjs-chart-boxplot";
import { gettext } from "./i18n.js";
import { formatNumber } from "./format.js";

Chart.register(BoxPlotController, BoxAndWiskers, CategoryScale, LinearScale, LineController, LineElement, PointElement,
  Legend, Tooltip);

/** Return the page's reference data ({items, flags}), or null when the section is absent. */
export function referenceData() {
  const el = document.getElementById("reference-range-data");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch {
    return null;
  }
}

/** The box of a published range: whiskers at the 2.5th and 97.5th percentiles. */
function referenceBox(r) {
  return r ? { min: r.p2_5, q1: r.p25, median: r.p50, q3: r.p75, max: r.p97_5, outliers: [] } : null;
}

/** The box of the hospital's cohort (Tukey whiskers, outliers beyond 1.5 IQR). */
function cohortBox(c) {
  return c ? { min: c.min, q1: c.q1, median: c.median, q3: c.q3, max: c.max, outliers: c.outliers || [] } : null;
}

/** Draw one chart per figure into #reference-range-charts; returns the charts. */
export function startReferenceCharts() {
  const data = referenceData();
  const holder = document.getElementById("reference-range-charts");
  if (!data || !holder) return [];
  const charts = [];
  for (const item of data.items || []) {
    const figure = document.createElement("figure");
    figure.className = "reference-range-chart";
    figure.dataset.measure = item.measure;
    const caption = document.createElement("figcaption");
    caption.textContent = `${item.name}: ${formatNumber(item.value, 2)} ${item.unit}`;
    const box = document.createElement("div");
    box.className = "chart-box";
    const canvas = document.createElement("canvas");
    box.appendChild(canvas);
    figure.append(caption, box);
    holder.appendChild(figure);
    const patient = item.outside ? "#d62728" : "#1f77b4";
    // The y axis spans every drawn value (the plug-in does not widen it for precomputed outliers).
    const r = item.reference;
    const c = item.cohort;
    const shown = [item.value, ...(r ? [r.p2_5, r.p97_5] : []), ...(c ? [c.min, c.max, ...(c.outliers || [])] : [])];
    const low = Math.min(...shown);
    const high = Math.max(...shown);
    const pad = (high - low) * 0.08 || Math.abs(high) * 0.05 || 1;
    charts.push(new Chart(canvas, {
      type: "boxplot",
      data: {
        labels: [gettext("Reference range"), gettext("Hospital cohort")],
        datasets: [
          {
            label: gettext("Distribution"),
            data: [referenceBox(item.reference), cohortBox(item.cohort)],
            backgroundColor: "rgba(127, 127, 127, 0.25)",
            borderColor: "#555",
            borderWidth: 1,
            outlierBackgroundColor: "#999",
            itemRadius: 0,
          },
          {
            type: "line",
            label: gettext("This patient"),
            data: [item.value, item.value],
            showLine: false,
            pointRadius: 6,
            backgroundColor: patient,
            borderColor: patient,
            pointBackgroundColor: patient,
            pointBorderColor: patient,
          },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { position: "bottom" } },
        scales: { y: { beginAtZero: false, min: low - pad, max: high + pad, title: { display: true, text: item.unit } } },
      },
    }));
  }
  return charts;
}

/** Return the badge text for a measurement-table row (segment `label` of segmentation `segmentationId`), or null. */
export function referenceBadge(data, segmentationId, label) {
  if (!data || !data.flags) return null;
  const flags = data.flags.filter((f) => String(f.segmentationId) === String(segmentationId) && f.labels.includes(label));
  if (!flags.length) return null;
  return {
    text: gettext("Outside reference range"),
    title: flags.map((f) => `${f.name} (${f.source})`).join("\n"),
  };
}
