// Study page: NiiVue viewer, segmentation runs, legend and measurements.
//
// Reads {{ viewer_config|json_script:"viewer-config" }} and the elements of
// templates/annotation/_viewer.html. The database is the truth: the websocket only
// says "something changed" and the page re-reads the study through the API.
import { tinykeys } from "tinykeys";
import { StudyViewer, calRangeToWindow, percentileWindow, windowToCalRange } from "./lib/viewer.js";
import { requestJson } from "./lib/api.js";
import { gettext, interpolate, isChinesePage, labelOf } from "./lib/i18n.js";
import { formatNumber, formatBytes } from "./lib/format.js";
import { ReconnectingSocket, SOCKET_STATE_LABELS, websocketUrl } from "./lib/socket.js";
import { Workbench } from "./lib/wb-workbench.js";
import { startFindingsPanel } from "./lib/findings-panel.js";
import { watchMainThread } from "./lib/main-thread.js";
import { referenceBadge, referenceData, startReferenceCharts } from "./lib/reference-chart.js";

// The inflate worker's URL, from the script tag that loaded this bundle (templates/annotation/study_detail.html).
const INFLATE_WORKER_URL = (document.currentScript && document.currentScript.dataset.inflateWorker) || null;
const ACTIVE = new Set(["queued", "running"]);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 4000;

// Labels of the values the server sends, looked up when shown (see lib/i18n.js).
const RUN_STATUS = {
  idle: () => gettext("Not started"),
  queued: () => gettext("Queued"),
  running: () => gettext("Running"),
  succeeded: () => gettext("Succeeded"),
  failed: () => gettext("Failed"),
  cancelled: () => gettext("Cancelled"),
};
const RUN_STAGE = {
  loading: () => gettext("Loading the image"),
  preprocessing: () => gettext("Preprocessing"),
  inference: () => gettext("Running the model"),
  lungs: () => gettext("Segmenting the lungs"),
  detection: () => gettext("Finding nodules…"),
  postprocessing: () => gettext("Postprocessing"),
  saving: () => gettext("Saving the label map"),
  measuring: () => gettext("Measuring"),
  done: () => gettext("Done"),
};
const LOAD_STAGE = {
  decoding: () => gettext("Decoding the volume…"),
  rendering: () => gettext("Preparing the display…"),
};
const WINDOW_PRESET = {
  lung: () => gettext("Lung"),
  mediastinum: () => gettext("Mediastinum"),
  abdomen: () => gettext("Abdomen"),
  bone: () => gettext("Bone"),
  brain: () => gettext("Brain"),
};


function $(id) {
  return document.getElementById(id);
}

function readConfig() {
  const el = $("viewer-config");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch (_) {
    return null;
  }
}

function hasWebGL2() {
  try {
    return !!document.createElement("canvas").getContext("webgl2");
  } catch (_) {
    return false;
  }
}

/** Normalise a segmentation from viewer_config (camelCase) or the study API (snake_case). */
function normalizeSegmentation(raw) {
  const labels = (raw.labels || raw.label_table || []).map((l) => ({
    index: Number(l.index ?? l.value ?? l.label),
    name: l.name || "",
    name_zh: l.name_zh || "",
    color: l.color || "#888888",
  }));
  return {
    id: raw.id,
    name: raw.name || `#${raw.id}`,
    version: raw.version ?? "",
    labelmapUrl: raw.labelmapUrl || raw.labelmap_url,
    measurementsUrl: raw.measurementsUrl || raw.measurements_url,
    uncertaintyUrl: raw.uncertaintyUrl || raw.uncertainty_url || null,
    createdAt: raw.createdAt || raw.created_at || "",
    isCurrent: (raw.isCurrent ?? raw.is_current) !== false,
    labels,
  };
}

/** Only the current version of each version tree is offered in the segmentation list. */
function currentOnly(list) {
  return list.map(normalizeSegmentation).filter((s) => s.isCurrent);
}

function runSeriesId(run) {
  const s = run.series_id ?? run.seriesId ?? run.series;
  return s && typeof s === "object" ? s.id : s;
}

class StudyPage {
  constructor(config) {
    this.config = config;
    this.zh = isChinesePage();
    this.isCT = String(config.modality || "").toUpperCase() === "CT";
    this.segmentations = currentOnly(config.segmentations || []);
    this.activeSegmentationId = null;
    this.runs = new Map(); // id -> latest run JSON we believe
    this.trackedRunId = null; // the run the panel shows
    this.watched = new Set(); // runs seen active here: their end triggers a reload
    this.measurementsToken = 0;
    this.pollTimer = null;
    this.socket = null;
    this.viewer = null;
  }

  labelName(label) {
    const primary = this.zh ? label.name_zh || label.name : label.name || label.name_zh;
    return primary || `#${label.index}`;
  }

