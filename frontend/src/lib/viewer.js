// NiiVue wrapper for the study page: base volume, one label-map overlay, window/level,
// layout, zoom and mouse modes. Knows nothing about the portal's API beyond URLs.
import { Niivue, NVImage, SLICE_TYPE, SHOW_RENDER, MULTIPLANAR_TYPE, DRAG_MODE } from "@niivue/niivue";
import { fetchArrayBuffer } from "./api.js";
import { inflateInWorker } from "./inflate.js";
import { hexToRgb } from "./format.js";

export const LAYOUTS = {
  multiplanar: SLICE_TYPE.MULTIPLANAR,
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
  render: SLICE_TYPE.RENDER,
};

const LEFT_DRAG_MODES = {
  crosshair: DRAG_MODE.crosshair,
  windowing: DRAG_MODE.windowing,
  contrast: DRAG_MODE.contrast,
  pan: DRAG_MODE.pan,
  measurement: DRAG_MODE.measurement,
};

/**
 * Window centre/width (e.g. HU) to NiiVue's display range [cal_min, cal_max].
 *
 * The DICOM linear VOI LUT function (PS3.3 C.11.2.1.2.1), the one the server renders with
 * (annotation.imaging.windowing.apply_window): values up to c − 0.5 − (w − 1)/2 are black, values
 * above c − 0.5 + (w − 1)/2 white, linear in between. NiiVue maps cal_min to black and cal_max to
 * white linearly, so
 *
 *   cal_min = c − 0.5 − (w − 1)/2,  cal_max = c − 0.5 + (w − 1)/2.
 *
 * Width is at least 1, the standard's constraint. At width 1 the function is a step at c − 0.5;
 * NiiVue needs cal_max > cal_min, so that step gets a range of 1e-6.
 */
export function windowToCalRange(center, width) {
  const c = Number(center);
  const half = (Math.max(1, Number(width)) - 1) / 2;
  const calMin = c - 0.5 - half;
  return [calMin, Math.max(c - 0.5 + half, calMin + 1e-6)];
}

/** The inverse of {@link windowToCalRange}: NiiVue's [cal_min, cal_max] to window {center, width}. */
export function calRangeToWindow(calMin, calMax) {
  const lo = Number(calMin);
  const hi = Number(calMax);
  return { center: (lo + hi) / 2 + 0.5, width: hi - lo + 1 };
}

/**
 * Build NiiVue's label colormap (R, G, B, A, I, labels) from a label table.
 *
 * The table is made dense from 0 to the highest index so NiiVue's labels array lines
 * up with the indices; 0 (background) and gaps are transparent.
 */
export function labelColormap(labels, displayName = (l) => l.name) {
  const maxIndex = labels.reduce((m, l) => Math.max(m, Number(l.index) || 0), 1);
  const cm = { R: [], G: [], B: [], A: [], I: [], labels: [] };
  const byIndex = new Map(labels.map((l) => [Number(l.index), l]));
  for (let i = 0; i <= maxIndex; i++) {
    const label = i === 0 ? null : byIndex.get(i);
    const [r, g, b] = label ? hexToRgb(label.color) : [0, 0, 0];
    cm.R.push(r);
    cm.G.push(g);
    cm.B.push(b);
    cm.A.push(label ? 255 : 0);
    cm.I.push(i);
    cm.labels.push(label ? displayName(label) : "");
  }
  return cm;
}

