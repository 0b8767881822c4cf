"""The graph client of this process, built from settings: the one place that reads ``NEO4J_*``.

:mod:`knowledge_graph.graph` is plain Python (it takes a URI and credentials, never settings); this
module is the factory above it that both :mod:`knowledge_graph.services` and
:mod:`knowledge_graph.selectors` use. Settings (``NEO4J_URI``, ``NEO4J_USER``, ``NEO4J_PASSWORD``,
``NEO4J_DATABASE``) are read when a client is first asked for, never at import time.
"""

from __future__ import annotations

import threading

from django.conf import settings

from .graph import GraphClient, graph_client_create

_lock = threading.RLock()
_clients: dict[tuple[str, str, str], GraphClient] = {}


def graph_key() -> tuple[str, str, str]:
    """Return what identifies the configured graph: ``(NEO4J_URI, NEO4J_USER, NEO4J_DATABASE)``."""
    return (settings.NEO4J_URI, settings.NEO4J_USER, settings.NEO4J_DATABASE)


def graph_client() -> GraphClient:
    """Return this process's client for the configured graph (created on first use)."""
    key = graph_key()
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = graph_client_create(
                uri=settings.NEO4J_URI,
                user=settings.NEO4J_USER,
                password=settings.NEO4J_PASSWORD,
                database=settings.NEO4J_DATABASE,
            )
            _clients[key] = client
        return client


def graph_clients_close() -> None:
    """Close every client of this process and forget them (the next call to :func:`graph_client` reconnects).

    :func:`knowledge_graph.services.graph_clients_close` also drops the QA engines built on them;
    tests and management commands call that one.
    """
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