  // ---- errors -------------------------------------------------------------------

  showError(message) {
    const box = $("viewer-error");
    if (!box) return;
    const target = box.querySelector("[data-role=message]") || box;
    target.textContent = message;
    box.hidden = false;
  }

  clearError() {
    const box = $("viewer-error");
    if (box) box.hidden = true;
  }

  // ---- start ----------------------------------------------------------------------

  async start() {
    if (this.config.canSegment === false) {
      const panel = $("run-panel");
      if (panel) panel.hidden = true;
    }
    this.bindToolbar();
    this.renderModels();
    this.renderSegmentationSelect();
    this.renderRun(null);
    this.findings = startFindingsPanel(this);
    this.referenceData = referenceData();
    try {
      this.referenceCharts = startReferenceCharts();
    } catch (err) {
      // The charts are an aid beside the table; a drawing failure must not stop the viewer.
      console.error(err);
      this.referenceCharts = [];
    }
    window.yixinViewer.findings = this.findings;
    const ready = this.startViewer();
    this.startSocket();
    this.refreshState({ initial: true });
    return ready;
  }

  async startViewer() {
    const canvas = $("viewer-canvas");
    const loading = $("viewer-loading");
    if (!hasWebGL2()) {
      if (loading) loading.hidden = true;
      this.showError(gettext("This browser cannot use WebGL2, so the image cannot be shown."));
      throw new Error("WebGL2 unavailable");
    }
    this.viewer = new StudyViewer(canvas);
    window.yixinViewer.nv = this.viewer.nv;
    window.yixinViewer.viewer = this.viewer;
    this.viewer.setOverlayOpacity(Number(($("opacity") || {}).value ?? 50) / 100);
    const nv = this.viewer.nv;
    nv.onLocationChange = (data) => this.onLocation(data);
    nv.onIntensityChange = () => this.onIntensityChange();
    await this.viewer.attach();
    // How long the load blocks the page, read back by tests/e2e/test_viewer_details.py.
    const watch = watchMainThread();
    window.yixinViewer.loadWatch = watch.record;
    try {
      await this.viewer.loadBase(this.config.volumeUrl, {
        onProgress: (p) => this.showLoadProgress(p),
        onStage: (stage) => this.showLoadStage(stage),
        onMark: watch.mark,
        inflateWorkerUrl: INFLATE_WORKER_URL,
        calRange: (image) => this.presetCalRange(($("wl-preset") || {}).value || "auto", image),
      });
    } catch (err) {
      watch.stop();
      this.showError(interpolate(gettext("Could not load the image: %(message)s"), { message: err.message }));
      throw err;
    } finally {
      if (loading) loading.hidden = true;
    }
    this.applyPreset(($("wl-preset") || {}).value || "auto");
    watch.stop();
    this.bindKeys();
    if (this.config.workbench && $("workbench")) {
      this.workbench = new Workbench(this, this.config);
      window.yixinViewer.workbench = this.workbench;
      this.workbench.attach(this.viewer);
    }
    this.viewer.nv.createOnLocationChange(); // fill the status line before the first click
    const first = this.segmentations[0];
    if (first) this.selectSegmentation(first.id);
    else this.renderLegend(null);
    return this.viewer;
  }

  // ---- loading ----------------------------------------------------------------------

  /** Bytes of the volume received so far (the volume streams; the page stays usable meanwhile). */
  showLoadProgress({ received, total }) {
    const stage = $("viewer-loading-stage");
    const bar = $("viewer-loading-progress");
    const bytes = $("viewer-loading-bytes");
    const loading = $("viewer-loading");
    if (loading) loading.dataset.stage = "downloading";
    if (stage) {
      stage.textContent = total
        ? interpolate(gettext("Downloading the image: %(received)s of %(total)s"), {
            received: formatBytes(received),
            total: formatBytes(total),
          })
        : interpolate(gettext("Downloading the image: %(received)s"), { received: formatBytes(received) });
    }
    if (bar) {
      if (total) bar.value = Math.round((100 * received) / total);
      else bar.removeAttribute("value");
    }
    if (bytes) bytes.dataset.received = String(received);
    this.logLoad({ stage: "downloading", received, total: total || null, text: stage ? stage.textContent : "" });
  }

  /** Keep what the loading box showed, for tests (window.yixinViewer.loadLog). */
  logLoad(entry) {
    const log = (window.yixinViewer.loadLog = window.yixinViewer.loadLog || []);
    const last = log[log.length - 1];
    // One entry per stage and per tenth of the download (and its end), not one per network chunk.
    if (last && last.stage === entry.stage && entry.total && last.total && entry.received < entry.total &&
        Math.floor((10 * entry.received) / entry.total) === Math.floor((10 * last.received) / last.total)) return;
    log.push(entry);
  }

