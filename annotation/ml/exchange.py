"""Move segmentation networks in and out of the portal: ONNX and TorchScript files, and ONNX Runtime.

Plain Python (no Django). A network the portal runs maps a float32 image batch of shape
(N, 1, k, j, i) (canonical axis order, see :data:`annotation.ml.inference.CANONICAL_AXCODES`) to
class logits of shape (N, C, k, j, i), C counting the background. Every file written here keeps
that contract and carries the portal's own description of the model (preprocessing, label table)
so that importing it again needs nothing else:

* ONNX: the ``metadata_props`` entry :data:`METADATA_KEY` holds that JSON; batch and spatial axes
  are dynamic, so the sliding window can use any patch size.
* TorchScript: the same JSON as the extra file ``extra/yixin.json`` inside the archive.

:class:`OnnxNetwork` makes an ONNX Runtime ``InferenceSession`` callable like a ``torch.nn.Module``,
so :class:`annotation.ml.inference.NetworkSegmenter` runs one sliding-window path for both
backends.

Exporter choice (torch 2.13): ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based
exporter. The default dynamo exporter needs the extra ``onnxscript`` package; the legacy one
exports MONAI's 3-D UNet/VNet/SegResNet/DynUNet (instance norm, PReLU, transposed convolutions)
with dynamic axes at opset 17 and reproduces the PyTorch logits to about 1e-5.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "METADATA_KEY",
    "OPSET_VERSION",
    "OnnxModelInfo",
    "OnnxNetwork",
    "bundle_portal_description",
    "export_onnx",
    "export_torchscript",
    "inspect_onnx",
    "load_torchscript",
    "probe_network",
    "quantize_onnx_int8",
]

METADATA_KEY = "yixin.model"
"""ONNX ``metadata_props`` key (and TorchScript extra file ``extra/yixin.json``) of the portal's JSON
description: ``{"preprocessing": {...}, "label_table": [...], "architecture": str, "source": str}``."""

OPSET_VERSION = 17
"""ONNX opset of exported files: the newest the legacy exporter covers fully, and ONNX Runtime ≥ 1.14 runs it."""

_TORCHSCRIPT_EXTRA = "extra/yixin.json"


# --------------------------------------------------------------------------------------------------
# ONNX files
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxModelInfo:
    """What :func:`inspect_onnx` learned about an ONNX segmentation network.

    Attributes
    ----------
    input_name : str
        The single graph input, shape (N, 1, k, j, i).
    spatial_shape : tuple of 3 (int or None)
        Fixed (k, j, i) sizes of the input, ``None`` for a dynamic axis.
    out_channels : int or None
        Class count C of the first output (N, C, k, j, i), when the file fixes it.
    metadata : dict
        The portal's description from :data:`METADATA_KEY` (empty for a file made elsewhere).
    quantized : bool
        The graph holds integer (dynamically quantised) convolutions or matrix products.
    """

    input_name: str
    spatial_shape: tuple[int | None, int | None, int | None]
    out_channels: int | None
    metadata: dict = field(default_factory=dict)
    quantized: bool = False


def _dim(d) -> int | None:
    return int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None


def inspect_onnx(path: Path) -> OnnxModelInfo:
    """Check an ONNX file with ``onnx.checker`` and that it is a 3-D single-channel segmentation network.

    Parameters
    ----------
    path : Path
        An ``.onnx`` file (weights inside the file; external data files are not accepted).

    Returns
    -------
    OnnxModelInfo

    Raises
    ------
    ValueError
        The file cannot be parsed as an ONNX model, fails ``onnx.checker.check_model``, has not
        exactly one image input, its input is not of rank 5 (N, C, k, j, i) or has a fixed channel
        count other than 1, it has no output, its first output is not of rank 5, or its
        :data:`METADATA_KEY` entry is not a JSON object.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a protobuf decode error, truncated file, …
        raise ValueError(f"{path.name} is not an ONNX model: {exc}") from exc
    if not model.graph.node:
        raise ValueError(f"{path.name} is not an ONNX model: its graph has no operators")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx.checker.ValidationError, shape inference errors
        raise ValueError(f"{path.name} fails the ONNX checker: {exc}") from exc
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{path.name} has {len(inputs)} inputs; a segmentation network takes one image batch")
    shape = inputs[0].type.tensor_type.shape
    rank = len(shape.dim) if inputs[0].type.tensor_type.HasField("shape") else None
    if rank != 5:
        raise ValueError(
            f"{path.name} takes input of rank {rank if rank is not None else 'unknown'}; a 3-D segmentation "
            "network takes rank 5 (batch, channel, k, j, i)"
        )
    dims = [_dim(d) for d in shape.dim]
    if dims[1] not in (None, 1):
        raise ValueError(f"{path.name} takes {dims[1]} input channels; the portal feeds one image channel")
    if not model.graph.output:
        raise ValueError(f"{path.name} has no output")
    out = model.graph.output[0].type.tensor_type
    if out.HasField("shape") and len(out.shape.dim) != 5:
        raise ValueError(f"{path.name} returns rank {len(out.shape.dim)}; expected logits of rank 5 (N, C, k, j, i)")
    out_channels = _dim(out.shape.dim[1]) if out.HasField("shape") else None
    metadata: dict = {}
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                metadata = json.loads(prop.value)
            except ValueError as exc:
                raise ValueError(f"{path.name}: its {METADATA_KEY} metadata is not JSON: {exc}") from exc
            if not isinstance(metadata, dict):
                raise ValueError(f"{path.name}: its {METADATA_KEY} metadata is not a JSON object")
    quantized = any(n.op_type in ("ConvInteger", "MatMulInteger", "QLinearConv", "DynamicQuantizeLinear")
                    for n in model.graph.node)
    return OnnxModelInfo(
        input_name=inputs[0].name, spatial_shape=tuple(dims[2:]), out_channels=out_channels,
        metadata=metadata, quantized=quantized,
    )


