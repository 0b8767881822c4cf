"""A MONAI bundle's ``configs/inference.json``, read as plain JSON (nothing in it is evaluated). Shared by the
bundle pipeline (:mod:`annotation.ml.bundle_pipeline`) and model exchange (:mod:`annotation.ml.exchange`).
Imports no Django."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

__all__ = ["bundle_config_read"]

_CONFIG_NAMES = ("inference.json",)


def bundle_config_read(path: Path) -> dict:
    """Return a bundle's ``configs/inference.json`` as plain JSON (nothing evaluated); ``{}`` when absent.

    Parameters
    ----------
    path : Path
        A bundle folder, or a .zip holding one (at its root or in one top-level folder).

    Raises
    ------
    ValueError
        The path is neither a folder nor a zip, or the file is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "configs" / n for n in _CONFIG_NAMES]
        candidates += [p for n in _CONFIG_NAMES for p in path.glob(f"*/configs/{n}")]
        text = next((p.read_text(encoding="utf-8") for p in candidates if p.is_file()), None)
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist()
                     if n == "configs/inference.json" or (n.endswith("/configs/inference.json") and n.count("/") == 2)]
            text = archive.read(names[0]).decode("utf-8") if names else None
    else:
        raise ValueError(f"a MONAI bundle must be a folder or a .zip, got {path.name}")
    if text is None:
        return {}
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the bundle's configs/inference.json is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError("the bundle's configs/inference.json is not a JSON object")
    return config
