"""Run segmentation models on a Volume: MONAI networks, TorchScript, MONAI bundles and the classical lung method.

The pipeline follows MONAI Label's ``BasicInferTask``: a small class configured by its constructor
with three hooks, :meth:`NetworkSegmenter.pre_transforms`, :meth:`NetworkSegmenter.inferer` and
:meth:`NetworkSegmenter.post_transforms`.

One preprocessing for training and inference
--------------------------------------------
:func:`preprocessing_transforms` is the single list of MONAI dictionary transforms that both
``training.py`` (after ``LoadImaged`` of NIfTI files) and :class:`NetworkSegmenter` (after
:func:`volume_to_metatensor`) apply, so a network trained here sees the same tensors at inference:

1. ``Orientationd`` to :data:`CANONICAL_AXCODES` (``"SPL"``): array axes (k, j, i) point to the
   patient's superior, posterior and left, which is the layout of an ordinary axial DICOM series in
   LPS. Whatever order the file or the DICOM series stored the voxels in, the network sees this one.
2. ``Spacingd`` to ``Preprocessing.target_spacing_mm`` (in that canonical (k, j, i) order), bilinear
   for images, nearest for labels; skipped when the target is ``None``.
3. Intensity: ``ScaleIntensityRanged`` from the HU window to [0, 1] with clipping, or
   ``NormalizeIntensityd`` (z-score over the whole volume), or nothing.

Images smaller than the patch are zero-padded symmetrically by MONAI's sliding window at inference
and by ``SpatialPadd`` at training, so both pad with the same value on the same sides.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from annotation.imaging.archive import ArchiveLimits, extract_zip
from annotation.imaging.volume import Volume

from .device import amp_enabled

# InferenceCancelled and ProgressCallback live in .progress (shared with lung and training); they are
# imported here so that ``from annotation.ml.inference import InferenceCancelled`` keeps working.
from .progress import InferenceCancelled, ProgressCallback, ProgressReporter

__all__ = [
    "CANONICAL_AXCODES",
    "INTENSITY_MODES",
    "InferenceCancelled",
    "LungSegmenter",
    "NetworkSegmenter",
    "Preprocessing",
    "ProgressCallback",
    "Segmenter",
    "count_window_batches",
    "load_network",
    "load_segmenter",
    "preprocessing_transforms",
    "volume_to_metatensor",
]

CANONICAL_AXCODES = "SPL"
"""Orientation of the arrays networks see: axis 0 → superior, axis 1 → posterior, axis 2 → left
(nibabel axis codes). For an axial DICOM series read in LPS this is the (k, j, i) order itself."""

INTENSITY_MODES = ("hu_window", "zscore", "none")

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))

# Share of the progress bar given to each stage of a network run.
_PRE_END, _INFER_END = 10.0, 90.0

# A zipped MONAI bundle may expand to 8 GiB (weights compress little); the file-count and
# compression-ratio limits are ArchiveLimits' defaults for uploads.
_BUNDLE_ARCHIVE_LIMITS = ArchiveLimits(max_total_bytes=8 * 1024**3)


# --------------------------------------------------------------------------------------------------
# Preprocessing description
# --------------------------------------------------------------------------------------------------


def _triple(value, name: str, cast) -> tuple:
    try:
        out = tuple(cast(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be three numbers, got {value!r}") from exc
    if len(out) != 3 or any(not math.isfinite(v) or v <= 0 for v in out):
        raise ValueError(f"{name} must be three positive numbers, got {value!r}")
    return out


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a network, identical at training and inference.

    Attributes
    ----------
    target_spacing_mm : tuple of 3 float or None
        Voxel spacing (mm) to resample to, in the canonical (k, j, i) order (superior, posterior,
        left axes; see :data:`CANONICAL_AXCODES`); ``None`` keeps the image's spacing.
    intensity : str
        ``"hu_window"`` (clip to ``hu_window`` and scale to [0, 1]; CT), ``"zscore"`` (subtract the
        mean and divide by the standard deviation of the whole image; MR) or ``"none"``.
    hu_window : tuple of 2 float or None
        (lower, upper) HU; required when ``intensity == "hu_window"``.
    patch_size : tuple of 3 int
        Sliding-window / training patch size in voxels, canonical (k, j, i) order. It must suit the
        network (multiples of 8 for the default UNet, 16 for VNet).

    Raises
    ------
    ValueError
        On construction, for any inconsistent or out-of-range field.
    """

    target_spacing_mm: tuple[float, float, float] | None
    intensity: str = "zscore"
    hu_window: tuple[float, float] | None = None
    patch_size: tuple[int, int, int] = (96, 96, 96)

    def __post_init__(self) -> None:
        if self.target_spacing_mm is not None:
            object.__setattr__(self, "target_spacing_mm", _triple(self.target_spacing_mm, "target_spacing_mm", float))
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}")
        if self.hu_window is not None:
            try:
                lo, hi = (float(v) for v in self.hu_window)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"hu_window must be (lower, upper), got {self.hu_window!r}") from exc
            if not lo < hi:
                raise ValueError(f"hu_window lower bound must be below the upper bound, got {self.hu_window!r}")
            object.__setattr__(self, "hu_window", (lo, hi))
        if self.intensity == "hu_window" and self.hu_window is None:
            raise ValueError("intensity 'hu_window' needs hu_window=(lower, upper)")
        patch = _triple(self.patch_size, "patch_size", float)
        if any(p != int(p) for p in patch):
            raise ValueError(f"patch_size must be whole numbers, got {self.patch_size!r}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in patch))

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (lists for tuples) that :meth:`from_dict` reads back."""
        return {
            "target_spacing_mm": None if self.target_spacing_mm is None else list(self.target_spacing_mm),
            "intensity": self.intensity,
            "hu_window": None if self.hu_window is None else list(self.hu_window),
            "patch_size": list(self.patch_size),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        """Build from :meth:`to_dict` output; missing optional keys take their defaults.

        Raises
        ------
        ValueError
            Unknown keys, a missing ``target_spacing_mm`` key or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be a dict, got {type(data).__name__}")
        unknown = set(data) - {"target_spacing_mm", "intensity", "hu_window", "patch_size"}
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {sorted(unknown)}")
        if "target_spacing_mm" not in data:
            raise ValueError("preprocessing needs 'target_spacing_mm' (null keeps the image spacing)")
        kwargs = {k: data[k] for k in ("intensity", "hu_window", "patch_size") if k in data}
        spacing = data["target_spacing_mm"]
        return cls(target_spacing_mm=None if spacing is None else tuple(spacing), **kwargs)


def preprocessing_transforms(
    preprocessing: Preprocessing, *, image_keys: Sequence[str] = ("image",), label_keys: Sequence[str] = ()
) -> list:
    """Return the MONAI dictionary transforms shared by training and inference.

    Parameters
    ----------
    preprocessing : Preprocessing
    image_keys, label_keys : sequence of str
        Keys of channel-first ``MetaTensor`` images (shape (C, ...) with an RAS ``affine``) and of
        label maps; labels are reoriented and resampled (nearest) with the images but get no
        intensity transform.

    Returns
    -------
    list of monai.transforms.MapTransform
        Orientation to :data:`CANONICAL_AXCODES`, optional spacing, intensity; see the module docstring.
    """
    from monai.transforms import NormalizeIntensityd, Orientationd, ScaleIntensityRanged, Spacingd

    image_keys, label_keys = list(image_keys), list(label_keys)
    keys = image_keys + label_keys
    # Labels given explicitly: every affine here is RAS (NIfTI, and volume_to_metatensor), and MONAI
    # is changing the default to follow the MetaTensor's "space" instead.
    transforms: list = [Orientationd(keys=keys, axcodes=CANONICAL_AXCODES, labels=_RAS_LABELS)]
    if preprocessing.target_spacing_mm is not None:
        transforms.append(
            Spacingd(
                keys=keys,
                pixdim=preprocessing.target_spacing_mm,
                mode=["bilinear"] * len(image_keys) + ["nearest"] * len(label_keys),
            )
        )
    if preprocessing.intensity == "hu_window":
        lo, hi = preprocessing.hu_window
        transforms.append(ScaleIntensityRanged(keys=image_keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    elif preprocessing.intensity == "zscore":
        transforms.append(NormalizeIntensityd(keys=image_keys, channel_wise=True))
    return transforms


def volume_to_metatensor(volume: Volume):
    """Wrap a Volume as a channel-first float32 ``MetaTensor`` with an RAS affine.

    This is what ``LoadImaged`` + ``EnsureChannelFirstd`` give for a NIfTI file of the same image,
    up to the order in which the axes are stored, which the Orientation step then removes.

    Parameters
    ----------
    volume : Volume
        Array (k, j, i); geometry in LPS.

    Returns
    -------
    monai.data.MetaTensor, shape (1, k, j, i)
        ``affine`` maps (k, j, i) indices to RAS mm: diag(-1, -1, 1) · [direction · diag(spacing) | origin]
        (ITK/DICOM LPS to the RAS convention MONAI and NIfTI use).
    """
    from monai.data import MetaTensor

    geometry = volume.geometry
    affine = np.eye(4)
    affine[:3, :3] = geometry.direction_matrix * np.asarray(geometry.spacing_mm)[None, :]
    affine[:3, 3] = geometry.origin_mm
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    array = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None]
    affine_t = torch.as_tensor(affine, dtype=torch.float64)
    return MetaTensor(array, affine=affine_t, meta={"original_affine": affine_t.clone(), "space": "RAS"})


def count_window_batches(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: float, sw_batch_size: int, batch_size: int = 1
) -> int:
    """Return how many times ``sliding_window_inference`` will call its predictor.

    Computed as MONAI 1.x does it (``monai.inferers.utils.sliding_window_inference``, unbuffered):
    dimensions smaller than the ROI are padded up to it, the scan interval is
    ``int(roi * (1 - overlap))`` (the full ROI where image and ROI are equal), the windows are
    ``monai.data.utils.dense_patch_slices`` and they are run ``sw_batch_size`` at a time.

    Parameters
    ----------
    image_size, roi_size : sequence of int
        Spatial sizes (no batch or channel axes).
    overlap : float
        In [0, 1).
    sw_batch_size, batch_size : int

    Returns
    -------
    int
    """
    from monai.data.utils import dense_patch_slices
    from monai.utils import ensure_tuple_rep, fall_back_tuple

    nd = len(image_size)
    roi = fall_back_tuple(tuple(roi_size), tuple(image_size))
    size = tuple(max(int(image_size[d]), int(roi[d])) for d in range(nd))
    overlaps = ensure_tuple_rep(overlap, nd)
    interval = []
    for d in range(nd):
        if roi[d] == size[d]:
            interval.append(int(roi[d]))
        else:
            interval.append(max(int(roi[d] * (1 - overlaps[d])), 1))
    num_windows = len(dense_patch_slices(size, roi, tuple(interval)))
    return math.ceil(num_windows * batch_size / sw_batch_size)


class _ProgressPredictor:
    """Call the network on one window batch, then report progress (which may raise InferenceCancelled)."""

    def __init__(self, network: torch.nn.Module, *, total: int, report: ProgressReporter, start: float, end: float,
                 amp: bool):
        self.network, self.total, self.report = network, max(total, 1), report
        self.start, self.end, self.amp, self.done = start, end, amp, 0

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda") if self.amp else contextlib.nullcontext():
            output = self.network(window)
        # Bundles and deep-supervision networks may return several heads; the first is the segmentation.
        if isinstance(output, (list, tuple)):
            output = output[0]
        elif isinstance(output, dict):
            output = next(iter(output.values()))
        self.done += 1
        self.report(self.start + (self.end - self.start) * min(self.done / self.total, 1.0), "inference")
        return output


# --------------------------------------------------------------------------------------------------
# Segmenters
# --------------------------------------------------------------------------------------------------


def _argmax_channels(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Return ``argmax`` over axis 1 of (N, C, ...) logits as (N, ...) ``dtype``, first maximum on ties.

    ``torch.argmax(dim=1)`` walks the strided channel axis and took 1.5 s on (1, 3, 133, 320, 320)
    CPU logits here; comparing whole channels (contiguous, vectorised) takes 0.2 s.
    """
    best = logits[:, 0].clone()
    index = torch.zeros(best.shape, dtype=dtype, device=logits.device)
    for channel in range(1, logits.shape[1]):
        better = logits[:, channel] > best
        index.masked_fill_(better, channel)
        torch.maximum(best, logits[:, channel], out=best)
    return index


@runtime_checkable
class Segmenter(Protocol):
    """Anything that turns a Volume into a label map on the same grid."""

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None) -> np.ndarray:
        """Return a uint8/uint16 label map with ``volume.array.shape`` (0 = background)."""
        ...


class NetworkSegmenter:
    """Segment a Volume with a PyTorch network by MONAI sliding-window inference.

    Parameters
    ----------
    network : torch.nn.Module or annotation.ml.exchange.OnnxNetwork
        Maps (N, 1, *patch_size) float32 to logits (N, C, *patch_size); moved to ``device`` and put
        in eval mode. An :class:`~annotation.ml.exchange.OnnxNetwork` (ONNX Runtime) runs through
        the same sliding window, without autocast.
    preprocessing : Preprocessing
        Must be the one the network was trained with.
    device : torch.device
        Where the network runs; mixed precision (autocast) is used only on CUDA.
    overlap : float
        Sliding-window overlap in [0, 1).
    sw_batch_size : int
        Windows per network call.
    blend_mode : str
        ``"constant"`` or ``"gaussian"`` weighting of overlapping windows (MONAI).

    Notes
    -----
    Calling the segmenter runs ``post_transforms(data, inferer(pre_transforms(volume)["image"]))``:
    argmax over the classes on the network grid, then the inverse of the orientation and spacing
    transforms (``monai.transforms.Invertd``, nearest neighbour) back onto the input grid.
    """

    def __init__(
        self,
        network: Any,
        preprocessing: Preprocessing,
        *,
        device: torch.device,
        overlap: float = 0.25,
        sw_batch_size: int = 1,
        blend_mode: str = "constant",
    ):
        from monai.transforms import Compose

        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be at least 1, got {sw_batch_size}")
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.preprocessing = preprocessing
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.blend_mode = blend_mode
        self._pre = Compose(preprocessing_transforms(preprocessing))

    @property
    def uses_amp(self) -> bool:
        """Whether the network's forward passes run under CUDA autocast (float16 where safe): only a
        PyTorch network on a CUDA device (:func:`annotation.ml.device.amp_enabled`); on the CPU, and
        for ONNX Runtime sessions (which pick their own precision; an int8 model is already
        quantised), windows run in float32 without autocast."""
        return amp_enabled(self.device) and isinstance(self.network, torch.nn.Module)

    # -- hooks ------------------------------------------------------------------------------------

    def pre_transforms(self, volume: Volume) -> dict:
        """Return ``{"image": MetaTensor (1, k', j', i'), "input_shape": (k, j, i)}`` on the network grid.

        The MetaTensor carries the applied operations that :meth:`post_transforms` inverts; see the
        module docstring for the transforms.
        """
        data = self._pre({"image": volume_to_metatensor(volume)})
        data["input_shape"] = tuple(int(n) for n in volume.array.shape)
        return data

    def inferer(self, image: torch.Tensor, progress: ProgressCallback | None = None) -> torch.Tensor:
        """Return class logits for a preprocessed image.

        Parameters
        ----------
        image : torch.Tensor, shape (1, k', j', i')
            Output of :meth:`pre_transforms`.
        progress : callable, optional
            Called after every window batch with the percentage of windows done (0–100) and
            ``"inference"``; an exception it raises (:class:`InferenceCancelled`) stops the run.

        Returns
        -------
        torch.Tensor, shape (1, C, k', j', i'), float32, on ``device``
        """
        from monai.inferers import sliding_window_inference

        report = progress if isinstance(progress, ProgressReporter) else ProgressReporter(progress)
        start, end = (report.last, _INFER_END) if isinstance(progress, ProgressReporter) else (0.0, 100.0)
        # A plain tensor: MONAI would otherwise carry the metadata through every window.
        batch = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
        batch = batch[None].to(self.device, dtype=torch.float32)
        total = count_window_batches(batch.shape[2:], self.preprocessing.patch_size, self.overlap, self.sw_batch_size)
        predictor = _ProgressPredictor(
            self.network, total=total, report=report, start=start, end=end,
            amp=self.uses_amp,
        )
        report(start, "inference")
        with torch.no_grad():
            logits = sliding_window_inference(
                batch,
                roi_size=self.preprocessing.patch_size,
                sw_batch_size=self.sw_batch_size,
                predictor=predictor,
                overlap=self.overlap,
                mode=self.blend_mode,
            )
        return torch.as_tensor(logits).float()

    def post_transforms(self, data: dict, logits: torch.Tensor) -> np.ndarray:
        """Return the label map on the input volume's grid.

        Parameters
        ----------
        data : dict
            Output of :meth:`pre_transforms` (its ``"image"`` holds the transform trace).
        logits : torch.Tensor, shape (1, C, k', j', i')

        Returns
        -------
        ndarray, shape (k, j, i) of the input volume, uint8 (uint16 when C > 256)

        Raises
        ------
        RuntimeError
            The inverted map does not have the input's shape (a bug, not bad input).
        """
        num_classes = logits.shape[1]
        dtype = torch.uint8 if num_classes <= 256 else torch.int32
        labels = _argmax_channels(logits, dtype).cpu()  # (1, k', j', i') = channel-first label map
        # Resampling returns floats even with nearest interpolation; round before the integer cast.
        result = self._invert(data, labels, nearest=True).round()
        return result.astype(np.uint8 if num_classes <= 256 else np.uint16)

    def _invert(self, data: dict, channel_first: torch.Tensor, *, nearest: bool) -> np.ndarray:
        """Map a (1, k', j', i') array on the network grid back onto the input grid, shape (k, j, i).

        ``nearest`` for labels; otherwise the image's own interpolation (bilinear when resampled).
        """
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        image = data["image"]
        pred = MetaTensor(channel_first.cpu(), meta=dict(image.meta))  # the image's meta holds the network-grid affine
        inverted = Invertd(keys="pred", transform=self._pre, orig_keys="image", nearest_interp=nearest)(
            {"image": image, "pred": pred}
        )["pred"]
        inverted = inverted.as_tensor() if hasattr(inverted, "as_tensor") else torch.as_tensor(inverted)
        result = inverted[0].cpu().numpy()
        original_shape = data.get("input_shape", result.shape)
        if result.shape != tuple(original_shape):
            raise RuntimeError(f"inverted map has shape {result.shape}, expected {original_shape}")
        return result

    def uncertainty_map(self, data: dict, logits: torch.Tensor) -> np.ndarray:
        """Return the per-voxel normalised softmax entropy on the input volume's grid.

        Parameters
        ----------
        data : dict
            Output of :meth:`pre_transforms`.
        logits : torch.Tensor, shape (1, C, k', j', i')
            Output of :meth:`inferer`.

        Returns
        -------
        ndarray, shape (k, j, i) of the input volume (the label map's), float32 in [0, 1]
            :func:`annotation.ml.uncertainty.normalised_entropy_map` (0 = certain, 1 = uniform over
            the C classes), resampled with the image's interpolation.
        """
        from .uncertainty import normalised_entropy_map

        entropy = normalised_entropy_map(logits)  # (1, k', j', i') = one channel
        return np.clip(self._invert(data, entropy, nearest=False), 0.0, 1.0).astype(np.float32)

    # -- call ---------------------------------------------------------------------------------------

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None) -> np.ndarray:
        """Segment ``volume``; see :class:`Segmenter`. Progress goes 0–10 %, 10–90 %, 90–100 %."""
        return self.segment_with_uncertainty(volume, progress, uncertainty=False).label_map

    def segment_with_uncertainty(
        self, volume: Volume, progress: ProgressCallback | None = None, *, uncertainty: bool = True
    ) -> "SegmentationResult":
        """Segment ``volume`` and, from the same logits, its voxel-wise uncertainty map.

        Returns a :class:`SegmentationResult` whose ``label_map`` is what :meth:`__call__` returns
        and whose ``uncertainty`` is :meth:`uncertainty_map` (None when ``uncertainty`` is False).
        """
        report = ProgressReporter(progress)
        report(0.0, "preprocessing")
        data = self.pre_transforms(volume)
        report(_PRE_END, "preprocessing")
        logits = self.inferer(data["image"], report)
        report(_INFER_END, "postprocessing")
        labels = self.post_transforms(data, logits)
        entropy = self.uncertainty_map(data, logits) if uncertainty else None
        report(100.0, "postprocessing")
        return SegmentationResult(label_map=labels, uncertainty=entropy)


@dataclass(frozen=True)
class SegmentationResult:
    """A network's label map and its normalised-entropy map, both shape (k, j, i) on the input grid.

    ``uncertainty`` is float32 in [0, 1] (see :meth:`NetworkSegmenter.uncertainty_map`), or None.
    """

    label_map: np.ndarray
    uncertainty: np.ndarray | None = None


class LungSegmenter:
    """Classical CT lung segmentation (:func:`annotation.ml.lung.segment_lungs`) as a Segmenter.

    Labels: 1 right lung, 2 left lung (:data:`annotation.ml.lung.LUNG_LABEL_TABLE`). Needs no weights.
    """

    def __init__(self) -> None:
        from .lung import LUNG_LABEL_TABLE

        self.label_table = LUNG_LABEL_TABLE

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None) -> np.ndarray:
        from .lung import segment_lungs

        return segment_lungs(volume, progress)


# --------------------------------------------------------------------------------------------------
# Loading models
# --------------------------------------------------------------------------------------------------


def _torch_load(path: Path, device: torch.device) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here means "not a loadable weights file"
        raise ValueError(f"cannot read weights file {path.name}: {exc}") from exc


def _extract_state_dict(checkpoint: Any, path: Path) -> dict:
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                checkpoint = checkpoint[key]
                break
        if checkpoint and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()):
            return checkpoint
    raise ValueError(
        f"{path.name} holds no state_dict: expected a dict of tensors, or a dict with a 'state_dict' or "
        "'model' entry holding one"
    )


def _load_weights(network: torch.nn.Module, path: Path, device: torch.device) -> torch.nn.Module:
    state_dict = _extract_state_dict(_torch_load(path, device), path)
    # DataParallel / DistributedDataParallel checkpoints prefix every key with "module.".
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the weights in {path.name} do not fit the network: {exc}") from exc
    return network


def _require_file(path: Path | None, what: str) -> Path:
    if path is None:
        raise ValueError(f"{what} needs a weights file, but none was given")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} weights not found: {path}")
    return path


# Bundle configs are Python-evaluating (strings starting with "$" are passed to eval, "_target_"
# imports any class), so only the network definition is parsed and only if it is plain data that
# builds a class from MONAI's networks.
_ALLOWED_TARGET_PREFIXES = ("monai.networks.",)


def _check_bundle_network_def(parser, node: Any, seen: set[str]) -> None:
    from monai.bundle.utils import ID_REF_KEY, ID_SEP_KEY

    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None:
            from monai.networks import nets

            if not isinstance(target, str) or not (
                target.startswith(_ALLOWED_TARGET_PREFIXES) or hasattr(nets, target)
            ):
                raise ValueError(f"bundle network_def may only build monai.networks classes, found {target!r}")
        for value in node.values():
            _check_bundle_network_def(parser, value, seen)
    elif isinstance(node, list):
        for value in node:
            _check_bundle_network_def(parser, value, seen)
    elif isinstance(node, str):
        if node.startswith(("$", "%")):
            raise ValueError(f"bundle network_def contains an expression or macro ({node[:40]!r}), not accepted")
        if node.startswith(ID_REF_KEY):
            ref = node[len(ID_REF_KEY) :]
            if ref not in seen:
                seen.add(ref)
                try:
                    referenced = parser[ref.replace("::", ID_SEP_KEY)]
                except KeyError as exc:
                    raise ValueError(f"bundle network_def refers to {ref!r}, which the config lacks") from exc
                _check_bundle_network_def(parser, referenced, seen)


def _bundle_root(directory: Path) -> Path:
    if (directory / "configs").is_dir():
        return directory
    # A zipped bundle usually holds one top-level folder named after the bundle.
    children = [p for p in directory.iterdir() if p.is_dir() and (p / "configs").is_dir()]
    if len(children) == 1:
        return children[0]
    raise ValueError("not a MONAI bundle: no configs/ folder found")


def _load_bundle(path: Path, device: torch.device) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
            # Paths, symlinks, size and compression ratio are checked before anything is written; the
            # errors (annotation.imaging.errors) are ValueErrors like every bad-bundle error here.
            extract_zip(path, Path(tmp), _BUNDLE_ARCHIVE_LIMITS)
            return _load_bundle_dir(_bundle_root(Path(tmp)), device, ConfigParser)
    if path.is_dir():
        return _load_bundle_dir(_bundle_root(path), device, ConfigParser)
    raise ValueError(f"a MONAI bundle must be a folder or a .zip, got {path.name}")


def _load_bundle_dir(root: Path, device: torch.device, parser_class) -> torch.nn.Module:
    configs = [root / "configs" / name for name in ("inference.json", "inference.yaml", "inference.yml")]
    config_file = next((p for p in configs if p.is_file()), None)
    if config_file is None:
        raise ValueError("MONAI bundle has no configs/inference.json or configs/inference.yaml")
    weights = root / "models" / "model.pt"
    if not weights.is_file():
        raise ValueError("MONAI bundle has no models/model.pt")
    parser = parser_class()
    try:
        parser.read_config(str(config_file))
    except Exception as exc:  # noqa: BLE001 - malformed JSON/YAML
        raise ValueError(f"cannot read {config_file.name}: {exc}") from exc
    parser["bundle_root"] = str(root)
    try:
        network_def = parser["network_def"]
    except KeyError as exc:
        raise ValueError(f"{config_file.name} has no 'network_def'") from exc
    _check_bundle_network_def(parser, network_def, set())
    try:
        network = parser.get_parsed_content("network_def", instantiate=True)
    except Exception as exc:  # noqa: BLE001 - any constructor failure is a bad bundle
        raise ValueError(f"cannot build the bundle's network_def: {exc}") from exc
    if not isinstance(network, torch.nn.Module):
        raise ValueError(f"bundle network_def built a {type(network).__name__}, not a torch.nn.Module")
    return _load_weights(network, weights, device)


def load_network(
    *, architecture: str, network_config: dict, num_classes: int, weights_path: Path | None, device: torch.device
):
    """Build the network of a registered model and load its weights.

    Parameters
    ----------
    architecture : str
        ``"unet"``, ``"vnet"``, ``"segresnet"``, ``"dynunet"`` (built by
        :func:`annotation.ml.networks.build_network`, weights from a ``torch.save`` file holding a
        bare state_dict or a dict with ``"state_dict"`` or ``"model"``), ``"torchscript"``
        (``torch.jit.load``), ``"bundle"`` (a MONAI bundle folder or .zip with
        ``configs/inference.json|yaml`` defining ``network_def`` and ``models/model.pt``) or
        ``"onnx"`` (an ONNX file run by ONNX Runtime: :class:`annotation.ml.exchange.OnnxNetwork`).
    network_config : dict
        Constructor keywords for the MONAI architectures; ignored otherwise.
    num_classes : int
        Output channels including background.
    weights_path : Path or None
        The weights file (or bundle folder/zip, TorchScript or ONNX file).
    device : torch.device

    Returns
    -------
    torch.nn.Module or annotation.ml.exchange.OnnxNetwork
        Maps (N, 1, k, j, i) float32 to logits (N, C, k, j, i).

    Raises
    ------
    ValueError
        See :func:`load_segmenter`.
    """
    from .networks import ARCHITECTURES, build_network

    name = (architecture or "").strip().lower()
    known = (*ARCHITECTURES, "torchscript", "bundle", "onnx")
    if name not in known:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of classical_lung, "
                         f"classical_lung_nodule, {', '.join(known)}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be at least 2, got {num_classes}")
    device = torch.device(device)
    path = _require_file(weights_path, f"architecture {name!r}")
    if name in ARCHITECTURES:
        network = build_network(name, in_channels=1, out_channels=num_classes, config=network_config)
        return _load_weights(network, path, device)
    if name == "torchscript":
        from .exchange import load_torchscript

        return load_torchscript(path, device)[0]
    if name == "onnx":
        from .exchange import OnnxNetwork

        return OnnxNetwork(path, device=device, num_threads=torch.get_num_threads())
    return _load_bundle(path, device)


def load_segmenter(
    *,
    architecture: str,
    network_config: dict,
    preprocessing: Preprocessing | dict,
    num_classes: int,
    weights_path: Path | None,
    device: torch.device,
) -> Segmenter:
    """Build a ready-to-call segmenter from a model record's fields.

    Parameters
    ----------
    architecture : str
        ``"classical_lung"`` (no weights; :class:`LungSegmenter`), ``"classical_lung_nodule"`` (no weights;
        :class:`annotation.ml.nodules.NoduleDetector`, a detector), ``"unet"``, ``"vnet"``,
        ``"segresnet"``, ``"dynunet"`` (built by :func:`annotation.ml.networks.build_network`, weights
        from a ``torch.save`` file holding a bare state_dict or a dict with ``"state_dict"`` or
        ``"model"``), ``"torchscript"`` (``torch.jit.load``), ``"bundle"`` (a MONAI bundle folder or
        .zip with ``configs/inference.json|yaml`` defining ``network_def`` and ``models/model.pt``)
        or ``"onnx"`` (ONNX Runtime; see :func:`load_network`).
    network_config : dict
        Constructor keywords for the MONAI architectures; ignored otherwise.
    preprocessing : Preprocessing or dict
        The training preprocessing (a dict as from :meth:`Preprocessing.to_dict`); ignored for
        ``"classical_lung"``. A bundle imported with its own sections (``network_config`` holding
        ``"bundle_pipeline"``) is run by :class:`annotation.ml.bundle_pipeline.BundleSegmenter`
        instead, which builds on this module (see
        :func:`annotation.services.registry.segmenter_for_model`).
    num_classes : int
        Output channels including background (e.g. 3 for background + 2 labels).
    weights_path : Path or None
        The weights file (or bundle folder/zip).
    device : torch.device

    Returns
    -------
    Segmenter

    Raises
    ------
    ValueError
        Unknown architecture; missing weights file; a file that is not a state_dict or does not fit
        the network (missing/unexpected keys, shape mismatch); a bundle lacking its config, network
        definition or weights, or whose network definition evaluates code or builds non-MONAI classes;
        an ONNX file that fails :func:`annotation.ml.exchange.inspect_onnx`.

    Notes
    -----
    Weights are read with ``torch.load(weights_only=True)``, so a weights file cannot run code.
    A TorchScript file, by contrast, is a program: accept them only from trusted uploaders.
    """
    name = (architecture or "").strip().lower()
    device = torch.device(device)
    if name == "classical_lung":
        return LungSegmenter()
    if name == "classical_lung_nodule":
        from .nodules import NoduleDetector

        return NoduleDetector(min_confidence=float((network_config or {}).get("min_confidence", 0.5)))
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    network = load_network(architecture=name, network_config=network_config, num_classes=num_classes,
                           weights_path=weights_path, device=device)
    return NetworkSegmenter(network, preprocessing, device=device)