  showLoadStage(name) {
    const stage = $("viewer-loading-stage");
    const loading = $("viewer-loading");
    const bar = $("viewer-loading-progress");
    if (loading) loading.dataset.stage = name;
    if (stage) stage.textContent = labelOf(LOAD_STAGE, name);
    if (bar && name === "decoding") bar.value = 100;
    this.logLoad({ stage: name, text: stage ? stage.textContent : "" });
  }

  // ---- keyboard -------------------------------------------------------------------

  /**
   * Radiology viewer habits: 1–9 pick the window menu's presets in order, PgUp/PgDn and the arrows
   * move one slice, R resets window, zoom and slice, ? shows the help. Keys typed into a form field
   * are the field's.
   */
  bindKeys() {
    if (this.unbindKeys) return;
    const guard = (fn) => (event) => {
      const target = event.target;
      if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
      event.preventDefault();
      fn(event);
    };
    const map = {};
    for (let n = 1; n <= 9; n++) map[String(n)] = guard(() => this.applyPresetNumber(n));
    const back = guard(() => this.viewer && this.viewer.moveSlices(-1));
    const forward = guard(() => this.viewer && this.viewer.moveSlices(1));
    // With a finding selected (or the findings list focused), up/down move through the findings.
    const findingOr = (delta, fallback) => guard((event) => {
      if (!(this.findings && this.findings.step(delta))) fallback(event);
    });
    Object.assign(map, {
      PageUp: back,
      ArrowUp: findingOr(-1, back),
      ArrowLeft: back,
      PageDown: forward,
      ArrowDown: findingOr(1, forward),
      ArrowRight: forward,
      r: guard(() => this.resetView()),
      "Shift+?": guard(() => this.toggleHelp()),
      "?": guard(() => this.toggleHelp()),
      Escape: () => {
        this.toggleHelp(false);
        if (this.findings) this.findings.deselect();
      },
    });
    this.unbindKeys = tinykeys(window, map);
    const open = $("viewer-help-open");
    if (open) open.addEventListener("click", () => this.toggleHelp(true));
    const close = $("viewer-help-close");
    if (close) close.addEventListener("click", () => this.toggleHelp(false));
  }

  /** The window menu's n-th preset (1-based), skipping hidden and disabled entries. */
  applyPresetNumber(n) {
    const select = $("wl-preset");
    if (!select) return;
    const options = [...select.options].filter((o) => !o.hidden && !o.disabled && o.value !== "custom");
    const option = options[n - 1];
    if (!option) return;
    select.value = option.value;
    this.applyPreset(option.value);
  }

  resetView() {
    if (!this.viewer) return;
    this.viewer.resetZoom();
    this.viewer.resetSlices();
    const select = $("wl-preset");
    if (select && this.initialPreset) select.value = this.initialPreset;
    this.applyPreset(this.initialPreset || "auto");
  }

