"""Flower's SuperNode (``flower-supernode``) with its idle polling shortened: ``python -m federation.fl.flower_supernode ARGS``.

Flower 1.41's SuperNode waits in fixed sleeps that no option sets (``flwr/supernode/start_client_internal.py``):

- 3 s after asking the SuperLink for a message and getting none, so a message waits 1.5 s on average,
  up to 3 s, before its hospital even sees it: once per round for FedAvg, four times for SecAgg+;
- 0.5 s between checks for the ClientApp's reply, and for each of the reply's objects.

Its SuperExec, which starts a ClientApp process for every message, checks for new work every
``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` seconds (Flower's own setting; default 1 s).

This entry point runs Flower's own ``flower-supernode`` command, with every sleep of that one module capped at
``FEDERATION_NODE_POLL_S`` seconds (default 0.2; at most 0.5) and the SuperExec's interval set to the same
unless the environment sets it. Nothing else of Flower changes. An idle SuperNode then asks the SuperLink
five times a second instead of every 3 s, a cost to the SuperLink of a few requests per second per hospital.

:func:`shorten_idle_polling` refuses to run on a Flower whose SuperNode loop no longer has the sleep it caps
(``flwr`` is pinned; a new version must be checked before the pin moves). Plain Python: no Django.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import types
from collections.abc import Callable

__all__ = ["DEFAULT_POLL_S", "poll_interval", "shorten_idle_polling", "main"]

DEFAULT_POLL_S = 0.2
MAX_POLL_S = 0.5
_SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"


def poll_interval(environ: dict | None = None) -> float:
    """Seconds between the SuperNode's polls: ``FEDERATION_NODE_POLL_S`` from ``environ`` (default
    ``os.environ``), or :data:`DEFAULT_POLL_S`.

    Raises
    ------
    ValueError
        Not a number, or outside 0.01–0.5 s (above 0.5 s nothing would be shortened).
    """
    raw = (os.environ if environ is None else environ).get("FEDERATION_NODE_POLL_S", "")
    if raw == "":
        return DEFAULT_POLL_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"FEDERATION_NODE_POLL_S must be a number of seconds, got {raw!r}") from None
    if not 0.01 <= value <= MAX_POLL_S:
        raise ValueError(f"FEDERATION_NODE_POLL_S must lie between 0.01 and {MAX_POLL_S} s, got {value}")
    return value


def shorten_idle_polling(poll_s: float, sleep: Callable[[float], None] = time.sleep) -> types.ModuleType:
    """Cap every ``time.sleep`` of Flower's ``flwr.supernode.start_client_internal`` at ``poll_s`` seconds.

    The module's ``time`` is replaced by a namespace with ``time``'s functions and a capped ``sleep`` (which
    calls ``sleep``); returns the module.

    Raises
    ------
    RuntimeError
        The installed Flower's SuperNode loop has no ``time.sleep(3)`` (another Flower than the pinned one).
    """
    from flwr.supernode import start_client_internal as module

    if "time.sleep(3)" not in inspect.getsource(module.start_client_internal):
        raise RuntimeError("flwr.supernode.start_client_internal no longer idles with time.sleep(3): "
                           "check this Flower version's SuperNode loop before shortening its polling")
    original = module.time if isinstance(module.time, types.ModuleType) else time
    shim = types.SimpleNamespace(**{name: getattr(original, name) for name in dir(original) if not name.startswith("__")})
    shim.sleep = lambda seconds: sleep(min(float(seconds), poll_s))
    module.time = shim
    return module


def main(argv: list[str] | None = None) -> None:
    """Run ``flower-supernode`` with ``argv`` (default ``sys.argv[1:]``) and shortened polling; exit with its status.

    Raises
    ------
    ValueError
        A bad ``FEDERATION_NODE_POLL_S`` (see :func:`poll_interval`).
    """
    poll_s = poll_interval()
    os.environ.setdefault(_SUPEREXEC_POLL_ENV, str(poll_s))
    shorten_idle_polling(poll_s)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *(sys.argv[1:] if argv is None else argv)]
    sys.exit(flower_supernode())


if __name__ == "__main__":
    main()
