"""Honour a MONAI bundle's own ``preprocessing``, ``inferer`` and ``postprocessing`` sections, safely.

Plain Python (no Django). A MONAI model-zoo bundle's ``configs/inference.json`` describes how its
network must be fed and how its output becomes a label map (MONAI Bundle specification,
https://docs.monai.io/en/stable/mb_specification.html)::

    "preprocessing":  {"_target_": "Compose", "transforms": [{"_target_": "LoadImaged", ...}, ...]}
    "inferer":        {"_target_": "SlidingWindowInferer", "roi_size": [...], "sw_batch_size": 4, "overlap": 0.5}
    "postprocessing": {"_target_": "Compose", "transforms": [{"_target_": "Activationsd", ...},
                       {"_target_": "Invertd", "transform": "@preprocessing", ...}, ...]}

A bundle config is a program for ``monai.bundle.ConfigParser`` (strings starting with ``$`` go to
``eval``, ``_target_`` imports any callable), so an uploaded config is never handed to it. Instead
:func:`bundle_pipeline_validate` accepts only

- ``_target_`` names from :data:`PRE_TRANSFORMS`, :data:`POST_TRANSFORMS` and :data:`INFERERS`
  (bare, or prefixed ``monai.transforms.`` / ``monai.inferers.``), plus ``Compose``;
- arguments that are plain JSON literals (numbers, strings, booleans, null, lists and objects of them);
- ``@`` references only to the sections themselves and the standard ids (:data:`ALLOWED_REFERENCES`);
  a transform the portal runs may use ``@preprocessing`` (``Invertd``'s ``transform``) and ``@device``;
- the keys ``_target_``, ``_disabled_`` (a boolean) and ``_desc_``;

and refuses everything else (``$`` expressions, ``%`` macros, ``_requires_``, ``_mode_`` other than
``"default"``, any other class or import path) with a :class:`ValueError` naming the offending key.
:class:`BundleSegmenter` then builds the accepted MONAI classes directly with those literal arguments.

The image fed to the bundle is what ``LoadImaged`` gives for a NIfTI file of the series (see
:func:`volume_to_loadimage_tensor`); ``LoadImaged`` and ``SaveImaged`` are skipped, the portal
supplying the image and storing the label map.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from annotation.imaging.volume import Volume

from .bundle_config import bundle_config_read
from .progress import ProgressCallback, ProgressReporter

__all__ = [
    "ALLOWED_REFERENCES",
    "INFERERS",
    "POST_TRANSFORMS",
    "PRE_TRANSFORMS",
    "BundleSegmenter",
    "bundle_config_read",
    "bundle_pipeline_validate",
    "volume_to_loadimage_tensor",
]

PRE_TRANSFORMS = frozenset({
    "LoadImaged", "EnsureChannelFirstd", "Orientationd", "Spacingd", "ScaleIntensityRanged", "ScaleIntensityd",
    "NormalizeIntensityd", "CropForegroundd", "EnsureTyped", "SpatialPadd", "DivisiblePadd", "CastToTyped",
})
"""Dictionary transforms a bundle's ``preprocessing`` may use (all invertible or intensity-only)."""

POST_TRANSFORMS = frozenset({
    "Activationsd", "Invertd", "AsDiscreted", "KeepLargestConnectedComponentd", "SaveImaged", "EnsureTyped",
    "FillHolesd", "RemoveSmallObjectsd", "CastToTyped",
})
"""Dictionary transforms a bundle's ``postprocessing`` may use."""

INFERERS = frozenset({"SimpleInferer", "SlidingWindowInferer"})
"""Inferers a bundle's ``inferer`` may be."""

SKIPPED = frozenset({"LoadImaged", "SaveImaged"})
"""Transforms that are checked but not run: the portal supplies the image and stores the label map."""

ALLOWED_REFERENCES = frozenset({
    "preprocessing", "postprocessing", "inferer", "network", "network_def", "device", "bundle_root",
    "output_dir", "dataset_dir", "ckpt_dir", "data_list_file_path", "image_key", "output_ext",
})
"""Ids an ``@`` reference may name. Only ``@preprocessing`` and ``@device`` reach a transform the portal
runs; the others may appear in the skipped transforms (``SaveImaged``'s ``output_dir``)."""

_RUN_REFERENCES = frozenset({"preprocessing", "device"})
MIN_PIXDIM_MM = 0.1
"""Smallest ``Spacingd`` voxel size accepted (mm): finer grids would multiply the voxel count without limit."""
MAX_WINDOW = 512
"""Largest ``roi_size`` / padding size accepted per axis (voxels)."""
_SECTIONS = ("preprocessing", "inferer", "postprocessing")
_DEFAULT_ROI = (96, 96, 96)


