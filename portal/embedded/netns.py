"""Run a server in its own network namespace and expose one of its ports on the host's loopback.

Some embedded servers listen on every interface whatever their options say (FalkorDB's Bolt server)
or open ports nobody needs (SeaweedFS's master, volume and filer). Each such server runs in a fresh
network namespace (``unshare(CLONE_NEWNET)``, which needs root or a user namespace), where only its own
``lo`` exists: nothing it binds is reachable from the host. A gate process binds ``127.0.0.1:PORT`` in
the host namespace, then enters the server's namespace (``setns``) to open its upstream connections:
a socket keeps the namespace it was created in, so the listener stays on the host side.

The reverse is needed to run a process (a hospital's federation node, in the three-site test) in a
namespace whose only routes out are named ports: :func:`run_with_relays` listens on ``127.0.0.1:PORT``
inside the new namespace for each relayed port and connects to the same port of the host's loopback,
then runs the program there. Nothing else of the host is reachable from it.

Run as ``python -m portal.embedded.netns [--relay PORT …] -- ARGV…`` to run ``ARGV`` in a new network
namespace with ``lo`` up (and those ports relayed to the host). Imports no Django.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

logger = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000  # <linux/sched.h>
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SIOCGIFFLAGS = 0x8913  # <linux/sockios.h>
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace (a new namespace starts with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def namespace_enter(pid: int) -> None:
    """Move the calling thread into the network namespace of process ``pid``.

    Raises
    ------
    OSError
        When the namespace cannot be opened or entered (the process is gone, or no privilege).
    """
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns into the network namespace of {pid}")
    finally:
        os.close(fd)


def namespaced_argv(argv: list[str]) -> list[str]:
    """Return the argv that execs ``argv`` in a new network namespace (this module's ``main``)."""
    return [sys.executable, "-m", "portal.embedded.netns", "--", *argv]


def port_open_here(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether ``host:port`` accepts a connection in the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def loopback_listener(port: int, host: str = "127.0.0.1") -> socket.socket:
    """Create and bind (not yet listen on) a TCP socket in the calling thread's namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def tcp_relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, *, upstream_port: int) -> None:
    """Copy bytes both ways between a client and ``127.0.0.1:upstream_port`` of the current namespace."""
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        client_writer.close()
        return

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(pump(client_reader, up_writer), pump(up_reader, client_writer))


class NamespacedService:
    """A server process in its own network namespace, restarted when it dies, behind a loopback gate.

    Parameters
    ----------
    argv : list of str
        The server's command line (run in the new namespace, with ``lo`` up).
    listen_port : int
        The port of the gate on the host's ``127.0.0.1``.
    upstream_port : int
        The server's port inside its namespace; the gate is opened once it accepts connections.
    handler : callable
        ``async handler(reader, writer)`` for each client (:func:`tcp_relay` by default); it runs in the
        server's namespace, so its ``asyncio.open_connection("127.0.0.1", …)`` reaches the server.
    log_path : Path
        Where the server's output goes.
    """

    def __init__(self, argv: list[str], *, listen_port: int, upstream_port: int, handler: Handler | None = None,
                 log_path: Path, ready_timeout_s: float = 120.0):
        self.argv = argv
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.handler = handler or (lambda r, w: tcp_relay(r, w, upstream_port=upstream_port))
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None
        self._stopping = False

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(namespaced_argv(self.argv), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited with {self.process.returncode}; see {self.log_path}")
            try:
                namespace_enter(self.process.pid)
                if port_open_here(self.upstream_port):
                    return
            except OSError:
                pass  # the wrapper has not unshared yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.argv[0]} did not open port {self.upstream_port} within {self.ready_timeout_s:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self.process is not None and self.process.poll() is not None and not self._stopping:
                logger.warning("%s exited with %s; restarting it", self.argv[0], self.process.returncode)
                self._spawn()

    async def serve(self) -> None:
        """Bind the gate, start the server, then accept clients until SIGTERM/SIGINT."""
        listener = loopback_listener(self.listen_port)  # created in the host namespace: stays there
        self._spawn()  # leaves this thread in the server's namespace
        server = await asyncio.start_server(self.handler, sock=listener)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        supervisor = asyncio.create_task(self._supervise())
        stopping = asyncio.create_task(stop.wait())
        try:
            # A server that cannot be restarted ends the gate too (non-zero exit: honcho reports it).
            await asyncio.wait([supervisor, stopping], return_when=asyncio.FIRST_COMPLETED)
            if supervisor.done() and not supervisor.cancelled() and supervisor.exception() is not None:
                raise supervisor.exception()
        finally:
            supervisor.cancel()
            stopping.cancel()
            server.close()
            self.stop()


def run_with_relays(argv: list[str], ports: list[int]) -> int:
    """Run ``argv`` in a new network namespace whose only routes out are ``ports`` on the host's loopback.

    For each port a listener is bound to ``127.0.0.1:port`` inside the new namespace; each connection to it
    is copied both ways to ``127.0.0.1:port`` of the namespace this function was called in. The program is
    forked into the new namespace (with ``lo`` up); the relays run in this process, which has moved back
    to the original namespace, until the program exits. SIGTERM and SIGINT are passed on to the program.

    Parameters
    ----------
    argv : list of str
        The program and its arguments (``argv[0]`` a path or a name looked up on ``PATH``).
    ports : list of int
        TCP ports relayed from the new namespace's loopback to the host's (1–65535, each once).

    Returns
    -------
    int
        The program's exit status (128 + the signal number when a signal ended it).

    Raises
    ------
    ValueError
        A port outside 1–65535 or named twice.
    OSError
        No privilege to create or leave a network namespace, or a port that cannot be bound.
    """
    if len(set(ports)) != len(ports) or any(not 0 < p < 65536 for p in ports):
        raise ValueError(f"relayed ports must be distinct and within 1–65535: {ports}")
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        loopback_up()
        listeners = [loopback_listener(port) for port in ports]  # created here: they stay in the new namespace
        pid = os.fork()
        if pid == 0:  # the program: the new namespace, without the relays' sockets
            try:
                for sock in listeners:
                    sock.close()
                _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        _check(_libc.setns(host_ns, CLONE_NEWNET), "setns back into the host's network namespace")
    finally:
        os.close(host_ns)
    return asyncio.run(_relay_until_exit(pid, dict(zip(ports, listeners))))


async def _relay_until_exit(pid: int, listeners: dict[int, socket.socket]) -> int:
    servers = []
    for port, sock in listeners.items():
        sock.listen(128)
        servers.append(await asyncio.start_server(
            lambda r, w, port=port: tcp_relay(r, w, upstream_port=port), sock=sock))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, os.kill, pid, signum)
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code
            await asyncio.sleep(0.2)
    finally:
        for server in servers:
            server.close()


def main(argv: list[str] | None = None) -> None:
    """Run ``argv`` (after ``--``) in a new network namespace with ``lo`` up; it dies with its parent.

    With ``--relay PORT`` (repeatable) the named host ports are relayed into the namespace
    (:func:`run_with_relays`) and this process exits with the program's status; without, it execs the
    program in the namespace.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    ports = []
    while args[:1] == ["--relay"] and len(args) > 1:
        try:
            ports.append(int(args[1]))
        except ValueError:
            raise SystemExit(f"--relay takes a port number, not {args[1]!r}") from None
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise SystemExit("usage: python -m portal.embedded.netns [--relay PORT …] -- PROGRAM [ARGS…]")
    if ports:
        try:
            status = run_with_relays(args, ports)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        raise SystemExit(status)
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    loopback_up()
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
