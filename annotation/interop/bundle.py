"""Export a trained network as a MONAI bundle (and TorchScript) that MONAI can load.

Bundle layout (MONAI Bundle specification, https://docs.monai.io/en/stable/mb_specification.html)::

    <name>/configs/metadata.json    schema version, label names, input/output description
    <name>/configs/inference.json   network_def (a monai.networks class with its keywords),
                                    pre-processing and inferer settings
    <name>/models/model.pt          the state_dict (torch.save)
    <name>/models/model.ts          TorchScript of the same network (torch.jit.trace)
    <name>/docs/README.md

Networks take (N, 1, D, H, W) tensors whose spatial axes are our (k, j, i) and return logits
(N, C, D, H, W) with C = number of labels + background.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch

_TARGETS = {
    "unet": "monai.networks.nets.UNet", "vnet": "monai.networks.nets.VNet",
    "segresnet": "monai.networks.nets.SegResNet", "dynunet": "monai.networks.nets.DynUNet",
    "attentionunet": "monai.networks.nets.AttentionUnet", "swinunetr": "monai.networks.nets.SwinUNETR",
}


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def bundle_write(
    directory: Path,
    *,
    name: str,
    version: str,
    architecture: str,
    network_kwargs: dict,
    network: torch.nn.Module,
    label_table: Sequence[dict],
    preprocessing: dict,
    description: str = "",
    patch_size: Sequence[int] = (32, 32, 32),
) -> Path:
    """Write a MONAI bundle folder ``directory/name`` and return it.

    Parameters
    ----------
    architecture : "unet" | "vnet" | "segresnet" | "dynunet" | "attentionunet" | "swinunetr"
    network_kwargs : dict
        Every constructor keyword of the network, ``in_channels`` and ``out_channels`` included.
    network : torch.nn.Module
        The network with its trained weights (state_dict goes to ``models/model.pt``; a trace on a
        zero tensor of ``patch_size`` (k, j, i) goes to ``models/model.ts``).
    label_table : sequence of dict
        ``{"index", "name", ...}``; written as ``label_names`` in the metadata.
    preprocessing : dict
        The portal's pre-processing settings (``target_spacing_mm``, ``intensity``, ``hu_window``,
        ``patch_size``), recorded in ``inference.json`` under ``portal_preprocessing``.

    Raises
    ------
    ValueError
        For an architecture that has no MONAI class.
    """
    if architecture not in _TARGETS:
        raise ValueError(f"only MONAI networks can be exported as a bundle, not {architecture!r}")
    root = Path(directory) / name
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "docs").mkdir(exist_ok=True)
    labels = {"0": "background", **{str(e["index"]): str(e["name"]) for e in label_table}}
    out_channels = int(network_kwargs["out_channels"])
    metadata = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": str(version),
        "changelog": {str(version): "exported from Yixin Portal"},
        "monai_version": _version("monai"),
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": _version("numpy"),
        "name": name,
        "task": description or f"3-D segmentation ({architecture})",
        "description": description or f"{architecture} exported from Yixin Portal",
        "authors": "Yixin Portal",
        "copyright": "the exporting hospital",
        "label_names": labels,
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield" if preprocessing.get("intensity") == "hu_window" else "magnitude",
                                 "num_channels": int(network_kwargs.get("in_channels", 1)),
                                 "spatial_shape": [int(v) for v in patch_size], "dtype": "float32",
                                 "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": out_channels,
                                 "spatial_shape": [int(v) for v in patch_size], "dtype": "float32",
                                 "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": labels}},
        },
    }
    inference = {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": _TARGETS[architecture], **_jsonable(network_kwargs)},
        "network": "$@network_def.to(@device)",
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [int(v) for v in patch_size],
                    "sw_batch_size": 1, "overlap": 0.25},
        "portal_preprocessing": _jsonable(preprocessing),
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    (root / "configs" / "inference.json").write_text(json.dumps(inference, indent=2), encoding="utf-8")
    network = network.eval().cpu()
    torch.save(network.state_dict(), root / "models" / "model.pt")
    with torch.no_grad():
        traced = torch.jit.trace(network, torch.zeros((1, int(network_kwargs.get("in_channels", 1)), *patch_size)))
    traced.save(str(root / "models" / "model.ts"))
    (root / "docs" / "README.md").write_text(
        f"# {name}\n\n{metadata['description']}\n\nLabels: "
        + ", ".join(f"{k} = {v}" for k, v in labels.items())
        + "\n\nInput spatial axes are (slice, row, column) of the series as stored in NIfTI.\n",
        encoding="utf-8",
    )
    return root


def bundle_zip(root: Path, zip_path: Path) -> Path:
    """Zip a bundle folder (its folder name as the top-level entry) and return the zip path."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                archive.write(path, Path(root.name) / path.relative_to(root))
    return zip_path


def _version(package: str) -> str:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:  # noqa: BLE001
        return ""
