"""Build the MONAI segmentation networks the portal can train and run.

Each architecture has small defaults that fit a CPU worker; a model record's ``network_config``
overrides any constructor keyword. Input and output channel counts are always passed separately
so a stored config never disagrees with the label table.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["ARCHITECTURES", "build_network", "check_patch_size", "default_network_config"]

# Small defaults: each network downsamples by 8 (VNet by 16, SwinUNETR by 32), so patch sizes must be
# multiples of that.
_DEFAULTS: dict[str, dict] = {
    # Ronneberger et al., MICCAI 2015, as MONAI's residual UNet (Kerfoot et al., 2018).
    "unet": {
        "spatial_dims": 3,
        "channels": (16, 32, 64, 128),
        "strides": (2, 2, 2),
        "num_res_units": 2,
        "norm": "INSTANCE",
    },
    # Milletari et al., 3DV 2016; MONAI's VNet has a fixed width (16 → 256) and needs sizes divisible by 16.
    "vnet": {"spatial_dims": 3, "dropout_prob_down": 0.0, "dropout_prob_up": (0.0, 0.0)},
    # Myronenko, BrainLes 2018 (without the variational branch).
    "segresnet": {"spatial_dims": 3, "init_filters": 8, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)},
    # nnU-Net-style configurable UNet (Isensee et al., Nat. Methods 2021).
    "dynunet": {
        "spatial_dims": 3,
        "kernel_size": ((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        "strides": ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        "upsample_kernel_size": ((2, 2, 2), (2, 2, 2), (2, 2, 2)),
        "filters": (16, 32, 64, 128),
        "norm_name": "instance",
        "res_block": True,
    },
    # Oktay et al., MIDL 2018: a UNet whose skip connections pass through attention gates.
    "attentionunet": {"spatial_dims": 3, "channels": (16, 32, 64, 128), "strides": (2, 2, 2)},
    # Hatamizadeh et al., BrainLes 2021: a Swin transformer encoder with a convolutional decoder.
    # feature_size 12 is the smallest MONAI accepts (it must be a multiple of 12).
    "swinunetr": {"spatial_dims": 3, "feature_size": 12, "depths": (2, 2, 2, 2), "num_heads": (3, 6, 12, 24)},
}

# Patch (input) sizes must be multiples of these along every axis. SwinUNETR embeds 2³ patches and
# merges them four times (2 * 2**4 = 32), and its instance-normalised bottleneck needs more than one
# voxel, so 64 is its smallest patch; the convolutional networks pad or crop on their own.
_PATCH_MULTIPLE: dict[str, tuple[int, int]] = {"swinunetr": (32, 64)}

ARCHITECTURES: tuple[str, ...] = tuple(_DEFAULTS)


def _network_class(architecture: str):
    from monai.networks import nets

    return {
        "unet": nets.UNet, "vnet": nets.VNet, "segresnet": nets.SegResNet, "dynunet": nets.DynUNet,
        "attentionunet": nets.AttentionUnet, "swinunetr": nets.SwinUNETR,
    }[architecture]


def _check_architecture(architecture: str) -> str:
    name = (architecture or "").strip().lower()
    if name not in _DEFAULTS:
        raise ValueError(f"unknown network architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    return name


def default_network_config(architecture: str) -> dict:
    """Return a copy of the default constructor keywords of ``architecture``.

    Parameters
    ----------
    architecture : str
        One of ``"unet"``, ``"vnet"``, ``"segresnet"``, ``"dynunet"``, ``"attentionunet"``, ``"swinunetr"``.

    Returns
    -------
    dict
        Keyword arguments of the MONAI class, without ``in_channels``/``out_channels``.

    Raises
    ------
    ValueError
        Unknown architecture.
    """
    return copy.deepcopy(_DEFAULTS[_check_architecture(architecture)])


def check_patch_size(architecture: str, patch_size) -> None:
    """Refuse a patch size the architecture cannot take.

    Parameters
    ----------
    architecture : str
        See :func:`build_network`.
    patch_size : sequence of int
        Patch (network input) size in voxels, axis order (k, j, i) as in ``Preprocessing``.

    Raises
    ------
    ValueError
        Unknown architecture, or (SwinUNETR) a patch size that is not a multiple of 32 of at least 64
        on every axis.
    """
    name = _check_architecture(architecture)
    if name not in _PATCH_MULTIPLE:
        return
    multiple, smallest = _PATCH_MULTIPLE[name]
    if any(int(n) < smallest or int(n) % multiple for n in patch_size):
        raise ValueError(f"{name} needs a patch size divisible by {multiple} (at least {smallest}) on every axis, "
                         f"e.g. 64, 96 or 128; got {tuple(int(n) for n in patch_size)}")


def _check_config(name: str, kwargs: dict) -> None:
    if name == "swinunetr":
        import importlib.util

        # MONAI imports einops lazily and would fail only at the first forward pass.
        if importlib.util.find_spec("einops") is None:
            raise ValueError("swinunetr needs the einops package (pip install einops, see requirements.txt)")
        feature_size = kwargs.get("feature_size")
        if not isinstance(feature_size, int) or feature_size < 12 or feature_size % 12:
            raise ValueError(f"swinunetr needs a feature_size that is a positive multiple of 12 "
                             f"(12, 24, 48), got {feature_size!r}")


def build_network(
    architecture: str, *, in_channels: int, out_channels: int, config: dict | None = None
) -> torch.nn.Module:
    """Build a randomly initialised 3-D MONAI segmentation network.

    Parameters
    ----------
    architecture : str
        ``"unet"`` (monai.networks.nets.UNet), ``"vnet"`` (VNet), ``"segresnet"`` (SegResNet),
        ``"dynunet"`` (DynUNet), ``"attentionunet"`` (AttentionUnet) or ``"swinunetr"`` (SwinUNETR; its
        input sizes must be multiples of 32, see :func:`check_patch_size`).
    in_channels : int
        Image channels (1 for CT or a single MR sequence).
    out_channels : int
        Output channels = number of classes including background; the network returns logits of
        shape (N, out_channels, D, H, W) for an input of shape (N, in_channels, D, H, W).
    config : dict, optional
        Constructor keywords that override :func:`default_network_config` (JSON lists are accepted
        where MONAI expects tuples). ``in_channels``/``out_channels`` in it are ignored.

    Returns
    -------
    torch.nn.Module
        On the CPU, in training mode.

    Raises
    ------
    ValueError
        Unknown architecture, or a config the class rejects (unknown keyword, inconsistent sizes,
        a SwinUNETR ``feature_size`` that is not a multiple of 12).
    """
    name = _check_architecture(architecture)
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"in_channels and out_channels must be positive, got {in_channels} and {out_channels}")
    kwargs = default_network_config(name)
    kwargs.update({k: v for k, v in (config or {}).items() if k not in ("in_channels", "out_channels")})
    _check_config(name, kwargs)
    try:
        return _network_class(name)(in_channels=int(in_channels), out_channels=int(out_channels), **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"cannot build {name} with config {kwargs}: {exc}") from exc
