"""LIDC-IDRI XML reads: parsing a ``LidcReadMessage`` and grouping the readers' marks into nodules. Imports no Django.

The format is the LIDC/IDRI annotation XML (Armato et al., Med. Phys. 38:915–931, 2011; the XML
schema ``LidcReadMessage.xsd``, namespace ``http://www.nih.gov``): one ``readingSession`` per
radiologist, each with ``unblindedReadNodule`` elements (a nodule ≥ 3 mm has per-slice ``roi``
contours, ``edgeMap`` points in image column ``xCoord`` / row ``yCoord``, keyed by
``imageSOP_UID`` and ``imageZposition``, and nine ``characteristics``; a nodule < 3 mm has one
``roi`` with a single point and no characteristics) and ``nonNodule`` elements (one ``locus`` point).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotation.imaging.errors import N_

__all__ = [
    "CHARACTERISTICS",
    "GROUP_DISTANCE_MM",
    "LidcError",
    "LidcMark",
    "LidcReads",
    "LidcRoi",
    "PlacedMark",
    "ReadNodule",
    "consensus_mask_voxels",
    "group_nodules",
    "place_marks",
    "group_marks",
    "parse_lidc_xml",
]

_NS = "{http://www.nih.gov}"
CHARACTERISTICS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation",
                   "spiculation", "texture", "malignancy")
"""The nine LIDC characteristics, each an integer rating (calcification 1–6, internalStructure 1–4, others 1–5)."""


class LidcError(ValueError):
    """A file that is not a well-formed LIDC read, named with what is wrong (an ``N_`` template)."""

    code = "bad_lidc"

    def __init__(self, message: str, *, params: dict[str, Any] | None = None):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        super().__init__(self.message)


@dataclass(frozen=True)
class LidcRoi:
    """One contour (or point) of a mark on one image: ``points`` are (column x, row y) pixel indices."""

    sop_instance_uid: str
    z_mm: float
    inclusion: bool
    points: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LidcMark:
    """One reader's mark: a nodule with contours (``kind == "nodule"``), a nodule < 3 mm (``"small_nodule"``,
    one point) or a non-nodule (``"non_nodule"``, one point)."""

    reader: int
    reader_id: str
    mark_id: str
    kind: str
    rois: tuple[LidcRoi, ...]
    characteristics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LidcReads:
    """A parsed read message: the series it is for and every reader's marks."""

    series_instance_uid: str
    study_instance_uid: str
    reader_count: int
    marks: tuple[LidcMark, ...]


def _text(element, tag: str, where: str) -> str:
    found = element.find(_NS + tag)
    if found is None or found.text is None or not found.text.strip():
        raise LidcError(N_("%(where)s: missing <%(tag)s>"), params={"where": where, "tag": tag})
    return found.text.strip()


def _number(element, tag: str, where: str, cast=float):
    value = _text(element, tag, where)
    try:
        return cast(value)
    except ValueError:
        raise LidcError(N_("%(where)s: <%(tag)s> is not a number (%(value)r)"),
                        params={"where": where, "tag": tag, "value": value[:20]}) from None


def _point(element, where: str) -> tuple[int, int]:
    return _number(element, "xCoord", where, int), _number(element, "yCoord", where, int)


