"""Extension points through which the apps above annotation add their work to annotation's own.

annotation never imports the apps built on it (diagnosis, followup, federation). When one of its
operations must lead to their work — measuring a label map a model has just stored, listing the
measurements in a JSON export, showing reports on the study page — the higher app registers a
function here from its ``AppConfig.ready``, and annotation calls whatever is registered. The arrow
of imports stays higher app → annotation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "Hook",
    "after_model_segmentation",
    "dicomweb_result_instances",
    "segmentation_measurements",
    "study_page_context",
    "study_worklist_report_status",
]


class Hook:
    """A named list of functions that higher apps register and annotation calls in order.

    Functions are registered under a key, so that registering again (``ready`` runs more than once in
    some test set-ups) replaces the function instead of adding it twice.
    """

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._functions: dict[str, Callable[..., Any]] = {}

    def register(self, key: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``function`` under ``key`` (replacing an earlier one with that key) and return it."""
        self._functions[key] = function
        return function

    def items(self) -> list[tuple[str, Callable[..., Any]]]:
        """Return the registered (key, function) pairs in registration order."""
        return list(self._functions.items())

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {', '.join(self._functions) or 'nothing registered'}>"


after_model_segmentation = Hook(
    "after_model_segmentation",
    """Steps run by a one-click run after it stored the model's label map.

    The key is the run's progress stage while the step runs (e.g. ``"measuring"``). Each function is
    called as ``f(segmentation=Segmentation, label_map=ndarray (k, j, i), volume=Volume)``; an
    exception fails the run with its message, as any other failure of the run does.
    """,
)

segmentation_measurements = Hook(
    "segmentation_measurements",
    """Providers of the measurement rows listed in a segmentation's JSON export.

    Each function is called as ``f(segmentation=Segmentation)`` and returns a list of JSON-ready dicts,
    one per measured label; it measures the version first when it has no stored measurements.
    """,
)

study_page_context = Hook(
    "study_page_context",
    """Extra context for the study page, from the apps that show their own records there.

    Each function is called as ``f(user=User, study=Study)`` and returns a dict merged into the
    template context (e.g. ``{"reports": [...]}``). A ``study_sections`` list of template names is
    added to (not replacing) the sections the page includes below its own; a ``viewer_panels`` list of
    template names likewise adds panels to the viewer's side column (beside the images).
    """,
)

study_worklist_report_status = Hook(
    "study_worklist_report_status",
    """The report status of each study on the worklist, from the app that writes reports.

    One function is expected (diagnosis registers it). It is called as ``f(queryset)`` with a
    ``QuerySet[Study]`` and returns the same queryset annotated with ``report_status``: ``"none"``
    (no report), ``"draft"`` or ``"final"`` (the newest report's status), so that the worklist can show
    and filter it in one query. With nothing registered the worklist has no report column.
    """,
)

dicomweb_result_instances = Hook(
    "dicomweb_result_instances",
    """The DICOM objects the portal produced for studies (a signed report's SEG, SR, Encapsulated PDF),
    served by DICOMweb as further series of those studies.

    Each function is called as ``f(studies=QuerySet[Study], build=bool)`` and returns a list of
    :class:`annotation.dicomweb.results.ResultInstance`. With ``build`` it first builds and stores the
    objects not stored yet (so that later calls, and the sends to the PACS, give the same UIDs); without
    it, it lists only what is already stored. With nothing registered DICOMweb serves the originals only.
    """,
)
