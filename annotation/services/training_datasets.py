"""Training datasets: versioned snapshots of a hospital's approved segmentations of one label set.

A build copies each case's canonical volume and approved label map, byte for byte, into the
hospital's own object storage as a Medical Segmentation Decathlon folder (Simpson et al.,
arXiv:1902.09063; the layout :func:`annotation.interop.msd.dataset_read` reads) plus a manifest:

    <prefix>/imagesTr/<case>.nii.gz
    <prefix>/labelsTr/<case>.nii.gz
    <prefix>/dataset.json
    <prefix>/manifest.json      every other file's path, SHA-256 and size; dataset name, version,
                                label set, label statistics, created_at, and each case's patient
                                research pseudonym (``cases``: ``[{"case", "patient"}]``), so that
                                training can split by patient

Case names are ``<name>_<NNN>``: no medical record number, patient name or DICOM UID reaches a
file name or a manifest, only the patient's research pseudonym (``PatientPseudonym``, mapped back
inside the portal alone) does (the canonical volumes are written from arrays, so their headers carry
none either). Nothing here sends a dataset anywhere; a federation node materialises it locally.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from ..models import LabelSet, TrainingDataset
from ..storage import StoredKeys, stored_file_to_path, work_dir
from .pseudonyms import patient_pseudonym_get_or_create

__all__ = ["training_dataset_build", "training_dataset_materialise"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_MANIFEST = "manifest.json"
_MSD_FILE = re.compile(r"(dataset\.json|(imagesTr|labelsTr)/[A-Za-z0-9_-]+\.nii\.gz)")


def _label_counts(label_map: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(label_map, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def training_dataset_build(*, hospital: Hospital, name: str, label_set: LabelSet, user: User | None) -> TrainingDataset:
    """Build the next version of training dataset ``name`` from ``hospital``'s approved segmentations.

    A study is a case when the newest segmentation of ``label_set`` on it is approved
    (:func:`annotation.selectors.label_set_approved_segmentations`). Its series' canonical volume
    (array (k, j, i), stored NIfTI) and the label map (uint8/uint16, same grid, 0 = background) are
    copied unchanged to ``imagesTr/`` and ``labelsTr/``.

    Parameters
    ----------
    hospital : Hospital
        Owner of the studies and of the dataset.
    name : str
        Lower-case slug (letters, digits, ``-``, ``_``; at most 64 characters).
    label_set : LabelSet
        A label set of ``hospital`` without overlapping segments (an MSD label map holds one label
        per voxel).
    user : User or None
        Who builds it (None from the command line).

    Returns
    -------
    TrainingDataset
        The new row: version one above the highest of ``(hospital, name)``, ``case_count``,
        ``label_statistics`` (counts per label value, background ``"0"`` included),
        ``manifest_sha256``.

    Raises
    ------
    portal.api_errors.ServiceError
        ``invalid_name``; ``label_set_not_found`` (404) for another hospital's label set;
        ``overlapping_label_set``; ``bad_label_table`` for a label set without labels;
        ``no_approved_cases``; ``unknown_label`` when an approved label map holds a value the label
        set lacks.
    """
    from ..selectors import label_set_approved_segmentations

    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ServiceError(_("A dataset name is 1 to 64 lower-case letters, digits, “-” or “_”, starting with a "
                             "letter or digit."), code="invalid_name")
    if label_set.hospital_id != hospital.pk:
        raise ServiceError(_("No such label set in this hospital."), code="label_set_not_found", status_code=404)
    if label_set.allow_overlap:
        raise ServiceError(_("A training dataset needs a label set without overlapping segments."),
                           code="overlapping_label_set")
    labels = {int(entry["index"]): entry["name"] for entry in label_set.label_table()}
    if not labels:
        raise ServiceError(_("This label set has no labels yet."), code="bad_label_table")
    segmentations = label_set_approved_segmentations(hospital=hospital, label_set=label_set)
    if not segmentations:
        raise ServiceError(_("No study has an approved segmentation of this label set yet."), code="no_approved_cases")

    workdir = work_dir()
    stored = StoredKeys()
    try:
        with transaction.atomic():
            # Lock the name's versions so that two builds cannot both take the same number.
            taken = list(TrainingDataset.objects.select_for_update().filter(hospital=hospital, name=name)
                         .values_list("version", flat=True))
            version = max(taken, default=0) + 1
            prefix = f"training-datasets/{hospital.pk}/{name}/v{version}-{uuid.uuid4().hex[:12]}"
            created_at = timezone.now()
            files, voxels, present, training, cases = [], {}, {}, [], []

            def store(relative: str, path: Path) -> None:
                stored_name, sha, size = stored.save(f"{prefix}/{relative}", path)
                if stored_name != f"{prefix}/{relative}":  # the manifest's paths must be the keys
                    raise RuntimeError(f"object storage renamed {relative} on save")
                files.append({"path": relative, "sha256": sha, "bytes": size})

            for n, segmentation in enumerate(segmentations, start=1):
                case = f"{name}_{n:03d}"
                image = stored_file_to_path(segmentation.series.volume_file, workdir / f"{case}_image.nii.gz")
                label = stored_file_to_path(segmentation.labelmap_file, workdir / f"{case}_label.nii.gz")
                counts = _label_counts(_labelmap_read(label))
                unknown = sorted(set(counts) - set(labels) - {0})
                if unknown:
                    raise ServiceError(_("An approved label map holds values %(values)s that the label set lacks."),
                                       params={"values": unknown}, code="unknown_label")
                for value, count in counts.items():
                    voxels[str(value)] = voxels.get(str(value), 0) + count
                    if count:
                        present[str(value)] = present.get(str(value), 0) + 1
                store(f"imagesTr/{case}.nii.gz", image)
                store(f"labelsTr/{case}.nii.gz", label)
                image.unlink()
                label.unlink()
                training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
                patient = segmentation.series.study.patient
                cases.append({"case": case, "patient": patient_pseudonym_get_or_create(patient=patient).pseudonym})

            modality = segmentations[0].series.modality or "OT"
            statistics = {"cases": len(segmentations), "voxels": voxels, "cases_with_label": present}
            dataset_json = workdir / "dataset.json"
            dataset_json.write_bytes(_json_bytes({
                "name": name, "description": f"{label_set} v{version}", "tensorImageSize": "3D",
                "modality": {"0": modality},
                "labels": {"0": "background", **{str(index): labels[index] for index in sorted(labels)}},
                "numTraining": len(training), "numTest": 0, "training": training, "test": [],
            }))
            store("dataset.json", dataset_json)
            manifest = workdir / _MANIFEST
            manifest.write_bytes(_json_bytes({
                "dataset": name, "version": version, "created_at": created_at.isoformat(),
                "label_set": {"id": label_set.pk, "name": str(label_set),
                              "labels": {str(index): labels[index] for index in sorted(labels)}},
                "case_count": len(training), "label_statistics": statistics, "files": files, "cases": cases,
            }))
            manifest_name, manifest_sha, _size = stored.save(f"{prefix}/{_MANIFEST}", manifest)
            if manifest_name != f"{prefix}/{_MANIFEST}":
                raise RuntimeError("object storage renamed manifest.json on save")

            dataset = TrainingDataset(
                hospital=hospital, name=name, version=version, label_set=label_set, case_count=len(training),
                label_statistics=statistics, manifest_sha256=manifest_sha, storage_prefix=prefix,
                created_by=user if user is not None and user.pk else None, created_at=created_at,
            )
            dataset.full_clean()
            dataset.save()
            audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="training_dataset",
                         target_id=dataset.pk, hospital=hospital,
                         detail={"version": version, "cases": len(training), "label_set": label_set.pk})
        return dataset
    except BaseException:
        stored.delete_all()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _labelmap_read(path: Path) -> np.ndarray:
    from ..imaging.formats import read_volume

    return np.asarray(read_volume(path).array)


def _mismatch(relative: str) -> ServiceError:
    return ServiceError(_("The stored file %(file)s does not match the dataset's manifest."),
                        params={"file": relative}, code="manifest_mismatch", status_code=409)


def _download_checked(key: str, path: Path, *, relative: str, sha256: str, size: int | None = None) -> None:
    """Copy object ``key`` to ``path`` and check its SHA-256 (and size in bytes).

    Raises ServiceError ``manifest_mismatch`` naming ``relative`` for a missing or different object.
    """
    if not default_storage.exists(key):
        raise _mismatch(relative)
    digest = hashlib.sha256()
    written = 0
    with default_storage.open(key, "rb") as src, open(path, "wb") as dst:
        for chunk in iter(lambda: src.read(1024 * 1024), b""):
            digest.update(chunk)
            dst.write(chunk)
            written += len(chunk)
    if digest.hexdigest() != sha256 or (size is not None and written != size):
        raise _mismatch(relative)


def training_dataset_materialise(*, dataset: TrainingDataset, dest: Path) -> Path:
    """Download ``dataset`` into ``dest`` as an MSD folder, every file checked against the manifest.

    The manifest's SHA-256 must equal ``dataset.manifest_sha256`` and each file's SHA-256 and size the
    manifest's. Files are written to a temporary sibling folder that is renamed to ``dest`` only
    when all of them check out, so ``dest`` never holds a partial dataset.

    Parameters
    ----------
    dataset : TrainingDataset
        The version to fetch.
    dest : Path
        The folder to create (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``manifest.json``);
        it must not exist, or be an empty folder.

    Returns
    -------
    Path
        ``dest``, ready for :func:`annotation.interop.msd.dataset_read`.

    Raises
    ------
    portal.api_errors.ServiceError
        ``manifest_mismatch`` (409) naming the stored file that is missing or differs (``dest`` is
        left as it was); ``dest_not_empty`` (409) when ``dest`` exists and is not an empty folder.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ServiceError(_("The folder %(folder)s exists already and is not empty."),
                           params={"folder": dest.name}, code="dest_not_empty", status_code=409)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        prefix = dataset.storage_prefix
        _download_checked(f"{prefix}/{_MANIFEST}", partial / _MANIFEST, relative=_MANIFEST,
                          sha256=dataset.manifest_sha256)
        try:
            manifest = json.loads((partial / _MANIFEST).read_text(encoding="utf-8"))
            entries = [(str(e["path"]), str(e["sha256"]), int(e["bytes"])) for e in manifest["files"]]
        except (ValueError, KeyError, TypeError):
            raise _mismatch(_MANIFEST) from None
        for relative, sha256, size in entries:
            if not _MSD_FILE.fullmatch(relative):  # a path leaving the folder is never written
                raise _mismatch(relative)
            target = partial / relative
            target.parent.mkdir(exist_ok=True)
            _download_checked(f"{prefix}/{relative}", target, relative=relative, sha256=sha256, size=size)
        if dest.exists():
            dest.rmdir()
        os.replace(partial, dest)
        return dest
    except ServiceError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if exc.code == "manifest_mismatch":
            # A snapshot that no longer matches its manifest was tampered with or damaged in storage.
            audit_record(actor=None, action=AuditLog.Action.DOWNLOAD, target_type="training_dataset",
                         target_id=dataset.pk, hospital=dataset.hospital,
                         detail={"refused": exc.code, "file": exc.params.get("file", ""),
                                 "version": dataset.version})
        raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