export class StudyViewer {
  constructor(canvas, { backColor = [0.04, 0.05, 0.07, 1] } = {}) {
    this.canvas = canvas;
    this.nv = new Niivue({
      backColor,
      crosshairColor: [0.25, 0.85, 1, 0.9],
      crosshairWidth: 1,
      show3Dcrosshair: true,
      sliceType: SLICE_TYPE.MULTIPLANAR,
      multiplanarShowRender: SHOW_RENDER.ALWAYS,
      multiplanarLayout: MULTIPLANAR_TYPE.GRID,
      // Patient right on the viewer's left, as radiologists read CT.
      isRadiologicalConvention: true,
      isColorbar: false,
      showLegend: false,
      dragAndDropEnabled: false,
      isResizeCanvas: true,
      loadingText: "",
      logLevel: "warn",
      dragMode: DRAG_MODE.contrast,
      dragModePrimary: DRAG_MODE.crosshair,
      // Text at least 13 px (NiiVue grows it with the canvas area); textHeight is deprecated for this.
      fontMinPx: 13,
      fontSizeScaling: 0.4,
      // The distance ruler: a bright line and a large label (NiiVue scales the font by
      // measureTextHeight / 0.06: here 1.25, at least 16 px) on a dark box, readable over any window.
      measureLineColor: [1, 0.85, 0.1, 1],
      measureTextColor: [1, 1, 1, 1],
      measureTextHeight: 0.075,
      fontColor: [1, 1, 1, 1],
    });
    readableLabelBoxes(this.nv);
    this.base = null;
    this.overlay = null;
    this.overlayId = null;
    this.overlayOpacity = 0.5;
    this.overlayToken = 0;
    // Without a number here, ++heatToken gave NaN, NaN !== NaN, and showHeatmap never showed the map.
    this.heatToken = 0;
    this.heatmap = null;
    this.hiddenLabels = new Set();
    this.marker = null;
    this.setLeftDragMode("crosshair");
  }

  async attach() {
    // The wheel over the image scrolls slices (NiiVue's own listener) and never the page.
    this.canvas.addEventListener("wheel", (event) => event.preventDefault(), { passive: false });
    await this.nv.attachToCanvas(this.canvas);
    // attachToCanvas paints the parent black; the stylesheet owns that colour.
    if (this.canvas.parentElement) this.canvas.parentElement.style.backgroundColor = "";
  }

  /**
   * Load the series volume (replacing any loaded volumes). `calRange` is the opening display range
   * [cal_min, cal_max], or a function of the parsed NVImage returning one (or null: NiiVue's own).
   * A .nii.gz is inflated in the Web Worker at
   * `inflateWorkerUrl` when given (else, or when it fails, by NiiVue on the page). `onMark(name)` is
   * called as each step ends ("fetched", "inflated", "parsed", "uploaded"), for the page's load timings.
   */
  async loadBase(url, { calRange = null, onProgress = null, onStage = null, onMark = null, inflateWorkerUrl = null } = {}) {
    const mark = (name) => onMark && onMark(name);
    const buffer = await fetchArrayBuffer(url, { onProgress });
    mark("fetched");
    if (onStage) onStage("decoding");
    const inflated = await inflateInWorker(buffer, inflateWorkerUrl);
    mark("inflated");
    const name = fileName(url, "volume.nii.gz");
    const image = await NVImage.loadFromUrl({
      url: inflated || buffer, name: inflated ? name.replace(/\.gz$/i, "") : name, colormap: "gray",
    });
    mark("parsed");
    if (onStage) onStage("rendering");
    await new Promise((resolve) => setTimeout(resolve, 0));
    // The opening window is set before NiiVue uploads the volume: a window changed afterwards
    // uploads it (and recomputes its 3-D gradients) a second time.
    const range = typeof calRange === "function" ? calRange(image) : calRange;
    if (range) {
      image.cal_min = range[0];
      image.cal_max = range[1];
    }
    for (const volume of [...this.nv.volumes]) this.nv.removeVolume(volume);
    this.overlay = null;
    this.overlayId = null;
    this.marker = null;
    this.nv.addVolume(image);
    this.base = image;
    mark("uploaded");
    return image;
  }

