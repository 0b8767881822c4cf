"""Labelled datasets in the Medical Segmentation Decathlon (MSD) and nnU-Net layouts.

MSD (Simpson et al., arXiv:1902.09063): ``dataset.json`` with ``labels`` as ``{"0": "background",
"1": "name", ...}`` and ``training`` as a list of ``{"image": "./imagesTr/x.nii.gz", "label":
"./labelsTr/x.nii.gz"}``. nnU-Net v2 (Isensee et al., Nat. Methods 18:203, 2021): ``labels`` as
``{"background": 0, "name": 1, ...}``, ``file_ending`` and images named ``<case>_0000<ending>``
(channel 0 is imported) with labels ``<case><ending>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class DatasetLayoutError(ValueError):
    """The folder is not an MSD / nnU-Net dataset (message safe to show)."""

    code = "bad_dataset"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class DatasetCase:
    """One labelled case: its id, image file and label file."""

    case_id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class LabelledDataset:
    """A dataset's name, modality, label names (value → name, background left out) and cases."""

    name: str
    modality: str
    label_names: dict[int, str]
    cases: list[DatasetCase]


def _inside(root: Path, relative: str) -> Path:
    # Lexical check (symbolic links inside the folder are allowed, "../" and absolute paths are not).
    path = Path(os.path.normpath(root / str(relative)))
    if Path(os.path.normpath(root)) not in path.parents:
        raise DatasetLayoutError(f"{relative!r} points outside the dataset folder")
    return path


def dataset_read(root: Path) -> LabelledDataset:
    """Read ``root/dataset.json`` and list the training cases whose image and label both exist.

    Raises
    ------
    DatasetLayoutError
        No or unreadable dataset.json, no labels, no cases, or a path leaving the folder.
    """
    root = Path(root)
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetLayoutError("dataset.json is missing (expected the MSD or nnU-Net layout)") from None
    except (OSError, ValueError) as exc:
        raise DatasetLayoutError(f"dataset.json cannot be read: {exc}") from None
    raw_labels = meta.get("labels")
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise DatasetLayoutError("dataset.json has no labels")
    names: dict[int, str] = {}
    for key, value in raw_labels.items():
        try:
            if str(key).isdigit():
                names[int(key)] = str(value)           # MSD: "1": "name"
            else:
                names[int(value)] = str(key)           # nnU-Net v2: "name": 1
        except (TypeError, ValueError):
            raise DatasetLayoutError(f"label {key!r} in dataset.json is not an integer") from None
    names.pop(0, None)
    modality = meta.get("modality") or meta.get("channel_names") or {}
    modality = str(modality.get("0", "")) if isinstance(modality, dict) else ""
    cases: list[DatasetCase] = []
    if isinstance(meta.get("training"), list) and meta["training"] and isinstance(meta["training"][0], dict):
        for item in meta["training"]:
            image, label = _inside(root, item["image"]), _inside(root, item["label"])
            if not image.exists():
                # nnU-Net v1 lists the image without its channel suffix.
                ending = "".join(image.suffixes[-2:]) if image.name.endswith(".nii.gz") else image.suffix
                image = image.with_name(image.name[: -len(ending)] + "_0000" + ending)
            if image.exists() and label.exists():
                cases.append(DatasetCase(label.name.split(".")[0], image, label))
    else:
        ending = str(meta.get("file_ending", ".nii.gz"))
        for label in sorted((root / "labelsTr").glob(f"*{ending}")):
            case_id = label.name[: -len(ending)]
            image = root / "imagesTr" / f"{case_id}_0000{ending}"
            if image.exists():
                cases.append(DatasetCase(case_id, image, label))
    if not cases:
        raise DatasetLayoutError("no training case has both its image (imagesTr) and its label (labelsTr)")
    return LabelledDataset(name=str(meta.get("name", root.name)), modality=_modality_code(modality),
                           label_names=names, cases=cases)


def _modality_code(name: str) -> str:
    upper = name.upper()
    if upper in ("CT",):
        return "CT"
    if upper.startswith("MR") or "T1" in upper or "T2" in upper or "FLAIR" in upper:
        return "MR"
    return upper[:16]
