// The comparison view: the prior (registered onto this study's grid by the server) and this study side
// by side. Both grids are the same, so NiiVue's sync links the crosshair (scrolling), zoom/pan, the
// slice layout and the window (cal_min/cal_max) both ways.
import { StudyViewer, windowToCalRange } from "./lib/viewer.js";

const SYNC = { "2d": true, "3d": true, zoomPan: true, cal_min: true, cal_max: true, sliceType: true, crosshair: true };

async function start() {
  const config = JSON.parse(document.getElementById("compare-config").textContent);
  const status = document.getElementById("compare-status");
  const prior = new StudyViewer(document.getElementById("compare-prior"));
  const current = new StudyViewer(document.getElementById("compare-current"));
  window.yixinCompare = { prior, current };
  const win = config.initialWindow || {};
  const calRange = win.width ? windowToCalRange(win.center, win.width) : null;
  try {
    await Promise.all([prior.attach(), current.attach()]);
    await Promise.all([
      prior.loadBase(config.priorVolumeUrl, { calRange }),
      current.loadBase(config.currentVolumeUrl, { calRange }),
    ]);
    prior.nv.broadcastTo(current.nv, SYNC);
    current.nv.broadcastTo(prior.nv, SYNC);
    status.dataset.state = "ready";
    status.textContent = status.dataset.readyText || "";
  } catch (err) {
    status.dataset.state = "error";
    status.textContent = `${status.dataset.errorText || ""} ${err.message}`;
    throw err;
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
