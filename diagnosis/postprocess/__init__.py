"""Doctors' post-processing scripts, run in a bubblewrap sandbox (plain Python: no Django).

:mod:`.sandbox` builds the ``bwrap`` command line, applies the resource limits, watches the run and
validates what the script wrote (``figures.json`` and PNG plots).
"""

from .sandbox import (
    SandboxConfig,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    bwrap_command,
    package_binds,
    run_script,
)

__all__ = [
    "SandboxConfig",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "bwrap_command",
    "package_binds",
    "run_script",
]
