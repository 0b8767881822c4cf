"""Run several daphne processes on one listening socket (the portal's web and websocket server).

One daphne process runs every websocket's Python (JSON, the ORM, the channel layer) on one core; the
follow-up chat at hospital scale needs more. This launcher binds the socket once, then starts
``--processes`` daphne processes that all accept on it (``daphne --fd``): the kernel hands each new
connection to one of them, and the Redis channel layer carries a conversation's events between
processes, so two members of one chat may sit on different processes. The launcher stays in the
foreground, forwards SIGTERM/SIGINT to the processes and stops all of them (and exits with the code of
the first one that ended) when any one ends, so the process manager (honcho, systemd) sees one
service and restarts it whole.

Run: ``python -m portal.serve --processes 2 -b 127.0.0.1 -p 8000 portal.asgi:application``; arguments
after the application (or unknown options) are passed to each daphne. ``-p 0`` binds a free port; the
line ``listening on HOST:PORT`` on stdout names it. Imports no Django.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def bind_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """Return a listening TCP socket on ``host``:``port`` that child processes can inherit.

    Raises
    ------
    OSError
        When the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def daphne_command(fd: int, application: str, extra: list[str]) -> list[str]:
    """Return the command line of one daphne process accepting on the inherited socket ``fd``."""
    return [sys.executable, "-m", "daphne", "--fd", str(fd), *extra, application]


def serve(*, host: str, port: int, processes: int, application: str, extra: list[str]) -> int:
    """Bind, start ``processes`` daphne processes, wait until one ends or a signal comes; return the
    exit code (that of the first process to end, 0 after SIGTERM/SIGINT, 2 when the address cannot be
    bound).

    Raises
    ------
    ValueError
        When ``processes`` is below 1.
    """
    if processes < 1:
        raise ValueError("processes must be at least 1")
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    bound_host, bound_port = sock.getsockname()[:2]
    children = [subprocess.Popen(daphne_command(sock.fileno(), application, extra), pass_fds=(sock.fileno(),))
                for _ in range(processes)]
    print(f"listening on {bound_host}:{bound_port} with {processes} daphne process(es): "
          + " ".join(str(c.pid) for c in children), flush=True)
    stopping = {"signal": None}

    def stop(signum, _frame):
        stopping["signal"] = signum

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while stopping["signal"] is None:
            ended = [c for c in children if c.poll() is not None]
            if ended:
                code = ended[0].returncode or 1
                print(f"daphne process {ended[0].pid} ended ({ended[0].returncode}): stopping the others",
                      file=sys.stderr, flush=True)
                break
            time.sleep(0.2)
    finally:
        sock.close()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=int(os.environ.get("WEB_PROCESSES", "1")),
                        help="daphne processes on the socket (default: WEB_PROCESSES or 1)")
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("application", help="the ASGI application, e.g. portal.asgi:application")
    args, extra = parser.parse_known_args(argv)
    return serve(host=args.bind, port=args.port, processes=args.processes, application=args.application,
                 extra=extra)


if __name__ == "__main__":
    sys.exit(main())
