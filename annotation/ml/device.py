"""Choose the torch device and the CPU thread count for inference and training.

Plain Python: the Django layer reads its settings and passes the strings in.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["amp_autocast", "amp_enabled", "amp_grad_scaler", "configure_threads", "select_device"]


def select_device(preference: str = "auto") -> torch.device:
    """Return the torch device to run networks on.

    Parameters
    ----------
    preference : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        Case and surrounding spaces are ignored.

    Returns
    -------
    torch.device

    Raises
    ------
    RuntimeError
        CUDA was asked for but this machine (or this torch build) has no usable CUDA device,
        or ``cuda:N`` names a device that does not exist.
    ValueError
        ``preference`` is none of the above.
    """
    choice = (preference or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {preference!r} was requested but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
                "use 'auto' or 'cpu'"
            )
        device = torch.device(choice)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {preference!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise ValueError(f"unknown device preference {preference!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def configure_threads(n: int) -> None:
    """Limit torch's CPU intra-op threads to ``n``.

    A worker process that shares the machine with the web server and other workers should not
    take every core (torch's default), so the Celery task sets this once at start-up.

    Parameters
    ----------
    n : int
        Number of threads, at least 1.

    Raises
    ------
    ValueError
        ``n`` is smaller than 1.
    """
    if int(n) < 1:
        raise ValueError(f"the thread count must be at least 1, got {n}")
    torch.set_num_threads(int(n))
    try:
        # Allowed only before the first inter-op parallel work in the process; later calls raise,
        # and the intra-op count set above is the one that matters for convolutions.
        torch.set_num_interop_threads(int(n))
    except RuntimeError:
        pass


def amp_enabled(device: torch.device | str) -> bool:
    """Return whether networks on ``device`` run with automatic mixed precision (AMP).

    Mixed precision (float16 autocast with a gradient scaler; Micikevicius et al., "Mixed Precision
    Training", ICLR 2018) is used on CUDA only: on the CPU, float16/bfloat16 autocast gives no speed-up
    for 3-D convolutions on this portal's machines and changes the numbers, so CPU work stays float32.

    Parameters
    ----------
    device : torch.device or str
        The device the network runs on (``"cpu"``, ``"cuda"``, ``"cuda:N"``). Only its type is read:
        this function never touches a GPU, so it answers for ``"cuda"`` on a machine without one.
    """
    return torch.device(device).type == "cuda"


def amp_autocast(device: torch.device | str):
    """Return the context manager a forward pass on ``device`` runs in.

    ``torch.autocast("cuda")`` (float16 where safe) when :func:`amp_enabled`, else a no-op context:
    on the CPU nothing is autocast and tensors stay float32.
    """
    return torch.autocast("cuda") if amp_enabled(device) else contextlib.nullcontext()


def amp_grad_scaler(device: torch.device | str) -> torch.amp.GradScaler | None:
    """Return the gradient scaler for training on ``device``: a CUDA ``torch.amp.GradScaler`` when
    :func:`amp_enabled` (float16 gradients would underflow without loss scaling), else ``None`` (plain
    ``loss.backward(); optimizer.step()`` in float32)."""
    return torch.amp.GradScaler("cuda") if amp_enabled(device) else None
