"""The shape of the codebase: the import-linter contracts in pyproject.toml hold.

They state the layers (followup above diagnosis, federation and knowledge_graph, those above annotation,
annotation above portal), that the plain-Python packages import no Django, that selectors and the
storage loaders never import services, and that sibling modules of the plain packages form no cycle.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout, result.stdout[-3000:]
