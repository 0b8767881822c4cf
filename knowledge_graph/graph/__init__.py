"""Bolt access to the knowledge graph (Neo4j 5 or the embedded FalkorDB). Imports no Django."""

from .client import (
    FALKORDB,
    NEO4J,
    GraphClient,
    GraphError,
    ParameterTooLarge,
    WriteCounters,
    graph_client_create,
)

__all__ = [
    "FALKORDB",
    "NEO4J",
    "GraphClient",
    "GraphError",
    "ParameterTooLarge",
    "WriteCounters",
    "graph_client_create",
]