# --------------------------------------------------------------------------------------------------
# Reading and checking the config
# --------------------------------------------------------------------------------------------------


def _target_name(target: Any, where: str, allowed: frozenset) -> str:
    if not isinstance(target, str):
        raise ValueError(f"{where}#_target_: expected a MONAI class name, got {target!r}")
    name = target
    for prefix in ("monai.transforms.", "monai.inferers."):
        if name.startswith(prefix) and "." not in name[len(prefix):]:
            name = name[len(prefix):]
    if name not in allowed:
        raise ValueError(f"{where}#_target_: {target!r} is not accepted (allowed: {', '.join(sorted(allowed))})")
    return name


def _check_literal(value: Any, where: str, *, run: bool) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings")
            if key == "_target_" or (key.startswith("_") and key.endswith("_") and len(key) > 2):
                raise ValueError(f"{where}#{key}: a nested {key} is not accepted")
            _check_literal(item, f"{where}#{key}", run=run)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_literal(item, f"{where}#{n}", run=run)
    elif isinstance(value, str):
        if value.startswith("$"):
            raise ValueError(f"{where}: the expression {value[:60]!r} is not accepted (no code from a config runs)")
        if value.startswith("%"):
            raise ValueError(f"{where}: the macro {value[:60]!r} is not accepted")
        if value.startswith("@"):
            ref = value[1:]
            if ref not in ALLOWED_REFERENCES:
                raise ValueError(f"{where}: the reference {value[:60]!r} is not accepted "
                                 f"(only @{', @'.join(sorted(ALLOWED_REFERENCES))})")
            if run and ref not in _RUN_REFERENCES:
                raise ValueError(f"{where}: the reference {value!r} cannot be given to a transform the portal runs")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
    elif value is not None and not isinstance(value, (bool, int)):
        raise ValueError(f"{where}: {value!r} is not a JSON literal")


def _check_component(node: Any, where: str, allowed: frozenset) -> dict:
    if not isinstance(node, dict):
        raise ValueError(f"{where}: expected an object with a _target_, got {str(node)[:60]!r}")
    if "_target_" not in node:
        raise ValueError(f"{where}: has no _target_")
    name = _target_name(node["_target_"], where, allowed)
    out: dict = {"_target_": name}
    for key, value in node.items():
        if key == "_target_":
            continue
        if key == "_desc_":
            continue
        if key == "_disabled_":
            if not isinstance(value, bool):
                raise ValueError(f"{where}#_disabled_: must be true or false, got {value!r}")
            out[key] = value
            continue
        if key == "_mode_":
            if value != "default":
                raise ValueError(f"{where}#_mode_: {value!r} is not accepted (only \"default\")")
            continue
        if key.startswith("_") and key.endswith("_"):
            raise ValueError(f"{where}#{key}: not accepted")
        _check_literal(value, f"{where}#{key}", run=name not in SKIPPED)
        out[key] = value
    return out


def _check_compose(node: Any, where: str, allowed: frozenset) -> list[dict]:
    if isinstance(node, list):
        items = node
    elif isinstance(node, dict):
        _target_name(node.get("_target_"), where, frozenset({"Compose"}))
        extra = sorted(set(node) - {"_target_", "transforms", "_desc_"})
        if extra:
            raise ValueError(f"{where}#{extra[0]}: not accepted in a Compose")
        items = node.get("transforms")
        if not isinstance(items, list):
            raise ValueError(f"{where}#transforms: expected a list of transforms, got {str(items)[:60]!r}")
    else:
        raise ValueError(f"{where}: expected a Compose of transforms, got {str(node)[:60]!r}")
    return [_check_component(item, f"{where}#transforms#{n}", allowed) for n, item in enumerate(items)]


def _numbers(value, where: str, *, low: float, high: float) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise ValueError(f"{where}: {value!r} is out of range (each value from {low:g} to {high:g})")


