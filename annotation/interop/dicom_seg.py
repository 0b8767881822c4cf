"""DICOM Segmentation (SEG) objects to and from label maps, with highdicom.

Export writes a BINARY Segmentation IOD (DICOM PS3.3 A.51) whose frames reference the source CT/MR
instances (Referenced Series Sequence (0008,1115), Source Image Sequence in the Derivation Image
Functional Group), so PACS viewers place it over the series it was drawn on. Each label becomes one
segment; overlapping layers are kept because every segment has its own frames.

Import reads a SEG with highdicom, places every segment on the series grid by the frames' Image
Position (Patient) (0020,0032) and the shared Image Orientation (Patient) (0020,0037), and refuses a
SEG whose grid does not coincide with the series' voxels.

Arrays follow ``annotation.imaging``: ``[k, j, i]``, LPS millimetres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotation.imaging.errors import N_
from annotation.imaging.volume import Geometry


class SegInteropError(ValueError):
    """A DICOM SEG cannot be written or read for this series (stable ``code``, message safe to show)."""

    def __init__(self, message: str, *, params: dict[str, Any] | None = None, code: str = "bad_dicom_seg"):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        self.code = code
        super().__init__(self.message)


# SNOMED CT "Tissue" (85756007) as category, the default when a label carries no code of its own.
_DEFAULT_CATEGORY = ("85756007", "SCT", "Tissue")


def _hex_to_cielab(color: str):
    """Return the highdicom CIELab colour of ``#rrggbb`` (None for anything else)."""
    import highdicom as hd

    if not (isinstance(color, str) and len(color) == 7 and color.startswith("#")):
        return None
    try:
        return hd.color.CIELabColor.from_rgb(*(int(color[n:n + 2], 16) for n in (1, 3, 5)))
    except ValueError:
        return None


def _cielab_to_hex(value) -> str:
    """Convert a DICOM-scaled CIELab triplet (PS3.3 C.10.7.1.1) to #rrggbb (D65 sRGB).

    The conversion is highdicom's :class:`highdicom.color.CIELabColor` (the inverse of the one
    :func:`_hex_to_cielab` uses); colours outside the sRGB gamut are clipped to it. Anything that is
    not three integers in 0..65535 gives the default red ``#ff0000``.
    """
    import highdicom as hd

    if value is None or len(value) != 3:
        return "#ff0000"
    try:
        rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in value]).to_rgb(clip=True)
    except (TypeError, ValueError):
        return "#ff0000"
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def _source_slices(source_datasets: Sequence, geometry: Geometry) -> list:
    """Order the source instances by their slice index k on ``geometry`` (one per k)."""
    by_k: dict[int, object] = {}
    for ds in source_datasets:
        position = getattr(ds, "ImagePositionPatient", None)
        if position is None:
            raise SegInteropError(N_("A source instance has no Image Position (Patient)."), code="seg_needs_dicom")
        index = geometry.lps_to_index(np.asarray([float(v) for v in position]))
        k = round(float(index[0]))
        if abs(index[0] - k) > 0.05 or abs(index[1]) > 0.05 or abs(index[2]) > 0.05 or not 0 <= k < geometry.shape[0]:
            raise SegInteropError(N_("The source instances do not lie on the series grid."), code="wrong_grid")
        by_k[k] = ds
    if sorted(by_k) != list(range(geometry.shape[0])):
        raise SegInteropError(N_("Some slices of the series have no source DICOM instance."), code="seg_needs_dicom")
    return [by_k[k] for k in range(geometry.shape[0])]


def _tidy_source(ds):
    """Drop an empty Specific Character Set (0008,0005), which highdicom refuses but which means
    the default repertoire anyway (PS3.3 C.12.1.1.2)."""
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        ds = ds.copy()
        del ds.SpecificCharacterSet
    return ds


