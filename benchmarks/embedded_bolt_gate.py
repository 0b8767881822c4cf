"""What the Bolt gate costs: query latency through the gate against FalkorDB directly, in the same run.

Starts the embedded graph service exactly as the Procfile does (``python -m portal.embedded graph``:
FalkorDB in its own network namespace behind the gate), runs the same small parameterised read
``QUERIES`` times through the gate with the generated credentials, then enters the graph's namespace
and runs it against FalkorDB's own Bolt port (the baseline), and prints the median and p95 per query
and their ratio. Needs root (network namespaces), like the embedded stack.

Run: ``python benchmarks/embedded_bolt_gate.py`` (``KG_BENCH_BOLT_PORT`` picks the gate's port).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import kg_common  # noqa: F401 - puts the repository on sys.path

from knowledge_graph.graph import graph_client_create
from portal import embedded
from portal.embedded.netns import namespace_enter

QUERIES = 500
BOLT_PORT = int(os.environ.get("KG_BENCH_BOLT_PORT", 27790))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _timings(uri: str, user: str, password: str) -> list[float]:
    client = graph_client_create(uri=uri, user=user, password=password, database="bench")
    try:
        client.read("RETURN $text AS text", {"text": "预热"})
        timings = []
        for i in range(QUERIES):
            start = time.perf_counter()
            client.read("RETURN $text AS text, $i AS i", {"text": "医心相印", "i": i})
            timings.append(time.perf_counter() - start)
        return timings
    finally:
        client.close()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    process = embedded.EmbeddedProcess(
        embedded.service_command("graph", var_dir=workdir, port=BOLT_PORT, data_dir=workdir / "graph", persist=False),
        log_path=workdir / "gate.log", ready_port=BOLT_PORT,
    ).start()
    try:
        credentials = embedded.credentials_load_or_create(workdir)
        gate = _timings(f"bolt://127.0.0.1:{BOLT_PORT}", credentials.bolt_user, credentials.bolt_password)
        server = Path(f"/proc/{process.process.pid}/task/{process.process.pid}/children").read_text().split()[-1]
        namespace_enter(int(server))
        direct = _timings(f"bolt://127.0.0.1:{embedded.GRAPH_BOLT_PORT}", "bench", "")
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for name, values in (("direct (baseline)", direct), ("through the gate", gate)):
        print(f"{name:18s} median {statistics.median(values) * 1e3:.2f} ms  p95 {quantile(values, 0.95) * 1e3:.2f} ms")
    print(f"gate / direct: median {statistics.median(gate) / statistics.median(direct):.2f}x, "
          f"p95 {quantile(gate, 0.95) / quantile(direct, 0.95):.2f}x over {QUERIES} queries")


if __name__ == "__main__":
    main()
