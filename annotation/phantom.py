"""A generated chest CT phantom for the demo when the real LIDC-IDRI-0001 series is not available.

Plain Python (no Django). It is not a patient: its series description says so.
"""

from __future__ import annotations

import numpy as np

from .imaging.volume import Geometry, Volume

PHANTOM_DESCRIPTION = "PHANTOM – generated chest CT, not a patient (生成的体模，非真实患者)"


def make_chest_phantom(shape: tuple[int, int, int] = (80, 192, 192), spacing_mm=(2.5, 1.6, 1.6)) -> Volume:
    """Return a chest-like CT volume in HU, shape (k, j, i), identity direction (axial, LPS).

    Soft-tissue body ellipse (40 HU) in air (-1000 HU), two lungs (-850 HU), a trachea (-1000 HU)
    in the upper slices, a spine (700 HU) and a 12 mm nodule (30 HU) in the right lung.
    """
    nk, nj, ni = shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    z = (k - nk / 2) * spacing_mm[0]
    y = (j - nj / 2) * spacing_mm[1]
    x = (i - ni / 2) * spacing_mm[2]
    ct = np.full(shape, -1000.0, dtype=np.float32)
    body = (x / 140) ** 2 + (y / 100) ** 2 <= 1
    ct[body] = 40
    for side in (-1, 1):  # patient right is -x in LPS
        lung = ((x - side * 65) / 50) ** 2 + ((y + 5) / 65) ** 2 + (z / 95) ** 2 <= 1
        ct[lung & body] = -850
    trachea = (x**2 + (y + 40) ** 2 <= 9**2) & (z > 40)
    ct[trachea] = -1000
    spine = (x**2 + (y - 70) ** 2) <= 15**2
    ct[spine & body] = 700
    nodule = (x + 70) ** 2 + (y + 10) ** 2 + (z - 10) ** 2 <= 6**2
    ct[nodule] = 30
    rng = np.random.default_rng(0)
    ct += rng.normal(0, 8, size=shape).astype(np.float32)
    geometry = Geometry(shape=shape, spacing_mm=spacing_mm,
                        origin_mm=(-(ni / 2) * spacing_mm[2], -(nj / 2) * spacing_mm[1], -(nk / 2) * spacing_mm[0]))
    return Volume(array=np.round(ct).astype(np.int16), geometry=geometry, modality="CT")