  toggleHelp(show) {
    const help = $("viewer-help");
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  // ---- toolbar ----------------------------------------------------------------------

  bindToolbar() {
    const preset = $("wl-preset");
    if (preset) {
      this.renderWindowPresets(preset);
      if (!this.isCT) {
        // Hounsfield presets mean nothing on MR and friends (the server sends none; hide any left).
        preset.querySelectorAll("option[data-hu]").forEach((o) => {
          o.disabled = true;
          o.hidden = true;
        });
      }
      preset.value = this.chooseInitialWindow(preset);
      this.initialPreset = preset.value;
      preset.addEventListener("change", () => this.applyPreset(preset.value));
    }
    const layout = $("layout-select");
    if (layout) layout.addEventListener("change", () => this.viewer && this.viewer.setLayout(layout.value));
    const drag = $("drag-mode");
    if (drag) drag.addEventListener("change", () => this.viewer && this.viewer.setLeftDragMode(drag.value));
    const on = (id, fn) => {
      const el = $(id);
      if (el) el.addEventListener("click", fn);
    };
    on("zoom-in", () => this.viewer && this.viewer.zoom(1.25));
    on("zoom-out", () => this.viewer && this.viewer.zoom(0.8));
    on("zoom-reset", () => this.viewer && this.viewer.resetZoom());
    const opacity = $("opacity");
    if (opacity) {
      const update = () => {
        const out = $("opacity-value");
        if (out) out.textContent = `${opacity.value}%`;
        if (this.viewer) this.viewer.setOverlayOpacity(Number(opacity.value) / 100);
      };
      opacity.addEventListener("input", update);
      update();
    }
    const heat = $("uncertainty-toggle");
    if (heat) heat.addEventListener("change", () => this.updateHeatmap());
    const segSelect = $("segmentation-select");
    if (segSelect) {
      segSelect.addEventListener("change", () => this.selectSegmentation(segSelect.value ? Number(segSelect.value) : null));
    }
    on("start-segmentation", () => this.startRun());
    on("cancel-run", () => this.cancelRun());
    const box = $("viewer-error");
    if (box) {
      const close = box.querySelector("[data-role=dismiss]");
      if (close) close.addEventListener("click", () => this.clearError());
    }
    const table = $("measurement-table");
    if (table) {
      table.addEventListener("click", (event) => {
        const row = event.target.closest("tr[data-label]");
        if (row && row.dataset.centroidRas && this.viewer) this.viewer.moveToRasMm(JSON.parse(row.dataset.centroidRas));
      });
    }
  }

  /**
   * Add the HU window presets of viewer_config.windowPresets (the server's WINDOW_PRESETS, in its
   * order) to the window menu, before "Full range".
   */
  renderWindowPresets(select) {
    const before = select.querySelector('option[value="full"]');
    for (const { name, center, width } of this.config.windowPresets || []) {
      const option = document.createElement("option");
      option.value = name;
      option.dataset.hu = "";
      option.dataset.center = String(center);
      option.dataset.width = String(width);
      const label = labelOf(WINDOW_PRESET, name);
      option.textContent = `${label} (${center}/${width})`;
      select.insertBefore(option, before);
    }
  }

  /**
   * The menu entry the viewer opens with, from viewer_config.initialWindow (the server's
   * annotation.imaging.windowing.initial_window): the series' DICOM window (added as its own entry),
   * a preset chosen by modality and body part, or "auto" (robust percentiles) for MR and others.
   */
  chooseInitialWindow(select) {
    const initial = this.config.initialWindow || {};
    if (initial.source === "dicom" && Number.isFinite(initial.center) && Number.isFinite(initial.width)) {
      const option = document.createElement("option");
      option.value = "dicom";
      option.dataset.center = String(initial.center);
      option.dataset.width = String(initial.width);
      option.textContent = `${gettext("DICOM window")} (${initial.center}/${initial.width})`;
      select.insertBefore(option, select.options[1] || null);
      return "dicom";
    }
    if (initial.source === "preset" && select.querySelector(`option[value="${initial.preset}"]`)) return initial.preset;
    return "auto";
  }

  /** The display range [cal_min, cal_max] of a window menu entry for `image` (an NVImage), or null. */
  presetCalRange(value, image) {
    const preset = $("wl-preset");
    const option = preset && [...preset.options].find((o) => o.value === value);
    if (option && option.dataset.center !== undefined && option.dataset.width !== undefined) {
      return windowToCalRange(Number(option.dataset.center), Number(option.dataset.width));
    }
    if (value === "full" && Array.isArray(this.config.intensityRange)) {
      return [Number(this.config.intensityRange[0]), Number(this.config.intensityRange[1])];
    }
    if (value === "auto" && image) return percentileWindow(image);
    return null;
  }

  applyPreset(value) {
    if (!this.viewer || !this.viewer.base) return;
    const range = this.presetCalRange(value, this.viewer.base);
    if (range) this.viewer.setCalRange(range[0], range[1]);
    this.updateWindowReadout();
  }

  onIntensityChange() {
    const preset = $("wl-preset");
    if (preset && preset.querySelector('option[value="custom"]')) preset.value = "custom";
    this.updateWindowReadout();
  }

  updateWindowReadout() {
    const out = $("wl-readout");
    const base = this.viewer && this.viewer.base;
    if (!out || !base) return;
    const { center, width } = calRangeToWindow(base.cal_min, base.cal_max);
    out.textContent = interpolate(gettext("L %(center)s / W %(width)s"), { center: Math.round(center), width: Math.round(width) });
    out.dataset.center = String(center);
    out.dataset.width = String(width);
    const select = $("wl-preset");
    if (select) out.dataset.preset = select.value;
    out.dataset.calMin = String(base.cal_min);
    out.dataset.calMax = String(base.cal_max);
  }

  onLocation(data) {
    const mmEl = $("cursor-mm");
    const valueEl = $("cursor-value");
    const labelEl = $("cursor-label");
    if (mmEl && data.mm) {
      mmEl.textContent = [0, 1, 2].map((i) => formatNumber(data.mm[i], 1)).join(", ");
      mmEl.dataset.mm = JSON.stringify([0, 1, 2].map((i) => Number(data.mm[i])));
    }
    const values = data.values || [];
    const base = this.viewer && this.viewer.base;
    const baseValue = values.find((v) => base && v.id === base.id) || values[0];
    if (valueEl) {
      if (baseValue && Number.isFinite(baseValue.value)) {
        const v = baseValue.value;
        const text = this.isCT ? `${Math.round(v)} HU` : formatNumber(v, Number.isInteger(v) ? 0 : 2);
        valueEl.textContent = text;
        valueEl.dataset.value = String(v);
      } else {
        valueEl.textContent = "—";
        delete valueEl.dataset.value;
      }
    }
    if (labelEl) {
      const overlay = this.viewer && this.viewer.overlay;
      const ov = overlay && values.find((v) => v.id === overlay.id);
      const seg = this.currentSegmentation();
      const index = ov ? Math.round(ov.value) : 0;
      const label = index > 0 && seg ? seg.labels.find((l) => l.index === index) : null;
      labelEl.textContent = label ? this.labelName(label) : "—";
      labelEl.style.color = label ? label.color : "";
    }
  }

  // ---- segmentations --------------------------------------------------------------

  currentSegmentation() {
    return this.segmentations.find((s) => s.id === this.activeSegmentationId) || null;
  }

  renderSegmentationSelect() {
    const select = $("segmentation-select");
    if (!select) return;
    select.textContent = "";
    const none = new Option(gettext("None"), "");
    select.add(none);
    for (const seg of this.segmentations) {
      select.add(new Option(`${seg.shown_name || seg.name} · v${seg.version}`, String(seg.id)));
    }
    select.value = this.activeSegmentationId ? String(this.activeSegmentationId) : "";
    select.disabled = this.segmentations.length === 0;
  }

  async selectSegmentation(id) {
    const seg = this.segmentations.find((s) => s.id === id) || null;
    this.activeSegmentationId = seg ? seg.id : null;
    const select = $("segmentation-select");
    if (select) select.value = seg ? String(seg.id) : "";
    this.renderLegend(seg);
    this.loadMeasurements(seg);
    if (this.workbench && !this.workbench.editing) {
      this.workbench.renderVersions();
      this.workbench.updateButtons();
    }
    if (!this.viewer || !this.viewer.base) return;
    if (!seg) {
      this.viewer.removeOverlay();
      this.updateHeatmap();
      delete document.body.dataset.overlayLoaded;
      return;
    }
    delete document.body.dataset.overlayLoaded;
    try {
      const shown = await this.viewer.showLabelmap({
        id: seg.id,
        url: seg.labelmapUrl,
        labels: seg.labels,
        displayName: (l) => this.labelName(l),
      });
      if (shown) document.body.dataset.overlayLoaded = String(seg.id);
    } catch (err) {
      this.showError(interpolate(gettext("Could not load the segmentation: %(message)s"), { message: err.message }));
    }
    this.updateHeatmap();
  }

  /** Offer the uncertainty heat map for a network's segmentation and show it when ticked. */
  async updateHeatmap() {
    const seg = this.segmentations.find((s) => s.id === this.activeSegmentationId) || null;
    const url = seg && seg.uncertaintyUrl;
    const wrap = $("uncertainty-toggle-wrap");
    const box = $("uncertainty-toggle");
    if (wrap) wrap.hidden = !url;
    if (!this.viewer || !this.viewer.base) return;
    try {
      await this.viewer.showHeatmap(url && box && box.checked ? url : null);
    } catch (err) {
      this.showError(interpolate(gettext("Could not load the uncertainty map: %(message)s"), { message: err.message }));
    }
  }

  renderLegend(seg) {
    const list = $("label-legend");
    if (!list) return;
    list.textContent = "";
    if (!seg || seg.labels.length === 0) {
      const li = document.createElement("li");
      li.className = "legend-empty";
      li.textContent = gettext("No segmentation shown");
      list.appendChild(li);
      return;
    }
    for (const label of seg.labels) {
      const li = document.createElement("li");
      li.dataset.label = String(label.index);
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.id = `legend-label-${label.index}`;
      box.addEventListener("change", () => this.viewer && this.viewer.setLabelVisible(label.index, box.checked));
      const tag = document.createElement("label");
      tag.htmlFor = box.id;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = label.color;
      const name = document.createElement("span");
      name.className = "label-name";
      name.textContent = this.labelName(label);
      // The name in the page's language only (the other one is in the label table, not on screen).
      tag.append(swatch, name);
      li.append(box, tag);
      list.appendChild(li);
    }
  }

  async loadMeasurements(seg) {
    const token = ++this.measurementsToken;
    const table = $("measurement-table");
    const tbody = table && (table.tBodies[0] || table.createTBody());
    if (!tbody) return;
    if (!seg || !seg.measurementsUrl) {
      this.renderMeasurements(tbody, []);
      return;
    }
    table.setAttribute("aria-busy", "true");
    try {
      const data = await requestJson(seg.measurementsUrl);
      if (token !== this.measurementsToken) return;
      // Before rendering: the reference-range badges are matched by segmentation and label.
      table.dataset.segmentationId = String(seg.id);
      this.renderMeasurements(tbody, (data && data.segments) || []);
    } catch (err) {
      if (token !== this.measurementsToken) return;
      this.renderMeasurements(tbody, []);
      this.showError(interpolate(gettext("Could not load measurements: %(message)s"), { message: err.message }));
    } finally {
      if (token === this.measurementsToken) table.removeAttribute("aria-busy");
    }
  }

  renderMeasurements(tbody, segments) {
    tbody.textContent = "";
    const table = tbody.closest("table");
    const empty = $("measurement-empty");
    if (empty) empty.hidden = segments.length > 0;
    if (table) {
      table.dataset.rows = String(segments.length);
      if (!segments.length) delete table.dataset.segmentationId;
    }
    const unit = this.isCT ? " HU" : "";
    for (const s of segments) {
      const tr = document.createElement("tr");
      tr.dataset.label = String(s.label);
      if (Array.isArray(s.centroid_lps_mm) && s.centroid_lps_mm.length === 3) {
        // LPS (DICOM) to RAS (NIfTI, NiiVue's world frame): negate x and y.
        const [x, y, z] = s.centroid_lps_mm.map(Number);
        tr.dataset.centroidRas = JSON.stringify([-x, -y, z]);
        tr.title = gettext("Go to centroid");
        tr.classList.add("is-clickable");
      }
      const cell = (text, className) => {
        const td = document.createElement("td");
        if (className) td.className = className;
        td.textContent = text;
        tr.appendChild(td);
        return td;
      };
      const nameTd = cell("", "segment-name");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = s.color || "#888";
      const name = document.createElement("span");
      name.textContent = this.labelName({ index: s.label, name: s.name, name_zh: s.name_zh });
      nameTd.append(swatch, name);
      const badge = table && referenceBadge(this.referenceData, table.dataset.segmentationId, s.label);
      if (badge) {
        const b = document.createElement("span");
        b.className = "badge badge-warning reference-outside";
        b.textContent = badge.text;
        b.title = badge.title;
        nameTd.append(" ", b);
      }
      cell(formatNumber(s.volume_ml, 1), "volume-ml num");
      cell(formatNumber(s.max_diameter_mm, 1), "max-diameter-mm num");
      cell(
        s.axial_long_mm == null && s.axial_short_mm == null
          ? "—"
          : `${formatNumber(s.axial_long_mm, 1)} × ${formatNumber(s.axial_short_mm, 1)}`,
        "axial-mm num",
      );
      cell(formatNumber(s.surface_area_mm2 == null ? null : s.surface_area_mm2 / 100, 1), "surface-area-cm2 num");
      cell(s.component_count == null ? "—" : String(s.component_count), "component-count num");
      cell(
        s.mean_intensity == null ? "—" : `${formatNumber(s.mean_intensity, 0)} ± ${formatNumber(s.std_intensity, 0)}${unit}`,
        "mean-intensity num",
      );
      // A network's mean confidence in the segment; "*" marks one below the review threshold.
      const confidence = cell(
        s.confidence == null ? "—" : `${formatNumber(s.confidence * 100, 0)} %${s.low_confidence ? " *" : ""}`,
        "confidence num",
      );
      if (s.low_confidence) {
        tr.classList.add("low-confidence");
        confidence.title = gettext("Low model confidence: check this segment before relying on its figures.");
      }
      tbody.appendChild(tr);
    }
    const lowNote = $("measurement-low-confidence");
    if (lowNote) lowNote.hidden = !segments.some((s) => s.low_confidence);
  }

  // ---- inference runs ---------------------------------------------------------------

  renderModels() {
    const select = $("model-select");
    const button = $("start-segmentation");
    const models = this.config.models || [];
    if (select) {
      select.textContent = "";
      for (const m of models) {
        // The hospital's default model for the organ comes first and is pre-selected.
        select.add(new Option(`${m.display_name || m.name} · v${m.version}${m.is_default ? " ★" : ""}`, String(m.id),
          Boolean(m.is_default), Boolean(m.is_default)));
      }
      select.disabled = models.length === 0;
    }
    if (button) button.disabled = models.length === 0;
    if (!models.length) {
      const stage = $("run-stage");
      if (stage) stage.textContent = gettext("No model fits this series: see below how to get one.");
    }
  }

  /** Translate a pipeline stage the page knows, else show it as sent. */
  stageText(stage) {
    return labelOf(RUN_STAGE, stage);
  }

  trackedRun() {
    return this.trackedRunId ? this.runs.get(this.trackedRunId) || null : null;
  }

  renderRun(run) {
    const bar = $("run-progress");
    const stage = $("run-stage");
    const badge = $("run-status");
    const cancel = $("cancel-run");
    const start = $("start-segmentation");
    const status = run ? run.status : "";
    const active = ACTIVE.has(status);
    const percent = run ? Math.max(0, Math.min(100, Number(run.progress_percent) || 0)) : 0;
    if (bar) {
      bar.value = status === "succeeded" ? 100 : percent;
      bar.dataset.status = status;
      bar.setAttribute("aria-valuenow", String(bar.value));
    }
    const panel = $("run-panel");
    if (panel) panel.dataset.status = status;
    if (badge) {
      badge.textContent = labelOf(RUN_STATUS, status || "idle");
      badge.className = `badge badge-${status || "idle"}`;
    }
    const pct = $("run-percent");
    if (pct) pct.textContent = run ? `${Math.round(bar ? bar.value : percent)}%` : "";
    if (stage) {
      let text = "";
      if (run) {
        if (status === "failed") text = interpolate(gettext("Segmentation failed: %(message)s"), { message: run.error_message || "" });
        else if (status === "cancelled") text = gettext("Segmentation cancelled");
        else if (status === "succeeded") text = gettext("Segmentation finished");
        else text = run.stage ? this.stageText(run.stage) : labelOf(RUN_STATUS, status);
      } else if (!(this.config.models || []).length) {
        text = gettext("No model fits this series: see below how to get one.");
      }
      stage.textContent = text;
    }
    if (cancel) cancel.disabled = !active;
    if (start) start.disabled = active || !(this.config.models || []).length;
  }

  /** Merge a run we heard about (API or socket); keep the database's final word. */
  acceptRun(run, { fromApi = false } = {}) {
    if (!run || run.id == null) return;
    const sid = runSeriesId(run);
    if (sid != null && this.config.seriesId != null && Number(sid) !== Number(this.config.seriesId)) return;
    const known = this.runs.get(run.id);
    // A late socket message must not resurrect a finished run.
    if (known && TERMINAL.has(known.status) && !TERMINAL.has(run.status) && !fromApi) return;
    this.runs.set(run.id, run);
    if (ACTIVE.has(run.status)) {
      this.watched.add(run.id);
      const tracked = this.trackedRun();
      if (!tracked || !ACTIVE.has(tracked.status) || run.id > tracked.id) this.trackedRunId = run.id;
    }
    if (run.id === this.trackedRunId) this.renderRun(run);
    if (TERMINAL.has(run.status) && this.watched.has(run.id)) {
      this.watched.delete(run.id);
      this.onRunFinished(run, { fromApi });
    }
    this.updatePolling();
  }

  async onRunFinished(run, { fromApi }) {
    if (!fromApi) {
      // The socket said it ended: read the outcome and the new segmentation from the API.
      this.watched.add(run.id);
      await this.refreshState();
      return;
    }
    document.dispatchEvent(new CustomEvent("yixin:run-finished", { detail: { run } }));
    if (run.status === "failed") this.showError(interpolate(gettext("Segmentation failed: %(message)s"), { message: run.error_message || "" }));
    if (run.status === "succeeded" && run.segmentation_id != null) {
      const id = Number(run.segmentation_id);
      if (this.segmentations.some((s) => s.id === id)) await this.selectSegmentation(id);
    }
  }

  async startRun() {
    const select = $("model-select");
    if (!select || !select.value) return;
    try {
      await this.startRunWithModel(Number(select.value));
    } catch (err) {
      this.showError(interpolate(gettext("Could not start segmentation: %(message)s"), { message: err.message }));
    }
  }

  /**
   * Start a one-click run of a model (a segmentation or a detector such as "find nodules") on this
   * series and follow it in the run panel. Resolve with the run; reject with the API's error.
   */
  async startRunWithModel(modelId) {
    const button = $("start-segmentation");
    this.clearError();
    if (button) button.disabled = true;
    const stage = $("run-stage");
    if (stage) stage.textContent = gettext("Submitting…");
    try {
      const run = await requestJson(this.config.runsUrl, {
        method: "POST",
        body: { model: Number(modelId) },
        csrfToken: this.config.csrfToken,
      });
      this.trackedRunId = run.id;
      this.watched.add(run.id);
      this.acceptRun(run);
      if (TERMINAL.has(run.status)) this.refreshState();
      return run;
    } catch (err) {
      this.renderRun(this.trackedRun());
      throw err;
    }
  }

  async cancelRun() {
    const run = this.trackedRun();
    if (!run || !ACTIVE.has(run.status)) return;
    const cancel = $("cancel-run");
    if (cancel) cancel.disabled = true;
    const url = (this.config.cancelUrlTemplate || "/api/inference-runs/{id}/cancel/").replace("{id}", String(run.id));
    try {
      const updated = await requestJson(url, { method: "POST", csrfToken: this.config.csrfToken });
      this.acceptRun(updated, { fromApi: true });
    } catch (err) {
      this.showError(interpolate(gettext("Could not cancel: %(message)s"), { message: err.message }));
      this.renderRun(this.trackedRun());
    }
  }

  /** Re-read the study (segmentations and runs) from the API: the source of truth. */
  async refreshState({ initial = false } = {}) {
    if (!this.config.studyApiUrl) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        const state = await requestJson(this.config.studyApiUrl);
        this.applyState(state, { initial });
      } catch (err) {
        if (!initial) this.showError(interpolate(gettext("Could not refresh the study: %(message)s"), { message: err.message }));
      }
    })();
    try {
      await this.refreshing;
    } finally {
      this.refreshing = null;
    }
    if (this.refreshAgain) {
      this.refreshAgain = false;
      await this.refreshState();
    }
  }

  applyState(state, { initial }) {
    const series = (state.series || []).find((s) => Number(s.id) === Number(this.config.seriesId));
    if (series && Array.isArray(series.segmentations)) {
      const before = new Set(this.segmentations.map((s) => s.id));
      this.segmentations = currentOnly(series.segmentations);
      const changed =
        before.size !== this.segmentations.length || this.segmentations.some((s) => !before.has(s.id));
      if (changed) this.renderSegmentationSelect();
      if (this.activeSegmentationId && !this.segmentations.some((s) => s.id === this.activeSegmentationId)) {
        this.selectSegmentation(this.segmentations[0] ? this.segmentations[0].id : null);
      } else if (!this.activeSegmentationId && this.segmentations[0] && this.viewer && this.viewer.base && changed) {
        this.selectSegmentation(this.segmentations[0].id);
      }
    }
    const runs = (state.inference_runs || []).slice().sort((a, b) => a.id - b.id);
    if (initial) {
      // Show the newest active run of this series (someone may have started it before we came).
      // The panel shows the true state: the newest active run, else the newest run of any outcome
      // (a finished demo run reads "succeeded", not "not started").
      let newest = null;
      for (const run of runs) {
        const sid = runSeriesId(run);
        if (sid != null && Number(sid) !== Number(this.config.seriesId)) continue;
        this.runs.set(run.id, run);
        newest = run;
        if (ACTIVE.has(run.status)) {
          this.watched.add(run.id);
          this.trackedRunId = run.id;
        }
      }
      if (!this.trackedRunId && newest) this.trackedRunId = newest.id;
      if (this.trackedRunId) this.renderRun(this.trackedRun());
      this.updatePolling();
      return;
    }
    for (const run of runs) this.acceptRun(run, { fromApi: true });
  }

  // ---- live updates ------------------------------------------------------------------

  startSocket() {
    if (!this.config.wsUrl || typeof WebSocket === "undefined") return;
    const indicator = $("ws-status");
    this.socket = new ReconnectingSocket(websocketUrl(this.config.wsUrl), {
      onMessage: (msg) => {
        if (msg && msg.type === "inference.progress" && msg.run) this.acceptRun(msg.run);
      },
      onOpen: (isReconnect) => {
        // Whatever happened while we were away is in the database.
        if (isReconnect) this.refreshState();
        this.updatePolling();
      },
      onStateChange: (state) => {
        if (indicator) {
          indicator.dataset.state = state;
          indicator.textContent = (SOCKET_STATE_LABELS[state] || SOCKET_STATE_LABELS.closed)();
        }
        this.updatePolling();
      },
    }).start();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.socket) this.socket.reconnectNow();
    });
  }

  /** Poll the study while a run is active and the socket is down. */
  updatePolling() {
    const needPoll = this.watched.size > 0 && !(this.socket && this.socket.isOpen);
    if (needPoll && !this.pollTimer) {
      this.pollTimer = setInterval(() => this.refreshState(), POLL_MS);
    } else if (!needPoll && this.pollTimer) {
      clearInterval(this.pollTimer);
      this.pollTimer = null;
    }
  }
}

function main() {
  if (window.yixinViewer && window.yixinViewer.page) return; // included twice
  let resolveReady;
  let rejectReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {}); // failures are shown in #viewer-error
  window.yixinViewer = { nv: null, ready };
  const config = readConfig();
  if (!config) {
    const box = $("viewer-error");
    if (box) {
      (box.querySelector("[data-role=message]") || box).textContent = DEFAULT_STRINGS["error.config"];
      box.hidden = false;
    }
    rejectReady(new Error("viewer-config missing"));
    return;
  }
  const page = new StudyPage(config);
  window.yixinViewer.page = page;
  page.start().then(resolveReady, rejectReady);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
