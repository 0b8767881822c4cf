"""Write the inputs a post-processing script receives in ``/in``.

Contract (also in ``docs/postprocessing.md``):

- ``volume.nii.gz``: the series' image (CT in Hounsfield units), NIfTI-1 with its LPS geometry converted to RAS
  by SimpleITK's writer.
- ``labelmap.nii.gz``: the integer label map (0 = background) on the same grid, when the study has a
  segmentation.
- ``study.json``: ``spacing_mm`` in array axis order ``(k, j, i)``, i.e. the order of
  ``SimpleITK.GetArrayFromImage`` / ``nibabel`` reversed (slowest axis first), ``axis_order`` naming that
  order, ``shape``, ``origin_lps_mm``, ``direction`` (column *a* = LPS unit vector of array axis *a*),
  ``labels`` (``{"1": "lung_left", …}``), ``findings`` (a list of JSON objects) and the ``study`` fields given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from annotation.imaging import Volume, write_labelmap_nifti, write_nifti

VOLUME_FILE = "volume.nii.gz"
LABELMAP_FILE = "labelmap.nii.gz"
STUDY_FILE = "study.json"
AXIS_ORDER = "k,j,i"


def write_inputs(inputs_dir: Path, *, volume: Volume, label_map: np.ndarray | None = None,
                 label_names: dict[int, str] | None = None, findings: list[dict] | None = None,
                 study: dict | None = None) -> None:
    """Write ``volume.nii.gz``, ``labelmap.nii.gz`` (when ``label_map`` is given) and ``study.json``.

    Parameters
    ----------
    inputs_dir : an existing, empty folder; its files are made readable by every user (the sandbox user).
    volume : :class:`annotation.imaging.Volume`, array (k, j, i).
    label_map : integer array, shape ``volume.array.shape``, 0 = background; or None.
    label_names : label → name.
    findings : JSON-serialisable finding objects.
    study : further JSON fields (identifiers, modality, date).

    Raises
    ------
    ValueError
        A label map whose shape differs from the volume's (from ``write_labelmap_nifti``).
    """
    inputs_dir = Path(inputs_dir)
    write_nifti(volume, inputs_dir / VOLUME_FILE)
    if label_map is not None:
        write_labelmap_nifti(label_map, volume.geometry, inputs_dir / LABELMAP_FILE)
    geometry = volume.geometry
    payload = {
        "axis_order": AXIS_ORDER,
        "shape": list(volume.array.shape),
        "spacing_mm": list(geometry.spacing_mm),
        "origin_lps_mm": list(geometry.origin_mm),
        "direction": np.asarray(geometry.direction_matrix).tolist(),
        "labels": {str(k): v for k, v in sorted((label_names or {}).items())},
        "has_labelmap": label_map is not None,
        "findings": list(findings or []),
        "study": dict(study or {}),
    }
    (inputs_dir / STUDY_FILE).write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    for name in os.listdir(inputs_dir):
        (inputs_dir / name).chmod(0o644)
    inputs_dir.chmod(0o755)
