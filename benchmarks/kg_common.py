"""Shared set-up of the knowledge-graph benchmarks: a private FalkorDB, or the graph of NEO4J_URI."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("YIXIN_SHARED_DATA", REPO.parent / "shared" / "data")) / "zh_medical_kg"
TRIPLES = SHARED / "cmekg_triples.jsonl.gz"
VOCABULARY = SHARED / "qasystem_dict"
REDIS_PORT = int(os.environ.get("KG_BENCH_REDIS_PORT", 26590))
BOLT_PORT = int(os.environ.get("KG_BENCH_BOLT_PORT", 27790))


@contextmanager
def bench_graph():
    """Yield a GraphClient on an empty graph: NEO4J_URI when set, else a FalkorDB started here."""
    from knowledge_graph.graph import graph_client_create, store
    from portal import embedded

    workdir = Path(tempfile.mkdtemp(prefix="kg-bench-"))
    process = None
    try:
        if os.environ.get("NEO4J_URI"):
            uri = os.environ["NEO4J_URI"]
            auth = (os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD", ""))
            database = os.environ.get("NEO4J_DATABASE", "neo4j")
        else:
            # The same graph service as the portal's: FalkorDB in its own namespace behind the Bolt gate.
            process = embedded.EmbeddedProcess(
                embedded.service_command("graph", var_dir=workdir, port=BOLT_PORT, data_dir=workdir / "graph",
                                         persist=False),
                log_path=workdir / "graph-gate.log",
                ready_port=BOLT_PORT,
            ).start()
            credentials = embedded.credentials_load_or_create(workdir)
            uri, auth, database = f"bolt://127.0.0.1:{BOLT_PORT}", (credentials.bolt_user, credentials.bolt_password), "kg"
        client = graph_client_create(uri=uri, user=auth[0], password=auth[1], database=database)
        store.graph_clear(client)
        try:
            yield client
        finally:
            client.close()
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
