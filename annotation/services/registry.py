"""The model registry: registering model versions with their weights, and building their inference pipelines."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext_lazy as _

from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from ..models import SegmentationModel
from ..storage import StoredKeys, stored_file_to_path


@transaction.atomic
def segmentation_model_register(
    *,
    name: str,
    body_part: str,
    modality: str,
    architecture: str,
    label_table: list[dict],
    kind: str = SegmentationModel.Kind.SEGMENTATION,
    display_name: str = "",
    network_config: dict | None = None,
    preprocessing: dict | None = None,
    weights_path: Path | None = None,
    validation_metrics: dict | None = None,
    provenance: dict | None = None,
    hospital: Hospital | None = None,
    shared_with: Iterable[Hospital] = (),
    user: User | None = None,
    version: int | None = None,
) -> SegmentationModel:
    """Register a new version of a model (version = previous + 1) with its weights in storage.

    ``version`` asks for that version number instead; a (name, version) already registered is refused.

    ``hospital`` owns the model and ``shared_with`` lists further hospitals that may list and run it;
    with neither, every hospital may (the shipped models).
    ``kind`` is ``"segmentation"`` or ``"detection"``. A ``"retinanet"`` model (a detector) is built
    and its weights loaded before anything is stored, so a checkpoint whose config does not fit its
    weights is refused; an empty ``network_config`` takes the config stored in the checkpoint or
    bundle, and an empty ``preprocessing`` the config's.

    Raises
    ------
    django.core.exceptions.ValidationError
        When the label table or a field is invalid, or a RetinaNet checkpoint cannot be loaded.
    """
    from django.core.exceptions import ValidationError

    if architecture == SegmentationModel.Architecture.RETINANET:
        from ..ml.retina import load_retinanet_checkpoint

        if weights_path is None:
            raise ValidationError({"weights_file": _("A RetinaNet detector needs a checkpoint or bundle.")})
        try:
            _network, config = load_retinanet_checkpoint(Path(weights_path), network_config or None)
        except ValueError as exc:
            raise ValidationError({"weights_file": str(exc)}) from exc
        network_config = config.to_dict()
        preprocessing = preprocessing or dict(config.preprocessing)
    from ..ml.networks import ARCHITECTURES, check_patch_size

    if architecture in ARCHITECTURES and (preprocessing or {}).get("patch_size"):
        try:
            check_patch_size(architecture, preprocessing["patch_size"])
        except ValueError as exc:
            raise ValidationError({"preprocessing": str(exc)}) from exc
    indices = [entry.get("index") for entry in label_table]
    if not label_table or any(not isinstance(i, int) or i < 1 for i in indices) or len(set(indices)) != len(indices):
        raise ValidationError({"label_table": _("Labels need distinct positive integer indices.")})
    if version is not None:
        if not isinstance(version, int) or version < 1:
            raise ValidationError({"version": _("The version must be a positive whole number.")})
        if SegmentationModel.objects.filter(name=name, version=version).exists():
            raise ValidationError({"version": _("Model %(name)s version %(version)s is already registered.")
                                   % {"name": name, "version": version}})
    else:
        version = (SegmentationModel.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0) + 1
    model = SegmentationModel(
        name=name, version=version, display_name=display_name or name, body_part=body_part, modality=modality,
        architecture=architecture, kind=kind, network_config=network_config or {}, label_table=label_table,
        preprocessing=preprocessing or {}, validation_metrics=validation_metrics or {},
        provenance=provenance or {}, hospital=hospital, created_by=user,
    )
    stored = StoredKeys()
    try:
        if weights_path is not None:
            suffix = ".zip" if str(weights_path).endswith(".zip") else Path(weights_path).suffix or ".pt"
            name_, sha, _n = stored.save(f"models/{name}/v{version}-{uuid.uuid4().hex[:8]}{suffix}", Path(weights_path))
            model.weights_file = name_
            model.weights_sha256 = sha
        model.full_clean()
        model.save()
        model.shared_with.set(list(shared_with))
    except BaseException:
        stored.delete_all()
        raise
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="segmentation_model", target_id=model.pk,
                 detail={"hospital": hospital.pk if hospital else None,
                         "shared_with": sorted(h.pk for h in model.shared_with.all())})
    return model


def segmentation_model_weights_path(model: SegmentationModel) -> Path | None:
    """Return a local copy of the model's weights (cached under ``VAR_DIR/model-cache`` by SHA-256), or None."""
    if not model.weights_file:
        return None
    cache = Path(settings.VAR_DIR) / "model-cache"
    cache.mkdir(parents=True, exist_ok=True)
    suffix = ".zip" if model.weights_file.name.endswith(".zip") else Path(model.weights_file.name).suffix
    path = cache / f"{model.weights_sha256}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + f".{uuid.uuid4().hex}.part")
        stored_file_to_path(model.weights_file, tmp)
        tmp.replace(path)
    return path


def segmenter_for_model(model: SegmentationModel):
    """Build the inference pipeline of a registered model on the configured device.

    The model's ``architecture`` picks the backend: :func:`annotation.ml.inference.load_segmenter`
    for the segmentation networks, bundles and classical methods,
    :class:`annotation.ml.bundle_pipeline.BundleSegmenter` for a bundle imported with its own
    preprocessing/inferer/postprocessing (``network_config["bundle_pipeline"]``), and
    :class:`annotation.ml.retina.RetinaNetNoduleDetector` for a registered RetinaNet detector.
    """
    from ..ml.device import configure_threads, select_device
    from ..ml.inference import load_segmenter

    if settings.TORCH_NUM_THREADS:
        configure_threads(settings.TORCH_NUM_THREADS)
    device = select_device(settings.INFERENCE_DEVICE)
    if model.architecture == SegmentationModel.Architecture.RETINANET:
        # A trained detector: built from its stored config and weights (annotation.ml.retina builds on
        # annotation.ml.inference's preprocessing, so inference's loader does not import it).
        from ..ml.retina import RetinaNetNoduleDetector, load_retinanet_checkpoint

        weights = segmentation_model_weights_path(model)
        if weights is None:
            raise ValueError(f"model {model.name} v{model.version} has no weights file")
        detector, config = load_retinanet_checkpoint(weights, model.network_config or None)
        return RetinaNetNoduleDetector(detector, config, device=device), device
    num_classes = max(int(entry["index"]) for entry in model.label_table) + 1
    pipeline = (model.network_config or {}).get("bundle_pipeline")
    if model.architecture == SegmentationModel.Architecture.BUNDLE and pipeline:
        # An imported bundle with its own preprocessing, inferer and postprocessing (checked at import;
        # annotation.ml.bundle_pipeline builds on annotation.ml.inference, so inference's loader does
        # not import it).
        from ..ml.bundle_pipeline import BundleSegmenter
        from ..ml.inference import load_network

        network = load_network(architecture="bundle", network_config={}, num_classes=num_classes,
                               weights_path=segmentation_model_weights_path(model), device=device)
        return BundleSegmenter(network, pipeline, device=device), device
    segmenter = load_segmenter(
        architecture=model.architecture,
        network_config=model.network_config,
        preprocessing=model.preprocessing,
        num_classes=num_classes,
        weights_path=segmentation_model_weights_path(model),
        device=device,
    )
    return segmenter, device
