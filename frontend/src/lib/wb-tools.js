// Label-map editing tools for the workbench, on NiiVue's drawing bitmap.
//
// Voxel order here is NiiVue's "RAS" order: index = x + y * nx + z * nx * ny, where x, y, z
// run along the volume's axes after NiiVue has permuted/flipped them towards RAS. `dims`
// is [nx, ny, nz] and `spacing` [dx, dy, dz] in mm in that order. A plane is named by the
// RAS axis it keeps fixed: 2 axial (z), 1 coronal (y), 0 sagittal (x); NiiVue reports the
// clicked view as axCorSag = 0 axial, 1 coronal, 2 sagittal, so planeAxis = 2 - axCorSag.
//
// The server's label maps are [k, j, i] C-order, i.e. "native" NIfTI order (i fastest);
// nativeOrder() builds the index maps between the two orders from NiiVue's img2RAS
// start/step, and diffRuns() encodes changed voxels as (start, length, value) runs over the
// native flat index (the "runs-v1" format of annotation/editing/diff.py).

/** Map NiiVue's axCorSag (0 axial, 1 coronal, 2 sagittal) to the fixed RAS axis. */
export function planeAxis(axCorSag) {
  const a = Number(axCorSag);
  return a === 0 || a === 1 || a === 2 ? 2 - a : 2;
}

/**
 * Return the voxel indices a round brush covers, as an Int32Array.
 * radiusMm is in mm; anisotropic spacing gives an elliptical footprint in voxels.
 * axis null/undefined = 3-D sphere, 0/1/2 = disc in the plane that keeps that axis fixed.
 */
export function brushIndices(dims, spacing, centre, radiusMm, axis = null) {
  const [nx, ny, nz] = dims;
  const r2 = radiusMm * radiusMm + 1e-9;
  const reach = spacing.map((s, a) => (axis === a ? 0 : Math.floor(radiusMm / s)));
  const out = [];
  for (let dz = -reach[2]; dz <= reach[2]; dz++) {
    const z = centre[2] + dz;
    if (z < 0 || z >= nz) continue;
    for (let dy = -reach[1]; dy <= reach[1]; dy++) {
      const y = centre[1] + dy;
      if (y < 0 || y >= ny) continue;
      for (let dx = -reach[0]; dx <= reach[0]; dx++) {
        const x = centre[0] + dx;
        if (x < 0 || x >= nx) continue;
        const d2 = (dx * spacing[0]) ** 2 + (dy * spacing[1]) ** 2 + (dz * spacing[2]) ** 2;
        if (d2 <= r2) out.push(x + y * nx + z * nx * ny);
      }
    }
  }
  return Int32Array.from(out);
}

/**
 * Face-connected flood fill from seed over voxels with the seed's label (and, with
 * range [lo, hi], image values inside it). axis 0/1/2 limits it to that slice; null = 3-D.
 */
export function floodIndices(labels, dims, seed, { axis = null, image = null, range = null } = {}) {
  const [nx, ny, nz] = dims;
  const start = seed[0] + seed[1] * nx + seed[2] * nx * ny;
  const target = labels[start];
  const inRange = (i) => !range || !image || (image[i] >= range[0] && image[i] <= range[1]);
  if (!inRange(start)) return new Int32Array(0);
  const seen = new Uint8Array(labels.length);
  const stack = [start];
  seen[start] = 1;
  const out = [];
  const steps = [
    [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
  ].filter((s) => axis === null || s[axis] === 0);
  while (stack.length) {
    const i = stack.pop();
    out.push(i);
    const x = i % nx;
    const y = Math.floor(i / nx) % ny;
    const z = Math.floor(i / (nx * ny));
    for (const [sx, sy, sz] of steps) {
      const X = x + sx, Y = y + sy, Z = z + sz;
      if (X < 0 || Y < 0 || Z < 0 || X >= nx || Y >= ny || Z >= nz) continue;
      const j = X + Y * nx + Z * nx * ny;
      if (seen[j] || labels[j] !== target || !inRange(j)) continue;
      seen[j] = 1;
      stack.push(j);
    }
  }
  return Int32Array.from(out);
}

/**
 * Voxels inside a polygon on one slice (even-odd rule on voxel centres, vertices included).
 * points are RAS voxel coordinates [x, y, z]; axis is the slice's fixed axis.
 */
export function polygonIndices(dims, axis, points) {
  const [nx, ny] = dims;
  const free = [0, 1, 2].filter((a) => a !== axis);
  const fixed = points[0][axis];
  const poly = points.map((p) => [p[free[0]], p[free[1]]]);
  const [nu, nv] = [dims[free[0]], dims[free[1]]];
  const index = (u, v) => {
    const p = [0, 0, 0];
    p[free[0]] = u;
    p[free[1]] = v;
    p[axis] = fixed;
    return p[0] + p[1] * nx + p[2] * nx * ny;
  };
  const out = new Set();
  for (let v = 0; v < nv; v++) {
    for (let u = 0; u < nu; u++) {
      let inside = false;
      for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        const [ua, va] = poly[a];
        const [ub, vb] = poly[b];
        if (va > v !== vb > v && u < ((ub - ua) * (v - va)) / (vb - va) + ua) inside = !inside;
      }
      if (inside) out.add(index(u, v));
    }
  }
  for (const [u, v] of poly) {
    const U = Math.round(u), V = Math.round(v);
    if (U >= 0 && V >= 0 && U < nu && V < nv) out.add(index(U, V));
  }
  return Int32Array.from(out);
}

