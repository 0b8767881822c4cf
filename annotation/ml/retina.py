"""Trained lung-nodule detection with MONAI's RetinaNet (``monai.apps.detection``).

A detector trained later (here or by the federation) is registered with ``architecture="retinanet"``
and ``kind="detection"`` and replaces the classical one (:mod:`annotation.ml.nodules`) in the same
one-click path: :func:`annotation.ml.inference.load_segmenter` builds a :class:`RetinaNetNoduleDetector`
from the stored weights, and its result has the shape of :class:`annotation.ml.nodules.NoduleDetection`
(a label map with one label per object and a label table carrying each object's confidence), so the
apps above store findings from it without knowing which detector ran.

The network (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; 3-D as in Baumgartner
et al., nnDetection, MICCAI 2021, and MONAI's ``lung_nodule_ct_detection`` bundle) is described by a
plain-data :class:`RetinaNetConfig` stored with the model, never by code:

- a ``monai.networks.nets.resnet.ResNet`` backbone (``block``, ``layers``, ``block_inplanes``,
  first convolution size and stride) turned into a feature pyramid by
  ``monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor`` (``returned_layers``);
- ``monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape`` (``feature_map_scales``,
  ``base_anchor_shapes`` in voxels of the network grid, (k, j, i) order);
- the box selection (score threshold, NMS IoU, detections kept) and sliding-window inference of
  ``RetinaNetDetector`` on patches of ``preprocessing.patch_size``.

Images are prepared with :func:`annotation.ml.inference.preprocessing_transforms` (the same
orientation, spacing and intensity steps as every network here). Boxes come back in network-grid
voxel coordinates (``xyzxyz``: minimum then maximum corner, anchors centred on voxel centres); each
box is mapped to the input grid through the MetaTensor's affine and the volume's geometry, measured
(axial long and short axes from the box extent in mm), and segmented by the classical detector's
region growing (:func:`annotation.ml.nodules.segment_nodule`) inside the box, so that volumes come
from the same measurement code as every other finding.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from annotation.imaging.archive import ArchiveLimits, extract_zip
from annotation.imaging.volume import Volume

from .progress import ProgressCallback, ProgressReporter

__all__ = [
    "RETINANET_CONFIG_KEYS",
    "RetinaNetConfig",
    "RetinaNetNoduleDetector",
    "build_retinanet_detector",
    "load_retinanet_checkpoint",
    "save_retinanet_checkpoint",
]

RETINANET_CONFIG_KEYS = (
    "num_classes", "block", "layers", "block_inplanes", "conv1_t_size", "conv1_t_stride", "returned_layers",
    "fpn_channels", "feature_map_scales", "base_anchor_shapes", "size_divisible", "preprocessing", "score_thresh",
    "nms_thresh",
    "topk_candidates_per_level", "detections_per_img", "overlap", "sw_batch_size",
)

_LABEL_COLOR = "#d95f02"
_BUNDLE_LIMITS = ArchiveLimits(max_total_bytes=8 * 1024**3)


def _ints(value, name: str, length: int | None = None) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"retinanet config {name} must be a list of integers, got {value!r}") from exc
    if (length is not None and len(out) != length) or not out or any(v < 1 for v in out):
        raise ValueError(f"retinanet config {name} must be {length or 'some'} positive integers, got {value!r}")
    return out


@dataclass(frozen=True)
class RetinaNetConfig:
    """A 3-D RetinaNet and its inference settings, as plain data (stored as JSON with the model).

    Attributes
    ----------
    num_classes : int
        Foreground classes (1: nodule). Every class is reported as a lung nodule.
    block : str
        ResNet block, ``"basic"`` or ``"bottleneck"``.
    layers : tuple of 4 int
        Blocks per ResNet stage.
    block_inplanes : tuple of 4 int
        Channels per stage (``ResNet(block_inplanes=...)``).
    conv1_t_size, conv1_t_stride : tuple of 3 int
        First convolution's kernel size and stride, (k, j, i) of the network grid.
    returned_layers : tuple of int
        ResNet stages (1–4) fed to the feature pyramid; the pyramid has one more level (max pooling).
    fpn_channels : int
        Channels of the pyramid and the heads. 256 is what MONAI's ``resnet_fpn_feature_extractor``
        builds (the model-zoo bundles); a smaller value builds the same modules narrower, for CPU
        workers and tests.
    feature_map_scales : tuple of int
        Downsampling of each pyramid level relative to the first (length ``len(returned_layers) + 1``).
    base_anchor_shapes : tuple of tuple of 3 int
        Anchor sizes in voxels of the network grid, (k, j, i); one anchor per shape at each position.
    size_divisible : tuple of 3 int
        Images are padded to multiples of these (the network's total stride).
    preprocessing : dict
        :meth:`annotation.ml.inference.Preprocessing.to_dict`; its ``patch_size`` is the sliding window.
    score_thresh, nms_thresh : float
        Boxes below this sigmoid score are dropped; non-maximum suppression at this IoU.
    topk_candidates_per_level, detections_per_img : int
        Candidates kept per pyramid level before NMS; detections kept per image after it.
    overlap : float
        Sliding-window overlap in [0, 1).
    sw_batch_size : int
        Windows per network call.

    Raises
    ------
    ValueError
        On construction, for an unknown block, inconsistent lengths or out-of-range values.
    """

    num_classes: int = 1
    block: str = "basic"
    layers: tuple = (1, 1, 1, 1)
    block_inplanes: tuple = (8, 16, 32, 64)
    conv1_t_size: tuple = (7, 7, 7)
    conv1_t_stride: tuple = (2, 2, 2)
    returned_layers: tuple = (1, 2)
    fpn_channels: int = 256
    feature_map_scales: tuple = (1, 2, 4)
    base_anchor_shapes: tuple = ((6, 8, 8), (8, 12, 12), (12, 16, 16))
    size_divisible: tuple = (16, 16, 16)
    preprocessing: dict = field(default_factory=lambda: {
        "target_spacing_mm": [2.5, 1.0, 1.0], "intensity": "hu_window", "hu_window": [-1024.0, 500.0],
        "patch_size": [64, 128, 128]})
    score_thresh: float = 0.05
    nms_thresh: float = 0.22
    topk_candidates_per_level: int = 1000
    detections_per_img: int = 20
    overlap: float = 0.25
    sw_batch_size: int = 1

    def __post_init__(self) -> None:
        from .inference import Preprocessing

        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"retinanet config block must be 'basic' or 'bottleneck', got {self.block!r}")
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        set_("num_classes", _ints([self.num_classes], "num_classes", 1)[0])
        set_("layers", _ints(self.layers, "layers", 4))
        set_("block_inplanes", _ints(self.block_inplanes, "block_inplanes", 4))
        set_("conv1_t_size", _ints(self.conv1_t_size, "conv1_t_size", 3))
        set_("conv1_t_stride", _ints(self.conv1_t_stride, "conv1_t_stride", 3))
        set_("returned_layers", _ints(self.returned_layers, "returned_layers"))
        if any(v > 4 for v in self.returned_layers):
            raise ValueError(f"retinanet config returned_layers must be in 1..4, got {self.returned_layers!r}")
        set_("feature_map_scales", _ints(self.feature_map_scales, "feature_map_scales", len(self.returned_layers) + 1))
        try:
            shapes = tuple(_ints(s, "base_anchor_shapes", 3) for s in self.base_anchor_shapes)
        except TypeError as exc:
            raise ValueError(f"retinanet config base_anchor_shapes must be a list of [k, j, i], got "
                             f"{self.base_anchor_shapes!r}") from exc
        if not shapes:
            raise ValueError("retinanet config base_anchor_shapes must not be empty")
        set_("base_anchor_shapes", shapes)
        set_("fpn_channels", _ints([self.fpn_channels], "fpn_channels", 1)[0])
        set_("size_divisible", _ints(self.size_divisible, "size_divisible", 3))
        # Validates the preprocessing (and normalises lists) with the shared class.
        set_("preprocessing", Preprocessing.from_dict(dict(self.preprocessing)).to_dict())
        if not 0.0 <= float(self.score_thresh) <= 1.0 or not 0.0 < float(self.nms_thresh) <= 1.0:
            raise ValueError("retinanet config score_thresh must be in [0, 1] and nms_thresh in (0, 1]")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ValueError(f"retinanet config overlap must be in [0, 1), got {self.overlap!r}")
        set_("topk_candidates_per_level", _ints([self.topk_candidates_per_level], "topk_candidates_per_level", 1)[0])
        set_("detections_per_img", _ints([self.detections_per_img], "detections_per_img", 1)[0])
        set_("sw_batch_size", _ints([self.sw_batch_size], "sw_batch_size", 1)[0])

    @classmethod
    def from_dict(cls, data: dict) -> "RetinaNetConfig":
        """Build from :meth:`to_dict` output (JSON); missing keys take the defaults.

        Raises
        ------
        ValueError
            Not a dict, unknown keys or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a retinanet config must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(RETINANET_CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown retinanet config keys: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        """Return the JSON-serialisable config (lists for tuples)."""
        def plain(value):
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            return value

        return {key: plain(value) for key, value in asdict(self).items()}


class _IntermediateLayerGetter(torch.nn.ModuleDict):
    """torchvision's ``IntermediateLayerGetter``: the backbone's children up to the last returned layer,
    returning ``{new_name: output}`` of the named ones (same module names, so the same state_dict keys)."""

    def __init__(self, model: torch.nn.Module, return_layers: dict[str, str]) -> None:
        wanted = dict(return_layers)
        layers = {}
        for name, module in model.named_children():
            layers[name] = module
            wanted.pop(name, None)
            if not wanted:
                break
        super().__init__(layers)
        self.return_layers = dict(return_layers)

    def forward(self, x):
        from collections import OrderedDict

        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class _BackboneWithFPN(torch.nn.Module):
    """``monai.networks.blocks.backbone_fpn_utils.BackboneWithFPN`` without its torchvision import."""

    def __init__(self, backbone, return_layers: dict[str, str], in_channels_list: list[int], out_channels: int):
        from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body = _IntermediateLayerGetter(backbone, return_layers)
        self.fpn = FeaturePyramidNetwork(spatial_dims=3, in_channels_list=in_channels_list, out_channels=out_channels,
                                         extra_blocks=LastLevelMaxPool(3))
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def _fpn_extractor(backbone, returned_layers: list[int], fpn_channels: int = 256):
    """Return ``resnet_fpn_feature_extractor(backbone, 3, False, returned_layers, None)``.

    MONAI's function needs torchvision (to validate the trainable layers, and for its
    ``IntermediateLayerGetter``), and no CPU build of torchvision for our torch is on the package
    index (the PyPI wheel is built for CUDA torch and fails to load its operators). Where
    torchvision is missing, the same modules are built here: the same layer names and state_dict
    keys (``body.*``, ``fpn.*``), the same channel counts (stage-2 channels ``in_planes // 8``
    doubling per stage, 256 pyramid channels) and the extra max-pooling level, so a checkpoint of
    either loads into the other. ``fpn_channels`` other than 256 always builds them here.
    """
    from monai.utils import OptionalImportError

    try:
        if fpn_channels != 256:
            raise OptionalImportError("a pyramid narrower than MONAI's")
        from monai.apps.detection.networks.retinanet_network import resnet_fpn_feature_extractor

        return resnet_fpn_feature_extractor(backbone, 3, False, returned_layers, None)
    except OptionalImportError:
        return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
        stage2 = backbone.in_planes // 8
        in_channels_list = [stage2 * 2 ** (i - 1) for i in returned_layers]
        return _BackboneWithFPN(backbone, return_layers, in_channels_list, fpn_channels)


def build_retinanet_detector(config: RetinaNetConfig):
    """Build a randomly initialised ``monai.apps.detection.networks.retinanet_detector.RetinaNetDetector``.

    Parameters
    ----------
    config : RetinaNetConfig

    Returns
    -------
    RetinaNetDetector
        On the CPU with the box selector and sliding-window inferer set from ``config``; its
        ``network`` is the ``RetinaNet`` whose ``state_dict`` a checkpoint holds.

    Raises
    ------
    ValueError
        MONAI refuses the combination (e.g. anchors that do not fit the pyramid).
    """
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.networks.retinanet_network import RetinaNet
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
    from monai.networks.nets import resnet

    try:
        backbone = resnet.ResNet(
            block=config.block, layers=list(config.layers), block_inplanes=list(config.block_inplanes),
            spatial_dims=3, n_input_channels=1, conv1_t_size=config.conv1_t_size,
            conv1_t_stride=config.conv1_t_stride,
        )
        extractor = _fpn_extractor(backbone, list(config.returned_layers), config.fpn_channels)
        anchors = AnchorGeneratorWithAnchorShape(
            feature_map_scales=list(config.feature_map_scales),
            base_anchor_shapes=[list(s) for s in config.base_anchor_shapes],
        )
        network = RetinaNet(
            spatial_dims=3, num_classes=config.num_classes, num_anchors=anchors.num_anchors_per_location()[0],
            feature_extractor=extractor, size_divisible=list(config.size_divisible),
        )
        detector = RetinaNetDetector(network=network, anchor_generator=anchors)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise ValueError(f"cannot build a RetinaNet from this config: {exc}") from exc
    detector.set_box_selector_parameters(
        score_thresh=float(config.score_thresh), topk_candidates_per_level=config.topk_candidates_per_level,
        nms_thresh=float(config.nms_thresh), detections_per_img=config.detections_per_img,
    )
    return detector


def save_retinanet_checkpoint(detector, config: RetinaNetConfig, path: Path) -> Path:
    """Write ``{"state_dict": network weights, "config": config JSON}`` with ``torch.save``.

    This is the checkpoint :func:`load_retinanet_checkpoint` reads and the registry accepts.
    """
    path = Path(path)
    torch.save({"state_dict": detector.network.state_dict(), "config": json.dumps(config.to_dict())}, path)
    return path


def _read_checkpoint(path: Path) -> tuple[dict, dict | None]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a weights file"
        raise ValueError(f"cannot read RetinaNet checkpoint {path.name}: {exc}") from exc
    config = None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        raw = checkpoint.get("config")
        if isinstance(raw, str):
            try:
                config = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name}: its config is not JSON: {exc}") from exc
        elif isinstance(raw, dict):
            config = raw
        checkpoint = checkpoint["state_dict"]
    if not checkpoint or not isinstance(checkpoint, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()
    ):
        raise ValueError(f"{path.name} holds no RetinaNet state_dict")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return checkpoint, config


def _read_bundle(path: Path) -> tuple[dict, dict]:
    """Return (state_dict, config) of a bundle folder or .zip: ``configs/retinanet.json`` + ``models/model.pt``."""
    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="retina-bundle-") as tmp:
            extract_zip(path, Path(tmp), _BUNDLE_LIMITS)
            return _read_bundle(Path(tmp))
    if not path.is_dir():
        raise ValueError(f"a RetinaNet bundle must be a folder or a .zip, got {path.name}")
    roots = [path] + [p for p in path.iterdir() if p.is_dir()]
    root = next((r for r in roots if (r / "configs" / "retinanet.json").is_file()), None)
    if root is None:
        raise ValueError(
            "not a RetinaNet bundle: configs/retinanet.json is missing (MONAI model-zoo configs that build the "
            "network with $-expressions run code and are not accepted; write the plain config instead)"
        )
    try:
        config = json.loads((root / "configs" / "retinanet.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read configs/retinanet.json: {exc}") from exc
    weights = root / "models" / "model.pt"
    if not weights.is_file():
        raise ValueError("RetinaNet bundle has no models/model.pt")
    state_dict, embedded = _read_checkpoint(weights)
    return state_dict, config if config is not None else embedded


def load_retinanet_checkpoint(path: Path, config: dict | None = None) -> tuple[Any, RetinaNetConfig]:
    """Build a RetinaNetDetector and load its weights from a checkpoint or a bundle.

    Parameters
    ----------
    path : Path
        A ``torch.save`` file holding ``{"state_dict": ..., "config": JSON}`` (from
        :func:`save_retinanet_checkpoint`) or a bare state_dict; or a bundle folder / .zip with
        ``configs/retinanet.json`` and ``models/model.pt``.
    config : dict, optional
        The config to build the network from (the registered model's ``network_config``); when
        not given, the one stored in the checkpoint or bundle.

    Returns
    -------
    (RetinaNetDetector, RetinaNetConfig)
        The detector on the CPU in eval mode, and the config it was built from.

    Raises
    ------
    ValueError
        Unreadable file, no config anywhere, an invalid config, or weights that do not fit the
        network the config describes (missing or unexpected keys, other shapes).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"RetinaNet weights not found: {path.name}")
    if path.is_dir() or (path.suffix == ".zip" and zipfile.is_zipfile(path)):
        state_dict, stored = _read_bundle(path)
    else:
        state_dict, stored = _read_checkpoint(path)
    chosen = config or stored
    if not chosen:
        raise ValueError(f"{path.name} has no RetinaNet config: give one, or save the checkpoint with its config")
    parsed = RetinaNetConfig.from_dict(chosen)
    detector = build_retinanet_detector(parsed)
    try:
        detector.network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[:3]
        raise ValueError(f"the weights in {path.name} do not fit the RetinaNet its config describes: "
                         f"{' '.join(first)[:600]}") from exc
    detector.eval()
    return detector, parsed


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Box:
    score: float
    centre_index: np.ndarray  # input grid (k, j, i)
    half_extent_index: np.ndarray  # input grid, voxels
    long_axis_mm: float
    short_axis_mm: float
    extent_mm: tuple


class RetinaNetNoduleDetector:
    """A registered RetinaNet as a registry pipeline: ``detector(volume, progress)`` → ``NoduleDetection``.

    Parameters
    ----------
    detector : RetinaNetDetector
        From :func:`load_retinanet_checkpoint`.
    config : RetinaNetConfig
    device : torch.device
        Where the network and the sliding window run (CUDA when the registry's device choice gives it).

    Notes
    -----
    ``kind`` is ``"detection"``: the one-click run stores the returned label map with the returned
    label table (one label per box, highest score first) and the apps above make findings of it.
    Each label-table entry carries ``confidence`` (the box score), ``side`` (lung at the centre) and
    ``box`` (``centroid_lps_mm``, ``long_axis_mm``, ``short_axis_mm``, ``extent_mm`` along the network
    grid's superior, posterior and left axes, and ``segmentation``: ``"region_growing"`` or, when
    region growing finds no voxels of the box's nodule, ``"box_ellipsoid"``, the ellipsoid inscribed
    in the box).
    """

    kind = "detection"

    def __init__(self, detector, config: RetinaNetConfig, *, device: torch.device):
        from monai.transforms import Compose

        from .inference import Preprocessing, preprocessing_transforms

        self.device = torch.device(device)
        self.config = config
        self.preprocessing = Preprocessing.from_dict(config.preprocessing)
        self.detector = detector.to(self.device).eval()
        self.detector.set_sliding_window_inferer(
            roi_size=list(self.preprocessing.patch_size), sw_batch_size=config.sw_batch_size,
            overlap=float(config.overlap), mode="constant", padding_mode="constant", cval=0.0,
            sw_device=self.device, device=self.device,
        )
        self._pre = Compose(preprocessing_transforms(self.preprocessing))
        self.label_table = [{"index": 1, "name": "lung nodule", "name_zh": "肺结节", "color": _LABEL_COLOR}]

    def boxes(self, volume: Volume, progress: ProgressCallback | None = None) -> list[_Box]:
        """Return the network's boxes mapped to the input grid, highest score first.

        Box corners (network grid, ``xyzxyz``) go to RAS mm through the preprocessed MetaTensor's
        affine, to LPS by negating x and y, and to the input grid's (k, j, i) by the volume's geometry.
        """
        from .inference import volume_to_metatensor

        report = ProgressReporter(progress)
        image = self._pre({"image": volume_to_metatensor(volume)})["image"]
        affine = np.asarray(image.affine, dtype=float)
        tensor = image.as_tensor().to(self.device, dtype=torch.float32)
        report(10.0, "inference")
        with torch.no_grad():
            outputs = self.detector([tensor], use_inferer=True)
        report(70.0, "inference")
        result = outputs[0]
        boxes = result[self.detector.target_box_key].detach().cpu().numpy().astype(float)
        scores = result[self.detector.pred_score_key].detach().cpu().numpy().astype(float)
        lps_from_ras = np.diag([-1.0, -1.0, 1.0])
        axis_mm = np.linalg.norm(affine[:3, :3], axis=0)  # mm per network-grid voxel along each axis
        geometry = volume.geometry
        out = []
        for box, score in sorted(zip(boxes, scores), key=lambda pair: -pair[1]):
            lo, hi = box[:3], box[3:]
            centre_net = (lo + hi) / 2.0
            centre_lps = lps_from_ras @ (affine[:3, :3] @ centre_net + affine[:3, 3])
            centre_index = geometry.lps_to_index(centre_lps)
            extent_mm = np.maximum(hi - lo, 0.0) * axis_mm
            half_index = extent_mm / 2.0 / np.asarray(geometry.spacing_mm)
            # Network-grid axes are (superior, posterior, left): the last two span the axial plane.
            in_plane = sorted(extent_mm[1:], reverse=True)
            out.append(_Box(
                score=float(min(1.0, max(0.0, score))), centre_index=centre_index, half_extent_index=half_index,
                long_axis_mm=float(in_plane[0]), short_axis_mm=float(in_plane[1]),
                extent_mm=tuple(round(float(e), 2) for e in extent_mm),
            ))
        return out

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None):
        """Detect nodules on a chest CT; see :class:`annotation.ml.nodules.NoduleDetection` for the result.

        Raises
        ------
        ValueError
            The modality is set and is not CT; the scan shows no lung.
        """
        from .lung import LEFT_LUNG, RIGHT_LUNG, segment_lungs
        from .nodules import NoduleDetection, correct_lung_mask, require_ct, segment_nodule

        require_ct(volume)
        report = ProgressReporter(progress)
        geometry = volume.geometry
        spacing = np.asarray(geometry.spacing_mm, dtype=float)
        lungs = segment_lungs(volume, lambda p, s: report(0.3 * p, "lungs"))
        if not np.any(lungs):
            raise ValueError("no lung found on this scan: nodule detection needs a chest CT showing the lungs")
        corrected = correct_lung_mask(lungs, spacing, axial_axis=geometry.axial_axis())
        boxes = self.boxes(volume, lambda p, s: report(30.0 + 0.6 * p, s))
        shape = np.asarray(volume.array.shape)
        label_map = np.zeros(volume.array.shape, dtype=np.uint16)
        table: list[dict] = []
        for box in boxes:
            centre = box.centre_index
            if np.any(centre < -0.5) or np.any(centre > shape - 0.5):
                continue  # a box centred in the padding outside the scan
            peak = np.clip(np.round(centre).astype(int), 0, shape - 1)
            lo = np.clip(np.floor(centre - box.half_extent_index).astype(int), 0, shape - 1)
            hi = np.clip(np.ceil(centre + box.half_extent_index).astype(int) + 1, lo + 1, shape)
            region = tuple(slice(a, b) for a, b in zip(lo, hi))
            radius_mm = float(np.clip(box.long_axis_mm / 2.0, 1.5, 15.0))
            method = "region_growing"
            found = segment_nodule(volume.array, corrected, peak, radius_mm, spacing)
            mask = np.zeros(tuple(hi - lo), dtype=bool)
            if found is not None:
                grown_box, grown, _ = found
                # Keep the grown voxels inside the detection's box.
                inter = tuple(slice(max(g.start, r.start), min(g.stop, r.stop)) for g, r in zip(grown_box, region))
                if all(s.start < s.stop for s in inter):
                    mask[tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(inter, region))] = grown[
                        tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(inter, grown_box))]
            if not mask.any():
                method = "box_ellipsoid"
                grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
                half = np.maximum(box.half_extent_index, 0.5)
                mask = sum(((g - c) / h) ** 2 for g, c, h in zip(grid, centre, half)) <= 1.0
                if not mask.any():
                    mask[tuple(np.clip(peak - lo, 0, np.asarray(mask.shape) - 1))] = True
            target = label_map[region]
            free = mask & (target == 0)
            if not free.any():
                continue  # wholly inside a higher-scoring detection
            n = len(table) + 1
            target[free] = n
            lung_value = int(corrected[tuple(peak)])
            side = {RIGHT_LUNG: "right", LEFT_LUNG: "left"}.get(lung_value, "")
            centroid_lps = [round(float(v), 2) for v in geometry.index_to_lps(centre)]
            table.append({
                "index": n, "name": f"nodule {n}", "name_zh": f"结节 {n}", "color": _LABEL_COLOR, "kind": "lung_nodule",
                "confidence": round(box.score, 4), "side": side,
                "box": {"centroid_lps_mm": centroid_lps, "long_axis_mm": round(box.long_axis_mm, 2),
                        "short_axis_mm": round(box.short_axis_mm, 2), "extent_mm": list(box.extent_mm),
                        "segmentation": method},
                "features": {"score": round(box.score, 4)},
            })
        report(100.0, "detection")
        return NoduleDetection(candidates=[], lung_mask=corrected, label_map=label_map, label_table=table)