def export_onnx(
    network: torch.nn.Module, path: Path, *, patch_size: Sequence[int], metadata: dict | None = None
) -> OnnxModelInfo:
    """Export a network to ONNX with dynamic batch and spatial axes, then check the file.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (N, 1, k, j, i) float32 to (N, C, k, j, i) logits; exported on the CPU in eval mode
        (a copy is not made: the module is moved to the CPU).
    path : Path
        Output file, written atomically (a ``.part`` file renamed).
    patch_size : sequence of 3 int
        (k, j, i) of the example input traced (the training patch; any size the network accepts).
    metadata : dict, optional
        JSON-serialisable description stored under :data:`METADATA_KEY`.

    Returns
    -------
    OnnxModelInfo
        Of the written file (so it has passed :func:`inspect_onnx`).

    Raises
    ------
    ValueError
        The exporter fails (an operator ONNX lacks) or the file fails :func:`inspect_onnx`.
    """
    import onnx

    path = Path(path)
    network = network.cpu().eval()
    example = torch.zeros((1, 1, *(int(p) for p in patch_size)), dtype=torch.float32)
    axes = {0: "batch", 2: "k", 3: "j", 4: "i"}
    tmp = path.with_name(path.name + ".part")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Instance norm in eval mode and TorchScript deprecation notices: expected, not actionable.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network, (example,), str(tmp), dynamo=False, opset_version=OPSET_VERSION,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes},
            )
    except Exception as exc:  # noqa: BLE001 - exporter errors have many types
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot export the network to ONNX: {exc}") from exc
    model = onnx.load(str(tmp))
    if metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    model.producer_name = "yixin-portal"
    onnx.save(model, str(tmp))
    try:
        info = inspect_onnx(tmp)
    except ValueError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return info