def labelmap_to_dicom_seg(
    layers: Sequence[np.ndarray],
    geometry: Geometry,
    source_datasets: Sequence,
    label_table: Sequence[dict],
    *,
    series_description: str = "Segmentation",
    series_number: int = 300,
    software_version: str = "1",
):
    """Build a DICOM SEG from one or more label-map layers on the series' grid.

    Parameters
    ----------
    layers : sequence of ndarray, shape (k, j, i), integer
        Label maps; the same label may not appear in two layers. Several layers keep overlapping
        segments apart.
    geometry : Geometry
        The series grid; axis k must be the slice axis of the source instances (true for series
        imported from DICOM).
    source_datasets : sequence of pydicom.Dataset
        The series' instances (any order); each must lie on a slice of ``geometry``.
    label_table : sequence of dict
        ``{"index", "name", "color" (#rrggbb), optional "snomed_code", "snomed_meaning"}``; only
        labels present in the layers become segments, numbered 1..N in label order.

    Returns
    -------
    highdicom.seg.Segmentation
        BINARY segmentation; its SegmentSequence items carry ``SegmentLabel`` = label name and
        ``SegmentDescription`` = ``"label <index>"``.

    Raises
    ------
    SegInteropError
        ``seg_needs_dicom`` without source instances for every slice, ``wrong_grid`` when they do
        not lie on the grid, ``empty_segmentation`` when no label is present.
    """
    import highdicom as hd
    from pydicom.sr.coding import Code

    if not source_datasets:
        raise SegInteropError(N_("DICOM SEG export needs a series imported from DICOM."), code="seg_needs_dicom")
    sources = _source_slices([_tidy_source(ds) for ds in source_datasets], geometry)
    entries = {int(e["index"]): e for e in label_table}
    present: list[tuple[int, int]] = []  # (label, layer)
    for n, layer in enumerate(layers):
        if tuple(layer.shape) != geometry.shape:
            raise SegInteropError(N_("a layer has shape %(shape)s, the series grid is %(shape2)s"),
                                  params={"shape": layer.shape, "shape2": geometry.shape}, code="wrong_grid")
        present += [(int(v), n) for v in np.unique(layer) if v != 0]
    if not present:
        raise SegInteropError(N_("The segmentation is empty; there is nothing to export."), code="empty_segmentation")
    present.sort()
    frames = np.zeros((geometry.shape[0], geometry.shape[1], geometry.shape[2], len(present)), dtype=np.uint8)
    descriptions = []
    for number, (label, layer_index) in enumerate(present, start=1):
        frames[..., number - 1] = layers[layer_index] == label
        entry = entries.get(label, {"name": f"label {label}"})
        code = entry.get("snomed_code")
        prop_type = Code(str(code), "SCT", str(entry.get("snomed_meaning") or entry.get("name"))[:64]) if code else \
            Code(*_DEFAULT_CATEGORY)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(entry.get("name", f"label {label}"))[:64],
            segmented_property_category=Code(*_DEFAULT_CATEGORY),
            segmented_property_type=prop_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            display_color=_hex_to_cielab(str(entry.get("color", "#ff0000"))),
        )
        description.SegmentDescription = f"label {label}"
        descriptions.append(description)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Yixin Portal",
        manufacturer_model_name="Annotation workbench",
        software_versions=software_version,
        device_serial_number="0",
        series_description=series_description[:64],
    )
    # Segment labels and the description may hold Chinese or symbols such as "≥": declare UTF-8
    # (PS3.5 6.1.2.5.3) rather than let them be written as "?" in the default repertoire.
    seg.SpecificCharacterSet = "ISO_IR 192"
    return seg


@dataclass(frozen=True)
class ImportedSeg:
    """Segments of a DICOM SEG placed on a series grid.

    Attributes
    ----------
    layers : list of ndarray, shape (k, j, i), uint8/uint16
        One layer when no segments overlap; otherwise segments are spread over as few layers as a
        greedy assignment needs so that no voxel carries two labels in one layer.
    label_table : list of dict
        ``{"index", "name", "color", optional "snomed_code", "snomed_meaning"}`` per segment; the
        index is the segment number, or the original label value where the Segment Description
        reads ``"label <n>"`` (what :func:`labelmap_to_dicom_seg` writes).
    overlapping : bool
        True when two segments share a voxel.
    """

    layers: list
    label_table: list
    overlapping: bool