def _check_sizes(pipeline: dict) -> None:
    """Refuse sizes that would make one inference exhaust memory (a 0.001 mm Spacingd, a 4096³ window)."""
    for n, item in enumerate(pipeline["preprocessing"]):
        where = f"preprocessing#transforms#{n}"
        if item["_target_"] == "Spacingd" and "pixdim" in item:
            _numbers(item["pixdim"], f"{where}#pixdim", low=MIN_PIXDIM_MM, high=100.0)
        if item["_target_"] in ("SpatialPadd", "DivisiblePadd"):
            for key in ("spatial_size", "k"):
                if key in item:
                    _numbers(item[key], f"{where}#{key}", low=-1, high=MAX_WINDOW)
    inferer = pipeline["inferer"]
    if "roi_size" in inferer:
        _numbers(inferer["roi_size"], "inferer#roi_size", low=-1, high=MAX_WINDOW)
    if "sw_batch_size" in inferer:
        _numbers(inferer["sw_batch_size"], "inferer#sw_batch_size", low=1, high=64)


def bundle_pipeline_validate(config: dict) -> dict | None:
    """Check a bundle config's ``preprocessing``, ``inferer`` and ``postprocessing`` and return them as data.

    Parameters
    ----------
    config : dict
        ``configs/inference.json`` as read by :func:`bundle_config_read` (plain JSON).

    Returns
    -------
    dict or None
        ``None`` when the config has no ``preprocessing`` section (a bundle that leaves its input
        preparation to the caller, such as one the portal exported; its ``inferer``, if any, is
        then not used). Otherwise
        ``{"preprocessing": [transform, ...], "inferer": component, "postprocessing": [transform, ...]}``
        where each transform/component is ``{"_target_": bare class name, **literal keywords}``;
        ``inferer`` defaults to ``SlidingWindowInferer`` with a 96³ window and ``postprocessing``
        to ``[]`` (argmax and the inverse of the preprocessing are then applied by the portal).

    Raises
    ------
    ValueError
        Naming the offending key (``preprocessing#transforms#2#_target_``) for anything outside the
        accepted subset described in the module docstring, or when a transform cannot be built
        with its arguments, or a ``postprocessing`` section without a ``preprocessing`` one, or a
        ``Spacingd`` ``pixdim`` under :data:`MIN_PIXDIM_MM`, a window or padding over
        :data:`MAX_WINDOW` voxels per axis, an ``sw_batch_size`` over 64.
    """
    if not isinstance(config, dict) or "preprocessing" not in config:
        # An inferer alone is what the portal's own export writes; a postprocessing cannot be honoured
        # without the preprocessing it inverts, and silently dropping it would change the output.
        if isinstance(config, dict) and "postprocessing" in config:
            raise ValueError("postprocessing: the bundle has this section but no preprocessing section")
        return None
    pipeline = {
        "preprocessing": _check_compose(config["preprocessing"], "preprocessing", PRE_TRANSFORMS),
        "inferer": (_check_component(config["inferer"], "inferer", INFERERS) if "inferer" in config
                    else {"_target_": "SlidingWindowInferer", "roi_size": list(_DEFAULT_ROI), "sw_batch_size": 1,
                          "overlap": 0.25}),
        "postprocessing": (_check_compose(config["postprocessing"], "postprocessing", POST_TRANSFORMS)
                           if "postprocessing" in config else []),
    }
    _check_sizes(pipeline)
    for n, item in enumerate(pipeline["postprocessing"]):
        if item["_target_"] == "Invertd" and item.get("transform") != "@preprocessing":
            raise ValueError(f"postprocessing#transforms#{n}#transform: Invertd must invert \"@preprocessing\"")
    # Build once on the CPU so that a constructor refusing its arguments refuses the import.
    _Pipeline(pipeline, torch.device("cpu"))
    return pipeline


def pipeline_patch_size(pipeline: dict) -> tuple[int, int, int]:
    """Return the inferer's ``roi_size`` as (a, b, c) voxels, or 96³ for a ``SimpleInferer``.

    Used as the probe patch at import; the axes are those of the bundle's own network input.
    """
    roi = pipeline["inferer"].get("roi_size") if pipeline["inferer"]["_target_"] == "SlidingWindowInferer" else None
    if isinstance(roi, int):
        roi = [roi] * 3
    if isinstance(roi, list) and len(roi) == 3 and all(isinstance(v, int) and v > 0 for v in roi):
        return tuple(roi)
    return _DEFAULT_ROI


# --------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------


