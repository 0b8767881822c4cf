"""The registry of backup parts that live outside the portal's database and bucket.

The portal backs up its database and its object storage itself. State that a higher app keeps elsewhere
(the knowledge graph in a Bolt server, the federation's keys and outboxes on disk) is backed up by that
app: it registers a :class:`BackupPart` in its ``AppConfig.ready``, so ``portal`` never imports it (the
same hook pattern as ``annotation.hooks``). Rows that migrations create (built-in models) are declared
with :func:`backup_seed_rows_register` so that a freshly migrated portal still counts as empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BackupPart", "backup_part_register", "backup_parts", "backup_seed_rows", "backup_seed_rows_register"]


@dataclass(frozen=True)
class BackupPart:
    """One piece of portal state kept outside the database and the bucket.

    Attributes
    ----------
    name : str
        The folder of the part inside a backup (``graph``, ``federation``); a plain lowercase word.
    export : callable
        ``export(folder: Path) -> dict[str, int]``: write the part's files under ``folder`` (which
        exists and is empty) and return counts for the manifest. Must stream: never hold the whole
        part in memory.
    restore : callable
        ``restore(folder: Path) -> dict[str, int]``: write the part back from ``folder`` (read-only; it
        does not exist when the part had no files) into an empty target and return the counts restored
        (compared with the manifest's).
    count : callable
        ``count() -> int``: how many items the target holds now (0 means empty).
    clear : callable
        ``clear() -> None``: remove everything of the part (``restore --force`` only).
    """

    name: str
    export: Callable[[Path], dict[str, int]]
    restore: Callable[[Path], dict[str, int]]
    count: Callable[[], int]
    clear: Callable[[], None]


_parts: dict[str, BackupPart] = {}
_seed_rows: dict[str, dict[str, Any]] = {}

_RESERVED = {"database", "objects"}


def backup_part_register(part: BackupPart) -> None:
    """Register (or replace) a backup part.

    Raises
    ------
    ValueError
        A name that is not a plain lowercase word, or one the portal uses itself.
    """
    if not part.name.isalpha() or not part.name.islower() or part.name in _RESERVED:
        raise ValueError(f"not a usable backup part name: {part.name!r}")
    _parts[part.name] = part


def backup_parts() -> list[BackupPart]:
    """Return the registered parts, in name order."""
    return [_parts[name] for name in sorted(_parts)]


def backup_seed_rows_register(model_label: str, **lookup: Any) -> None:
    """Declare that rows of ``model_label`` (``"app_label.ModelName"``) matching ``lookup`` are created by
    migrations, so that they do not make a freshly migrated portal count as holding data."""
    _seed_rows[model_label.lower()] = lookup


def backup_seed_rows() -> dict[str, dict[str, Any]]:
    """Return the seed-row declarations: ``{"app_label.modelname": lookup}``."""
    return dict(_seed_rows)
