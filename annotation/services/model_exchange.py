"""Edge deployment: exporting registered models to ONNX, TorchScript or a MONAI bundle, and importing
ONNX and TorchScript files made elsewhere as registered models.

The file formats and ONNX Runtime live in :mod:`annotation.ml.exchange` (plain Python); this module
turns their errors into :class:`~portal.api_errors.ServiceError` and registers through
:func:`~annotation.services.registry.segmentation_model_register`, so a refused import stores nothing
and changes no registered model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from ..models import SegmentationModel
from ..storage import work_dir
from .registry import segmentation_model_register, segmentation_model_weights_path

__all__ = [
    "EXPORT_MODEL_FORMATS",
    "IMPORT_BACKENDS",
    "segmentation_model_export_file",
    "segmentation_model_import",
]

EXPORT_MODEL_FORMATS = ("onnx", "torchscript", "bundle")
IMPORT_BACKENDS = ("onnx", "torch")

# A file made elsewhere says nothing about its preprocessing: the portal's training defaults
# (train_segmentation) are assumed, HU window for CT and z-score for MR, at the image's own spacing.
_DEFAULT_PATCH = (96, 96, 96)
_CT_WINDOW = (-1000.0, 1000.0)


def _bad_file(exc: Exception) -> ServiceError:
    return ServiceError(_("The model file was refused: %(detail)s"), params={"detail": str(exc)},
                        code="bad_model_file")


def _num_classes(label_table: list[dict]) -> int:
    return max(int(entry["index"]) for entry in label_table) + 1


def _model_metadata(model: SegmentationModel) -> dict:
    return {
        "name": model.name, "version": model.version, "architecture": model.architecture,
        "modality": model.modality, "body_part": model.body_part,
        "preprocessing": model.preprocessing, "label_table": model.label_table,
    }


def _import_preprocessing(metadata: dict, *, modality: str, spatial_shape=(None, None, None)) -> dict:
    from ..ml.inference import Preprocessing

    stored = metadata.get("preprocessing")
    try:
        if stored:
            return Preprocessing.from_dict(stored).to_dict()
        fixed = all(isinstance(n, int) for n in spatial_shape)
        return Preprocessing(
            target_spacing_mm=None,
            intensity="hu_window" if modality == "CT" else "zscore",
            hu_window=_CT_WINDOW if modality == "CT" else None,
            patch_size=tuple(spatial_shape) if fixed else _DEFAULT_PATCH,
        ).to_dict()
    except ValueError as exc:
        raise _bad_file(exc) from exc


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------


@transaction.atomic
def segmentation_model_import(
    *,
    path: Path,
    name: str,
    modality: str,
    body_part: str,
    label_table: list[dict],
    backend: str | None = None,
    version: int | None = None,
    user: User | None = None,
    hospital: Hospital | None = None,
) -> SegmentationModel:
    """Register an ONNX file, a TorchScript file or a MONAI bundle made outside the portal.

    An ``.onnx`` file is checked (``onnx.checker``, one input of rank 5 with one channel) and runs
    through ONNX Runtime; a ``.zip`` or a folder is a MONAI bundle (its ``network_def`` and
    ``models/model.pt``, loaded as :func:`annotation.ml.inference.load_segmenter` does; when its
    config has a ``preprocessing`` section, that section, its ``inferer`` and its ``postprocessing``
    are checked by :func:`annotation.ml.bundle_pipeline.bundle_pipeline_validate` (an allowlist of
    MONAI classes with literal arguments; nothing is evaluated), stored in ``network_config`` as
    ``{"bundle_pipeline": ...}`` and run by one-click inference instead of the portal's own
    preprocessing; otherwise only the portal's ``portal_preprocessing`` entry is read); any other
    file must load with ``torch.jit.load``.
    The network is run once on a zero patch, which must give ``max(label index) + 1`` logit
    channels, before anything is stored.
    Preprocessing comes from the portal description inside the file (a file the portal exported),
    else the training defaults: z-score for MR, HU window [-1000, 1000] for CT, the image's spacing,
    the file's fixed patch size or 96³.

    Parameters
    ----------
    path : Path
        The ONNX or TorchScript file, or the bundle (.zip or folder).
    name : str
        Registry name (a slug). Without ``version`` the name must be new.
    modality : str
        ``"MR"`` or ``"CT"``.
    body_part : str
    label_table : list of dict
        ``{"index", "name", "color"}`` entries (see :func:`~annotation.services.label_table_validate`).
    backend : str, optional
        ``"onnx"`` (ONNX Runtime; a TorchScript file or bundle is converted to ONNX first) or
        ``"torch"`` (PyTorch; TorchScript files and bundles). Default: ``"onnx"`` for an ``.onnx``
        file, else ``"torch"``.
    version : int, optional
        Register as this version of ``name``, which must not exist yet.
    user, hospital : optional
        Who imports it, and the hospital that owns it (``None``: every hospital).

    Returns
    -------
    SegmentationModel

    Raises
    ------
    portal.api_errors.ServiceError
        ``model_exists`` (the name, or name and version, is taken), ``bad_backend``, ``bad_label_table``,
        ``bad_model_file`` (not a model, wrong input rank or channel count, fails to load or run, or
        returns another class count than the labels need; a bundle config with a ``$`` expression, an
        unaccepted ``_target_``, reference or key in its sections, naming that key), ``invalid_input`` (a field the registry refuses).
    """
    import torch

    from ..ml.bundle_pipeline import bundle_config_read, bundle_pipeline_validate, pipeline_patch_size
    from ..ml.exchange import (
        OnnxNetwork,
        bundle_portal_description,
        export_onnx,
        inspect_onnx,
        load_torchscript,
        probe_network,
    )
    from ..ml.inference import Preprocessing, load_network
    from .versions import label_table_validate

    path = Path(path)
    if not (path.is_file() or path.is_dir()):
        raise ServiceError(_("No model file at %(path)s."), params={"path": str(path)}, code="bad_model_file")
    label_table_validate(label_table)
    taken = SegmentationModel.objects.filter(name=name)
    if version is not None:
        taken = taken.filter(version=version)
    if taken.exists():
        raise ServiceError(_("A model named %(name)s is already registered (versions %(versions)s); nothing was "
                             "changed. Choose another name or a new version."),
                           params={"name": name, "versions": ", ".join(
                               str(v) for v in SegmentationModel.objects.filter(name=name)
                               .order_by("version").values_list("version", flat=True))},
                           code="model_exists", status_code=409)
    is_onnx = path.is_file() and path.suffix.lower() == ".onnx"
    is_bundle = path.is_dir() or path.suffix.lower() == ".zip"
    backend = backend or ("onnx" if is_onnx else "torch")
    if backend not in IMPORT_BACKENDS:
        raise ServiceError(_("Unknown backend %(backend)s: use onnx or torch."), params={"backend": backend},
                           code="bad_backend")
    if is_onnx and backend == "torch":
        raise ServiceError(_("An ONNX file runs only with the ONNX Runtime backend (--backend onnx)."),
                           code="bad_backend")
    num_classes = _num_classes(label_table)
    network_config: dict = {}
    workdir = work_dir()
    try:
        try:
            if is_onnx:
                info = inspect_onnx(path)
                preprocessing = _import_preprocessing(info.metadata, modality=modality,
                                                      spatial_shape=info.spatial_shape)
                network = OnnxNetwork(path)
                stored_file, architecture, source_format = path, SegmentationModel.Architecture.ONNX, "onnx"
            elif is_bundle:
                stored_file = path
                if path.is_dir():
                    # The registry stores one file: a bundle folder travels as a zip of itself.
                    stored_file = Path(shutil.make_archive(str(workdir / path.name), "zip", path.parent, path.name))
                # The sections are checked before the network is built: a refused config builds nothing.
                pipeline = bundle_pipeline_validate(bundle_config_read(stored_file))
                network = load_network(architecture="bundle", network_config={}, num_classes=num_classes,
                                       weights_path=stored_file, device=torch.device("cpu"))
                if pipeline is not None:
                    if backend == "onnx":
                        raise ServiceError(_("This bundle brings its own preprocessing and postprocessing, which "
                                             "run only with the PyTorch backend (--backend torch)."),
                                           code="bad_backend")
                    # The portal's own preprocessing is not applied: the bundle's sections replace it.
                    # The entry records the probe/export patch only.
                    preprocessing = Preprocessing(target_spacing_mm=None, intensity="none",
                                                  patch_size=pipeline_patch_size(pipeline)).to_dict()
                    network_config = {"bundle_pipeline": pipeline}
                else:
                    preprocessing = _import_preprocessing(bundle_portal_description(stored_file), modality=modality)
                architecture, source_format = SegmentationModel.Architecture.BUNDLE, "bundle"
            else:
                network, metadata = load_torchscript(path)
                preprocessing = _import_preprocessing(metadata, modality=modality)
                stored_file, source_format = path, "torchscript"
                architecture = SegmentationModel.Architecture.TORCHSCRIPT
            probe_network(network, patch_size=preprocessing["patch_size"], num_classes=num_classes)
            if not is_onnx and backend == "onnx":
                stored_file = workdir / f"{path.stem}.onnx"
                export_onnx(network, stored_file, patch_size=preprocessing["patch_size"],
                            metadata={"preprocessing": preprocessing, "label_table": label_table})
                architecture = SegmentationModel.Architecture.ONNX
        except ValueError as exc:
            raise _bad_file(exc) from exc
        try:
            return segmentation_model_register(
                name=name, version=version, body_part=body_part, modality=modality, architecture=architecture,
                label_table=label_table, preprocessing=preprocessing, weights_path=stored_file,
                network_config=network_config,
                provenance={"source": "import", "file": path.name, "format": source_format, "backend": backend,
                            "quantized": bool(is_onnx and info.quantized),
                            "preprocessing_source": "bundle" if network_config else "portal"},
                hospital=hospital, user=user,
            )
        except ValidationError as exc:
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise ServiceError(_("The model could not be registered: %(detail)s"), params={"detail": detail},
                               code="invalid_input") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def segmentation_model_export_file(
    *, model: SegmentationModel, fmt: str, out_path: Path, int8: bool = False, user: User | None = None
) -> Path:
    """Write a registered network as an ONNX file, a TorchScript file or a zipped MONAI bundle.

    ONNX files pass ``onnx.checker`` and carry the model's preprocessing and label table (see
    :mod:`annotation.ml.exchange`), so ``segmentation_model_import`` of the file needs nothing else.

    Parameters
    ----------
    model : SegmentationModel
        A segmentation network with weights: a MONAI architecture, TorchScript, a bundle, or an ONNX
        model (which exports to ONNX only).
    fmt : str
        ``"onnx"``, ``"torchscript"`` or ``"bundle"`` (MONAI architectures only; see
        :func:`~annotation.services.segmentation_model_export_bundle`).
    out_path : Path
        The file to write (replaced when it exists); its folder must exist.
    int8 : bool
        ONNX only: quantise weights to 8 bits (``onnxruntime.quantization.quantize_dynamic``).
    user : User, optional
        Recorded in the audit log.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_format`` (unknown format, ``int8`` with another format than ONNX, an ONNX model to
        TorchScript), ``not_exportable`` (classical methods, detectors, a model without weights),
        ``bad_output`` (the folder does not exist), ``export_failed`` (the exporter refused the network).
    """
    from ..ml.exchange import export_onnx, export_torchscript, inspect_onnx, quantize_onnx_int8
    from ..ml.inference import load_network
    from .export_import import segmentation_model_export_bundle

    out_path = Path(out_path)
    if fmt not in EXPORT_MODEL_FORMATS:
        raise ServiceError(_("Unknown export format %(format)s: use onnx, torchscript or bundle."),
                           params={"format": fmt}, code="bad_format")
    if int8 and fmt != "onnx":
        raise ServiceError(_("int8 quantisation applies to ONNX exports only."), code="bad_format")
    if not out_path.parent.is_dir():
        raise ServiceError(_("The output folder %(folder)s does not exist."), params={"folder": str(out_path.parent)},
                           code="bad_output")
    network_architectures = {
        SegmentationModel.Architecture.UNET, SegmentationModel.Architecture.VNET,
        SegmentationModel.Architecture.SEGRESNET, SegmentationModel.Architecture.DYNUNET,
        SegmentationModel.Architecture.ATTENTIONUNET, SegmentationModel.Architecture.SWINUNETR,
        SegmentationModel.Architecture.TORCHSCRIPT, SegmentationModel.Architecture.BUNDLE,
        SegmentationModel.Architecture.ONNX,
    }
    if (model.kind != SegmentationModel.Kind.SEGMENTATION or model.architecture not in network_architectures
            or not model.weights_file):
        raise ServiceError(_("Only segmentation networks with weights can be exported; %(model)s is not one."),
                           params={"model": str(model)}, code="not_exportable")
    if (model.network_config or {}).get("bundle_pipeline"):
        # Its preprocessing and postprocessing live in the imported bundle's own sections, which an ONNX
        # or TorchScript file could not carry: exported, it would run with the wrong preprocessing.
        raise ServiceError(_("%(model)s runs with its bundle's own preprocessing and postprocessing, which an "
                             "exported file cannot carry; use the original bundle."),
                           params={"model": str(model)}, code="not_exportable")
    if fmt == "bundle":
        data, _name = segmentation_model_export_bundle(user=user, model=model)
        out_path.write_bytes(data)
        return out_path
    weights = segmentation_model_weights_path(model)
    metadata = _model_metadata(model)
    patch = tuple(model.preprocessing.get("patch_size") or _DEFAULT_PATCH)
    workdir = work_dir()
    try:
        if model.architecture == SegmentationModel.Architecture.ONNX:
            if fmt != "onnx":
                raise ServiceError(_("An ONNX model can be exported to ONNX only."), code="bad_format")
            if int8:
                if inspect_onnx(weights).quantized:
                    raise ServiceError(_("%(model)s is already quantised to int8."), params={"model": str(model)},
                                       code="bad_format")
                quantize_onnx_int8(weights, out_path)
            else:
                shutil.copyfile(weights, out_path)
        else:
            import torch

            network = load_network(architecture=model.architecture, network_config=model.network_config,
                                   num_classes=_num_classes(model.label_table), weights_path=weights,
                                   device=torch.device("cpu"))
            if fmt == "torchscript":
                export_torchscript(network, out_path, metadata=metadata)
            elif int8:
                fp32 = workdir / "model.onnx"
                export_onnx(network, fp32, patch_size=patch, metadata=metadata)
                quantize_onnx_int8(fp32, out_path)
            else:
                export_onnx(network, out_path, patch_size=patch, metadata=metadata)
    except ValueError as exc:
        raise ServiceError(_("The model could not be exported: %(detail)s"), params={"detail": str(exc)},
                           code="export_failed") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="segmentation_model", target_id=model.pk,
                 detail={"format": fmt, "int8": bool(int8)})
    return out_path
