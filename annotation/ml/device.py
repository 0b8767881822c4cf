"""Choose the torch device and the CPU thread count for inference and training.

Plain Python: the Django layer reads its settings and passes the strings in.
"""

from __future__ import annotations

import torch

__all__ = ["configure_threads", "select_device"]


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
