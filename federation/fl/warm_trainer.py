"""A hospital's long-lived ("warm") trainer, and the site-side training the ClientApp runs.

Flower 1.41's SuperNode starts a fresh ``flwr-clientapp`` process for every message. Left to itself,
each of those processes imports PyTorch and loads and preprocesses the hospital's cases again before it
trains. The warm trainer is one process per hospital node, started next to the SuperNode
(:meth:`federation.fl.launcher.LocalFederation.start_supernode`, ``manage.py federation_node run``),
that imports PyTorch once, keeps the site's preprocessed cases in memory and serves the ClientApp's
*train*, *evaluate* and *label-statistics* requests. The ClientApp process then stays thin: it hands
the received weights and its config to the trainer and wraps the answer (local DP, the update's hash
and its signature stay in the ClientApp, so the signing key is read by the ClientApp only, as before).

Channel: :mod:`multiprocessing.connection` (a ``Listener`` on a Unix domain socket in the node's own
work folder, mode 0600, inside a 0700 folder; both sides prove they hold the authkey, a random 32-byte
secret in a 0600 file, with the module's HMAC challenge before anything is unpickled). The socket and
authkey paths reach the ClientApp through the node config (``trainer-socket``, ``trainer-authkey``).

The trainer watches its SuperNode's process id and exits within a second of it going away (killed or
stopped), so a crashed site leaves no trainer behind. A ClientApp that cannot reach its trainer (none
configured, not started yet, gone) trains in its own process, exactly as before, and logs that.

Plain Python: no Django.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "TrainerUnavailable", "trainer_paths", "write_authkey", "start_trainer", "trainer_request",
    "site_data", "site_train", "site_evaluate", "site_label_statistics", "serve", "main",
]

SOCKET_NAME = "trainer.sock"
AUTHKEY_NAME = "trainer.key"
FAMILY = "AF_UNIX"
SHORT_PREFIX = "yixin-trainer-"

_DATA_CACHE: dict = {}


class TrainerUnavailable(ConnectionError):
    """The warm trainer could not be reached (no socket, refused, wrong key, or it died mid-request)."""


# --------------------------------------------------------------------------------------------------
# Site-side work (in the trainer, or in the ClientApp's own process as the fallback)
# --------------------------------------------------------------------------------------------------


def site_data(data_dirs: Sequence[Path], patch_size: Sequence[int]):
    """This hospital's cases from all its MSD folders, preprocessed once per process and kept.

    Returns a :class:`federation.fl.data.CaseArrays` (images ``(N, 1, X, Y, Z)``, labels
    ``(N, X, Y, Z)`` at ``patch_size``), the folders' cases concatenated in the given order.
    """
    from .data import CaseArrays, load_cases

    key = (tuple(map(str, data_dirs)), tuple(patch_size))
    if key not in _DATA_CACHE:
        parts = [load_cases(Path(d), patch_size=patch_size) for d in data_dirs]
        if len(parts) == 1:
            _DATA_CACHE[key] = parts[0]
        else:
            import torch

            _DATA_CACHE[key] = CaseArrays(images=torch.cat([p.images for p in parts]),
                                          labels=torch.cat([p.labels for p in parts]))
    return _DATA_CACHE[key]


def _spec(spec: dict):
    from .local import ModelSpec

    raw = dict(spec)
    raw["patch_size"] = tuple(raw["patch_size"])
    return ModelSpec(**raw)


def site_train(data_dirs: Sequence[Path], spec: dict, received: list, *, epochs: int, mu: float, seed: int) -> dict:
    """Train ``received`` (state-dict order) on the site's cases (:func:`federation.fl.local.train_local`).

    ``spec`` holds :class:`federation.fl.local.ModelSpec`'s fields. Returns ``{"arrays": trained weights,
    "loss", "duration_s" (training only, seconds), "dice_before" (Dice of ``received`` on these cases),
    "num_examples"}``.
    """
    from .local import evaluate_dice, train_local

    model_spec = _spec(spec)
    data = site_data(data_dirs, model_spec.patch_size)
    before = evaluate_dice(received, data, model_spec)
    result = train_local(received, data, model_spec, epochs=epochs, mu=mu, seed=seed)
    return {"arrays": [a for a in result.arrays], "loss": float(result.loss), "duration_s": float(result.duration_s),
            "dice_before": float(before["dice"]), "num_examples": len(data)}


def site_evaluate(data_dirs: Sequence[Path], spec: dict, arrays: list) -> dict:
    """Dice of ``arrays`` on the site's cases: ``{"dice", "num_examples"}``."""
    from .local import evaluate_dice

    model_spec = _spec(spec)
    data = site_data(data_dirs, model_spec.patch_size)
    return {"dice": float(evaluate_dice(arrays, data, model_spec)["dice"]), "num_examples": len(data)}


