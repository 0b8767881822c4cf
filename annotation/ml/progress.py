"""Progress reporting and cancellation shared by inference, the classical lung method and training.

A run reports ``progress(percent, stage)`` to an optional callback; the callback stops the run by
raising :class:`InferenceCancelled`, which every pipeline lets propagate unchanged. This module
imports neither torch nor the pipelines, so ``inference``, ``lung`` and ``training`` all import it
and none of them imports another for these names.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["InferenceCancelled", "ProgressCallback", "ProgressReporter"]

ProgressCallback = Callable[[float, str], None]
"""``progress(percent, stage)``: percent in [0, 100], never decreasing within one run; stage is
``"preprocessing"``, ``"inference"``, ``"postprocessing"`` (networks), ``"lungs"`` (classical) or
``"training"`` / ``"validation"`` (training). The callback may raise :class:`InferenceCancelled` to
stop the run; the exception propagates."""


class InferenceCancelled(Exception):
    """Raised by a progress callback to stop a run; the pipeline lets it propagate unchanged."""


class ProgressReporter:
    """Forward progress to a callback, clamped to [0, 100] and never decreasing.

    Parameters
    ----------
    callback : ProgressCallback or None
        Called with ``(percent, stage)``; None reports nothing (the reporter still tracks
        :attr:`last`).

    Attributes
    ----------
    last : float
        The highest percent reported so far (0.0 before the first report).
    """

    def __init__(self, callback: ProgressCallback | None):
        self.callback = callback
        self.last = 0.0

    def __call__(self, percent: float, stage: str) -> None:
        self.last = max(self.last, min(100.0, max(0.0, float(percent))))
        if self.callback is not None:
            self.callback(self.last, stage)