def parse_lidc_xml(path: Path | str) -> LidcReads:
    """Parse an LIDC-IDRI XML read message.

    Parameters
    ----------
    path : Path or str

    Returns
    -------
    LidcReads

    Raises
    ------
    LidcError
        Not XML, not a ``LidcReadMessage``, no series UID, no reading session, or a mark with a
        missing or non-numeric field (the message names the reader and the mark).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LidcError(N_("not well-formed XML: %(exc)s"), params={"exc": exc}) from None
    if root.tag != _NS + "LidcReadMessage":
        raise LidcError(N_("not an LIDC read message (root element %(split)r)"),
                        params={"split": root.tag.split('}')[-1]})
    header = root.find(_NS + "ResponseHeader")
    if header is None:
        raise LidcError(N_("no <ResponseHeader>"))
    series_uid = _text(header, "SeriesInstanceUid", "header")
    study_uid = (header.findtext(_NS + "StudyInstanceUID") or "").strip()
    sessions = root.findall(_NS + "readingSession")
    if not sessions:
        raise LidcError(N_("no <readingSession>: the file holds no reader's marks"))
    marks = []
    for reader, session in enumerate(sessions):
        reader_id = (session.findtext(_NS + "servicingRadiologistID") or str(reader)).strip()
        for nodule in session.findall(_NS + "unblindedReadNodule"):
            mark_id = (nodule.findtext(_NS + "noduleID") or "").strip()
            where = f"reader {reader + 1}, nodule {mark_id!r}"
            rois = []
            for roi in nodule.findall(_NS + "roi"):
                points = tuple(_point(e, where) for e in roi.findall(_NS + "edgeMap"))
                if not points:
                    raise LidcError(N_("%(where)s: a <roi> without <edgeMap> points"), params={"where": where})
                rois.append(LidcRoi(
                    sop_instance_uid=_text(roi, "imageSOP_UID", where), z_mm=_number(roi, "imageZposition", where),
                    inclusion=(roi.findtext(_NS + "inclusion") or "TRUE").strip().upper() == "TRUE", points=points,
                ))
            if not rois:
                raise LidcError(N_("%(where)s: no <roi>"), params={"where": where})
            chars = nodule.find(_NS + "characteristics")
            characteristics = {}
            if chars is not None:
                for name in CHARACTERISTICS:
                    value = chars.findtext(_NS + name)
                    if value is not None and value.strip():
                        characteristics[name] = _number(chars, name, where, int)
            small = len(rois) == 1 and len(rois[0].points) == 1
            marks.append(LidcMark(reader=reader, reader_id=reader_id, mark_id=mark_id,
                                  kind="small_nodule" if small else "nodule", rois=tuple(rois),
                                  characteristics=characteristics))
        for non in session.findall(_NS + "nonNodule"):
            mark_id = (non.findtext(_NS + "nonNoduleID") or "").strip()
            where = f"reader {reader + 1}, non-nodule {mark_id!r}"
            locus = non.find(_NS + "locus")
            if locus is None:
                raise LidcError(N_("%(where)s: no <locus>"), params={"where": where})
            roi = LidcRoi(sop_instance_uid=_text(non, "imageSOP_UID", where), z_mm=_number(non, "imageZposition", where),
                          inclusion=True, points=(_point(locus, where),))
            marks.append(LidcMark(reader=reader, reader_id=reader_id, mark_id=mark_id, kind="non_nodule", rois=(roi,)))
    return LidcReads(series_instance_uid=series_uid, study_instance_uid=study_uid, reader_count=len(sessions),
                     marks=tuple(marks))


def group_marks(centroids_mm: np.ndarray, readers, *, max_distance_mm: float) -> list[list[int]]:
    """Group readers' marks of the same nodule by centroid distance.

    Parameters
    ----------
    centroids_mm : ndarray, shape (n, 3)
        Mark centroids in mm (any Cartesian frame).
    readers : sequence of int, length n
        The reader of each mark; one group never holds two marks of the same reader.
    max_distance_mm : float
        Marks closer than this to a group's first mark join it (greedy, in input order).

    Returns
    -------
    list of list of int
        Mark indices per group.

    Notes
    -----
    The pylidc convention (Hancock & Magnan, pylidc ``Scan.cluster_annotations``) groups by a
    distance tolerance of about the nodule size; a nearest-first greedy pass is enough for reads
    whose nodules lie far apart compared with their size.
    """
    centroids = np.asarray(centroids_mm, dtype=float).reshape(-1, 3)
    groups: list[list[int]] = []
    for index, centre in enumerate(centroids):
        best, best_distance = None, max_distance_mm
        for group in groups:
            if any(readers[m] == readers[index] for m in group):
                continue
            distance = float(np.linalg.norm(centroids[group[0]] - centre))
            if distance < best_distance:
                best, best_distance = group, distance
        if best is None:
            groups.append([index])
        else:
            best.append(index)
    return groups


# --- Placing the marks on a series grid and grouping them into nodules -----------------------------

GROUP_DISTANCE_MM = 10.0
"""Marks of different readers whose centres lie closer than this are one nodule (as in the FROC benchmark)."""


@dataclass(frozen=True)
class PlacedMark:
    """One reader's mark placed on the series grid.

    Attributes
    ----------
    mark : LidcMark
    points_kji : ndarray, shape (n, 3), int
        The mark's contour (or single) points as voxel indices (k, j, i).
    centre_kji : ndarray, shape (3,), float
        Mean of ``points_kji`` (the centre LUNA16's reference list uses).
    diameter_mm : float
        Largest in-plane distance between two contour points of one slice, in mm (0 for a point mark).
    mask_kji : ndarray, shape (m, 3), int, or None
        The voxels the contours enclose, for a nodule ≥ 3 mm; None for a point mark.
    """

    mark: LidcMark
    points_kji: np.ndarray
    centre_kji: np.ndarray
    diameter_mm: float
    mask_kji: np.ndarray | None


@dataclass(frozen=True)
class ReadNodule:
    """Readers' marks of one nodule ≥ 3 mm: indices into the placed marks, its agreement, centre and diameter.

    ``centre_lps_mm`` is the mean of the readers' centres and ``diameter_mm`` the mean of their
    diameters (the LUNA16 reference convention, Setio et al. 2017).
    """

    members: tuple[int, ...]
    agreement: int
    centre_lps_mm: np.ndarray
    diameter_mm: float


def _slice_resolver(geometry, sop_instance_uids):
    if geometry.axial_axis() != 0:
        raise LidcError(N_("the series is not a stack of axial slices, so LIDC contours cannot be placed on it"))
    k_of_uid = {uid: k for k, uid in enumerate(sop_instance_uids) if uid}
    depth = geometry.shape[0]
    slice_z = geometry.index_to_lps(np.stack([np.arange(depth), np.zeros(depth), np.zeros(depth)], axis=1))[:, 2]
    tolerance = 0.5 * abs(float(geometry.spacing_mm[0]) * float(geometry.direction_matrix[2, 0])) or 0.5

    def resolve(roi: LidcRoi, where: str) -> int:
        if roi.sop_instance_uid in k_of_uid:
            return k_of_uid[roi.sop_instance_uid]
        nearest = int(np.argmin(np.abs(slice_z - roi.z_mm)))
        if abs(float(slice_z[nearest]) - roi.z_mm) > tolerance:
            raise LidcError(N_("%(where)s: image %(sop_instance_uid)s (z = %(z_mm)g mm) is not a slice of this "
                               "series (its slices span z = %(min)g to %(max)g mm)"),
                            params={"where": where, "sop_instance_uid": roi.sop_instance_uid, "z_mm": roi.z_mm,
                                    "min": slice_z.min(), "max": slice_z.max()})
        return nearest

    return resolve


def _fill_slice(rois, rows: int, columns: int) -> np.ndarray:
    """Fill one slice's contours: inclusions minus exclusions, the outline itself left out.

    The LIDC protocol asked readers to draw the outline just outside the nodule, so the outline's own
    pixels are not nodule (Armato et al. 2011). An exclusion outline is drawn around a hole, inside
    the nodule, so only its inside is removed. A contour too small to enclose any pixel keeps its
    outline.
    """
    from skimage.draw import line, polygon

    def region(roi):
        xs = np.array([p[0] for p in roi.points], float)
        ys = np.array([p[1] for p in roi.points], float)
        filled = np.zeros((rows, columns), bool)
        outline = np.zeros((rows, columns), bool)
        filled[polygon(ys, xs, shape=(rows, columns))] = True
        corners = list(roi.points) + [roi.points[0]]
        for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
            outline[line(y0, x0, y1, x1)] = True
        inside = filled & ~outline
        return inside if inside.any() else (filled | outline)

    mask = np.zeros((rows, columns), bool)
    for roi in rois:
        if roi.inclusion:
            mask |= region(roi)
    for roi in rois:
        if not roi.inclusion:
            mask &= ~region(roi)
    return mask


def place_marks(reads: LidcReads, geometry, *, sop_instance_uids) -> list[PlacedMark]:
    """Place every mark of ``reads`` on a series grid.

    Parameters
    ----------
    reads : LidcReads
    geometry : annotation.imaging.volume.Geometry
        The series grid, shape (k, j, i) with k the axial slice axis.
    sop_instance_uids : sequence of str, length k
        SOP Instance UID of each slice, in k order. A contour is placed on the slice with its
        ``imageSOP_UID``, else on the slice at its ``imageZposition`` (within half a slice).

    Returns
    -------
    list of PlacedMark
        In the order of ``reads.marks``.

    Raises
    ------
    LidcError
        The series is not axial; a contour's image is not a slice of the series (neither by UID nor
        by z); a point lies outside the image (the message names the reader and the mark).
    """
    resolve = _slice_resolver(geometry, sop_instance_uids)
    _, rows, columns = (int(v) for v in geometry.shape)
    spacing = np.asarray(geometry.spacing_mm, float)
    placed = []
    for mark in reads.marks:
        kind = {"nodule": "nodule", "small_nodule": "nodule < 3 mm", "non_nodule": "non-nodule"}[mark.kind]
        where = f"reader {mark.reader + 1}, {kind} {mark.mark_id!r}"
        by_slice: dict[int, list[LidcRoi]] = {}
        points = []
        for roi in mark.rois:
            for x, y in roi.points:
                if not (0 <= x < columns and 0 <= y < rows):
                    raise LidcError(N_("%(where)s: point (x %(x)s, y %(y)s) lies outside the %(columns)s × "
                                       "%(rows)s image"),
                                    params={"where": where, "x": x, "y": y, "columns": columns, "rows": rows})
            k = resolve(roi, where)
            by_slice.setdefault(k, []).append(roi)
            points.extend((k, y, x) for x, y in roi.points)
        points_kji = np.asarray(points, dtype=int)
        diameter, mask = 0.0, None
        if mark.kind == "nodule":
            voxels = []
            for k, rois in by_slice.items():
                for roi in rois:
                    xy = np.asarray(roi.points, float)
                    if roi.inclusion and len(xy) > 1:
                        gaps = (xy[:, None, ::-1] - xy[None, :, ::-1]) * spacing[1:]
                        diameter = max(diameter, float(np.sqrt((gaps ** 2).sum(-1)).max()))
                j, i = np.nonzero(_fill_slice(rois, rows, columns))
                voxels.append(np.stack([np.full_like(j, k), j, i], axis=1))
            mask = np.concatenate(voxels) if voxels else np.zeros((0, 3), int)
            if len(mask) == 0:
                raise LidcError(N_("%(where)s: its contours enclose no voxel"), params={"where": where})
        placed.append(PlacedMark(mark=mark, points_kji=points_kji, centre_kji=points_kji.mean(axis=0),
                                 diameter_mm=diameter, mask_kji=mask))
    return placed


def group_nodules(placed: list[PlacedMark], geometry, *, max_distance_mm: float = GROUP_DISTANCE_MM) -> list[ReadNodule]:
    """Group the readers' nodules ≥ 3 mm into one :class:`ReadNodule` per nodule (see :func:`group_marks`)."""
    nodules = [n for n, p in enumerate(placed) if p.mark.kind == "nodule"]
    if not nodules:
        return []
    centres = geometry.index_to_lps(np.array([placed[n].centre_kji for n in nodules]))
    groups = group_marks(centres, [placed[n].mark.reader for n in nodules], max_distance_mm=max_distance_mm)
    return [
        ReadNodule(members=tuple(nodules[m] for m in group), agreement=len(group),
                   centre_lps_mm=centres[group].mean(axis=0),
                   diameter_mm=float(np.mean([placed[nodules[m]].diameter_mm for m in group])))
        for group in groups
    ]


def consensus_mask_voxels(members: list[PlacedMark], *, share: float = 0.5) -> np.ndarray:
    """Return the voxels (m, 3) marked by at least ``share`` of the readers who marked the nodule."""
    stacked = np.concatenate([np.unique(p.mask_kji, axis=0) for p in members])
    voxels, counts = np.unique(stacked, axis=0, return_counts=True)
    return voxels[counts >= share * len(members)]
