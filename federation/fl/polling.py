"""A Flower ``Grid`` that waits for replies with a short polling interval.

Flower 1.41's deployment-engine grid (``flwr.superlink.grid.http_grid``) checks for replies every 3 s in
``send_and_receive``; a round whose last reply arrives just after a check waits up to 3 s more, and a
SecAgg+ round pays that once per protocol stage. :class:`PollingGrid` wraps the ServerApp's grid and
asks every ``interval_s`` instead (Flower's own ``push_messages``/``pull_messages``; nothing of Flower is
patched). The portal's coordinator uses it; the "flower-fedavg" baseline keeps Flower's grid.

Plain Python: no Django.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

__all__ = ["PollingGrid"]


class PollingGrid(Grid):
    """Delegate to ``grid``, but poll for replies every ``interval_s`` seconds (default 0.1 s).

    Raises
    ------
    ValueError
        A non-positive ``interval_s``.
    """

    def __init__(self, grid: Grid, interval_s: float = 0.1):
        if not interval_s > 0:
            raise ValueError(f"polling interval must be positive, got {interval_s!r}")
        self._grid = grid
        self.interval_s = float(interval_s)

    def set_run(self, run) -> None:
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages`` and collect their replies until all came or ``timeout`` seconds passed
        (None: wait for all), as Flower's ``send_and_receive`` does, checking every ``interval_s``."""
        pending = set(self.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (end is not None and time.monotonic() >= end):
                break
            time.sleep(self.interval_s if end is None else max(0.0, min(self.interval_s, end - time.monotonic())))
        return replies