def volume_to_loadimage_tensor(volume: Volume, *, channel_first: bool = False):
    """Return the MetaTensor ``LoadImaged`` gives for a NIfTI file of ``volume``.

    Parameters
    ----------
    volume : Volume
        Array (k, j, i); geometry in LPS.
    channel_first : bool
        Add a leading channel axis, as ``LoadImaged(ensure_channel_first=True)`` does.

    Returns
    -------
    monai.data.MetaTensor, shape (i, j, k) or (1, i, j, k), float32
        NIfTI stores voxels with i fastest, so nibabel/ITK readers return the axes in (i, j, k)
        order; ``affine`` maps those indices to RAS mm: diag(-1, -1, 1) · [direction[:, ::-1] ·
        diag(spacing[::-1]) | origin] (ITK's LPS to the RAS convention of MONAI and NIfTI). ``meta``
        carries ``original_channel_dim = "no_channel"`` so that ``EnsureChannelFirstd`` adds the
        channel as it does after ``LoadImaged``.
    """
    from monai.data import MetaTensor

    geometry = volume.geometry
    affine = np.eye(4)
    affine[:3, :3] = (geometry.direction_matrix * np.asarray(geometry.spacing_mm)[None, :])[:, ::-1]
    affine[:3, 3] = geometry.origin_mm
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    array = torch.from_numpy(np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0)), dtype=np.float32))
    affine_t = torch.as_tensor(affine, dtype=torch.float64)
    meta = {"original_affine": affine_t.clone(), "space": "RAS", "spatial_shape": np.asarray(array.shape),
            "original_channel_dim": "no_channel" if not channel_first else 0}
    if channel_first:
        array = array[None]
    return MetaTensor(array, affine=affine_t, meta=meta)