def quantize_onnx_int8(source: Path, dest: Path) -> OnnxModelInfo:
    """Quantise an ONNX network's weights to 8 bits with ONNX Runtime's dynamic quantisation.

    ``onnxruntime.quantization.quantize_dynamic`` stores convolution and matrix weights as uint8
    with a per-tensor scale and zero point and quantises activations at run time
    (``DynamicQuantizeLinear`` → ``ConvInteger``); transposed convolutions stay in float32. No
    calibration data is needed. Metadata (:data:`METADATA_KEY`) is kept.

    Parameters
    ----------
    source : Path
        A float32 ONNX file.
    dest : Path
        Output file (written atomically).

    Returns
    -------
    OnnxModelInfo
        Of ``dest``, with ``quantized=True``.

    Raises
    ------
    ValueError
        ``source`` fails :func:`inspect_onnx`, or quantisation fails.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    info = inspect_onnx(source)
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".part")
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QUInt8)
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot quantise {Path(source).name} to int8: {exc}") from exc
    if info.metadata:
        model = onnx.load(str(tmp))
        if not any(p.key == METADATA_KEY for p in model.metadata_props):
            entry = model.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, json.dumps(info.metadata)
            onnx.save(model, str(tmp))
    try:
        out = inspect_onnx(tmp)
    except ValueError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return out


class OnnxNetwork:
    """An ONNX Runtime session that is called like the torch network it replaces.

    Parameters
    ----------
    path : Path
        An ONNX file that passes :func:`inspect_onnx`.
    device : torch.device
        ``cuda``: the session uses ``CUDAExecutionProvider`` when this onnxruntime build has it
        (``onnxruntime-gpu``), falling back to the CPU; ``cpu``: ``CPUExecutionProvider``.
    num_threads : int, optional
        Intra-op threads of the CPU provider (default: ONNX Runtime's, one per core).

    Raises
    ------
    ValueError
        The file fails :func:`inspect_onnx` or ONNX Runtime cannot build a session from it.

    Notes
    -----
    ``__call__`` takes a float32 tensor (N, 1, k, j, i) on any device and returns the logits
    (N, C, k, j, i) as a float32 tensor on the same device; the data cross through host memory.
    """

    def __init__(self, path: Path, *, device: torch.device | str = "cpu", num_threads: int | None = None):
        import onnxruntime as ort

        self.info = inspect_onnx(path)
        device = torch.device(device)
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in available:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the optimiser's notices are not actionable here
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"ONNX Runtime cannot load {Path(path).name}: {exc}") from exc
        self.providers = tuple(self.session.get_providers())

    def eval(self) -> "OnnxNetwork":
        """Return self (an ONNX graph is always in inference mode); mirrors ``torch.nn.Module.eval``."""
        return self

    def to(self, device) -> "OnnxNetwork":
        """Return self: the execution provider was chosen at construction."""
        return self

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        array = image.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits, *_rest) = self.session.run(None, {self.info.input_name: array})
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(image.device)


# --------------------------------------------------------------------------------------------------
# TorchScript files
# --------------------------------------------------------------------------------------------------


def export_torchscript(network: torch.nn.Module, path: Path, *, metadata: dict | None = None) -> None:
    """Compile a network with ``torch.jit.script`` and save it with the portal's description inside.

    Parameters
    ----------
    network : torch.nn.Module
        Moved to the CPU and put in eval mode.
    path : Path
        Output ``.pt``/``.ts`` file (written atomically).
    metadata : dict, optional
        Stored as the extra file ``extra/yixin.json``; :func:`load_torchscript` returns it.

    Raises
    ------
    ValueError
        The network cannot be scripted.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    network = network.cpu().eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.13 deprecates TorchScript in favour of torch.export
            scripted = network if isinstance(network, torch.jit.ScriptModule) else torch.jit.script(network)
            torch.jit.save(scripted, str(tmp), _extra_files={_TORCHSCRIPT_EXTRA: json.dumps(metadata or {})})
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot compile the network to TorchScript: {exc}") from exc
    tmp.replace(path)


def load_torchscript(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a TorchScript file and the portal description saved with it (empty when absent).

    Raises
    ------
    ValueError
        ``torch.jit.load`` fails (not a TorchScript archive, a truncated file, a plain state_dict),
        or the description is not a JSON object.

    Notes
    -----
    A TorchScript file is a program: accept one only from a trusted uploader.
    """
    extra = {_TORCHSCRIPT_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location=torch.device(device), _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a TorchScript file"
        raise ValueError(f"cannot load TorchScript model {Path(path).name}: {exc}") from exc
    text = extra[_TORCHSCRIPT_EXTRA]
    text = text.decode("utf-8") if isinstance(text, bytes) else text
    try:
        metadata = json.loads(text) if text else {}
    except ValueError as exc:
        raise ValueError(f"{Path(path).name}: its {_TORCHSCRIPT_EXTRA} is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ValueError(f"{Path(path).name}: its {_TORCHSCRIPT_EXTRA} is not a JSON object")
    return module, metadata


# --------------------------------------------------------------------------------------------------
# Checking a network before it is registered
# --------------------------------------------------------------------------------------------------


def probe_network(network, *, patch_size: Sequence[int], num_classes: int) -> None:
    """Run a network once on a zero patch and check it returns ``num_classes`` logit channels.

    Parameters
    ----------
    network : torch.nn.Module or OnnxNetwork
        Called with a float32 tensor (1, 1, k, j, i).
    patch_size : sequence of 3 int
        (k, j, i) of the probe.
    num_classes : int
        Expected C (background included): the label table's largest index + 1.

    Raises
    ------
    ValueError
        The call fails (the network does not take a single-channel 3-D patch of this size), or the
        output is not (1, num_classes, k, j, i), or it holds NaN or infinite values.
    """
    patch = tuple(int(p) for p in patch_size)
    probe = torch.zeros((1, 1, *patch), dtype=torch.float32)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = network(probe)
    except Exception as exc:  # noqa: BLE001 - a network that cannot run this input
        raise ValueError(f"the network does not run on a (1, 1, {', '.join(map(str, patch))}) patch: {exc}") from exc
    if isinstance(output, (list, tuple)):
        output = output[0]
    elif isinstance(output, dict):
        output = next(iter(output.values()))
    shape = tuple(output.shape)
    if len(shape) != 5 or shape[0] != 1 or shape[2:] != patch:
        raise ValueError(f"the network returns shape {shape} for a (1, 1, {', '.join(map(str, patch))}) patch; "
                         "expected logits (1, C, k, j, i) on the same grid")
    if shape[1] != num_classes:
        raise ValueError(f"the network returns {shape[1]} channels but the labels need {num_classes} "
                         f"(background + labels up to {num_classes - 1})")
    if not bool(torch.isfinite(output).all()):
        raise ValueError("the network returns NaN or infinite logits on a zero patch")



# --------------------------------------------------------------------------------------------------
# MONAI bundles
# --------------------------------------------------------------------------------------------------


def bundle_portal_description(path: Path) -> dict:
    """Return the portal's description recorded in a MONAI bundle, or ``{}`` for a bundle made elsewhere.

    A bundle the portal exported (:func:`annotation.interop.bundle.bundle_write`) records its
    preprocessing under ``portal_preprocessing`` in ``configs/inference.json``; the result is
    ``{"preprocessing": that dict}``. Only that key is read, as plain JSON: nothing in the config is
    evaluated.

    Parameters
    ----------
    path : Path
        A bundle folder, or a .zip holding one (at its root or in one top-level folder).

    Raises
    ------
    ValueError
        The path is neither a folder nor a zip, or its ``inference.json`` is not a JSON object.
    """
    from .bundle_config import bundle_config_read

    config = bundle_config_read(path)
    stored = config.get("portal_preprocessing")
    return {"preprocessing": stored} if isinstance(stored, dict) else {}