def dicom_seg_to_layers(seg_dataset, geometry: Geometry, *, tolerance_mm: float = 0.05) -> ImportedSeg:
    """Place the segments of a DICOM SEG on ``geometry``.

    Parameters
    ----------
    seg_dataset : pydicom.Dataset
        A Segmentation Storage object (BINARY or FRACTIONAL; fractional values >= half count).
    geometry : Geometry
        The series grid.

    Raises
    ------
    SegInteropError
        ``bad_dicom_seg`` when the object is not a readable SEG, ``wrong_grid`` when its frames do
        not coincide with the series' voxels (other spacing, orientation or positions).
    """
    import highdicom as hd

    try:
        seg = hd.seg.Segmentation.from_dataset(seg_dataset, copy=False)
        volume = seg.get_volume(combine_segments=False, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - highdicom raises many types for bad input
        raise SegInteropError(N_("Not a readable DICOM SEG: %(name)s: %(exc)s"),
                              params={"name": type(exc).__name__, "exc": exc}) from None
    seg_affine = np.asarray(volume.affine, dtype=float)
    ours = np.eye(4)
    ours[:3, :3] = geometry.direction_matrix * np.asarray(geometry.spacing_mm)
    ours[:3, 3] = geometry.origin_mm
    # seg index -> our index; must be a signed permutation with an integer offset.
    mapping = np.linalg.inv(ours) @ seg_affine
    rounded = np.round(mapping)
    spacing_tol = tolerance_mm / max(min(geometry.spacing_mm), 1e-6)
    if not np.allclose(mapping, rounded, atol=spacing_tol) or not np.allclose(np.abs(rounded[:3, :3]).sum(axis=0), 1):
        raise SegInteropError(N_("The DICOM SEG's grid does not coincide with the series' voxels (different "
                                 "spacing, orientation or positions)."), code="wrong_grid")
    array = volume.array  # (s, r, c, segments)
    if array.ndim == 3:
        array = array[..., None]
    src = np.indices(array.shape[:3]).reshape(3, -1)
    dst = (rounded[:3, :3] @ src + rounded[:3, 3:4]).astype(int)
    inside = np.all((dst >= 0) & (dst < np.asarray(geometry.shape)[:, None]), axis=0)
    numbers = [int(n) for n in seg.segment_numbers]
    masks = np.zeros((len(numbers),) + geometry.shape, dtype=bool)
    for n in range(len(numbers)):
        values = array[..., n].reshape(-1) >= 0.5
        if (values & ~inside).any():
            raise SegInteropError(N_("Part of the DICOM SEG lies outside the series."), code="wrong_grid")
        masks[n][tuple(dst[:, values & inside])] = True
    table = []
    values = []
    for number in numbers:
        item = seg.get_segment_description(number)
        # Our own export records the original label value as "label <n>" (segments are numbered 1..N).
        described = str(getattr(item, "SegmentDescription", ""))
        value = int(described[6:]) if described.startswith("label ") and described[6:].isdigit() else number
        values.append(value if 1 <= value <= 65535 and value not in values else number)
        prop = item.SegmentedPropertyTypeCodeSequence[0]
        color = getattr(item, "RecommendedDisplayCIELabValue", None)
        table.append({
            "index": values[-1], "name": str(item.SegmentLabel),
            "color": _cielab_to_hex(list(color) if color is not None else None),
            "snomed_code": str(prop.CodeValue) if str(getattr(prop, "CodingSchemeDesignator", "")) in ("SCT", "SRT") else "",
            "snomed_meaning": str(getattr(prop, "CodeMeaning", "")),
        })
    overlapping = bool((masks.sum(axis=0) > 1).any())
    layers: list[np.ndarray] = []
    layer_masks: list[np.ndarray] = []
    dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
    for n, number in enumerate(values):
        for layer, used in zip(layers, layer_masks):
            if not (used & masks[n]).any():
                layer[masks[n]] = number
                used |= masks[n]
                break
        else:
            layer = np.zeros(geometry.shape, dtype=dtype)
            layer[masks[n]] = number
            layers.append(layer)
            layer_masks.append(masks[n].copy())
    if not layers:
        layers.append(np.zeros(geometry.shape, dtype=dtype))
    return ImportedSeg(layers=layers, label_table=table, overlapping=overlapping)
