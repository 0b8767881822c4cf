"""Key images for reports: axial, coronal and sagittal PNGs through one voxel, with the segments overlaid.

Conventions are those of :mod:`annotation.imaging.volume`: arrays are indexed ``[k, j, i]``,
``geometry.spacing_mm`` is in that order, and ``geometry.direction`` column *a* is the LPS unit vector
of array axis *a*.

Display follows the radiological convention: axial images show the patient's anterior at the top and
the patient's right on the image's left (viewed from the feet); coronal images show superior at the top
and the patient's right on the left (viewed from the front); sagittal images show superior at the top
and anterior on the left. The orientation is worked out from ``geometry.direction``, so flipped or
permuted acquisitions (a sagittal MR series, a feet-first CT) come out the same way.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from itertools import permutations

import numpy as np
from PIL import Image

from annotation.imaging.volume import Geometry
from annotation.imaging.windowing import apply_window

__all__ = ["PLANES", "FindingKeyImage", "label_colors_rgb", "render_finding_key_image", "render_key_images"]

PLANES = ("axial", "coronal", "sagittal")

# LPS axes: 0 = x (towards the patient's left), 1 = y (posterior), 2 = z (superior).
# Per plane: the LPS axis held fixed, then (LPS axis, sign) that image rows and columns increase along.
_PLANE_LAYOUT = {
    # rows run anterior → posterior (+y), columns run right → left (+x)
    "axial": (2, (1, +1), (0, +1)),
    # rows run superior → inferior (-z), columns run right → left (+x)
    "coronal": (1, (2, -1), (0, +1)),
    # rows run superior → inferior (-z), columns run anterior → posterior (+y)
    "sagittal": (0, (2, -1), (1, +1)),
}


def label_colors_rgb(label_table: list[dict]) -> dict[int, tuple[int, int, int]]:
    """Map each label of a label table (entries with ``index`` and ``color`` "#rrggbb", red when
    missing or not written so, as in rows stored before colours were validated) to its RGB triple, 0-255."""
    colors = {}
    for entry in label_table:
        color = entry.get("color", "#ff0000")
        if not (isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color)):
            color = "#ff0000"
        colors[int(entry["index"])] = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    return colors


def render_key_images(
    image: np.ndarray,
    label_map: np.ndarray | None,
    geometry: Geometry,
    *,
    center_index: tuple[int, int, int],
    window: tuple[float, float],
    colors: dict[int, tuple[int, int, int]],
    opacity: float = 0.4,
    size_px: int = 384,
) -> dict[str, bytes]:
    """Render axial, coronal and sagittal PNG key images through ``center_index``.

    Parameters
    ----------
    image : ndarray, shape (k, j, i), integer or float dtype
        Intensities (HU for CT) on ``geometry``.
    label_map : ndarray, shape (k, j, i), integer or bool dtype, or None
        Segments to overlay (0 = background); None for the plain image.
    geometry : Geometry
        The grid of ``image``; its direction decides the display orientation.
    center_index : tuple of 3 int
        The voxel (k, j, i) the three planes pass through.
    window : tuple of 2 float
        (center, width) of the VOI window in image units, applied with the DICOM linear VOI LUT
        function (DICOM PS3.3 C.11.2.1.2.1) by :func:`annotation.imaging.windowing.apply_window`;
        width must be >= 1.
    colors : dict of int to (int, int, int)
        RGB colour (0-255) per label; labels not listed are not drawn.
    opacity : float, default 0.4
        Fill opacity of the overlay in [0, 1]; outlines are drawn opaque.
    size_px : int, default 384
        Length in pixels of the longer side of each image; the other side follows from the plane's
        extent in mm, so pixels are square in mm.

    Returns
    -------
    dict of str to bytes
        PNG-encoded RGB images keyed "axial", "coronal", "sagittal".

    Raises
    ------
    ValueError
        When an array's shape differs from ``geometry.shape``, ``image`` is not numeric, ``label_map`` is
        not integer, ``center_index`` lies outside the grid, the window width is < 1 or the window is
        not finite, ``opacity`` is outside [0, 1], ``size_px`` < 1, or a colour is not three values in
        0-255.

    Notes
    -----
    Each plane is the array plane whose normal is closest to the anatomical axis (the axis assignment
    that best matches ``geometry.direction``); an oblique acquisition is shown in its own planes rather
    than resliced. The image is resampled bilinearly and the label map by nearest neighbour, both to
    the output grid, so the overlay stays aligned with the image. Outlines are the overlay pixels with
    a 4-neighbour of another label, so they stay inside the segment.
    """
    image = np.asarray(image)
    if image.ndim != 3 or tuple(image.shape) != geometry.shape:
        raise ValueError(f"image shape {image.shape} does not match geometry shape {geometry.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"image must be an integer or floating-point array, got dtype {image.dtype}")
    if label_map is not None:
        label_map = np.asarray(label_map)
        if tuple(label_map.shape) != geometry.shape:
            raise ValueError(f"label map shape {label_map.shape} does not match geometry shape {geometry.shape}")
        if label_map.dtype == bool:
            label_map = label_map.view(np.uint8)
        elif not np.issubdtype(label_map.dtype, np.integer):
            raise ValueError(f"label map must have an integer dtype, got {label_map.dtype}")
    if len(center_index) != 3 or any(not 0 <= int(c) < n for c, n in zip(center_index, geometry.shape)):
        raise ValueError(f"center_index {tuple(center_index)} lies outside the grid {geometry.shape}")
    center, width = (float(v) for v in window)
    if not width >= 1.0:
        raise ValueError(f"window width must be >= 1 (DICOM PS3.3 C.11.2.1.2.1), got {width}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    if size_px < 1:
        raise ValueError(f"size_px must be positive, got {size_px}")
    palette = {}
    for label, color in colors.items():
        rgb = tuple(int(c) for c in color)
        if len(rgb) != 3 or any(not 0 <= c <= 255 for c in rgb):
            raise ValueError(f"colour of label {label} must be three values in 0-255, got {color}")
        palette[int(label)] = np.asarray(rgb, dtype=np.float32)

    axis_of, sign_of = _anatomical_axes(geometry)
    spacing = geometry.spacing_mm
    result = {}
    for plane in PLANES:
        fixed_lps, (row_lps, row_sign), (col_lps, col_sign) = _PLANE_LAYOUT[plane]
        fixed, row_axis, col_axis = axis_of[fixed_lps], axis_of[row_lps], axis_of[col_lps]
        flips = (sign_of[row_lps] * row_sign < 0, sign_of[col_lps] * col_sign < 0)
        height_mm = geometry.shape[row_axis] * spacing[row_axis]
        width_mm = geometry.shape[col_axis] * spacing[col_axis]
        scale = size_px / max(height_mm, width_mm)
        out_size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))  # Pillow: (w, h)

        picture = _plane(image, fixed, int(center_index[fixed]), row_axis, col_axis, flips)
        resampled = np.asarray(
            Image.fromarray(picture.astype(np.float32)).resize(out_size, Image.Resampling.BILINEAR)
        )
        gray = apply_window(resampled, center, width).astype(np.float32)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)

        if label_map is not None and palette:
            labels = _plane(label_map, fixed, int(center_index[fixed]), row_axis, col_axis, flips)
            labels = np.asarray(
                Image.fromarray(labels.astype(np.int32)).resize(out_size, Image.Resampling.NEAREST)
            )
            _overlay(rgb, labels, palette, opacity)

        buffer = io.BytesIO()
        Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
        result[plane] = buffer.getvalue()
    return result


def _anatomical_axes(geometry: Geometry) -> tuple[list[int], list[int]]:
    """Return, per LPS axis, the array axis closest to it and the sign of its direction along it."""
    weights = np.abs(geometry.direction_matrix)  # [LPS axis, array axis]
    # The permutation with the largest total alignment: a greedy argmax per row could pick one array
    # axis twice for an oblique grid.
    best = max(permutations(range(3)), key=lambda p: sum(weights[lps, p[lps]] for lps in range(3)))
    axis_of = list(best)
    sign_of = [1 if geometry.direction_matrix[lps, axis_of[lps]] >= 0 else -1 for lps in range(3)]
    return axis_of, sign_of


def _plane(
    volume: np.ndarray, fixed: int, index: int, row_axis: int, col_axis: int, flips: tuple[bool, bool]
) -> np.ndarray:
    """Return the 2-D slice at ``index`` along ``fixed`` as (rows, columns), flipped to display order."""
    section = np.take(volume, index, axis=fixed)
    remaining = [a for a in range(3) if a != fixed]
    if remaining.index(row_axis) == 1:
        section = section.T
    if flips[0]:
        section = section[::-1, :]
    if flips[1]:
        section = section[:, ::-1]
    return np.ascontiguousarray(section)


def _overlay(rgb: np.ndarray, labels: np.ndarray, palette: dict[int, np.ndarray], opacity: float) -> None:
    """Blend each coloured label into ``rgb`` (h, w, 3) in place and draw its outline opaque."""
    for label, color in palette.items():
        region = labels == label
        if not region.any():
            continue
        rgb[region] = (1.0 - opacity) * rgb[region] + opacity * color
        padded = np.pad(region, 1, constant_values=False)
        interior = (
            padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
        rgb[region & ~interior] = color


@dataclass(frozen=True)
class FindingKeyImage:
    """One finding's key image and where things lie on it.

    ``crop`` is the displayed axial slice's region as (first row, end row, first column, end column),
    end exclusive, in the slice's display order (anterior at the top, patient's right on the left);
    ``centroid_px`` the finding's voxel as (row, column) pixels of the PNG; ``outline`` says how it is
    marked ("contour" of its segment or a "box" as wide as its long axis); ``outline_pixels`` how many
    PNG pixels the marking covers.
    """

    png: bytes
    slice_index: int
    crop: tuple[int, int, int, int]
    centroid_px: tuple[int, int]
    outline: str
    outline_pixels: int


def render_finding_key_image(
    image: np.ndarray,
    geometry: Geometry,
    *,
    center_index: tuple[int, int, int],
    window: tuple[float, float],
    label_map: np.ndarray | None = None,
    label: int | None = None,
    long_axis_mm: float | None = None,
    color: tuple[int, int, int] = (255, 214, 0),
    min_crop_mm: float = 40.0,
    size_px: int = 192,
) -> FindingKeyImage:
    """Render a finding's key image: the axial slice through its voxel, windowed, cropped around it, outlined.

    The crop is a square in mm centred on the finding, three times its long axis and at least
    ``min_crop_mm`` wide, clipped to the slice. The outline is the finding's segment's contour on that
    slice (``label`` in ``label_map``) when it has pixels there, else a square box of side
    ``long_axis_mm`` + 2 mm (10 mm without a long axis) around the centre.

    Parameters
    ----------
    image : ndarray, shape (k, j, i), integer or float dtype
        Intensities (HU for CT) on ``geometry``.
    geometry : Geometry
        The grid; its direction decides the display orientation (radiological, as
        :func:`render_key_images`).
    center_index : tuple of 3 int
        The finding's voxel (k, j, i), e.g. ``Finding.centroid_voxel``.
    window : tuple of 2 float
        (center, width) applied with the DICOM linear VOI LUT function (DICOM PS3.3 C.11.2.1.2.1);
        width >= 1. A lung window is (-600, 1500).
    label_map : ndarray, shape (k, j, i), integer dtype, optional
        The segmentation that outlines the finding.
    label : int, optional
        The finding's segment in ``label_map``.
    long_axis_mm : float, optional
        The finding's longest axial diameter (mm): sizes the crop and the box.
    color : tuple of 3 int
        RGB (0-255) of the outline.
    min_crop_mm : float, default 40
        The smallest crop width, mm.
    size_px : int, default 192
        Length in pixels of the crop's longer side; pixels stay square in mm.

    Returns
    -------
    FindingKeyImage

    Raises
    ------
    ValueError
        When a shape differs from ``geometry.shape``, ``center_index`` lies outside the grid, the window
        width is < 1, ``size_px`` < 8, ``min_crop_mm`` <= 0, ``long_axis_mm`` is negative or not finite,
        or ``color`` is not three values in 0-255.
    """
    image = np.asarray(image)
    if image.ndim != 3 or tuple(image.shape) != geometry.shape:
        raise ValueError(f"image shape {image.shape} does not match geometry shape {geometry.shape}")
    if label_map is not None:
        label_map = np.asarray(label_map)
        if tuple(label_map.shape) != geometry.shape:
            raise ValueError(f"label map shape {label_map.shape} does not match geometry shape {geometry.shape}")
    if len(center_index) != 3 or any(not 0 <= int(c) < n for c, n in zip(center_index, geometry.shape)):
        raise ValueError(f"center_index {tuple(center_index)} lies outside the grid {geometry.shape}")
    center, width = (float(v) for v in window)
    if not (np.isfinite(center) and width >= 1.0):
        raise ValueError(f"window width must be >= 1 (DICOM PS3.3 C.11.2.1.2.1), got {width}")
    if size_px < 8:
        raise ValueError(f"size_px must be at least 8, got {size_px}")
    if not min_crop_mm > 0:
        raise ValueError(f"min_crop_mm must be positive, got {min_crop_mm}")
    if long_axis_mm is not None and not (np.isfinite(long_axis_mm) and long_axis_mm >= 0):
        raise ValueError(f"long_axis_mm must be a finite size >= 0, got {long_axis_mm}")
    rgb_color = np.asarray([int(c) for c in color], dtype=np.float32)
    if rgb_color.shape != (3,) or np.any(rgb_color < 0) or np.any(rgb_color > 255):
        raise ValueError(f"color must be three values in 0-255, got {color}")

    axis_of, sign_of = _anatomical_axes(geometry)
    fixed_lps, (row_lps, row_sign), (col_lps, col_sign) = _PLANE_LAYOUT["axial"]
    fixed, row_axis, col_axis = axis_of[fixed_lps], axis_of[row_lps], axis_of[col_lps]
    flips = (sign_of[row_lps] * row_sign < 0, sign_of[col_lps] * col_sign < 0)
    index = [int(c) for c in center_index]
    picture = _plane(image, fixed, index[fixed], row_axis, col_axis, flips)
    n_rows, n_cols = picture.shape
    row = n_rows - 1 - index[row_axis] if flips[0] else index[row_axis]
    col = n_cols - 1 - index[col_axis] if flips[1] else index[col_axis]
    spacing = geometry.spacing_mm
    row_mm, col_mm = float(spacing[row_axis]), float(spacing[col_axis])

    size_mm = max(min_crop_mm, 3.0 * float(long_axis_mm or 0.0))
    half_rows, half_cols = max(1, round(size_mm / 2 / row_mm)), max(1, round(size_mm / 2 / col_mm))
    r0, r1 = max(0, row - half_rows), min(n_rows, row + half_rows + 1)
    c0, c1 = max(0, col - half_cols), min(n_cols, col + half_cols + 1)
    crop = picture[r0:r1, c0:c1].astype(np.float32)
    height_mm, width_mm = (r1 - r0) * row_mm, (c1 - c0) * col_mm
    scale = size_px / max(height_mm, width_mm)  # output pixels per mm
    out_size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))  # Pillow: (w, h)
    resampled = np.asarray(Image.fromarray(crop).resize(out_size, Image.Resampling.BILINEAR))
    gray = apply_window(resampled, center, width).astype(np.float32)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    # Pixel centres: source pixel p covers [p, p + 1) before scaling.
    centre_px = (min(out_size[1] - 1, int((row - r0 + 0.5) * row_mm * scale)),
                 min(out_size[0] - 1, int((col - c0 + 0.5) * col_mm * scale)))

    marked = np.zeros(rgb.shape[:2], dtype=bool)
    outline = "box"
    if label_map is not None and label is not None:
        labels = _plane(label_map, fixed, index[fixed], row_axis, col_axis, flips)[r0:r1, c0:c1] == int(label)
        if labels.any():
            region = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(out_size, Image.Resampling.NEAREST)) > 0
            padded = np.pad(region, 1, constant_values=False)
            interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
            marked = region & ~interior
            outline = "contour"
    if outline == "box":
        half_px = max(2, round((float(long_axis_mm or 8.0) + 2.0) / 2 * scale))
        top, bottom = max(0, centre_px[0] - half_px), min(out_size[1] - 1, centre_px[0] + half_px)
        left, right = max(0, centre_px[1] - half_px), min(out_size[0] - 1, centre_px[1] + half_px)
        for t in range(2):  # two pixels thick
            marked[min(top + t, bottom), left:right + 1] = True
            marked[max(bottom - t, top), left:right + 1] = True
            marked[top:bottom + 1, min(left + t, right)] = True
            marked[top:bottom + 1, max(right - t, left)] = True
    rgb[marked] = rgb_color

    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return FindingKeyImage(png=buffer.getvalue(), slice_index=index[fixed], crop=(r0, r1, c0, c1),
                           centroid_px=centre_px, outline=outline, outline_pixels=int(marked.sum()))
