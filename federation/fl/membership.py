"""Which hospitals' SuperNodes the coordinator trains with, round by round.

Flower 1.41's SuperLink keeps a SuperNode "online" until it misses two heartbeats
(``HEARTBEAT_PATIENCE`` × ``HEARTBEAT_DEFAULT_INTERVAL`` = 2 × 30 s, ``flwr.common.constant``), and refuses
a restarted SuperNode holding the same key until then. A hospital whose node crashed mid-round therefore
comes back about a minute later under its old node id, with a new ``last_activated_at``. Without waiting,
a coordinator whose rounds are shorter than that would start the next round, or several, without it.
:func:`wait_for_rejoin` lets the round after a loss wait a bounded time for the lost nodes.

Plain Python: no Django.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

__all__ = ["activation_stamps", "ask_identities", "wait_for_nodes", "wait_for_rejoin"]


def wait_for_nodes(grid: Grid, minimum: int, timeout_s: float, *, poll_s: float = 0.5) -> list[int]:
    """Poll the SuperLink until at least ``minimum`` nodes are online or ``timeout_s`` seconds passed.

    Returns the sorted node ids online at the end, which may be fewer than ``minimum``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= minimum or time.monotonic() > deadline:
            return nodes
        time.sleep(poll_s)


def ask_identities(grid: Grid, nodes: list[int], timeout_s: float) -> dict[int, dict]:
    """Ask each node in ``nodes`` for its hospital's client id and label statistics.

    Returns ``{node_id: {"client_id": str, "label_stats": dict}}`` for the nodes that answered within
    ``timeout_s`` seconds without an error; the others are left out.
    """
    messages = [Message(RecordDict({"config": ConfigRecord({})}), message_type="query", dst_node_id=n) for n in nodes]
    identities = {}
    for reply in grid.send_and_receive(messages, timeout=timeout_s):
        if reply.has_error():
            continue
        cfg = reply.content["config"]
        identities[reply.metadata.src_node_id] = {
            "client_id": str(cfg["client-id"]),
            "label_stats": json.loads(str(cfg["label-stats"])),
        }
    return identities


def activation_stamps(grid: Grid) -> dict[int, str]:
    """``{node_id: last_activated_at}`` of every node the SuperLink lists as online now.

    The stamp is the SuperLink's ISO 8601 time of the node's last activation (``NodeInfo.last_activated_at``),
    or ``""`` where the grid does not give it (Flower's in-memory grid).
    """
    return {int(info.node_id): str(getattr(info, "last_activated_at", "") or "") for info in grid.get_nodes()}


def wait_for_rejoin(grid: Grid, lost: Mapping[int, str], grace_s: float, *, poll_s: float = 0.5,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> set[int]:
    """Wait up to ``grace_s`` seconds for the ``lost`` nodes to be activated again; return those back.

    ``lost`` maps each node id that missed the last round to its ``last_activated_at`` then (see
    :func:`activation_stamps`). A node is back when it is online with another activation stamp, which a
    restarted SuperNode gets; where the grid gives no stamps (``""``), when it is online. A node that is
    alive but was only slow keeps its stamp, so it is waited for the whole ``grace_s``, once.

    Raises
    ------
    ValueError
        A negative ``grace_s`` or a non-positive ``poll_s``.
    """
    if grace_s < 0 or not poll_s > 0:
        raise ValueError(f"grace must be ≥ 0 s and the polling interval > 0 s, got {grace_s!r} and {poll_s!r}")
    deadline = clock() + grace_s
    while True:
        stamps = activation_stamps(grid)
        back = {n for n, old in lost.items() if n in stamps and (old == "" or stamps[n] != old)}
        if back == set(lost) or clock() >= deadline:
            return back
        sleep(max(0.0, min(poll_s, deadline - clock())))