class _Pipeline:
    """The accepted sections built as MONAI objects (classes looked up by name in monai.transforms/inferers)."""

    def __init__(self, pipeline: dict, device: torch.device):
        import monai.inferers
        import monai.transforms
        from monai.transforms import Compose

        self.device = device
        self.load_channel_first = False
        pre = []
        for n, spec in enumerate(pipeline["preprocessing"]):
            if spec.get("_disabled_"):
                continue
            if spec["_target_"] == "LoadImaged":
                self.load_channel_first = bool(spec.get("ensure_channel_first", False))
                continue
            pre.append(self._build(monai.transforms, spec, f"preprocessing#transforms#{n}", None))
        self.pre = Compose(pre)
        post = []
        for n, spec in enumerate(pipeline["postprocessing"]):
            if spec.get("_disabled_") or spec["_target_"] in SKIPPED:
                continue
            post.append(self._build(monai.transforms, spec, f"postprocessing#transforms#{n}", self.pre))
        self.post = Compose(post)
        self.inverts = any(s["_target_"] == "Invertd" and not s.get("_disabled_") for s in pipeline["postprocessing"])
        self.inferer = self._build(monai.inferers, pipeline["inferer"], "inferer", None)

    def _build(self, module, spec: dict, where: str, pre) -> Any:
        kwargs = {k: self._resolve(v, pre) for k, v in spec.items() if k not in ("_target_", "_disabled_")}
        try:
            return getattr(module, spec["_target_"])(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a constructor refusing its arguments
            raise ValueError(f"{where}: cannot build {spec['_target_']} with these arguments: {exc}") from exc

    def _resolve(self, value: Any, pre) -> Any:
        if isinstance(value, list):
            return [self._resolve(v, pre) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve(v, pre) for k, v in value.items()}
        if value == "@device":
            return self.device
        if value == "@preprocessing":
            return pre
        return value


class BundleSegmenter:
    """Segment a Volume with a bundle's network, running the bundle's own preprocessing, inferer and postprocessing.

    Parameters
    ----------
    network : torch.nn.Module
        The bundle's ``network_def`` with its weights.
    pipeline : dict
        Output of :func:`bundle_pipeline_validate`.
    device : torch.device

    Raises
    ------
    ValueError
        On construction, a transform that cannot be built (see :func:`bundle_pipeline_validate`).

    Notes
    -----
    ``__call__`` follows what MONAI's bundle ``SupervisedEvaluator`` does for one image:
    ``data = preprocessing({"image": volume_to_loadimage_tensor(volume)})``,
    ``data["pred"] = inferer(data["image"][None], network)[0]``, ``data = postprocessing(data)``.
    The label map is brought back onto the series grid by the bundle's ``Invertd``, or, when the
    postprocessing has none, by ``Invertd`` of the preprocessing (nearest neighbour) run by the
    portal; a prediction left with several channels is reduced by argmax over the channels.
    """

    def __init__(self, network: torch.nn.Module, pipeline: dict, *, device: torch.device):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.pipeline = pipeline
        self._built = _Pipeline(pipeline, self.device)

    def _prepare(self, volume: Volume) -> dict:
        data = self._built.pre({"image": volume_to_loadimage_tensor(volume,
                                                                  channel_first=self._built.load_channel_first)})
        image = data["image"]
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"the bundle's preprocessing gives an image of shape {tuple(image.shape)}; "
                             "expected one channel and three spatial axes")
        return data

    def pre_transforms(self, volume: Volume) -> dict:
        """Return ``{"image": MetaTensor (1, a, b, c), ...}``: the bundle's preprocessing of ``volume``.

        The axes are those the bundle's network expects (from ``LoadImaged``'s (i, j, k) through its
        own ``Orientationd``/``Spacingd``); the MetaTensor carries the operations ``Invertd`` undoes.
        """
        return self._prepare(volume)

    def inferer(self, image: torch.Tensor, progress: ProgressCallback | None = None) -> torch.Tensor:
        """Return the network's logits (1, C, a, b, c) for a preprocessed image by the bundle's inferer.

        Mirrors :meth:`annotation.ml.inference.NetworkSegmenter.inferer` (so that active learning's
        :func:`annotation.ml.uncertainty.segmenter_uncertainty` can score a bundle); ``progress`` is
        not reported window by window.
        """
        batch = image[None].to(self.device, dtype=torch.float32)
        with torch.no_grad():
            return self._built.inferer(batch, self.network)

    def _logits(self, data: dict) -> torch.Tensor:
        return self.inferer(data["image"])[0]

    def _postprocess(self, data: dict, volume: Volume) -> np.ndarray:
        from monai.transforms import Invertd

        data = self._built.post(data)
        pred = data["pred"]
        target_shape = tuple(int(n) for n in volume.array.shape[::-1])
        if tuple(pred.shape[1:]) != target_shape and not self._built.inverts:
            data = Invertd(keys="pred", transform=self._built.pre, orig_keys="image", nearest_interp=True)(data)
            pred = data["pred"]
        pred = torch.as_tensor(pred).detach().cpu()
        if pred.ndim == 4 and pred.shape[0] > 1:
            pred = torch.argmax(pred, dim=0, keepdim=True)
        if tuple(pred.shape[1:]) != target_shape:
            raise ValueError(f"the bundle's postprocessing gives shape {tuple(pred.shape)}; expected (1, "
                             f"{', '.join(map(str, target_shape))}) on the series grid (add Invertd with "
                             "\"@preprocessing\")")
        labels = np.rint(pred[0].numpy()).astype(np.int64)
        labels = np.ascontiguousarray(np.transpose(labels, (2, 1, 0)))
        return labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)

    def _uncertainty(self, data: dict, logits: torch.Tensor) -> np.ndarray:
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        from .uncertainty import normalised_entropy_map

        entropy = normalised_entropy_map(torch.as_tensor(logits).detach().cpu()[None])  # (1, a, b, c)
        inverted = Invertd(keys="entropy", transform=self._built.pre, orig_keys="image", nearest_interp=False)(
            {"image": data["image"], "entropy": MetaTensor(entropy)})["entropy"]
        array = np.transpose(torch.as_tensor(inverted).detach().cpu().numpy()[0], (2, 1, 0))
        return np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)

    def segment_with_uncertainty(self, volume: Volume, progress: ProgressCallback | None = None, *,
                                 uncertainty: bool = True):
        """Segment ``volume`` and, from the same logits, its voxel-wise uncertainty map.

        Returns
        -------
        annotation.ml.inference.SegmentationResult
            ``label_map`` (k, j, i) uint8/uint16 as :meth:`__call__`; ``uncertainty`` (k, j, i)
            float32 in [0, 1]: :func:`annotation.ml.uncertainty.normalised_entropy_map` of the
            network's logits on the bundle's grid, brought back by ``Invertd`` of the bundle's
            preprocessing (bilinear), or None when ``uncertainty`` is False.
        """
        from .inference import SegmentationResult

        report = ProgressReporter(progress)
        report(0.0, "preprocessing")
        data = self._prepare(volume)
        report(10.0, "inference")
        logits = self._logits(data)
        report(90.0, "postprocessing")
        entropy = self._uncertainty(data, logits) if uncertainty else None
        data["pred"] = logits
        labels = self._postprocess(data, volume)
        if entropy is not None and entropy.shape != labels.shape:
            entropy = None  # a preprocessing that cannot be inverted exactly: no map rather than a wrong one
        report(100.0, "postprocessing")
        return SegmentationResult(label_map=labels, uncertainty=entropy)

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None) -> np.ndarray:
        """Return the label map of ``volume`` (shape (k, j, i), uint8/uint16, 0 = background)."""
        return self.segment_with_uncertainty(volume, progress, uncertainty=False).label_map

