"""The embedded services are reachable from this machine only, and only with their generated credentials.

A stack of its own (broker Redis, graph, SeaweedFS) is started for this module, with fresh credentials
in a temporary ``YIXIN_VAR_DIR`` and ports 5 above the session's, exactly as the Procfile starts it
(``python -m portal.embedded NAME``). Listening sockets are read from ``/proc`` (the sockets each
process holds, looked up in this, the host's, network namespace), not from the services' options.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from portal import embedded
from portal.embedded import packstream
from portal.embedded.credentials import credentials_load_or_create
from tests.conftest import REPO_DIR, embedded_service_start

PORT_OFFSET = 5
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _listeners(table_dir: str) -> list[tuple[str, int, int]]:
    """Return ``(address hex, port, inode)`` of every listening TCP socket in a ``/proc/…/net`` table."""
    rows = []
    for name in ("tcp", "tcp6"):
        for line in Path(table_dir, name).read_text().splitlines()[1:]:
            parts = line.split()
            address, port = parts[1].split(":")
            if parts[3] == LISTEN:
                rows.append((address, int(port, 16), int(parts[9])))
    return rows


def _net_namespace(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from django.conf import settings

    var_dir = tmp_path_factory.mktemp("locked-var")
    workdir = tmp_path_factory.mktemp("locked-data")
    ports = {
        "redis": settings.EMBEDDED_REDIS_PORT + PORT_OFFSET,
        "graph": settings.EMBEDDED_BOLT_PORT + PORT_OFFSET,
        "s3": settings.EMBEDDED_S3_PORT + PORT_OFFSET,
    }
    processes = {}
    try:
        for name, port in ports.items():
            processes[name] = embedded_service_start(name, port=port, var_dir=var_dir, workdir=workdir)
        credentials = credentials_load_or_create(var_dir)
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        embedded.wait_for_s3(endpoint, access_key=credentials.s3_access_key, secret_key=credentials.s3_secret_key,
                             timeout_s=90)
        yield {"ports": ports, "processes": processes, "credentials": credentials, "var_dir": var_dir,
               "endpoint": endpoint}
    finally:
        for process in reversed(list(processes.values())):
            process.stop()


def _bolt_driver(stack, user: str, password: str):
    from neo4j import GraphDatabase

    return GraphDatabase.driver(f"bolt://127.0.0.1:{stack['ports']['graph']}", auth=(user, password),
                                connection_acquisition_timeout=10, connection_timeout=5)


def _s3_client(stack, *, signed: bool = True):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    if not signed:
        return boto3.client("s3", endpoint_url=stack["endpoint"], region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
    return boto3.client("s3", endpoint_url=stack["endpoint"], region_name="us-east-1",
                        aws_access_key_id=stack["credentials"].s3_access_key,
                        aws_secret_access_key=stack["credentials"].s3_secret_key)


# --- listeners --------------------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["redis", "graph", "s3"])
def test_service_listens_on_loopback_only_in_the_host_namespace(stack, service):
    root = stack["processes"][service].process.pid
    tree = [root, *_children(root)]
    inodes = set().union(*(_socket_inodes(pid) for pid in tree))
    host_listeners = [(address, port) for address, port, inode in _listeners("/proc/self/net") if inode in inodes]

    assert (("0100007F", stack["ports"][service])) in host_listeners
    assert all(address == "0100007F" for address, _ in host_listeners), host_listeners


@pytest.mark.parametrize("service", ["graph", "s3"])
def test_server_behind_a_gate_runs_in_its_own_namespace_and_opens_nothing_on_the_host(stack, service):
    gate = stack["processes"][service].process.pid
    servers = _children(gate)
    host_inodes = {inode for _, _, inode in _listeners("/proc/self/net")}

    assert servers
    for pid in servers:
        assert _net_namespace(pid) != _net_namespace("self")
        assert not _socket_inodes(pid) & host_inodes
    # Inside, FalkorDB's Bolt port is on every interface (its own choice): only the namespace hides it.
    if service == "graph":
        inside = _listeners(f"/proc/{servers[-1]}/net")
        assert any(port == embedded.GRAPH_BOLT_PORT for _, port, _ in inside)


# --- Redis ------------------------------------------------------------------------------------------

def test_broker_redis_refuses_clients_without_the_password(stack):
    import redis

    port = stack["ports"]["redis"]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, password="wrong", socket_timeout=5).ping()

    assert redis.Redis(port=port, password=stack["credentials"].redis_password, socket_timeout=5).ping()


def test_graph_redis_inside_its_namespace_requires_its_password(stack):
    server = _children(stack["processes"]["graph"].process.pid)[-1]
    probe = (
        "import sys, redis; from portal.embedded.netns import namespace_enter; namespace_enter(int(sys.argv[1]));\n"
        "try:\n redis.Redis(port=int(sys.argv[2]), socket_timeout=5).ping(); print('open')\n"
        "except redis.exceptions.AuthenticationError: print('refused')\n"
        "print(redis.Redis(port=int(sys.argv[2]), password=sys.argv[3], socket_timeout=5).ping())"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(server), str(embedded.GRAPH_REDIS_PORT),
                             stack["credentials"].graph_redis_password],
                            cwd=REPO_DIR, capture_output=True, text=True, timeout=60)

    assert result.stdout.split() == ["refused", "True"], result.stderr


# --- Bolt -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user, password", [("yixin", ""), ("falkordb", ""), ("yixin", "wrong"), ("", "")])
def test_bolt_gate_refuses_wrong_credentials(stack, user, password):
    from neo4j.exceptions import AuthError

    driver = _bolt_driver(stack, user, password)
    try:
        with pytest.raises(AuthError):
            driver.verify_connectivity()
    finally:
        driver.close()


def test_bolt_gate_lets_the_right_credentials_query_the_graph(stack):
    credentials = stack["credentials"]
    driver = _bolt_driver(stack, credentials.bolt_user, credentials.bolt_password)
    try:
        with driver.session() as session:
            assert session.run("RETURN $text AS text", text="医心相印").single()["text"] == "医心相印"
    finally:
        driver.close()


def _raw_bolt(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(bytes.fromhex("6060B017") + bytes([0, 0, 7, 5]) + bytes(12))
        assert sock.recv(4) == bytes([0, 0, 7, 5])
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received


def test_bolt_gate_refuses_a_query_before_authentication_and_closes(stack):
    run = packstream.chunk(packstream.pack(packstream.Structure(packstream.RUN, ("MATCH (n) DETACH DELETE n", {}, {}))))

    answer = _raw_bolt(stack["ports"]["graph"], run)

    assert answer[2:4] == bytes([0xB1, packstream.FAILURE])
    assert b"Neo.ClientError.Security.Unauthorized" in answer


def _message(tag: int, *fields) -> bytes:
    return packstream.chunk(packstream.pack(packstream.Structure(tag, fields)))


def _logon(stack, password: str) -> bytes:
    return _message(packstream.LOGON, {"scheme": "basic", "principal": stack["credentials"].bolt_user,
                                       "credentials": password})


def test_bolt_gate_refuses_an_oversized_message_before_authentication(stack):
    huge = packstream.chunk(b"\xB1\x01" + packstream.pack({"user_agent": "x" * 70_000}))

    answer = _raw_bolt(stack["ports"]["graph"], _message(packstream.HELLO, {"user_agent": "t/1"}) + huge)

    assert answer.count(bytes([0xB1, packstream.SUCCESS])) == 1  # the first HELLO, relayed to FalkorDB
    assert b"Neo.ClientError.Security.Unauthorized" in answer


def test_bolt_gate_refuses_logoff_and_closes_instead_of_running_anything_after_it(stack):
    payload = (_message(packstream.HELLO, {"user_agent": "t/1"}) + _logon(stack, stack["credentials"].bolt_password)
               + _message(packstream.LOGOFF) + _message(packstream.RUN, "RETURN 1", {}, {}))

    answer = _raw_bolt(stack["ports"]["graph"], payload)

    assert answer.count(bytes([0xB1, packstream.SUCCESS])) == 2  # HELLO and LOGON
    assert b"re-authentication is not supported" in answer
    assert bytes([0xB1, packstream.RECORD]) not in answer  # the RUN never reached FalkorDB


def test_bolt_gate_refuses_a_message_that_is_not_a_structure(stack):
    answer = _raw_bolt(stack["ports"]["graph"], packstream.chunk(packstream.pack("HELLO")))

    assert b"Neo.ClientError.Request.Invalid" in answer


def test_bolt_gate_refuses_a_malformed_message(stack):
    answer = _raw_bolt(stack["ports"]["graph"], packstream.chunk(b"\xB1\x01\xC7"))  # 0xC7 is no PackStream marker

    assert b"Neo.ClientError.Request.Invalid" in answer


def test_bolt_gate_refuses_an_oversized_parameter_and_the_graph_stays_up(stack):
    from neo4j.exceptions import ClientError

    credentials = stack["credentials"]
    server_before = _children(stack["processes"]["graph"].process.pid)
    driver = _bolt_driver(stack, credentials.bolt_user, credentials.bolt_password)
    try:
        with driver.session() as session:
            with pytest.raises(ClientError) as refused:
                session.run("RETURN $p AS p", p="x" * 5000).consume()
            assert refused.value.code == "Neo.ClientError.Request.Invalid"
        with driver.session() as session:
            assert session.run("RETURN 1 AS one").single()["one"] == 1
    finally:
        driver.close()

    assert _children(stack["processes"]["graph"].process.pid) == server_before  # not crashed and restarted


def test_a_graph_crash_leaves_the_broker_up_and_the_gate_restarts_the_graph(stack):
    import redis
    from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired

    gate = stack["processes"]["graph"].process.pid
    crashed = _children(gate)[-1]
    os.kill(crashed, signal.SIGKILL)

    broker = redis.Redis(port=stack["ports"]["redis"], password=stack["credentials"].redis_password, socket_timeout=5)
    assert broker.ping()
    credentials = stack["credentials"]
    deadline = time.monotonic() + 60
    answer = None
    while answer is None and time.monotonic() < deadline:
        driver = _bolt_driver(stack, credentials.bolt_user, credentials.bolt_password)
        try:
            with driver.session() as session:
                answer = session.run("RETURN 2 AS two").single()["two"]
        except (ServiceUnavailable, SessionExpired, Neo4jError, OSError):
            time.sleep(0.5)
        finally:
            driver.close()
    assert answer == 2
    assert crashed not in _children(gate)


# --- S3 ---------------------------------------------------------------------------------------------

def test_s3_refuses_anonymous_requests_and_serves_the_key_pair(stack):
    from botocore.exceptions import ClientError

    keyed = _s3_client(stack)
    keyed.create_bucket(Bucket="locked-test")
    keyed.put_object(Bucket="locked-test", Key="a.txt", Body=b"kept")
    anonymous = _s3_client(stack, signed=False)

    for call in (
        lambda: anonymous.list_buckets(),
        lambda: anonymous.list_objects_v2(Bucket="locked-test"),
        lambda: anonymous.get_object(Bucket="locked-test", Key="a.txt"),
        lambda: anonymous.put_object(Bucket="locked-test", Key="b.txt", Body=b"x"),
        lambda: anonymous.delete_object(Bucket="locked-test", Key="a.txt"),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(f"{stack['endpoint']}/locked-test/a.txt", timeout=10)
    assert plain.value.code == 403

    assert keyed.get_object(Bucket="locked-test", Key="a.txt")["Body"].read() == b"kept"
    assert [o["Key"] for o in keyed.list_objects_v2(Bucket="locked-test")["Contents"]] == ["a.txt"]


def _manage(stack, *args: str, s3_port: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "DJANGO_SETTINGS_MODULE"))}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(stack["var_dir"]),
               YIXIN_S3_PORT=str(s3_port), S3_BUCKET="yixin-startup")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_DIR, env=env, capture_output=True,
                          text=True, timeout=120)


def test_start_up_creates_the_bucket_without_the_demo(stack):
    result = _manage(stack, "ensure_bucket", "--wait", "60", s3_port=stack["ports"]["s3"])

    assert result.returncode == 0, result.stderr
    _s3_client(stack).head_bucket(Bucket="yixin-startup")


def test_start_up_names_the_endpoint_in_one_line_when_the_store_is_unreachable(stack):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens once the socket is closed

    result = _manage(stack, "ensure_bucket", "--wait", "1", s3_port=closed_port)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, result.stderr
    assert f"http://127.0.0.1:{closed_port}" in error_lines[0] and "unreachable" in error_lines[0]


def test_start_up_names_the_endpoint_when_the_store_refuses_the_keys(stack, tmp_path):
    wrong_var = tmp_path / "other-var"
    credentials_load_or_create(wrong_var)  # another stack's keys
    env_stack = {**stack, "var_dir": wrong_var}

    result = _manage(env_stack, "ensure_bucket", "--wait", "5", s3_port=stack["ports"]["s3"])

    assert result.returncode != 0
    assert stack["endpoint"] in result.stderr and "refused" in result.stderr
