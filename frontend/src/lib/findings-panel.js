// The findings panel beside the viewer (templates/diagnosis/_findings_panel.html).
//
// Lists the series' findings from the findings API with the readers' agreement from the comparison
// API, centres the three planes on a clicked finding and outlines it (its segment's shell when a
// segmentation outlines it, else a box as wide as its long axis), lets a doctor accept or reject it,
// and starts the detector ("find nodules") as an ordinary one-click run of the study page.
// Other panels learn the selection from the "yixin:finding-selected" event on document.
import { requestJson, fetchArrayBuffer } from "./api.js";
import { gettext, interpolate, ngettext, pgettext } from "./i18n.js";
import { formatNumber } from "./format.js";
import { labelShellIndices, boxShellIndices } from "./viewer.js";
import { NVImage } from "@niivue/niivue";

// Labels of the codes the findings API sends (diagnosis.models' choices), looked up when shown.
const LABELS = {
  kind: {
    lung_nodule: () => gettext("Lung nodule"),
    lesion: () => gettext("Lesion"),
    non_nodule: () => gettext("Non-nodule"),
    other: () => gettext("Other"),
  },
  composition: {
    solid: () => gettext("Solid"),
    part_solid: () => gettext("Part-solid"),
    ground_glass: () => gettext("Ground-glass"),
  },
  status: {
    suggested: () => gettext("Suggested"),
    accepted: () => gettext("Accepted"),
    rejected: () => pgettext("finding status", "Rejected"),
    edited: () => gettext("Edited"),
  },
  source: {
    detector: () => gettext("Detector"),
    reader: () => gettext("Reader"),
    consensus: () => gettext("Readers' consensus"),
    import: () => gettext("Import"),
    manual: () => gettext("By hand"),
  },
};
const ACTIONS = {
  accept: () => gettext("Accept"),
  reject: () => gettext("Reject"),
};

// Readers' individual marks are summarised by their consensus (with its agreement): not listed.
const LISTED_SOURCES = new Set(["detector", "consensus", "import", "manual"]);

function $(id) {
  return document.getElementById(id);
}

function readConfig() {
  const el = $("findings-config");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch (_) {
    return null;
  }
}

export class FindingsPanel {
  /** `page` is the StudyPage: its viewer, config (series, runs URL, CSRF) and run tracking. */
  constructor(page, config) {
    this.page = page;
    this.config = config;
    this.findings = [];
    this.agreement = new Map(); // finding id -> number of readers
    this.selectedId = null;
    this.shellCache = new Map(); // "segmentation:label" -> flat indices
    this.loadToken = 0;
  }

