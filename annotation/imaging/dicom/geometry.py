"""Series geometry and validation: check that the frames of one series share size, orientation and pixel
spacing, sort them along the slice normal, refuse duplicated or missing slices, irregular gaps and
sheared (gantry-tilted) stacks, and build the volume's LPS geometry (axes k, j, i; PS3.3
C.7.6.2.1.1)."""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError, InconsistentSeriesError, N_
from ..volume import Geometry
from .records import _Frame

ORIENTATION_TOLERANCE = 1e-4  # direction cosines, unitless
PIXEL_SPACING_TOLERANCE_MM = 1e-4
DUPLICATE_POSITION_TOLERANCE_MM = 1e-2
GAP_RELATIVE_TOLERANCE = 0.10  # a gap more than 10 % away from the median gap is irregular
MISSING_GAP_RATIO = 1.5  # a gap of 1.5 median gaps or more means slices are missing
SHEAR_TOLERANCE_PIXELS = 0.5  # in-plane drift of slice positions (gantry tilt) tolerated, in pixels


def _fmt_position(position: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in position) + ") mm"


def _validate_common_grid(frames: list[_Frame]) -> None:
    first = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.columns) != (first.rows, first.columns):
            raise InconsistentSeriesError(
                N_("slices of one series have different sizes: %(name)s is %(rows)s×%(columns)s, %(name2)s is "
                   "%(rows2)s×%(columns2)s"),
                params={"name": first.instance.name, "rows": first.rows, "columns": first.columns,
                        "name2": frame.instance.name, "rows2": frame.rows, "columns2": frame.columns},
                filename=frame.instance.name,
            )
        if np.max(np.abs(frame.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise InconsistentSeriesError(
                N_("slice orientation (Image Orientation (Patient) (0020,0037)) varies within the series: "
                   "%(name)s and %(name2)s differ"), params={"name": first.instance.name, "name2": frame.instance.name},
                filename=frame.instance.name,
            )
        if np.max(np.abs(frame.pixel_spacing - first.pixel_spacing)) > PIXEL_SPACING_TOLERANCE_MM:
            raise InconsistentSeriesError(
                N_("pixel spacing (0028,0030) varies within the series: %(name)s and %(name2)s differ"),
                params={"name": first.instance.name, "name2": frame.instance.name},
                filename=frame.instance.name,
            )


def _orientation_axes(frame: _Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return unit (row cosine r, column cosine c, normal n = r × c) of a frame (PS3.3 C.7.6.2.1.1)."""
    row = frame.orientation[:3]
    col = frame.orientation[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if min(norms) < 1e-6:
        raise CorruptFileError(
            N_("%(name)s: Image Orientation (Patient) (0020,0037) has a zero vector"),
            params={"name": frame.instance.name},
            filename=frame.instance.name,
        )
    row, col = row / norms[0], col / norms[1]
    if abs(float(row @ col)) > 1e-3:
        raise CorruptFileError(
            N_("%(name)s: Image Orientation (Patient) (0020,0037) cosines are not orthogonal"),
            params={"name": frame.instance.name},
            filename=frame.instance.name,
        )
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def _check_gaps(frames: list[_Frame], distances: np.ndarray) -> float:
    """Validate slice distances along the normal (sorted ascending) and return the median gap in mm."""
    gaps = np.diff(distances)
    duplicate = np.flatnonzero(gaps < DUPLICATE_POSITION_TOLERANCE_MM)
    if duplicate.size:
        n = int(duplicate[0])
        raise InconsistentSeriesError(
            N_("duplicated slice at position %(fmt_position)s: %(name)s and %(name2)s lie at the same place "
               "(%(size)s duplicate(s) in the series)"),
            params={"fmt_position": _fmt_position(frames[n + 1].position), "name": frames[n].instance.name,
                    "name2": frames[n + 1].instance.name, "size": duplicate.size},
            filename=frames[n + 1].instance.name,
        )
    median = float(np.median(gaps))
    ratios = gaps / median
    missing_gaps = np.flatnonzero(ratios >= MISSING_GAP_RATIO)
    if missing_gaps.size:
        missing = int(sum(round(float(ratios[n])) - 1 for n in missing_gaps))
        n = int(missing_gaps[0])
        raise InconsistentSeriesError(
            N_("about %(missing)s slice(s) seem missing from the series: the gap between %(name)s and %(name2)s "
               "is %(gaps).2f mm where the slice spacing is %(median).2f mm (%(size)s such gap(s))"),
            params={"missing": missing, "name": frames[n].instance.name, "name2": frames[n + 1].instance.name,
                    "gaps": gaps[n], "median": median, "size": missing_gaps.size},
            filename=frames[n + 1].instance.name,
        )
    irregular = np.flatnonzero(np.abs(ratios - 1.0) > GAP_RELATIVE_TOLERANCE)
    if irregular.size:
        n = int(irregular[0])
        raise InconsistentSeriesError(
            N_("irregular slice spacing: the gap between %(name)s and %(name2)s is %(gaps).2f mm where the "
               "median is %(median).2f mm"),
            params={"name": frames[n].instance.name, "name2": frames[n + 1].instance.name, "gaps": gaps[n],
                    "median": median},
            filename=frames[n + 1].instance.name,
        )
    return median


def _sorted_geometry(frames: list[_Frame]) -> tuple[list[_Frame], Geometry]:
    _validate_common_grid(frames)
    first = frames[0]
    row, col, normal = _orientation_axes(first)
    positions = np.stack([f.position for f in frames])
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    frames = [frames[n] for n in order]
    positions, distances = positions[order], distances[order]

    if len(frames) > 1:
        spacing_k = _check_gaps(frames, distances)
        # Slice positions must move along the normal only: a drift within the slice plane means a
        # gantry-tilted or sheared stack, which a (k, j, i) grid with orthogonal axes cannot represent.
        offsets = positions - positions[0]
        in_plane = np.abs(np.stack([offsets @ row, offsets @ col], axis=1))
        if np.any(in_plane > SHEAR_TOLERANCE_PIXELS * first.pixel_spacing.min()):
            n = int(np.argmax(in_plane.max(axis=1)))
            raise InconsistentSeriesError(
                N_("slice positions are not perpendicular to the slices (gantry tilt or a sheared stack): "
                   "%(name)s is shifted %(max).2f mm within the slice plane"),
                params={"name": frames[n].instance.name, "max": in_plane[n].max()},
                filename=frames[n].instance.name,
            )
    else:
        spacing_k = first.thickness if first.thickness and first.thickness > 0 else 1.0

    direction = np.column_stack([normal, col, row])  # columns: LPS directions of array axes k, j, i
    geometry = Geometry(
        shape=(len(frames), first.rows, first.columns),
        spacing_mm=(spacing_k, float(first.pixel_spacing[0]), float(first.pixel_spacing[1])),
        origin_mm=tuple(positions[0]),
        direction=tuple(direction.ravel()),
    )
    return frames, geometry