def site_label_statistics(data_dirs: Sequence[Path]) -> dict:
    """The site's label statistics (counts only), :func:`federation.fl.data.merge_label_statistics`."""
    from .data import label_statistics, merge_label_statistics

    return merge_label_statistics([label_statistics(Path(d)) for d in data_dirs])


# --------------------------------------------------------------------------------------------------
# The trainer process
# --------------------------------------------------------------------------------------------------


def trainer_paths(folder: Path) -> tuple[Path, Path]:
    """The socket and authkey paths of the trainer whose files live in ``folder``.

    A Unix socket path is limited to about 107 bytes: when ``folder`` is deeper than that allows, the
    socket goes in a private folder of the system's temporary folder named after ``folder``'s hash
    (``yixin-trainer-<16 hex>``, mode 0700, checked to be this user's by :func:`serve`).
    """
    import hashlib
    import tempfile

    folder = Path(folder).resolve()
    socket_path = folder / SOCKET_NAME
    if len(os.fsencode(str(socket_path))) > 100:
        digest = hashlib.sha256(os.fsencode(str(folder))).hexdigest()[:16]
        socket_path = Path(tempfile.gettempdir()) / f"{SHORT_PREFIX}{digest}" / SOCKET_NAME
    return socket_path, folder / AUTHKEY_NAME


def write_authkey(path: Path) -> bytes:
    """Write a fresh random 32-byte authkey to ``path`` (mode 0600, replacing any earlier one); return it."""
    key = secrets.token_bytes(32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    os.replace(tmp, path)
    return key


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [trainer {os.getpid()}] {text}", file=sys.stderr, flush=True)


class _Server:
    """Answers requests on accepted connections, one request at a time (training takes all threads)."""

    def __init__(self, data_dirs: list[Path]):
        self.data_dirs = data_dirs
        self.lock = threading.Lock()
        self.requests = 0

    def answer(self, request) -> dict:
        if not isinstance(request, dict) or "op" not in request:
            return {"error": "ValueError: a request is a dict with an 'op'"}
        op = request["op"]
        started = time.perf_counter()
        try:
            with self.lock:
                if op == "train":
                    out = site_train(self.data_dirs, request["spec"], list(request["arrays"]),
                                     epochs=int(request["epochs"]), mu=float(request["mu"]), seed=int(request["seed"]))
                elif op == "evaluate":
                    out = site_evaluate(self.data_dirs, request["spec"], list(request["arrays"]))
                elif op == "label-statistics":
                    out = {"stats": site_label_statistics(self.data_dirs)}
                elif op == "status":
                    out = {"pid": os.getpid(), "requests": self.requests, "cached": len(_DATA_CACHE)}
                else:
                    return {"error": f"ValueError: unknown op {op!r}"}
                self.requests += 1
        except Exception as exc:  # the ClientApp reports it as the round's error
            return {"error": f"{type(exc).__name__}: {exc}"}
        _log(f"{op} done in {time.perf_counter() - started:.1f} s (request {self.requests})")
        return {"ok": out}

    def handle(self, conn) -> None:
        try:
            while True:
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    return
                conn.send(self.answer(request))
        finally:
            conn.close()


def serve(socket_path: Path, authkey_path: Path, data_dirs: Sequence[Path], *, threads: int = 1,
          watch_pid: int | None = None, preload_patch_size: Sequence[int] | None = None) -> None:
    """Listen on ``socket_path`` and serve requests until ``watch_pid`` exits (or forever without one).

    The socket (0600, in a 0700 folder) is bound first (so a ClientApp that comes early finds it), then PyTorch is imported and the
    cases are preprocessed at ``preload_patch_size`` in the background; a request waits for that.

    Raises
    ------
    FileNotFoundError
        The authkey file or a data folder is missing.
    ValueError
        An empty authkey file.
    PermissionError
        The socket's folder belongs to another user.
    """
    from multiprocessing.connection import AuthenticationError, Listener

    dirs = [Path(d) for d in data_dirs]
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"data folder {d} is missing")
    authkey = Path(authkey_path).read_bytes()
    if not authkey:
        raise ValueError(f"{authkey_path} is empty")
    socket_path = Path(socket_path)
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if socket_path.parent.stat().st_uid != os.getuid():
        raise PermissionError(f"{socket_path.parent} belongs to another user")
    os.chmod(socket_path.parent, 0o700)
    socket_path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        listener = Listener(str(socket_path), family=FAMILY, authkey=authkey)
    finally:
        os.umask(old_umask)
    os.chmod(socket_path, 0o600)
    server = _Server(dirs)

    def preload():
        with server.lock:
            import torch

            torch.set_num_threads(max(1, int(threads)))
            if preload_patch_size:
                data = site_data(dirs, tuple(preload_patch_size))
                _log(f"ready: {len(data)} cases preprocessed")

    threading.Thread(target=preload, daemon=True).start()

    if watch_pid:
        def watch():
            while _alive(watch_pid):
                time.sleep(0.5)
            _log("SuperNode gone: exiting")
            socket_path.unlink(missing_ok=True)
            if socket_path.parent.name.startswith(SHORT_PREFIX):
                try:
                    socket_path.parent.rmdir()
                except OSError:
                    pass
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()

    _log(f"listening ({len(dirs)} data folder(s))")
    while True:
        try:
            conn = listener.accept()
        except AuthenticationError:
            _log("refused a connection without the right authkey")
            continue
        except OSError as exc:
            _log(f"accept failed: {type(exc).__name__}")
            continue
        threading.Thread(target=server.handle, args=(conn,), daemon=True).start()