  start() {
    const list = $("finding-list");
    if (list) {
      list.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-action]");
        const item = event.target.closest("li[data-finding-id]");
        if (!item) return;
        const id = Number(item.dataset.findingId);
        if (button) {
          event.stopPropagation();
          this.decide(id, button.dataset.action);
          return;
        }
        this.select(id);
      });
    }
    const find = $("find-nodules");
    const page = this.page.config;
    if (find && this.config.detector && page.canSegment !== false
        && String(page.modality || "").toUpperCase() === String(this.config.detector.modality || "CT").toUpperCase()) {
      find.hidden = false;
      find.addEventListener("click", () => this.findNodules());
    }
    document.addEventListener("yixin:run-finished", (event) => this.onRunFinished(event.detail && event.detail.run));
    return this.refresh();
  }

  // ---- data -------------------------------------------------------------------------

  async refresh() {
    const token = ++this.loadToken;
    try {
      const [data, comparison] = await Promise.all([
        requestJson(this.config.findingsUrl),
        this.config.comparisonUrl ? requestJson(this.config.comparisonUrl).catch(() => null) : null,
      ]);
      if (token !== this.loadToken) return;
      const seriesId = Number(this.page.config.seriesId);
      this.findings = ((data && data.results) || []).filter(
        (f) => Number(f.series_id) === seriesId && LISTED_SOURCES.has(f.source),
      );
      this.agreement = agreementByFinding(comparison);
      this.render();
    } catch (err) {
      if (token === this.loadToken) this.page.showError(interpolate(gettext("Could not load the findings: %(message)s"), { message: err.message }));
    }
  }

  // ---- rendering ----------------------------------------------------------------------

  label(prefix, value) {
    if (!value) return "";
    const table = LABELS[prefix];
    return Object.prototype.hasOwnProperty.call(table, value) ? table[value]() : value;
  }

  render() {
    const list = $("finding-list");
    if (!list) return;
    list.textContent = "";
    const count = $("findings-count");
    if (count) count.textContent = String(this.findings.length);
    const empty = $("findings-empty");
    if (empty) empty.hidden = this.findings.length > 0;
    list.dataset.count = String(this.findings.length);
    for (const f of this.findings) list.appendChild(this.renderItem(f));
    if (this.selectedId != null && !this.findings.some((f) => f.id === this.selectedId)) this.selectedId = null;
    this.markSelected();
  }

  renderItem(f) {
    const li = document.createElement("li");
    li.dataset.findingId = String(f.id);
    li.dataset.status = f.status;
    li.setAttribute("role", "option");
    li.className = `finding status-${f.status}`;
    const head = document.createElement("div");
    head.className = "finding-head";
    const title = document.createElement("span");
    title.className = "finding-kind";
    title.textContent = `#${f.id} ${this.label("kind", f.kind)}`;
    const status = document.createElement("span");
    status.className = `badge badge-${f.status} finding-status`;
    status.textContent = this.label("status", f.status);
    head.append(title, status);
    const facts = document.createElement("div");
    facts.className = "finding-facts";
    const parts = [];
    if (f.long_axis_mm != null) {
      parts.push(interpolate(gettext("%(long)s × %(short)s mm"), { long: formatNumber(f.long_axis_mm, 1), short: formatNumber(f.short_axis_mm, 1) }));
    }
    if (f.volume_ml != null) parts.push(interpolate(gettext("%(volume)s mL"), { volume: formatNumber(f.volume_ml, 3) }));
    if (f.composition) parts.push(this.label("composition", f.composition));
    if (f.confidence != null) parts.push(interpolate(gettext("confidence %(value)s"), { value: formatNumber(f.confidence, 2) }));
    parts.push(this.label("source", f.source));
    facts.textContent = parts.join(" · ");
    li.append(head, facts);
    if (this.agreement.size || f.source === "consensus") {
      const agree = document.createElement("div");
      agree.className = "finding-agreement";
      const n = this.agreement.get(f.id);
      agree.textContent = n ? interpolate(gettext("readers' agreement %(count)s of 4"), { count: n }) : gettext("no readers' nodule here");
      agree.dataset.agreement = n ? String(n) : "0";
      li.appendChild(agree);
    }
    if (this.config.canDecide) {
      const buttons = document.createElement("div");
      buttons.className = "finding-buttons";
      for (const action of ["accept", "reject"]) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = `btn btn-tool finding-${action}`;
        b.dataset.action = action;
        b.textContent = ACTIONS[action]();
        b.disabled = (action === "accept" && f.status === "accepted") || (action === "reject" && f.status === "rejected");
        buttons.appendChild(b);
      }
      li.appendChild(buttons);
    }
    return li;
  }

  markSelected() {
    const list = $("finding-list");
    const panel = $("findings-panel");
    if (panel) panel.dataset.selectedId = this.selectedId == null ? "" : String(this.selectedId);
    if (!list) return;
    for (const li of list.querySelectorAll("li[data-finding-id]")) {
      const on = Number(li.dataset.findingId) === this.selectedId;
      li.classList.toggle("is-selected", on);
      li.setAttribute("aria-selected", on ? "true" : "false");
      if (on && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
    }
  }

  // ---- selection ----------------------------------------------------------------------

  /** Select a finding: centre axial, coronal and sagittal on its voxel and outline it. */
  async select(id) {
    const finding = this.findings.find((f) => f.id === id);
    if (!finding) return;
    this.selectedId = id;
    this.markSelected();
    const viewer = this.page.viewer;
    const [k, j, i] = (finding.centroid_voxel || []).map(Number);
    if (viewer && viewer.base && [i, j, k].every(Number.isFinite)) {
      viewer.moveToVoxel([i, j, k]);
      try {
        const indices = await this.outline(finding, [i, j, k]);
        if (this.selectedId === id) viewer.showMarker(indices);
      } catch (err) {
        // No outline is no reason to lose the selection; the box is the fallback.
        if (this.selectedId === id) viewer.showMarker(this.box(finding, [i, j, k]));
      }
    }
    document.dispatchEvent(new CustomEvent("yixin:finding-selected", { detail: { finding } }));
  }

  /**
   * Move the selection by `delta` items (ArrowUp/ArrowDown). Return true when the list took the key
   * (it has findings), false to leave the key to the viewer.
   */
  step(delta) {
    if (!this.findings.length) return false;
    const panel = $("findings-panel");
    const focused = panel && panel.contains(document.activeElement);
    if (this.selectedId == null && !focused) return false;
    let index = this.findings.findIndex((f) => f.id === this.selectedId);
    index = index < 0 ? (delta > 0 ? 0 : this.findings.length - 1) : index + delta;
    index = Math.max(0, Math.min(this.findings.length - 1, index));
    this.select(this.findings[index].id);
    return true;
  }

  /** Leave the list: no finding selected, no marker; the arrows move slices again. */
  deselect() {
    if (this.selectedId == null) return;
    this.selectedId = null;
    this.markSelected();
    if (this.page.viewer) this.page.viewer.clearMarker();
  }

  box(finding, center) {
    const base = this.page.viewer.base;
    const halfMm = Math.max(2, Number(finding.long_axis_mm) || 10) / 2 + 1;
    return boxShellIndices(base.hdr.dims, base.hdr.pixDims, center, halfMm);
  }

  /** The shell of the finding's segment in its segmentation's label map, else a box. */
  async outline(finding, center) {
    if (finding.segmentation_id == null || finding.segment_label == null) return this.box(finding, center);
    const key = `${finding.segmentation_id}:${finding.segment_label}`;
    if (this.shellCache.has(key)) return this.shellCache.get(key);
    const viewer = this.page.viewer;
    let img = null;
    let dims = null;
    if (viewer.overlay && Number(viewer.overlayId) === Number(finding.segmentation_id)) {
      img = viewer.overlay.img;
      dims = viewer.overlay.hdr.dims;
    } else {
      const seg = (this.page.segmentations || []).find((s) => Number(s.id) === Number(finding.segmentation_id));
      if (!seg || !seg.labelmapUrl) return this.box(finding, center);
      const buffer = await fetchArrayBuffer(seg.labelmapUrl);
      const image = await NVImage.loadFromUrl({ url: buffer, name: `segmentation-${seg.id}.nii.gz` });
      img = image.img;
      dims = image.hdr.dims;
    }
    const base = viewer.base.hdr.dims;
    if (!img || [1, 2, 3].some((a) => Number(dims[a]) !== Number(base[a]))) return this.box(finding, center);
    const shell = labelShellIndices(img, dims, Number(finding.segment_label));
    const result = shell.length ? shell : this.box(finding, center);
    this.shellCache.set(key, result);
    return result;
  }

  // ---- decisions and detection ------------------------------------------------------------

  async decide(id, action) {
    const template = action === "accept" ? this.config.acceptUrlTemplate : this.config.rejectUrlTemplate;
    if (!template || !this.config.canDecide) return;
    try {
      const updated = await requestJson(template.replace("{id}", String(id)), {
        method: "POST",
        body: {},
        csrfToken: this.page.config.csrfToken,
      });
      const index = this.findings.findIndex((f) => f.id === id);
      if (index >= 0 && updated) this.findings[index] = updated;
      this.render();
      document.dispatchEvent(new CustomEvent("yixin:finding-decided", { detail: { finding: updated } }));
    } catch (err) {
      this.page.showError(interpolate(gettext("Could not save the decision: %(message)s"), { message: err.message }));
    }
  }

  async findNodules() {
    const button = $("find-nodules");
    const state = $("findings-state");
    if (button) button.disabled = true;
    if (state) state.textContent = gettext("Finding nodules…");
    try {
      const run = await this.page.startRunWithModel(Number(this.config.detector.id));
      this.detectionRunId = run ? run.id : null;
    } catch (err) {
      if (state) state.textContent = "";
      this.page.showError(interpolate(gettext("Could not start the detection: %(message)s"), { message: err.message }));
    } finally {
      if (button) button.disabled = false;
    }
  }

  async onRunFinished(run) {
    await this.refresh();
    if (run && run.id === this.detectionRunId) {
      const state = $("findings-state");
      if (state) {
        const count = this.findings.filter((f) => f.source === "detector").length;
        state.textContent = interpolate(
          ngettext("Detection finished: %(count)s finding", "Detection finished: %(count)s findings", count),
          { count },
        );
      }
    }
  }
}

/** Readers' agreement per finding id from the comparison API: a consensus nodule's own, a detection's best match. */
export function agreementByFinding(comparison) {
  const out = new Map();
  if (!comparison || !comparison.reference_source) return out;
  for (const nodule of comparison.nodules || []) {
    const n = Number(nodule.agreement) || 0;
    if (!n) continue;
    out.set(nodule.finding_id, Math.max(out.get(nodule.finding_id) || 0, n));
    for (const d of nodule.detections || []) out.set(d, Math.max(out.get(d) || 0, n));
  }
  return out;
}

/** Start the panel when the page has one; return it (or null). */
export function startFindingsPanel(page) {
  const config = readConfig();
  if (!config || !$("findings-panel")) return null;
  const panel = new FindingsPanel(page, config);
  panel.start();
  return panel;
}
