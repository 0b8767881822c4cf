"""Observation sources that higher apps plug into the FHIR endpoint (registered in their ``AppConfig.ready``).

Diagnosis serves the measurement Observations itself; follow-up, which sits above diagnosis, adds the
questionnaire scores here, so diagnosis never imports follow-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ObservationSource:
    """A kind of Observation served at ``/fhir/Observation``.

    ``prefix`` starts the ids of its Observations (``questionnaire-score-``); ``search(user=, patient=)``
    returns the resources of one patient the user may see; ``read(user=, key=)`` returns one resource by
    the rest of its id, or raises ``Http404``.
    """

    prefix: str
    search: Callable[..., list[dict]]
    read: Callable[..., dict]


OBSERVATION_SOURCES: dict[str, ObservationSource] = {}


def observation_source_register(source: ObservationSource) -> None:
    """Register ``source`` (idempotent: a second registration of a prefix replaces the first)."""
    OBSERVATION_SOURCES[source.prefix] = source
