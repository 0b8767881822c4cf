// Annotation workbench on the study page: edit a segmentation version in NiiVue's drawing
// layer with brush (2-D disc / 3-D sphere, radius in mm), eraser, flood fill, threshold brush
// (HU range), polygon fill, undo/redo, per-label visibility and lock; save only the diff as a
// new version; versions list with roll back, refinements, comparison, export, review.
//
// The edited label map lives in NiiVue's RAS order (see wb-tools.js); the server keeps
// [k, j, i] label maps, and the diff is computed in that native order.
import { NVImage } from "@niivue/niivue";
import { errorFromResponse, fetchArrayBuffer, requestJson } from "./api.js";
import { formatDate, hexToRgb } from "./format.js";
import { gettext, interpolate, labelOf, ngettext } from "./i18n.js";
import {
  EditHistory, applyValue, brushIndices, diffRuns, encodeRuns, floodIndices, nativeOrder, planeAxis,
  polygonIndices, toNative,
} from "./wb-tools.js";

const PAINT_TOOLS = new Set(["brush2d", "brush3d", "eraser", "threshold"]);

function $(id) {
  return document.getElementById(id);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// Labels of the codes the server sends (annotation.models' choices), looked up when shown.
const DECISION = {
  comment: () => gettext("comment"),
  submit: () => gettext("submitted"),
  approve: () => gettext("approved"),
  reject: () => gettext("rejected"),
};
const REVIEW_STATUS = {
  draft: () => gettext("Draft"),
  submitted: () => gettext("Submitted"),
  approved: () => gettext("Approved"),
  rejected: () => gettext("Rejected"),
};
const ASSIGNMENT_STATUS = {
  assigned: () => gettext("Assigned"),
  submitted: () => gettext("Submitted"),
  done: () => gettext("Done"),
};


function decisionLabel(decision) {
  return labelOf(DECISION, decision);
}

export class Workbench {
  constructor(page, config) {
    this.page = page;
    this.config = config;
    this.viewer = null;
    this.editing = null; // {seg, labels (RAS Uint8Array), original (native Uint8Array), order, dims, spacing, shapeKji}
    this.history = new EditHistory();
    this.hidden = new Set();
    this.locked = new Set();
    this.painting = false;
    this.polygon = [];
    this.image = null; // RAS Float32Array of image values (HU for CT), built on demand
    this.toolsUsed = new Set();
    this.lastVox = null;
  }

  // ---- set-up --------------------------------------------------------------------------

  attach(viewer) {
    this.viewer = viewer;
    const nv = viewer.nv;
    const previous = nv.onLocationChange;
    nv.onLocationChange = (data) => {
      previous(data);
      this.onLocation(data);
    };
    const canvas = viewer.canvas;
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button === 0 && this.editing && PAINT_TOOLS.has(this.tool())) {
        this.painting = true;
        this.lastVox = null;
        this.history.begin();
      }
    });
    const stop = () => {
      if (!this.painting) return;
      this.painting = false;
      this.history.end();
      this.updateButtons();
    };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointerleave", stop);
    this.bind();
    this.renderVersions();
    this.loadLabelSets();
    this.loadReview();
  }

  bind() {
    const on = (id, event, fn) => {
      const node = $(id);
      if (node) node.addEventListener(event, fn);
    };
    on("wb-edit", "click", () => this.startEditing(this.page.currentSegmentation()));
    on("wb-stop", "click", () => this.stopEditing());
    on("wb-undo", "click", () => this.undo());
    on("wb-redo", "click", () => this.redo());
    on("wb-save", "click", () => this.save());
    on("wb-polygon-close", "click", () => this.closePolygon());
    on("wb-tool", "change", () => {
      this.polygon = [];
      const tool = this.tool();
      const row = $("wb-threshold-row");
      if (row) row.hidden = tool !== "threshold" && tool !== "fill2d" && tool !== "fill3d";
      const poly = $("wb-polygon-close");
      if (poly) poly.hidden = tool !== "polygon";
      // Tools paint with the left button, so the left drag must move the crosshair.
      if (tool !== "none" && this.viewer) {
        this.viewer.setLeftDragMode("crosshair");
        const drag = $("drag-mode");
        if (drag) drag.value = "crosshair";
      }
    });
    on("wb-refine", "click", () => this.refine());
    on("wb-refine-op", "change", () => this.updateRefineParams());
    on("wb-compare", "click", () => this.compare());
    on("wb-compare-clear", "click", () => this.clearCompare());
    on("wb-new", "click", () => this.createBlank());
    on("wb-import", "click", () => this.importFile());
    on("wb-assign", "click", () => this.assign());
    on("wb-submit", "click", () => this.review("submit"));
    on("wb-approve", "click", () => this.review("approve"));
    on("wb-reject", "click", () => this.review("reject"));
    document.addEventListener("keydown", (e) => {
      if (!this.editing || e.target.closest("input, textarea, select")) return;
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
        e.preventDefault();
        if (e.shiftKey) this.redo();
        else this.undo();
      } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "y") {
        e.preventDefault();
        this.redo();
      }
    });
    this.updateRefineParams();
    this.updateButtons();
  }

  tool() {
    return ($("wb-tool") || {}).value || "none";
  }

  currentLabel() {
    return Number(($("wb-label") || {}).value || 0);
  }

  radiusMm() {
    return Math.max(0.1, Number(($("wb-radius") || {}).value || 3));
  }

  huRange() {
    const lo = Number(($("wb-hu-low") || {}).value);
    const hi = Number(($("wb-hu-high") || {}).value);
    return Number.isFinite(lo) && Number.isFinite(hi) && lo <= hi ? [lo, hi] : null;
  }

  status(message, kind = "info") {
    const box = $("wb-status");
    if (!box) return;
    box.textContent = message;
    box.dataset.kind = kind;
  }

  // ---- editing ---------------------------------------------------------------------------

  async startEditing(seg) {
    if (!seg || !this.viewer || !this.viewer.base) {
      this.status(gettext("Choose a segmentation to edit first."), "error");
      return;
    }
    if (seg.labels.some((l) => l.index > 255)) {
      this.status(gettext("Labels above 255 cannot be edited in the browser."), "error");
      return;
    }
    this.status(gettext("Loading the label map…"));
    const buffer = await fetchArrayBuffer(seg.labelmapUrl);
    const image = await NVImage.loadFromUrl({ url: buffer, name: `edit-${seg.id}.nii.gz` });
    const base = this.viewer.base;
    const dims = base.dimsRAS.slice(1, 4);
    if (image.dimsRAS.slice(1, 4).join() !== dims.join()) {
      this.status(gettext("The label map is not on this series' grid."), "error");
      return;
    }
    const order = nativeOrder(image);
    const original = Uint8Array.from(image.img.subarray(0, dims[0] * dims[1] * dims[2]));
    const labels = new Uint8Array(original.length);
    for (let r = 0; r < labels.length; r++) labels[r] = original[order.rasToNative[r]];
    const pix = base.pixDimsRAS || base.hdr.pixDims;
    const spacing = pix.length >= 4 ? [pix[1], pix[2], pix[3]] : pix.slice(0, 3);
    const hdrDims = image.hdr.dims;
    this.editing = {
      seg, labels, original, order, dims, spacing: spacing.map(Math.abs),
      shapeKji: [hdrDims[3], hdrDims[2], hdrDims[1]],
    };
    this.history.clear();
    this.toolsUsed.clear();
    this.hidden.clear();
    this.locked.clear();
    this.viewer.removeOverlay();
    const nv = this.viewer.nv;
    nv.createEmptyDrawing();
    nv.drawBitmap = labels;
    nv.drawOpacity = this.viewer.overlayOpacity || 0.5;
    this.updateLut();
    this.renderLabelControls();
    document.body.dataset.editing = String(seg.id);
    this.status(interpolate(gettext("Editing %(name)s v%(version)s"), { name: seg.shown_name || seg.name, version: seg.version }));
    this.updateButtons();
    this.renderVersions();
  }

  stopEditing() {
    if (!this.editing) return;
    const nv = this.viewer.nv;
    nv.drawBitmap = null;
    nv.createEmptyDrawing();
    nv.drawBitmap = null;
    nv.refreshDrawing(true);
    const seg = this.editing.seg;
    this.editing = null;
    this.history.clear();
    delete document.body.dataset.editing;
    this.page.selectSegmentation(seg.id);
    this.renderLabelControls();
    this.updateButtons();
    this.status("");
  }

  updateLut() {
    if (!this.editing) return;
    const lut = new Uint8ClampedArray(256 * 4);
    const names = [];
    for (let i = 0; i < 256; i++) names.push(i ? String(i) : "");
    for (const label of this.editing.seg.labels) {
      if (label.index < 1 || label.index > 255) continue;
      const [r, g, b] = hexToRgb(label.color);
      const k = label.index * 4;
      lut[k] = r;
      lut[k + 1] = g;
      lut[k + 2] = b;
      lut[k + 3] = this.hidden.has(label.index) ? 0 : 255;
      names[label.index] = label.name;
    }
    this.viewer.nv.drawLut = { lut, labels: names };
    this.refresh();
  }

  refresh() {
    const nv = this.viewer.nv;
    nv.refreshDrawing(true);
    nv.drawScene();
  }

  imageValues() {
    if (this.image) return this.image;
    const base = this.viewer.base;
    const raw = base.img2RAS();
    const slope = Number(base.hdr.scl_slope) || 1;
    const inter = Number(base.hdr.scl_inter) || 0;
    const out = new Float32Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw[i] * slope + inter;
    this.image = out;
    return out;
  }

  onLocation(data) {
    if (!this.editing || !data || !data.vox) return;
    const tool = this.tool();
    if (tool === "none") return;
    const vox = data.vox.map((v) => Math.round(v));
    const dims = this.editing.dims;
    if (vox.some((v, a) => v < 0 || v >= dims[a])) return;
    const axCorSag = Number.isFinite(data.axCorSag) ? data.axCorSag : this.lastAxCorSag ?? 0;
    this.lastAxCorSag = axCorSag;
    const axis = planeAxis(axCorSag);
    if (PAINT_TOOLS.has(tool)) {
      if (!this.painting) return;
      if (this.lastVox && this.lastVox.join() === vox.join()) return;
      this.lastVox = vox;
      this.paintAt(tool, vox, axis);
    } else if (tool === "fill2d" || tool === "fill3d") {
      this.fillAt(vox, tool === "fill2d" ? axis : null);
    } else if (tool === "polygon") {
      if (this.polygon.length && planeAxis(this.polygon.axCorSag) !== axis) this.polygon = [];
      this.polygon.axCorSag = axCorSag;
      this.polygon.push(vox);
      this.status(interpolate(ngettext("Polygon: %(count)s point", "Polygon: %(count)s points", this.polygon.length), { count: this.polygon.length }));
    }
  }

  /** Paint with a brush tool at RAS voxel `vox` in the plane keeping `axis` fixed. */
  paintAt(tool, vox, axis) {
    const e = this.editing;
    const sphere = tool === "brush3d";
    const idx = brushIndices(e.dims, e.spacing, vox, this.radiusMm(), sphere ? null : axis);
    const label = this.currentLabel();
    let change;
    if (tool === "eraser") {
      change = applyValue(e.labels, idx, 0, { locked: this.locked });
    } else {
      if (!label || this.locked.has(label)) {
        this.status(gettext("Choose a label that is not locked."), "error");
        return;
      }
      const range = tool === "threshold" ? this.huRange() : null;
      change = applyValue(e.labels, idx, label, { locked: this.locked, image: range ? this.imageValues() : null, range });
    }
    this.record(tool, change);
  }

  fillAt(vox, axis) {
    const e = this.editing;
    const label = this.currentLabel();
    if (!label || this.locked.has(label)) {
      this.status(gettext("Choose a label that is not locked."), "error");
      return;
    }
    const range = this.huRange();
    const useRange = ($("wb-fill-hu") || {}).checked && range;
    const idx = floodIndices(e.labels, e.dims, vox, { axis, image: useRange ? this.imageValues() : null, range: useRange ? range : null });
    this.history.begin();
    this.record(axis === null ? "fill3d" : "fill2d", applyValue(e.labels, idx, label, { locked: this.locked }));
    this.history.end();
    this.updateButtons();
  }

  closePolygon() {
    if (!this.editing || this.polygon.length < 3) {
      this.status(gettext("A polygon needs at least three points on one slice."), "error");
      return;
    }
    const label = this.currentLabel();
    const axis = planeAxis(this.polygon.axCorSag);
    const idx = polygonIndices(this.editing.dims, axis, this.polygon);
    this.polygon = [];
    this.history.begin();
    this.record("polygon", applyValue(this.editing.labels, idx, label, { locked: this.locked }));
    this.history.end();
    this.updateButtons();
  }

  record(tool, change) {
    if (!change) return;
    this.toolsUsed.add(tool);
    this.history.record(change);
    this.refresh();
    this.updateButtons();
  }

  undo() {
    if (this.editing && this.history.undo(this.editing.labels)) this.refresh();
    this.updateButtons();
  }

  redo() {
    if (this.editing && this.history.redo(this.editing.labels)) this.refresh();
    this.updateButtons();
  }

  /** The edited label map in native [k, j, i] order (for the tests and the diff). */
  nativeLabels() {
    return this.editing ? toNative(this.editing.labels, this.editing.order) : null;
  }

  async save() {
    const e = this.editing;
    if (!e) return;
    const after = this.nativeLabels();
    const runs = diffRuns(e.original, after);
    if (!runs.length) {
      this.status(gettext("Nothing changed."));
      return;
    }
    const diff = await encodeRuns(runs, e.shapeKji);
    const body = {
      diff,
      comment: ($("wb-comment") || {}).value || "",
      tool: [...this.toolsUsed].sort().join("+").slice(0, 64),
      locked_labels: [...this.locked],
    };
    this.status(gettext("Saving…"));
    try {
      const saved = await requestJson(`/api/segmentations/${e.seg.id}/versions/`, {
        method: "POST", body, csrfToken: this.config.csrfToken,
      });
      this.status(interpolate(gettext("Saved as version %(version)s (%(voxels)s voxels changed)"), { version: saved.version, voxels: saved.parameters.changed_voxels }), "ok");
      await this.reloadAndEdit(saved.id);
      // Set once the new version is loaded for editing (the tests wait on these).
      document.body.dataset.savedVersion = String(saved.id);
      document.body.dataset.savedDiffBytes = String(diff.runs.length);
    } catch (err) {
      this.status(interpolate(gettext("Could not save: %(message)s"), { message: err.message }), "error");
    }
  }

  async reloadAndEdit(id) {
    await this.page.refreshState();
    const seg = this.page.segmentations.find((s) => s.id === id);
    if (seg) {
      this.page.activeSegmentationId = id;
      const select = $("segmentation-select");
      if (select) select.value = String(id);
      this.page.renderLegend(seg);
      this.page.loadMeasurements(seg);
      await this.startEditing(seg);
    }
  }

  // ---- labels: visibility and lock ---------------------------------------------------------

  renderLabelControls() {
    const list = $("wb-labels");
    const select = $("wb-label");
    if (list) list.textContent = "";
    if (select) select.textContent = "";
    const seg = this.editing ? this.editing.seg : null;
    if (!seg) return;
    for (const label of seg.labels) {
      if (select) select.add(new Option(`${label.index} · ${label.name}`, String(label.index)));
      if (!list) continue;
      const visible = el("input", { type: "checkbox", checked: !this.hidden.has(label.index), title: gettext("show") });
      visible.dataset.label = String(label.index);
      visible.dataset.role = "visible";
      visible.addEventListener("change", () => {
        if (visible.checked) this.hidden.delete(label.index);
        else this.hidden.add(label.index);
        this.updateLut();
      });
      const lock = el("input", { type: "checkbox", checked: this.locked.has(label.index), title: gettext("lock") });
      lock.dataset.label = String(label.index);
      lock.dataset.role = "lock";
      lock.addEventListener("change", () => {
        if (lock.checked) this.locked.add(label.index);
        else this.locked.delete(label.index);
      });
      const swatch = el("span", { className: "swatch" });
      swatch.style.backgroundColor = label.color;
      list.append(el("li", { dataset: { label: String(label.index) } },
        el("label", {}, visible, " ", gettext("show")), el("label", {}, lock, " ", gettext("lock")), swatch,
        el("span", { className: "label-name" }, label.name)));
    }
  }

  updateButtons() {
    const editing = !!this.editing;
    const set = (id, disabled) => {
      const node = $(id);
      if (node) node.disabled = disabled;
    };
    set("wb-undo", !editing || !this.history.undoStack.length);
    set("wb-redo", !editing || !this.history.redoStack.length);
    set("wb-save", !editing);
    set("wb-stop", !editing);
    set("wb-tool", !editing);
    // Controls appear only when there is something to edit: the tools while editing, "edit" and
    // "refine" when the series has a segmentation; creating or importing one is always offered.
    const hasSegmentation = editing || !!this.page.currentSegmentation();
    const show = (node, visible) => {
      if (node) node.hidden = !visible;
    };
    const panel = $("workbench");
    show($("wb-edit"), !editing && hasSegmentation);
    show($("wb-stop"), editing);
    show(panel && panel.querySelector(".wb-tools"), editing);
    show(panel && panel.querySelector(".wb-refine"), hasSegmentation);
    if (panel) panel.dataset.editing = editing ? "1" : "0";
    const state = $("wb-history");
    if (state) state.textContent = editing ? `${this.history.undoStack.length} / ${this.history.redoStack.length}` : "";
  }

  // ---- versions ------------------------------------------------------------------------------

  selectedVersionId() {
    return this.editing ? this.editing.seg.id : this.page.activeSegmentationId;
  }

  async renderVersions() {
    const list = $("wb-versions");
    const id = this.selectedVersionId();
    if (!list) return;
    const token = (this.versionsToken = (this.versionsToken || 0) + 1);
    if (!id) list.textContent = "";
    const exportBox = $("wb-export");
    if (exportBox) {
      exportBox.querySelectorAll("a[data-type]").forEach((a) => {
        a.href = id ? `/api/segmentations/${id}/export/?type=${a.dataset.type}` : "#";
        a.classList.toggle("disabled", !id);
      });
    }
    delete document.body.dataset.versionsFor;
    if (!id) return;
    let versions;
    try {
      versions = (await requestJson(`/api/segmentations/${id}/versions/`)).results;
    } catch (err) {
      this.status(err.message, "error");
      return;
    }
    if (token !== this.versionsToken) return; // a newer call renders the list
    this.versions = versions;
    list.textContent = "";
    const other = $("wb-compare-with");
    if (other) {
      const keep = other.value;
      other.textContent = "";
      for (const v of versions) if (v.id !== id) other.add(new Option(`v${v.version} · ${v.tool || v.source}`, String(v.id)));
      if ([...other.options].some((o) => o.value === keep)) other.value = keep;
    }
    for (const v of versions) {
      const current = v.is_current ? ` · ${gettext("current")}` : "";
      const row = el("li", { dataset: { version: String(v.version), id: String(v.id), current: String(v.is_current) } },
        el("span", { className: "wb-version-head" }, `v${v.version}${current}`),
        el("span", { className: "muted" }, ` ${v.tool || v.source} · ${v.author || "—"} · ${formatDate(v.created_at, { time: true })} · ${labelOf(REVIEW_STATUS, v.review_status)}`));
      if (v.comment) row.append(el("div", { className: "wb-version-comment" }, v.comment));
      const actions = el("div", { className: "wb-version-actions" });
      const edit = el("button", { type: "button", className: "btn btn-tool", textContent: gettext("Edit (branch)") });
      edit.dataset.action = "edit";
      edit.addEventListener("click", () => this.editVersion(v));
      actions.append(edit);
      if (!v.is_current) {
        const back = el("button", { type: "button", className: "btn btn-tool", textContent: gettext("Make current") });
        back.dataset.action = "make-current";
        back.addEventListener("click", () => this.makeCurrent(v.id));
        actions.append(back);
      }
      row.append(actions);
      list.append(row);
    }
    document.body.dataset.versionsFor = String(id);
  }

  async editVersion(v) {
    const seg = {
      id: v.id, name: v.name, version: v.version, labelmapUrl: v.labelmap_url, measurementsUrl: v.measurements_url,
      labels: (v.label_table || []).map((l) => ({ index: Number(l.index), name: l.name || "", name_zh: l.name_zh || "", color: l.color || "#888888" })),
    };
    if (!this.page.segmentations.some((s) => s.id === v.id)) this.page.segmentations.push(seg);
    await this.startEditing(seg);
  }

  async makeCurrent(id) {
    try {
      await requestJson(`/api/segmentations/${id}/make-current/`, { method: "POST", csrfToken: this.config.csrfToken });
      this.status(gettext("This version is current again."), "ok");
      await this.page.refreshState();
      this.renderVersions();
    } catch (err) {
      this.status(err.message, "error");
    }
  }

  updateRefineParams() {
    const op = ($("wb-refine-op") || {}).value;
    const show = (id, visible) => {
      const node = $(id);
      if (node) node.hidden = !visible;
    };
    show("wb-refine-ml-row", op === "remove_small_components");
    show("wb-refine-radius-row", op === "opening" || op === "closing");
    show("wb-refine-mode-row", op === "fill_holes");
  }

  async refine() {
    const id = this.selectedVersionId();
    if (!id) return;
    const operation = ($("wb-refine-op") || {}).value;
    const params = {};
    if (operation === "remove_small_components") params.min_volume_ml = Number($("wb-refine-ml").value);
    if (operation === "opening" || operation === "closing") params.radius_mm = Number($("wb-refine-radius").value);
    if (operation === "fill_holes") {
      params.mode = $("wb-refine-mode").value;
      params.axis = 0;
    }
    this.status(gettext("Refining…"));
    try {
      const created = await requestJson(`/api/segmentations/${id}/refine/`, {
        method: "POST", body: { operation, params }, csrfToken: this.config.csrfToken,
      });
      this.status(interpolate(gettext("Refined: version %(version)s"), { version: created.version }), "ok");
      if (this.editing) await this.reloadAndEdit(created.id);
      else {
        await this.page.refreshState();
        await this.page.selectSegmentation(created.id);
        this.renderVersions();
      }
      document.body.dataset.refinedVersion = String(created.id);
    } catch (err) {
      this.status(err.message, "error");
    }
  }

  // ---- comparison ---------------------------------------------------------------------------

  async compare() {
    const a = this.selectedVersionId();
    const b = Number(($("wb-compare-with") || {}).value);
    if (!a || !b) return;
    try {
      const result = await requestJson(`/api/segmentations/${b}/compare/${a}/`);
      const table = $("wb-compare-table");
      if (table) {
        const tbody = table.tBodies[0] || table.createTBody();
        tbody.textContent = "";
        for (const row of result.labels) {
          tbody.append(el("tr", { dataset: { label: String(row.label) } },
            el("td", {}, `${row.label} ${row.name}`), el("td", { className: "num" }, `+${row.added}`),
            el("td", { className: "num" }, `−${row.removed}`), el("td", { className: "num" }, row.dice.toFixed(3))));
        }
        table.hidden = false;
      }
      document.body.dataset.compared = `${b}-${a}`;
      await this.viewer.showLabelmap({
        id: `compare-${b}-${a}`, url: result.changes_url,
        labels: [{ index: 1, name: gettext("added"), color: "#22c55e" }, { index: 2, name: gettext("removed"), color: "#ef4444" }],
      });
    } catch (err) {
      this.status(err.message, "error");
    }
  }

  clearCompare() {
    const table = $("wb-compare-table");
    if (table) table.hidden = true;
    delete document.body.dataset.compared;
    if (this.editing) this.viewer.removeOverlay();
    else this.page.selectSegmentation(this.page.activeSegmentationId);
  }

  // ---- new segmentations, label sets -------------------------------------------------------------

  async loadLabelSets() {
    const select = $("wb-label-set");
    if (!select || !this.config.workbench) return;
    try {
      const sets = (await requestJson(this.config.workbench.labelSetsUrl)).results;
      for (const s of sets) select.add(new Option(`${s.project ? s.project + " / " : ""}${s.name}${s.allow_overlap ? " ⧉" : ""}`, String(s.id)));
    } catch (_) {
      /* the one-label fallback stays available */
    }
  }

  async createBlank() {
    const wb = this.config.workbench;
    const setId = ($("wb-label-set") || {}).value;
    try {
      let created;
      if (setId) {
        created = (await requestJson(wb.fromLabelSetUrl, { method: "POST", body: { label_set: Number(setId) }, csrfToken: this.config.csrfToken })).results[0];
      } else {
        const name = ($("wb-new-name") || {}).value || "label 1";
        created = await requestJson(wb.blankUrl, {
          method: "POST", csrfToken: this.config.csrfToken,
          body: { name, label_table: [{ index: 1, name, color: ($("wb-new-color") || {}).value || "#e6194b" }] },
        });
      }
      await this.reloadAndEdit(created.id);
    } catch (err) {
      this.status(err.message, "error");
    }
  }

  async importFile() {
    const input = $("wb-import-file");
    const file = input && input.files && input.files[0];
    if (!file || !this.config.workbench) return;
    const form = new FormData();
    form.append("file", file, file.name);
    this.status(gettext("Importing…"));
    try {
      const response = await fetch(this.config.workbench.importUrl, {
        method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRFToken": this.config.csrfToken },
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw errorFromResponse(response.status, response.statusText, data);
      await this.page.refreshState();
      await this.page.selectSegmentation(data.results[0].id);
      this.status(interpolate(ngettext("Imported (%(count)s layer)", "Imported (%(count)s layers)", data.results.length), { count: data.results.length }), "ok");
      document.body.dataset.importedSegmentation = String(data.results[0].id);
    } catch (err) {
      this.status(interpolate(gettext("Could not import: %(message)s"), { message: err.message }), "error");
    }
  }

  // ---- review -----------------------------------------------------------------------------------

  async review(decision) {
    const id = this.selectedVersionId();
    if (!id) return;
    try {
      const result = await requestJson(`/api/segmentations/${id}/review/`, {
        method: "POST", csrfToken: this.config.csrfToken,
        body: { decision, text: ($("wb-review-text") || {}).value || "" },
      });
      this.status(interpolate(gettext("Review status: %(status)s"), { status: labelOf(REVIEW_STATUS, result.review_status) }), "ok");
      this.renderVersions();
      this.loadReview();
    } catch (err) {
      this.status(err.message, "error");
    }
  }

  async assign() {
    const wb = this.config.workbench;
    const user = Number(($("wb-assign-user") || {}).value);
    if (!wb || !user) return;
    try {
      await requestJson(wb.assignmentsUrl, {
        method: "POST", csrfToken: this.config.csrfToken,
        body: { annotator: user, review_only: !!($("wb-assign-review-only") || {}).checked },
      });
      this.status(gettext("Assigned."), "ok");
      this.loadReview();
    } catch (err) {
      this.status(err.message, "error");
    }
  }

  async loadAssignments() {
    const wb = this.config.workbench;
    const list = $("wb-assignments");
    const select = $("wb-assign-user");
    if (!wb || !list) return;
    if (select && !select.options.length) {
      for (const u of wb.staff || []) select.add(new Option(`${u.name} (${u.role})`, String(u.id)));
    }
    try {
      const data = await requestJson(wb.assignmentsUrl);
      list.textContent = "";
      for (const a of data.results) {
        list.append(el("li", { dataset: { annotator: String(a.annotator) } },
          `${a.annotator_name} · ${labelOf(ASSIGNMENT_STATUS, a.status)}${a.review_only ? " · " + gettext("review only") : ""}`));
      }
    } catch (_) {
      /* shown only to doctors; an error leaves the list empty */
    }
  }

  async loadReview() {
    const wb = this.config.workbench;
    this.loadAssignments();
    if (!wb || !wb.reviewUrl) return;
    let data;
    try {
      data = await requestJson(wb.reviewUrl);
    } catch (_) {
      return;
    }
    const comments = $("wb-comments");
    if (comments) {
      comments.textContent = "";
      for (const c of data.comments) {
        comments.append(el("li", { dataset: { decision: c.decision } }, `${formatDate(c.created_at, { time: true })} · ${c.author || "—"} · ${decisionLabel(c.decision)}${c.text ? ": " + c.text : ""}`));
      }
    }
    const agreement = $("wb-agreement");
    if (agreement) {
      agreement.textContent = "";
      for (const s of data.agreement) {
        for (const d of s.dice) agreement.append(el("li", {}, `${d.name || d.label}: Dice ${d.dice.toFixed(3)} (${s.annotators.length})`));
      }
    }
  }
}
