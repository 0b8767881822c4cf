// Figures over time on the study, patient timeline, report and the patient's own report pages: draws the
// sections of templates/diagnosis/_growth_charts.html (frontend/src/lib/growth-chart.js). The partial
// may be included several times on a page (one per report): each section is drawn once.
import { startGrowthCharts } from "./lib/growth-chart.js";

function start() {
  const charts = startGrowthCharts();
  window.yixinGrowthCharts = [...(window.yixinGrowthCharts || []), ...charts];
  document.documentElement.dataset.growthCharts = String(window.yixinGrowthCharts.length);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
