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

import numpy as np

__all__ = [
    "CHARACTERISTICS",
    "LidcError",
    "LidcMark",
    "LidcReads",
    "LidcRoi",
    "group_marks",
    "parse_lidc_xml",
]

_NS = "{http://www.nih.gov}"
CHARACTERISTICS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation",
                   "spiculation", "texture", "malignancy")
"""The nine LIDC characteristics, each an integer rating (calcification 1–6, internalStructure 1–4, others 1–5)."""


class LidcError(ValueError):
    """A file that is not a well-formed LIDC read, named with what is wrong."""


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
        raise LidcError(f"{where}: missing <{tag}>")
    return found.text.strip()


def _number(element, tag: str, where: str, cast=float):
    value = _text(element, tag, where)
    try:
        return cast(value)
    except ValueError:
        raise LidcError(f"{where}: <{tag}> is not a number ({value[:20]!r})") from None


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
        raise LidcError(f"not well-formed XML: {exc}") from None
    if root.tag != _NS + "LidcReadMessage":
        raise LidcError(f"not an LIDC read message (root element {root.tag.split('}')[-1]!r})")
    header = root.find(_NS + "ResponseHeader")
    if header is None:
        raise LidcError("no <ResponseHeader>")
    series_uid = _text(header, "SeriesInstanceUid", "header")
    study_uid = (header.findtext(_NS + "StudyInstanceUID") or "").strip()
    sessions = root.findall(_NS + "readingSession")
    if not sessions:
        raise LidcError("no <readingSession>: the file holds no reader's marks")
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
                    raise LidcError(f"{where}: a <roi> without <edgeMap> points")
                rois.append(LidcRoi(
                    sop_instance_uid=_text(roi, "imageSOP_UID", where), z_mm=_number(roi, "imageZposition", where),
                    inclusion=(roi.findtext(_NS + "inclusion") or "TRUE").strip().upper() == "TRUE", points=points,
                ))
            if not rois:
                raise LidcError(f"{where}: no <roi>")
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
                raise LidcError(f"{where}: no <locus>")
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