def start_trainer(folder: Path, data_dirs: Sequence[Path], *, threads: int, watch_pid: int, env: dict | None = None,
                  log_path: Path | None = None, preload_patch_size: Sequence[int] | None = (48, 64, 48)):
    """Start a warm trainer process for the SuperNode ``watch_pid``; its socket and a fresh authkey go in ``folder``.

    Returns the ``subprocess.Popen`` (in a session of its own, like Flower's processes). It exits by
    itself when ``watch_pid`` exits. ``env`` must let ``python -m federation.fl.warm_trainer`` import
    this package (``PYTHONPATH``).
    """
    import subprocess

    socket_path, authkey_path = trainer_paths(folder)
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    write_authkey(authkey_path)
    argv = [sys.executable, "-m", "federation.fl.warm_trainer", "--socket", str(socket_path),
            "--authkey-file", str(authkey_path), "--threads", str(int(threads)), "--watch-pid", str(int(watch_pid))]
    if preload_patch_size:
        argv += ["--preload-patch-size", ",".join(map(str, preload_patch_size))]
    for d in data_dirs:
        argv += ["--data-dir", str(d)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        if log_path:
            log.close()


# --------------------------------------------------------------------------------------------------
# The ClientApp's side
# --------------------------------------------------------------------------------------------------


def trainer_request(socket_path: Path, authkey_path: Path, request: dict):
    """Send one request to the warm trainer and return its answer's payload.

    Raises
    ------
    TrainerUnavailable
        No socket, unreadable authkey, connection refused or its authkey rejected, or the trainer went
        away before answering (the caller falls back to its own process).
    RuntimeError
        The trainer answered with an error (bad input, a failure while training): not retried.
    """
    from multiprocessing.connection import AuthenticationError, Client

    socket_path = Path(socket_path)
    if not socket_path.exists():
        raise TrainerUnavailable("no trainer socket")
    try:
        authkey = Path(authkey_path).read_bytes()
        conn = Client(str(socket_path), family=FAMILY, authkey=authkey)
    except (OSError, AuthenticationError, EOFError) as exc:
        raise TrainerUnavailable(f"cannot connect: {type(exc).__name__}") from exc
    try:
        conn.send(request)
        answer = conn.recv()
    except (OSError, EOFError) as exc:
        raise TrainerUnavailable(f"trainer went away: {type(exc).__name__}") from exc
    finally:
        conn.close()
    if "error" in answer:
        raise RuntimeError(f"the site's trainer failed: {answer['error']}")
    return answer["ok"]


def main(argv: list[str] | None = None) -> None:
    """``python -m federation.fl.warm_trainer --socket S --authkey-file K --data-dir D [...]``."""
    parser = argparse.ArgumentParser(description="A hospital's warm trainer (serves its ClientApps).")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--authkey-file", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, action="append", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--watch-pid", type=int, default=None)
    parser.add_argument("--preload-patch-size", default="", help="X,Y,Z: preprocess the cases at this size at start")
    args = parser.parse_args(argv)
    patch = tuple(int(v) for v in args.preload_patch_size.split(",")) if args.preload_patch_size else None
    if patch is not None and len(patch) != 3:
        parser.error("--preload-patch-size takes three integers X,Y,Z")
    serve(args.socket, args.authkey_file, args.data_dir, threads=args.threads, watch_pid=args.watch_pid,
          preload_patch_size=patch)


if __name__ == "__main__":
    main()
