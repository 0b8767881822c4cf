"""Labelled datasets in the Medical Segmentation Decathlon (MSD) and nnU-Net layouts: the portal's one reader.

MSD (Simpson et al., arXiv:1902.09063): ``dataset.json`` with ``labels`` as ``{"0": "background",
"1": "name", ...}`` and ``training`` as a list of ``{"image": "./imagesTr/x.nii.gz", "label":
"./labelsTr/x.nii.gz"}``. nnU-Net v2 (Isensee et al., Nat. Methods 18:203, 2021): ``labels`` as
``{"background": 0, "name": 1, ...}``, ``file_ending`` and images named ``<case>_0000<ending>``
(channel 0 is used; further channels ``_0001``… are left out) with labels ``<case><ending>``.

:func:`dataset_read` serves the dataset import (``annotation.services``), training
(``manage.py train_segmentation``) and federated hospitals (``federation.fl.data``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation.imaging.errors import N_

__all__ = ["DatasetCase", "DatasetLayoutError", "LabelledDataset", "dataset_read", "read_nifti_pairs"]

NIFTI_ENDINGS = (".nii.gz", ".nii")
# nnU-Net's channel suffix: <case>_0000<ending> is channel 0 of <case>.
_CHANNEL = re.compile(r"(.+)_(\d{4})")


class DatasetLayoutError(ValueError):
    """The folder is not an MSD / nnU-Net dataset (message safe to show)."""

    code = "bad_dataset"

    def __init__(self, message: str, *, params: dict[str, Any] | None = None):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        super().__init__(self.message)


@dataclass(frozen=True)
class DatasetCase:
    """One labelled case: its id (the label file name without its ending), image file and label file.

    Unpacks as the ``(image, label)`` pair that :func:`annotation.ml.training.train_segmentation` takes.
    """

    case_id: str
    image: Path
    label: Path

    def __iter__(self) -> Iterator[Path]:
        return iter((self.image, self.label))


@dataclass(frozen=True)
class LabelledDataset:
    """A dataset's name, modality, label names and cases.

    Attributes
    ----------
    name : str
        ``dataset.json`` name (the folder name when absent).
    modality : str
        DICOM modality code of channel 0 (``"MRI"`` and ``"T2"`` give ``"MR"``; ``""`` when absent).
    label_names : dict of int to str
        Label value → name, background (0) left out; never empty.
    cases : tuple of DatasetCase
        Every image/label pair of ``imagesTr`` / ``labelsTr``, sorted by image file name.
    """

    name: str
    modality: str
    label_names: dict[int, str]
    cases: tuple[DatasetCase, ...]


def _inside(root: Path, relative: str) -> Path:
    # Lexical check (symbolic links inside the folder are allowed, "../" and absolute paths are not).
    path = Path(os.path.normpath(root / str(relative)))
    if Path(os.path.normpath(root)) not in path.parents:
        raise DatasetLayoutError(N_("%(relative)r points outside the dataset folder"), params={"relative": relative})
    return path


def _stem(name: str, endings: Sequence[str]) -> str | None:
    if name.startswith("."):  # hidden files, e.g. the macOS "._" forks that travel inside MSD archives
        return None
    for ending in endings:
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return None


def _files(directory: Path, endings: Sequence[str]) -> dict[str, Path]:
    files = {}
    for path in sorted(directory.iterdir()):
        stem = _stem(path.name, endings)
        if stem is not None and path.is_file():
            files[stem] = path
    return files


def _pair(images_dir: Path, labels_dir: Path, endings: Sequence[str]):
    """Return (cases, image files, unpaired image names, unpaired label names) of two folders."""
    images, labels = _files(images_dir, endings), _files(labels_dir, endings)
    cases, used, unpaired_images = [], set(), []
    for stem, image in images.items():
        key = stem if stem in labels else None
        if key is None:
            channel = _CHANNEL.fullmatch(stem)
            if channel and channel.group(1) in labels:
                if channel.group(2) != "0000":
                    continue  # another channel of a case whose channel 0 is its image
                key = channel.group(1)
        if key is None:
            unpaired_images.append(image.name)
        else:
            cases.append(DatasetCase(key, image, labels[key]))
            used.add(key)
    unpaired_labels = sorted(labels[s].name for s in labels if s not in used)
    return cases, images, unpaired_images, unpaired_labels


def _unpaired_message(unpaired_images: list[str], unpaired_labels: list[str]) -> str:
    return (
        f"unpaired files: {len(unpaired_images)} image(s) without a label {unpaired_images[:5]}, "
        f"{len(unpaired_labels)} label(s) without an image {unpaired_labels[:5]}"
    )


def read_nifti_pairs(images_dir: Path, labels_dir: Path) -> tuple[tuple[Path, Path], ...]:
    """Pair the images of one folder with the labels of another by file name.

    An image named ``case_0000.nii.gz`` (nnU-Net's channel suffix) pairs with ``case.nii.gz``; other
    channels of that case (``case_0001.nii.gz``…) are left out.

    Parameters
    ----------
    images_dir, labels_dir : Path
        Folders of ``.nii`` / ``.nii.gz`` files; hidden files are ignored.

    Returns
    -------
    tuple of (Path, Path)
        (image, label) pairs sorted by image name.

    Raises
    ------
    ValueError
        A folder is missing, holds no NIfTI file, or an image or a label has no partner.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for directory in (images_dir, labels_dir):
        if not directory.is_dir():
            raise ValueError(f"folder not found: {directory}")
    cases, images, unpaired_images, unpaired_labels = _pair(images_dir, labels_dir, NIFTI_ENDINGS)
    if not images:
        raise ValueError(f"no NIfTI images in {images_dir}")
    if unpaired_images or unpaired_labels:
        raise ValueError(_unpaired_message(unpaired_images, unpaired_labels))
    return tuple((case.image, case.label) for case in cases)


def _label_names(raw_labels) -> dict[int, str]:
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise DatasetLayoutError(N_("dataset.json has no labels"))
    names: dict[int, str] = {}
    for key, value in raw_labels.items():
        try:
            if str(key).isdigit():
                names[int(key)] = str(value)           # MSD: "1": "name"
            else:
                names[int(value)] = str(key)           # nnU-Net v2: "name": 1
        except (TypeError, ValueError):
            raise DatasetLayoutError(N_("label %(key)r in dataset.json is not an integer"),
                                     params={"key": key}) from None
    names.pop(0, None)
    if not names:
        raise DatasetLayoutError(N_("dataset.json lists no labels besides background"))
    return names


def dataset_read(root: Path) -> LabelledDataset:
    """Read an MSD or nnU-Net dataset folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

    Parameters
    ----------
    root : Path
        The dataset folder, e.g. ``Task04_Hippocampus`` or ``Dataset004_Hippocampus``.

    Returns
    -------
    LabelledDataset
        Every image/label pair of the two folders (files of ``file_ending``, by default ``.nii.gz``
        and ``.nii``; hidden files ignored), sorted by image name.

    Raises
    ------
    DatasetLayoutError
        (a ValueError; the message is safe to show) ``dataset.json`` is missing or unreadable or has
        no labels besides background; a path in its ``training`` list leaves the folder, or names a
        file that is missing or unpaired; ``imagesTr`` or ``labelsTr`` is missing; an image or a label
        has no partner; or no case has both.

    Notes
    -----
    Layouts: Simpson et al., "A large annotated medical image dataset for the development and
    evaluation of segmentation algorithms", arXiv:1902.09063 (2019); nnU-Net v2's
    ``dataset_format.md``. nnU-Net v1 lists images without their ``_0000`` channel suffix; such an
    entry matches the channel-0 file.
    """
    root = Path(root)
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetLayoutError(
            N_("not an MSD dataset: dataset.json is missing (expected the MSD or nnU-Net layout)")
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetLayoutError(N_("dataset.json cannot be read: %(exc)s"), params={"exc": exc}) from None
    if not isinstance(meta, dict):
        raise DatasetLayoutError(N_("dataset.json is not a JSON object"))
    names = _label_names(meta.get("labels"))
    listed = meta.get("training") or []
    if not isinstance(listed, list) or any(not isinstance(item, dict) for item in listed):
        raise DatasetLayoutError(N_("the training list of dataset.json must hold {\"image\", \"label\"} objects"))
    listed = [{key: (str(item.get(key, "")), _inside(root, item.get(key, ""))) for key in ("image", "label")}
              for item in listed]
    for sub in ("imagesTr", "labelsTr"):
        if not (root / sub).is_dir():
            raise DatasetLayoutError(N_("not an MSD dataset: %(sub)s is missing (expected the MSD or nnU-Net "
                                        "layout)"), params={"sub": sub})
    ending = meta.get("file_ending")
    endings = (ending,) if isinstance(ending, str) and ending else NIFTI_ENDINGS
    cases, _, unpaired_images, unpaired_labels = _pair(root / "imagesTr", root / "labelsTr", endings)
    if unpaired_images or unpaired_labels:
        raise DatasetLayoutError(_unpaired_message(unpaired_images, unpaired_labels))
    if not cases:
        raise DatasetLayoutError(N_("no training case has both its image (imagesTr) and its label (labelsTr)"))
    known = {path.resolve() for case in cases for path in (case.image, case.label)}
    for entry in listed:
        (image_text, image), (label_text, label) = entry["image"], entry["label"]
        stem = _stem(image.name, endings)
        if image.resolve() not in known and stem is not None:
            image = image.with_name(f"{stem}_0000{image.name[len(stem):]}")  # nnU-Net v1: channel 0
        for text, path in ((image_text, image), (label_text, label)):
            if path.resolve() not in known:
                raise DatasetLayoutError(N_("dataset.json lists %(text)r, which is missing or unpaired"),
                                         params={"text": text})
    modality = meta.get("modality") or meta.get("channel_names") or {}
    modality = str(modality.get("0", "")) if isinstance(modality, dict) else ""
    return LabelledDataset(name=str(meta.get("name", root.name)), modality=_modality_code(modality),
                           label_names=names, cases=tuple(cases))


def _modality_code(name: str) -> str:
    upper = name.upper()
    if upper in ("CT",):
        return "CT"
    if upper.startswith("MR") or "T1" in upper or "T2" in upper or "FLAIR" in upper:
        return "MR"
    return upper[:16]