  /**
   * Show one label map as the overlay, replacing the previous one. A later call wins
   * over an earlier one that is still downloading. Resolve true when this call's
   * overlay is the one on screen.
   */
  async showLabelmap({ id, url, labels, displayName }) {
    const token = ++this.overlayToken;
    const buffer = await fetchArrayBuffer(url);
    if (token !== this.overlayToken) return false;
    const image = await NVImage.loadFromUrl({
      url: buffer,
      name: fileName(url, `segmentation-${id}.nii.gz`),
      opacity: this.overlayOpacity,
    });
    if (token !== this.overlayToken) return false;
    image.setColormapLabel(labelColormap(labels, displayName));
    this.removeOverlay({ keepToken: true });
    this.nv.addVolume(image);
    this.overlay = image;
    this.overlayId = id;
    this.hiddenLabels.clear();
    this.nv.updateGLVolume();
    return true;
  }

  /**
   * Show a segmentation's voxel-wise uncertainty (uint8 NIfTI, 255 = normalised entropy 1) as a heat
   * layer above the label map; voxels below about 0.1 stay transparent. A null url removes it.
   */
  async showHeatmap(url) {
    const token = ++this.heatToken;
    this.clearHeatmap({ keepToken: true });
    if (!url || !this.base) return false;
    const buffer = await fetchArrayBuffer(url);
    if (token !== this.heatToken) return false;
    const image = await NVImage.loadFromUrl({
      url: buffer, name: fileName(url, "uncertainty.nii.gz"), colormap: "warm", opacity: 0.6,
      cal_min: 25, cal_max: 255,
    });
    if (token !== this.heatToken) return false;
    this.nv.addVolume(image);
    this.heatmap = image;
    this.nv.updateGLVolume();
    return true;
  }

  clearHeatmap({ keepToken = false } = {}) {
    if (!keepToken) this.heatToken = (this.heatToken || 0) + 1;
    if (this.heatmap) {
      this.nv.removeVolume(this.heatmap);
      this.heatmap = null;
      this.nv.updateGLVolume();
    }
  }

  removeOverlay({ keepToken = false } = {}) {
    if (!keepToken) this.overlayToken++;
    if (this.overlay) this.nv.removeVolume(this.overlay);
    this.overlay = null;
    this.overlayId = null;
  }

  /** Show or hide one label of the overlay by zeroing its alpha in the lookup table. */
  setLabelVisible(index, visible) {
    const lut = this.overlay && this.overlay.colormapLabel;
    if (!lut) return;
    const k = (Number(index) - (lut.min || 0)) * 4 + 3;
    if (k < 3 || k >= lut.lut.length) return;
    lut.lut[k] = visible ? 255 : 0;
    if (visible) this.hiddenLabels.delete(index);
    else this.hiddenLabels.add(index);
    this.nv.updateGLVolume();
  }

  setOverlayOpacity(opacity) {
    this.overlayOpacity = Math.min(1, Math.max(0, opacity));
    if (this.overlay) {
      const idx = this.nv.volumes.indexOf(this.overlay);
      if (idx >= 0) this.nv.setOpacity(idx, this.overlayOpacity);
    }
  }

  setCalRange(calMin, calMax) {
    if (!this.base) return;
    if (this.base.cal_min === calMin && this.base.cal_max === calMax) return; // nothing to upload again
    this.base.cal_min = calMin;
    this.base.cal_max = calMax;
    this.nv.updateGLVolume();
  }

  setWindow(center, width) {
    const [lo, hi] = windowToCalRange(center, width);
    this.setCalRange(lo, hi);
  }

  /** The percentile display range of the base volume ({@link percentileWindow}). */
  setAutoWindow() {
    if (!this.base) return;
    const [lo, hi] = percentileWindow(this.base);
    this.setCalRange(lo, hi);
  }

  setLayout(name) {
    const sliceType = LAYOUTS[name];
    if (sliceType === undefined) return;
    this.nv.setSliceType(sliceType);
  }

  /** Multiply the 2-D zoom and the 3-D scale by factor. */
  zoom(factor) {
    const [x, y, z, s] = this.nv.scene.pan2Dxyzmm;
    const zoom2d = Math.min(20, Math.max(0.2, s * factor));
    this.nv.scene.volScaleMultiplier = Math.min(10, Math.max(0.2, this.nv.scene.volScaleMultiplier * factor));
    this.nv.setPan2Dxyzmm([x, y, z, zoom2d]);
  }

