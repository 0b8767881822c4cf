"""Display windowing of CT values (window centre/width → 8-bit grey levels).

The one definition of windowing in the portal: :func:`apply_window` renders the report key images
(``diagnosis.reporting.keyimages``), and the study viewer gets :data:`WINDOW_PRESETS` in its page
config (``annotation.views.study_detail``) and maps a preset to NiiVue's display range with the same
DICOM linear function (``windowToCalRange`` in ``frontend/src/lib/viewer.js``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WINDOW_PRESETS", "InitialWindow", "apply_window", "initial_window", "window_for_series"]

# (centre, width) in HU. Customary radiology settings, as tabulated in Radiopaedia, "Windowing (CT)"
# (https://radiopaedia.org/articles/windowing-ct): lung W1500 L-600, mediastinum W350 L50,
# bone W1800 L400, brain W80 L40, abdomen (soft tissue) W400 L40. The order is the viewer's menu order.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "abdomen": (40, 400),
    "bone": (400, 1800),
    "brain": (40, 80),
}


def apply_window(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map values through a linear VOI window to 8-bit grey levels.

    Implements the DICOM default LINEAR VOI LUT function (PS3.3 C.11.2.1.2.1, Window Center
    (0028,1050) and Window Width (0028,1051)) with output range 0..255::

        x <= c - 0.5 - (w - 1) / 2  ->  0
        x >  c - 0.5 + (w - 1) / 2  ->  255
        else                        ->  ((x - (c - 0.5)) / (w - 1) + 0.5) * 255

    rounded to the nearest integer (computed in float64). The viewer shows the same function: its
    display range runs from ``c - 0.5 - (w - 1) / 2`` (black) to ``c - 0.5 + (w - 1) / 2`` (white).

    Parameters
    ----------
    array : ndarray, any shape
        Values after the modality LUT (HU for CT). NaN maps to 0.
    center, width : float
        Window centre and width in the units of ``array``; ``width >= 1`` (the standard's constraint).

    Returns
    -------
    ndarray of uint8, same shape as ``array``

    Raises
    ------
    ValueError
        When ``width < 1`` or either argument is not finite.
    """
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ValueError("window center and width must be finite")
    if width < 1:
        raise ValueError(f"window width must be at least 1 (DICOM PS3.3 C.11.2.1.2.1), got {width}")
    values = np.asarray(array, dtype=np.float64)
    if width == 1:
        # The formula's middle branch is empty: a pure threshold at c - 0.5.
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    # np.asarray: arithmetic on a 0-d array gives a scalar, which the in-place steps below cannot take.
    scaled = np.asarray(((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0)
    # Clipping at 0 and 255 is exactly the formula's two outer branches (they meet it at the bounds).
    np.clip(scaled, 0.0, 255.0, out=scaled)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    return np.rint(scaled).astype(np.uint8)


_CHEST_TERMS = ("chest", "lung", "thorax")


def _chest_preset(hints: tuple[str, ...]) -> str:
    text = " ".join(hints).lower()
    return "lung" if any(term in text for term in _CHEST_TERMS) else "abdomen"


@dataclass(frozen=True)
class InitialWindow:
    """The window a viewer opens a series in.

    ``source`` is ``"dicom"`` (the series' own Window Center/Width), ``"preset"`` (a
    :data:`WINDOW_PRESETS` entry, named in ``preset``) or ``"auto"`` (no calibrated unit: the viewer
    spans a robust percentile range of the voxel values; ``center`` and ``width`` are None).
    """

    source: str
    preset: str | None
    center: float | None
    width: float | None

    def as_dict(self) -> dict:
        return {"source": self.source, "preset": self.preset, "center": self.center, "width": self.width}


def initial_window(
    *,
    modality: str,
    hints: tuple[str, ...] = (),
    dicom_center: float | None = None,
    dicom_width: float | None = None,
) -> InitialWindow:
    """Choose the window a viewer opens a series in.

    In order: the DICOM Window Center (0028,1050) / Width (0028,1051) stored with the series (the
    modality's or the scanner's own choice, PS3.3 C.11.2.1.2); for CT, the lung preset when a hint
    (body part, description) names the chest, else the abdomen (soft-tissue) preset; for every other
    modality (MR, PET, …, whose values have no calibrated unit) no HU window at all: ``"auto"``.

    Parameters
    ----------
    modality : str
        DICOM Modality (0008,0060).
    hints : tuple of str
        Free texts that may name the body part: Body Part Examined, series and study descriptions.
    dicom_center, dicom_width : float, optional
        The stored DICOM window; used when both are finite and ``dicom_width >= 1``.

    Returns
    -------
    InitialWindow
    """
    if (
        dicom_center is not None
        and dicom_width is not None
        and np.isfinite(dicom_center)
        and np.isfinite(dicom_width)
        and dicom_width >= 1
    ):
        return InitialWindow("dicom", None, float(dicom_center), float(dicom_width))
    if modality.upper() == "CT":
        name = _chest_preset(hints)
        center, width = WINDOW_PRESETS[name]
        return InitialWindow("preset", name, float(center), float(width))
    return InitialWindow("auto", None, None, None)


def window_for_series(array: np.ndarray, *, modality: str, hints: tuple[str, ...] = ()) -> tuple[float, float]:
    """Choose a display window (centre, width) for still images of a series.

    CT: the preset :func:`initial_window` picks from the hints (body part, series description,
    segmentation or model name): lung when one names the chest, else abdomen. Other modalities have no calibrated unit: the window spans the 1st to 99th
    percentile of ``array`` (width at least 1).

    Parameters
    ----------
    array : ndarray, any shape
        The series' values (HU for CT).
    modality : str
        DICOM Modality (0008,0060).
    hints : tuple of str
        Free texts that may name the body part.

    Returns
    -------
    (center, width) : tuple of float
    """
    chosen = initial_window(modality=modality, hints=hints)
    if chosen.source == "preset":
        return chosen.center, chosen.width
    lo, hi = np.percentile(array, [1, 99])
    return float(lo + hi) / 2, float(max(hi - lo, 1.0))
