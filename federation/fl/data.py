"""Hospital datasets for federated training: non-IID splits, label statistics and in-memory cases.

A hospital's dataset is a Medical Segmentation Decathlon folder (``dataset.json``, ``imagesTr/``,
``labelsTr/``; read with :func:`annotation.interop.msd.dataset_read`). Only
:func:`label_statistics` — case and voxel counts per label — ever leaves a hospital.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["HospitalSplit", "label_statistics", "split_non_iid", "load_cases", "CaseArrays", "write_msd_subset"]


def _label_counts(label_path: Path) -> dict[int, int]:
    import nibabel as nib

    data = np.asarray(nib.load(str(label_path)).dataobj)
    values, counts = np.unique(np.rint(data).astype(np.int64), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def label_statistics(root: Path) -> dict:
    """Return what a hospital may share about its dataset: counts only, no image and no file name.

    Returns
    -------
    dict
        ``{"cases": int, "voxels": {label (str): voxel count}, "cases_with_label": {label (str): int}}``.

    Raises
    ------
    ValueError
        ``root`` is not a readable MSD folder (see :func:`annotation.interop.msd.dataset_read`).
    """
    from annotation.interop.msd import dataset_read

    dataset = dataset_read(Path(root))
    voxels: dict[str, int] = {}
    present: dict[str, int] = {}
    for case in dataset.cases:
        for value, count in _label_counts(case.label).items():
            voxels[str(value)] = voxels.get(str(value), 0) + count
            if count:
                present[str(value)] = present.get(str(value), 0) + 1
    return {"cases": len(dataset.cases), "voxels": voxels, "cases_with_label": present}


def merge_label_statistics(parts: Sequence[dict]) -> dict:
    """Add up :func:`label_statistics` of several datasets of one hospital (cases and counts per label)."""
    merged: dict = {"cases": 0, "voxels": {}, "cases_with_label": {}}
    for part in parts:
        merged["cases"] += int(part.get("cases", 0))
        for key in ("voxels", "cases_with_label"):
            for label, count in part.get(key, {}).items():
                merged[key][label] = merged[key].get(label, 0) + int(count)
    return merged


@dataclass(frozen=True)
class HospitalSplit:
    """The folders a split wrote: one MSD folder per hospital and the held-out set."""

    hospitals: tuple[Path, ...]
    held_out: Path


def write_msd_subset(source: Path, dest: Path, names: Sequence[str], *, corrupt_labels: bool = False, seed: int = 0) -> Path:
    """Write an MSD folder holding ``names`` of ``source`` as symbolic links (nothing copied).

    With ``corrupt_labels`` the label maps are written as real files with foreground labels scrambled
    (each foreground voxel gets a random label, and 30 % of background voxels next to the structure turn
    into foreground) — a hospital with unusable annotations, for robustness experiments.

    Raises
    ------
    FileExistsError
        ``dest`` already holds files.
    """
    import nibabel as nib

    source, dest = Path(source), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    (dest / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dest / "labelsTr").mkdir(exist_ok=True)
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    meta["training"] = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in names]
    meta["numTraining"] = len(names)
    meta.pop("test", None)
    meta["numTest"] = 0
    (dest / "dataset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    rng = np.random.default_rng(seed)
    labels = sorted(int(k) for k in meta["labels"] if int(k) != 0)
    for n in names:
        os.symlink((source / "imagesTr" / n).resolve(), dest / "imagesTr" / n)
        if not corrupt_labels:
            os.symlink((source / "labelsTr" / n).resolve(), dest / "labelsTr" / n)
            continue
        image = nib.load(str(source / "labelsTr" / n))
        data = np.rint(np.asarray(image.dataobj)).astype(np.uint8)
        from scipy.ndimage import binary_dilation

        foreground = data > 0
        ring = binary_dilation(foreground, iterations=2) & ~foreground
        scrambled = data.copy()
        scrambled[foreground] = rng.choice(labels, size=int(foreground.sum()))
        flip = ring & (rng.random(data.shape) < 0.3)
        scrambled[flip] = rng.choice(labels, size=int(flip.sum()))
        nib.save(nib.Nifti1Image(scrambled, image.affine, image.header), str(dest / "labelsTr" / n))
    return dest


def split_non_iid(
    source: Path,
    dest: Path,
    *,
    sizes: Sequence[int],
    held_out: int,
    corrupt: Sequence[int] = (),
    seed: int = 0,
) -> HospitalSplit:
    """Split an MSD dataset deterministically into non-IID hospitals plus a held-out set.

    Cases are ordered by the anterior share of their foreground (label 1 voxels / all foreground
    voxels). The held-out set takes evenly spaced cases from that order (so it spans the whole
    range); the rest is cut into consecutive blocks of ``sizes`` — hospital 0 gets the cases with the
    smallest anterior share, the last hospital the largest — so hospitals differ in size and label
    balance. Folders ``dest/hospital-<i>`` and ``dest/held-out`` hold symbolic links.

    Parameters
    ----------
    source : Path
        MSD folder (e.g. ``msd_task04_hippocampus``).
    dest : Path
        Empty or missing folder to write into (never inside the repository).
    sizes : sequence of int
        Cases per hospital (positive).
    held_out : int
        Cases in the held-out set (≥ 0).
    corrupt : sequence of int
        Hospital indices whose label maps are scrambled (see :func:`write_msd_subset`).
    seed : int
        Seed of the label scrambling.

    Raises
    ------
    ValueError
        A non-positive size, or more cases asked for than exist.
    """
    from annotation.interop.msd import dataset_read

    source, dest = Path(source), Path(dest)
    if any(s < 1 for s in sizes) or held_out < 0:
        raise ValueError(f"hospital sizes must be positive and held_out non-negative, got {list(sizes)}, {held_out}")
    dataset = dataset_read(source)
    if sum(sizes) + held_out > len(dataset.cases):
        raise ValueError(f"{sum(sizes) + held_out} cases asked for, {source} has {len(dataset.cases)}")
    shares = []
    for case in dataset.cases:
        counts = _label_counts(case.label)
        fg = sum(c for v, c in counts.items() if v > 0)
        shares.append((counts.get(1, 0) / fg if fg else 0.0, case.image.name))
    ordered = [name for _, name in sorted(shares)]
    held = []
    if held_out:
        idx = np.linspace(0, len(ordered) - 1, held_out).round().astype(int)
        held = [ordered[i] for i in sorted(set(idx.tolist()))]
        # Collisions of rounded positions are rare; fill up deterministically from the start.
        for name in ordered:
            if len(held) >= held_out:
                break
            if name not in held:
                held.append(name)
    rest = [n for n in ordered if n not in set(held)]
    hospitals, start = [], 0
    for i, size in enumerate(sizes):
        names = rest[start : start + size]
        start += size
        hospitals.append(write_msd_subset(source, dest / f"hospital-{i}", names, corrupt_labels=i in set(corrupt), seed=seed + i))
    held_dir = write_msd_subset(source, dest / "held-out", held)
    return HospitalSplit(hospitals=tuple(hospitals), held_out=held_dir)


@dataclass(frozen=True)
class CaseArrays:
    """Preprocessed cases in memory.

    Attributes
    ----------
    images : torch.Tensor
        Shape (N, 1, K, J, I), float32, canonical axis order, z-scored, padded/cropped to the patch size.
    labels : torch.Tensor
        Shape (N, 1, K, J, I), int64 label maps on the same grid.
    """

    images: "object"
    labels: "object"

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_cases(root: Path, *, patch_size: Sequence[int], limit: int | None = None) -> CaseArrays:
    """Load an MSD folder's cases through the portal's preprocessing, centred in ``patch_size``.

    The transforms are :func:`annotation.ml.inference.preprocessing_transforms` (canonical orientation,
    z-score) — what one-click segmentation applies — then symmetric padding or centre cropping to
    ``patch_size`` (k, j, i voxels).

    Raises
    ------
    ValueError
        Not an MSD folder, or no case.
    """
    import torch
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ResizeWithPadOrCropd

    from annotation.interop.msd import dataset_read
    from annotation.ml.inference import Preprocessing, preprocessing_transforms

    dataset = dataset_read(Path(root))
    cases = dataset.cases[:limit] if limit else dataset.cases
    if not cases:
        raise ValueError(f"{root} holds no case")
    preprocessing = Preprocessing(target_spacing_mm=None, intensity="zscore", patch_size=tuple(patch_size))
    keys = ["image", "label"]
    transform = Compose(
        [
            LoadImaged(keys=keys, image_only=True),
            EnsureChannelFirstd(keys=keys),
            *preprocessing_transforms(preprocessing, image_keys=["image"], label_keys=["label"]),
            ResizeWithPadOrCropd(keys=keys, spatial_size=tuple(patch_size), mode="constant"),
        ]
    )
    images, labels = [], []
    for case in cases:
        item = transform({"image": str(case.image), "label": str(case.label)})
        images.append(torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32))
        labels.append(torch.as_tensor(np.rint(np.asarray(item["label"])), dtype=torch.int64))
    return CaseArrays(images=torch.stack(images), labels=torch.stack(labels))