  resetZoom() {
    this.nv.scene.volScaleMultiplier = 1;
    this.nv.setPan2Dxyzmm([0, 0, 0, 1]);
  }

  /** Move the crosshair by `delta` slices along the axis the current 2-D view shows (axial: z). */
  moveSlices(delta) {
    if (!this.base) return;
    const axis = { [SLICE_TYPE.CORONAL]: 1, [SLICE_TYPE.SAGITTAL]: 0 }[this.nv.opts.sliceType] ?? 2;
    const dims = this.base.dims || [3, 1, 1, 1];
    const step = 1 / Math.max(1, Number(dims[axis + 1]) || 1);
    const pos = [...this.nv.scene.crosshairPos];
    pos[axis] = Math.min(1, Math.max(0, pos[axis] + delta * step));
    this.nv.scene.crosshairPos = pos;
    this.nv.createOnLocationChange(axis);
    this.nv.drawScene();
  }

  /** The crosshair position as fractions of the volume (x, y, z). */
  crosshairFraction() {
    return [...this.nv.scene.crosshairPos];
  }

  /** Back to the middle of the volume. */
  resetSlices() {
    this.nv.scene.crosshairPos = [0.5, 0.5, 0.5];
    this.nv.createOnLocationChange();
    this.nv.drawScene();
  }

  /** Left drag does `mode`; right drag stays NiiVue's contrast (window/level) drag. */
  setLeftDragMode(mode) {
    const primary = LEFT_DRAG_MODES[mode] ?? DRAG_MODE.crosshair;
    this.nv.opts.dragModePrimary = primary;
    this.nv.setMouseEventConfig({
      leftButton: { primary, withCtrl: DRAG_MODE.crosshair, withShift: DRAG_MODE.pan },
      rightButton: DRAG_MODE.contrast,
      centerButton: DRAG_MODE.pan,
    });
    this.nv.setTouchEventConfig({ singleTouch: primary, doubleTouch: DRAG_MODE.pan });
  }

  /**
   * Move the crosshair (all three planes) to a voxel [x, y, z] of the base volume in file order (the
   * server's [k, j, i] reversed), through the NIfTI affine: NiiVue's own voxel space is reoriented to RAS.
   */
  moveToVoxel(vox) {
    if (!this.base) return;
    const a = this.base.hdr.affine;
    const v = [Number(vox[0]), Number(vox[1]), Number(vox[2])];
    const mm = [0, 1, 2].map((r) => a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3]);
    this.moveToRasMm(mm);
  }

  /** The voxel [x, y, z] of the base volume (file order, rounded) under the crosshair. */
  crosshairVoxel() {
    if (!this.base) return null;
    const mm = this.nv.frac2mm(this.nv.scene.crosshairPos);
    const a = this.base.hdr.affine;
    const m = [0, 1, 2].map((r) => [a[r][0], a[r][1], a[r][2]]);
    const d = [0, 1, 2].map((r) => Number(mm[r]) - a[r][3]);
    return solve3(m, d).map((x) => Math.round(x));
  }

  /**
   * Draw a marker (a finding's outline or box) over the image: `indices` are flat voxel indices of the
   * base volume set in an extra label layer of one colour; an empty list removes the marker.
   */
  showMarker(indices, color = [255, 214, 0]) {
    if (!this.base) return;
    if (!indices || !indices.length) {
      this.clearMarker();
      return;
    }
    if (!this.marker) {
      this.marker = NVImage.zerosLike(this.base, "uint8");
      this.marker.name = "finding-marker.nii";
      this.marker.setColormapLabel({
        R: [0, color[0]], G: [0, color[1]], B: [0, color[2]], A: [0, 255], I: [0, 1], labels: ["", ""],
      });
      this.marker.opacity = 1;
      this.nv.addVolume(this.marker);
    }
    const img = this.marker.img;
    img.fill(0);
    for (const idx of indices) if (idx >= 0 && idx < img.length) img[idx] = 1;
    this.nv.updateGLVolume();
  }

  clearMarker() {
    if (!this.marker) return;
    this.nv.removeVolume(this.marker);
    this.marker = null;
    this.nv.updateGLVolume();
  }

  /** Move the crosshair to a world position in RAS millimetres. */
  moveToRasMm(mm) {
    if (!this.base) return;
    const frac = this.nv.mm2frac([mm[0], mm[1], mm[2]]);
    if (frac.some((f) => !Number.isFinite(f))) return;
    this.nv.scene.crosshairPos = [
      Math.min(1, Math.max(0, frac[0])),
      Math.min(1, Math.max(0, frac[1])),
      Math.min(1, Math.max(0, frac[2])),
    ];
    this.nv.createOnLocationChange();
    this.nv.drawScene();
  }
}