/**
 * Set `value` at `indices` (0 erases), skipping voxels of locked labels and, for the
 * threshold brush, voxels whose image value lies outside range. With eraseOnly set, only
 * voxels of that label are erased. Return the change {indices, before, after} (only voxels
 * that really changed) or null.
 */
export function applyValue(labels, indices, value, { locked = new Set(), image = null, range = null, eraseOnly = null } = {}) {
  const idx = [];
  const before = [];
  for (const i of indices) {
    const old = labels[i];
    if (old === value || locked.has(old)) continue;
    if (range && image && (image[i] < range[0] || image[i] > range[1])) continue;
    if (eraseOnly !== null && value === 0 && old !== eraseOnly) continue;
    idx.push(i);
    before.push(old);
    labels[i] = value;
  }
  if (!idx.length) return null;
  return { indices: Int32Array.from(idx), before: Uint16Array.from(before), after: value };
}

/** Undo/redo of changes made by applyValue; a stroke groups several changes. */
export class EditHistory {
  constructor(limit = 200) {
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
    this.open = null;
  }

  begin() {
    this.open = [];
  }

  record(change) {
    if (!change) return;
    if (this.open) this.open.push(change);
    else this.push([change]);
  }

  end() {
    const stroke = this.open;
    this.open = null;
    if (stroke && stroke.length) this.push(stroke);
  }

  push(stroke) {
    this.undoStack.push(stroke);
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack = [];
  }

  undo(labels) {
    const stroke = this.undoStack.pop();
    if (!stroke) return false;
    for (let c = stroke.length - 1; c >= 0; c--) {
      const { indices, before } = stroke[c];
      for (let n = 0; n < indices.length; n++) labels[indices[n]] = before[n];
    }
    this.redoStack.push(stroke);
    return true;
  }

  redo(labels) {
    const stroke = this.redoStack.pop();
    if (!stroke) return false;
    for (const { indices, after } of stroke) {
      for (let n = 0; n < indices.length; n++) labels[indices[n]] = after;
    }
    this.undoStack.push(stroke);
    return true;
  }

  clear() {
    this.undoStack = [];
    this.redoStack = [];
    this.open = null;
  }
}

/**
 * Index maps between NiiVue's RAS order and the native (NIfTI file, [k, j, i] C) order,
 * from an NVImage's img2RASstart / img2RASstep / dimsRAS (as NVImage.toUint8Array uses them).
 */
export function nativeOrder(image) {
  const dims = image.dimsRAS;
  const n = dims[1] * dims[2] * dims[3];
  const rasToNative = new Int32Array(n);
  const start = image.img2RASstart;
  const step = image.img2RASstep;
  if (!start || !step) {
    for (let i = 0; i < n; i++) rasToNative[i] = i;
  } else {
    let r = 0;
    for (let z = 0; z < dims[3]; z++) {
      const zi = start[2] + z * step[2];
      for (let y = 0; y < dims[2]; y++) {
        const yi = start[1] + y * step[1];
        for (let x = 0; x < dims[1]; x++) rasToNative[r++] = start[0] + x * step[0] + yi + zi;
      }
    }
  }
  const nativeToRas = new Int32Array(n);
  for (let r = 0; r < n; r++) nativeToRas[rasToNative[r]] = r;
  return { rasToNative, nativeToRas };
}

/** Return labels (RAS order) rearranged into native order. */
export function toNative(labelsRas, order) {
  const out = new Uint8Array(labelsRas.length);
  const { rasToNative } = order;
  for (let r = 0; r < labelsRas.length; r++) out[rasToNative[r]] = labelsRas[r];
  return out;
}

/**
 * Runs (start, length, value) over the native flat index where `after` differs from
 * `before` (both native order); a Uint32Array of 3·n values.
 */
export function diffRuns(before, after) {
  const runs = [];
  let n = 0;
  const total = before.length;
  while (n < total) {
    if (before[n] === after[n]) {
      n++;
      continue;
    }
    const value = after[n];
    const start = n;
    while (n < total && before[n] !== after[n] && after[n] === value) n++;
    runs.push(start, n - start, value);
  }
  return Uint32Array.from(runs);
}

/** Encode runs as the "runs-v1" wire object: zlib (CompressionStream "deflate") + base64. */
export async function encodeRuns(runs, shapeKji) {
  const bytes = new Uint8Array(runs.buffer, runs.byteOffset, runs.byteLength);
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  const compressed = new Uint8Array(await new Response(stream).arrayBuffer());
  let binary = "";
  for (let i = 0; i < compressed.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, compressed.subarray(i, i + 0x8000));
  }
  return { format: "runs-v1", shape: shapeKji, runs: btoa(binary) };
}
