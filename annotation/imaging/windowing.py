"""Display windowing of CT values (window centre/width → 8-bit grey levels)."""

from __future__ import annotations

import numpy as np

__all__ = ["WINDOW_PRESETS", "apply_window"]

# (centre, width) in HU. Customary radiology settings, as tabulated in Radiopaedia, "Windowing (CT)"
# (https://radiopaedia.org/articles/windowing-ct): lung W1500 L-600, mediastinum W350 L50,
# bone W1800 L400, brain W80 L40, abdomen (soft tissue) W400 L40.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "bone": (400, 1800),
    "brain": (40, 80),
    "abdomen": (40, 400),
}


def apply_window(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map values through a linear VOI window to 8-bit grey levels.

    Implements the DICOM default LINEAR VOI LUT function (PS3.3 C.11.2.1.2.1, Window Center
    (0028,1050) and Window Width (0028,1051)) with output range 0..255::

        x <= c - 0.5 - (w - 1) / 2  ->  0
        x >  c - 0.5 + (w - 1) / 2  ->  255
        else                        ->  ((x - (c - 0.5)) / (w - 1) + 0.5) * 255

    rounded to the nearest integer.

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
    values = np.asarray(array, dtype=np.float32)
    if width == 1:
        # The formula's middle branch is empty: a pure threshold at c - 0.5.
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    # Clipping at 0 and 255 is exactly the formula's two outer branches (they meet it at the bounds).
    np.clip(scaled, 0.0, 255.0, out=scaled)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    return np.rint(scaled).astype(np.uint8)