/**
 * The "auto" window of a volume: the 1st and 99th percentiles of its foreground, as [cal_min, cal_max].
 *
 * NiiVue's robust range (robust_min / robust_max) takes its percentiles over every voxel, background
 * included; on a brain MR, where most voxels are air, its upper bound fell inside the tissue's values
 * and a sixth of the brain showed pure white. Here the background (voxels within 2 % of the value
 * range above the minimum: air in CT and MR) is left out, so at most 1 % of the tissue saturates at
 * each end. Percentiles come from a 4096-bin histogram of the calibrated values (raw · scl_slope +
 * scl_inter, NIfTI-1), two passes over `image.img` (NiiVue's raw voxel array, any axis order).
 * Falls back to NiiVue's robust range when the volume is constant or has no foreground.
 */
export function percentileWindow(image, { lowFraction = 0.01, highFraction = 0.99, bins = 4096 } = {}) {
  const img = image.img;
  const slope = (image.hdr && Number(image.hdr.scl_slope)) || 1;
  const inter = (image.hdr && Number(image.hdr.scl_inter)) || 0;
  let min = Infinity;
  let max = -Infinity;
  for (let k = 0; k < img.length; k++) {
    const v = img[k];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const fallback = [image.robust_min, image.robust_max];
  if (!(max > min)) return fallback;
  const threshold = min + 0.02 * (max - min);
  const scale = bins / (max - threshold);
  const histogram = new Uint32Array(bins);
  let count = 0;
  for (let k = 0; k < img.length; k++) {
    const v = img[k];
    if (v <= threshold) continue;
    histogram[Math.min(bins - 1, Math.floor((v - threshold) * scale))] += 1;
    count += 1;
  }
  if (!count) return fallback;
  const rawAt = (fraction) => {
    const target = fraction * count;
    let seen = 0;
    for (let b = 0; b < bins; b++) {
      seen += histogram[b];
      if (seen >= target) return threshold + (b + 0.5) / scale;
    }
    return max;
  };
  const calibrated = [rawAt(lowFraction), rawAt(highFraction)].map((v) => v * slope + inter).sort((a, b) => a - b);
  return calibrated[1] > calibrated[0] ? calibrated : fallback;
}

/** The box behind a ruler's or an angle's label: black at 80 % (NiiVue's own is 50 %). */
export const LABEL_BOX_COLOR = [0, 0, 0, 0.8];

/**
 * Draw NiiVue's measurement labels (`drawTextBetween`: the distance ruler and the angle) on a
 * darker, padded box.
 *
 * NiiVue puts white label text on black at 50 % opacity: over a white area (bone in a soft-tissue
 * window, anything in a narrow one) the box is mid-grey and white on it reaches a contrast ratio of
 * about 4:1, under the 4.5:1 that WCAG 2.x (success criterion 1.4.3) asks of text. At 80 % the box is
 * at most 20 % grey over white, about 12.6:1 (WCAG's relative luminance and contrast ratio
 * definitions). Position and size follow NiiVue 0.69's calculateTextBetweenPosition.
 */
export function readableLabelBoxes(nv) {
  nv.drawTextBetween = function drawTextBetween(startXYendXY, str, scale = 1, color = null) {
    if (this.fontPx <= 0) return;
    const size = this.fontPx * scale;
    const width = this.textWidth(size, str);
    const x = (startXYendXY[0] + startXYendXY[2]) * 0.5 - 0.5 * width;
    const y = (startXYendXY[1] + startXYendXY[3]) * 0.5 - 0.5 * size;
    const pad = Math.max(2, Math.round(size * 0.15));
    this.drawRect([x - pad, y - pad, width + 2 * pad, size + 2 * pad], LABEL_BOX_COLOR);
    this.drawText([x, y], str, scale, color);
  };
}

/**
 * Voxels of a label map on the shell of one label: voxels of `label` with a 6-neighbour of another value.
 *
 * `img` is NiiVue's raw image array in file order (x fastest); `dims` is the NIfTI header's dims
 * ([ndim, nx, ny, nz, ...]). Returns the flat indices, so a slice through the segment shows its outline.
 */
export function labelShellIndices(img, dims, label) {
  const [nx, ny, nz] = [Number(dims[1]), Number(dims[2]), Number(dims[3]) || 1];
  const plane = nx * ny;
  const out = [];
  for (let idx = 0; idx < img.length; idx++) {
    if (img[idx] !== label) continue;
    const x = idx % nx;
    const y = Math.floor(idx / nx) % ny;
    const z = Math.floor(idx / plane);
    if (
      x === 0 || x === nx - 1 || y === 0 || y === ny - 1 || z === 0 || z === nz - 1 ||
      img[idx - 1] !== label || img[idx + 1] !== label ||
      img[idx - nx] !== label || img[idx + nx] !== label ||
      img[idx - plane] !== label || img[idx + plane] !== label
    ) {
      out.push(idx);
    }
  }
  return out;
}

/**
 * Flat indices of the shell of a box centred on voxel `center` ([x, y, z], file order) with half sizes
 * `halfMm` (mm) along each axis, converted with the voxel sizes `pixDims` ([_, dx, dy, dz] mm).
 */
export function boxShellIndices(dims, pixDims, center, halfMm) {
  const n = [Number(dims[1]), Number(dims[2]), Number(dims[3]) || 1];
  const lo = [];
  const hi = [];
  for (let a = 0; a < 3; a++) {
    const half = Math.max(1, Math.round(halfMm / Math.max(1e-6, Math.abs(Number(pixDims[a + 1]) || 1))));
    lo.push(Math.max(0, center[a] - half));
    hi.push(Math.min(n[a] - 1, center[a] + half));
  }
  const out = [];
  for (let z = lo[2]; z <= hi[2]; z++) {
    for (let y = lo[1]; y <= hi[1]; y++) {
      for (let x = lo[0]; x <= hi[0]; x++) {
        const onX = x === lo[0] || x === hi[0];
        const onY = y === lo[1] || y === hi[1];
        const onZ = z === lo[2] || z === hi[2];
        // The side faces only: an axial slice through the centre shows the box's outline.
        if (onX || onY || (onZ && (onX || onY))) out.push(x + y * n[0] + z * n[0] * n[1]);
      }
    }
  }
  return out;
}

/** Solve the 3×3 system m · x = d (Cramer's rule); m is a list of rows. */
function solve3(m, d) {
  const det = (q) =>
    q[0][0] * (q[1][1] * q[2][2] - q[1][2] * q[2][1]) -
    q[0][1] * (q[1][0] * q[2][2] - q[1][2] * q[2][0]) +
    q[0][2] * (q[1][0] * q[2][1] - q[1][1] * q[2][0]);
  const whole = det(m);
  return [0, 1, 2].map((c) => det(m.map((row, r) => row.map((v, k) => (k === c ? d[r] : v)))) / whole);
}

function fileName(url, fallback) {
  const last = String(url).split("?")[0].split("/").pop();
  return /\.nii(\.gz)?$/i.test(last) ? last : fallback;
}
