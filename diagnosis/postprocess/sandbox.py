"""Run one untrusted post-processing script in a bubblewrap sandbox and validate what it wrote.

The isolation itself is bubblewrap's (Debian package ``bubblewrap``, https://github.com/containers/bubblewrap):
new user, mount, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``), so the script sees no network
interface but a down loopback, no host process, and a root file system made of read-only binds only:

============================  ==========================================================  ============
path in the sandbox           what                                                        access
============================  ==========================================================  ============
``/usr`` (+ ``/bin``, ``/lib``) the system's programs and libraries (the interpreter)       read-only
``/sandbox/site/<package>``   each allowed Python package (numpy, SimpleITK, PIL …)        read-only
``/sandbox/script.py``        the script                                                  read-only
``/in``                       the inputs: ``volume.nii.gz``, ``labelmap.nii.gz``,         read-only
                              ``study.json``
``/out``                      the outputs: ``figures.json`` and ``*.png``                 read-write
``/tmp``                      scratch (a tmpfs of bounded size, discarded)                read-write
``/proc``, ``/dev``           the sandbox's own processes; null, zero, random             —
============================  ==========================================================  ============

Nothing else of the host exists inside: no ``/etc`` (no ``/etc/passwd``), no project source or settings, no
media storage, no other study's files. The environment is emptied (``--clearenv``) and rebuilt from a handful of
harmless variables, so no secret, database or S3 credential reaches the script.

Limits are ``setrlimit(2)`` limits set in the child before ``bwrap`` is executed, inherited by the script:
``RLIMIT_CPU`` (CPU seconds), ``RLIMIT_AS`` (address space), ``RLIMIT_NPROC`` (processes and threads of the
sandbox user), ``RLIMIT_FSIZE`` (largest file written) and ``RLIMIT_CORE`` = 0. When the portal runs as root the
child first drops to an unprivileged sandbox user (``nobody``), because the kernel does not apply
``RLIMIT_NPROC`` to root; a portal running as an ordinary user gets ``processes`` on top of the tasks that user
already runs (the kernel counts them together). The parent adds a wall-clock limit and watches the output folder's total size and file
count while the script runs; on any breach it kills the whole process group (``bwrap`` with
``--die-with-parent`` runs the script as a child of PID 1 of a new PID namespace, so killing it kills every
process the script forked).

Every failure is a :class:`SandboxError` with a stable ``code``: ``sandbox_unavailable``, ``timeout``,
``cpu_limit``, ``memory_limit``, ``process_limit``, ``output_too_large``, ``bad_output`` or ``script_failed``
(the last with the tail of the script's stderr, host paths of the run folder replaced by their sandbox paths).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Plot names become storage keys and URL path segments.
_PLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}\.png")
SCRIPT_PATH = "/sandbox/script.py"
SITE_DIR = "/sandbox/site"
INPUT_DIR = "/in"
OUTPUT_DIR = "/out"
FIGURES_FILE = "figures.json"

# Numerical libraries start one thread per core by default; every thread counts against RLIMIT_NPROC.
_DISTRIBUTION_OF = {"PIL": "pillow"}

_SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONPATH": SITE_DIR,
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
    "SANDBOX_INPUT_DIR": INPUT_DIR,
    "SANDBOX_OUTPUT_DIR": OUTPUT_DIR,
}


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run.

    Attributes
    ----------
    cpu_s : CPU time of the script in seconds (``RLIMIT_CPU``; the SIGKILL of the hard limit, one second later).
    wall_s : wall-clock time in seconds, measured by the parent.
    memory_bytes : address space of each process in bytes (``RLIMIT_AS``).
    processes : processes and threads of the sandbox user (``RLIMIT_NPROC``), bubblewrap's own two included.
    output_bytes : total size of ``/out`` in bytes; also the largest single file (``RLIMIT_FSIZE``).
    output_files : number of entries in ``/out``.
    plots : number of PNG plots kept.
    plot_bytes : size of one PNG plot in bytes.
    figures_bytes : size of ``figures.json`` in bytes.
    scratch_bytes : size of the ``/tmp`` tmpfs in bytes (memory of the host, hence small).
    stderr_chars : characters of the script's stderr kept in an error.
    poll_s : how often the parent checks the wall clock and ``/out``.
    """

    cpu_s: int = 60
    wall_s: float = 120.0
    memory_bytes: int = 2 * 1024**3
    processes: int = 32
    output_bytes: int = 32 * 1024**2
    output_files: int = 64
    plots: int = 16
    plot_bytes: int = 4 * 1024**2
    figures_bytes: int = 1024**2
    scratch_bytes: int = 16 * 1024**2
    stderr_chars: int = 2000
    poll_s: float = 0.05


@dataclass(frozen=True)
class SandboxConfig:
    """How to build the sandbox: the tools, the interpreter, the packages the script may import, the limits.

    Attributes
    ----------
    bwrap : path of the ``bwrap`` executable.
    python : the interpreter run inside; it must live under one of ``system_dirs`` and share the ABI of the
        packages in ``packages`` (same CPython minor version).
    packages : ``(name, host_dir)`` pairs, each bound read-only at ``/sandbox/site/<name>``; see
        :func:`package_binds`.
    system_dirs : host directories bound read-only at the same path (the interpreter and shared libraries).
    sandbox_uid, sandbox_gid : the unprivileged user the run drops to when the portal runs as root.
    limits : :class:`SandboxLimits`.
    """

    bwrap: str = "/usr/bin/bwrap"
    python: str = "/usr/bin/python3"
    packages: tuple[tuple[str, str], ...] = ()
    system_dirs: tuple[str, ...] = ("/usr",)
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    limits: SandboxLimits = field(default_factory=SandboxLimits)


@dataclass(frozen=True)
class SandboxResult:
    """What a successful run returned.

    Attributes
    ----------
    figures : the JSON object the script wrote to ``figures.json``.
    plots : host paths of the validated PNG plots in the output folder, sorted by name.
    duration_s : wall-clock seconds of the run.
    cpu_s : CPU seconds (user + system) of the sandbox's processes (``getrusage(RUSAGE_CHILDREN)``).
    stdout_tail : the last characters of the script's standard output.
    """

    figures: dict
    plots: tuple[Path, ...]
    duration_s: float
    cpu_s: float
    stdout_tail: str


class SandboxError(Exception):
    """A run that was stopped or whose output was refused.

    ``code`` is one of ``sandbox_unavailable``, ``timeout``, ``cpu_limit``, ``memory_limit``, ``process_limit``,
    ``output_too_large``, ``bad_output``, ``script_failed``; ``detail`` is the script's stderr tail (may be
    empty); ``duration_s`` is the wall-clock time until it stopped.
    """

    def __init__(self, code: str, message: str, *, detail: str = "", duration_s: float = 0.0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.duration_s = duration_s


def package_binds(names: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """Return ``(name, host_dir)`` binds for importable top-level packages and their bundled-library folders.

    A wheel's vendored shared libraries live next to the package (``numpy.libs``, ``pillow.libs``); they are
    added when present. Raises ``ValueError`` for a name that is not an installed package directory.
    """
    binds: list[tuple[str, str]] = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"{name!r} is not an installed Python package")
        package_dir = Path(list(spec.submodule_search_locations)[0])
        binds.append((name, str(package_dir)))
        # Pillow's import name (PIL) differs from its distribution name (pillow.libs).
        stems = {name.lower(), _DISTRIBUTION_OF.get(name, name).lower()}
        for libs in sorted(package_dir.parent.glob("*.libs")):
            if libs.name[: -len(".libs")].lower() in stems:
                binds.append((libs.name, str(libs)))
    return tuple(binds)


def bwrap_command(*, config: SandboxConfig, script: Path, inputs_dir: Path, output_dir: Path) -> list[str]:
    """Return the ``bwrap`` argument list that runs ``script`` with ``inputs_dir`` read-only and
    ``output_dir`` writable (host paths), everything else of the host absent."""
    cmd = [config.bwrap, "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--clearenv"]
    for name, value in _SANDBOX_ENV.items():
        cmd += ["--setenv", name, value]
    for directory in config.system_dirs:
        cmd += ["--ro-bind", directory, directory]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}") and "/usr" in config.system_dirs:
            cmd += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    for name, host_dir in config.packages:
        cmd += ["--ro-bind", host_dir, f"{SITE_DIR}/{name}"]
    cmd += ["--ro-bind", str(script), SCRIPT_PATH,
            "--ro-bind", str(inputs_dir), INPUT_DIR,
            "--bind", str(output_dir), OUTPUT_DIR,
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(config.limits.scratch_bytes), "--tmpfs", "/tmp",
            "--remount-ro", "/dev",
            "--remount-ro", "/",
            "--chdir", OUTPUT_DIR,
            config.python, "-S", "-B", SCRIPT_PATH]
    return cmd


def _tasks_of_user(uid: int) -> int:
    """Count the processes and threads the kernel charges to ``uid`` (what ``RLIMIT_NPROC`` compares with)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            pass
    return count


def _limit_child(config: SandboxConfig):
    limits = config.limits
    drop = os.geteuid() == 0
    # RLIMIT_NPROC counts every task of the real user. As root the run drops to the sandbox user, which
    # owns nothing else; a portal running as an ordinary user shares its count with the sandbox, so the
    # limit is what that user runs already plus the sandbox's share.
    processes = limits.processes + (0 if drop else _tasks_of_user(os.getuid()))

    def preexec() -> None:  # runs in the forked child, before exec of bwrap
        if drop:
            os.setgroups([])
            os.setgid(config.sandbox_gid)
            os.setuid(config.sandbox_uid)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return preexec


def _folder_usage(folder: Path) -> tuple[int, int]:
    """Return (bytes, entries) under ``folder``, not following links."""
    total = count = 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            count += 1
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total, count


def _kill_sandbox(proc: subprocess.Popen) -> None:
    """Kill the script (PID 1 of its namespace, so every process in it), then bubblewrap's process group.

    The script goes first: bubblewrap then reaps it before exiting. Killed the other way round, the
    orphaned script would wait as a zombie for the host's init to reap it, still counted against
    ``RLIMIT_NPROC`` of the sandbox user.
    """
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(text: bytes, chars: int, replacements: dict[str, str]) -> str:
    decoded = text.decode("utf-8", "replace")
    for host, inside in replacements.items():
        decoded = decoded.replace(host, inside)
    return decoded[-chars:].strip()


def _classify_failure(returncode: int, stderr: str, limits: SandboxLimits, cpu_s: float) -> tuple[str, str]:
    """Map the exit of a failed script to (code, message); bubblewrap reports a signal as 128 + its number.

    The script runs as PID 1 of its namespace, which ignores SIGXCPU, so the CPU limit shows as the SIGKILL
    of the hard limit one second later; it is told from another SIGKILL by the CPU time used.
    """
    sig = returncode - 128 if returncode > 128 else (-returncode if returncode < 0 else 0)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= limits.cpu_s - 0.05):
        return "cpu_limit", f"The script used more than {limits.cpu_s} s of CPU time."
    if sig == signal.SIGXFSZ or "File too large" in stderr:
        return "output_too_large", f"The script wrote a file larger than {limits.output_bytes} bytes."
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
        return "memory_limit", f"The script needed more than {limits.memory_bytes // 1024**2} MB of memory."
    if "BlockingIOError" in stderr or "Resource temporarily unavailable" in stderr:
        return "process_limit", f"The script started more than {limits.processes} processes or threads."
    if "No space left on device" in stderr:
        return "output_too_large", "The script filled its scratch space."
    return "script_failed", f"The script failed (exit status {returncode})."


def run_script(*, script: Path, inputs_dir: Path, output_dir: Path, config: SandboxConfig) -> SandboxResult:
    """Run ``script`` in the sandbox and return its validated figures and plots.

    Parameters
    ----------
    script : host path of the Python script (readable by the sandbox user).
    inputs_dir : host folder bound read-only at ``/in`` (readable by the sandbox user).
    output_dir : empty host folder bound writable at ``/out``; made writable by the sandbox user here.
    config : :class:`SandboxConfig`.

    Returns
    -------
    SandboxResult

    Raises
    ------
    SandboxError
        On any limit breached, a failed script, or output that breaks the contract (see the module docstring).
    """
    limits = config.limits
    if not Path(config.bwrap).is_file() or not os.access(config.bwrap, os.X_OK):
        raise SandboxError("sandbox_unavailable", f"The sandbox tool {config.bwrap} is not installed.")
    if any(output_dir.iterdir()):
        raise ValueError(f"output folder {output_dir} is not empty")
    if os.geteuid() == 0:
        os.chown(output_dir, config.sandbox_uid, config.sandbox_gid)
    output_dir.chmod(0o700)

    cmd = bwrap_command(config=config, script=script, inputs_dir=inputs_dir, output_dir=output_dir)
    replacements = {str(output_dir): OUTPUT_DIR, str(inputs_dir): INPUT_DIR, str(script): SCRIPT_PATH}
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(os.devnull, "rb") as stdin, _Spool() as out, _Spool() as err:
        # bwrap itself gets an empty environment too: its own process stays inside the PID namespace as
        # PID 1, and /proc/1/environ would otherwise show the portal's variables to the script.
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=out.file, stderr=err.file, close_fds=True, env={},
                                start_new_session=True, preexec_fn=_limit_child(config))
        stopped: tuple[str, str] | None = None
        while True:
            try:
                proc.wait(timeout=limits.poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() - started > limits.wall_s:
                stopped = ("timeout", f"The script ran longer than {limits.wall_s:g} s.")
            else:
                size, count = _folder_usage(output_dir)
                size += os.fstat(out.file.fileno()).st_size + os.fstat(err.file.fileno()).st_size
                if size > limits.output_bytes or count > limits.output_files:
                    stopped = ("output_too_large",
                               f"The script wrote more than {limits.output_bytes} bytes or "
                               f"{limits.output_files} files.")
            if stopped:
                _kill_sandbox(proc)
                break
        duration_s = time.monotonic() - started
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
        stdout_tail = _tail(out.read_tail(limits.stderr_chars * 4), limits.stderr_chars, replacements)
        stderr_tail = _tail(err.read_tail(limits.stderr_chars * 4), limits.stderr_chars, replacements)

    if stopped:
        raise SandboxError(stopped[0], stopped[1], detail=stderr_tail, duration_s=duration_s)
    if proc.returncode != 0:
        if "bwrap:" in stderr_tail and "Traceback" not in stderr_tail:
            raise SandboxError("sandbox_unavailable", "The sandbox could not start.", detail=stderr_tail,
                               duration_s=duration_s)
        code, message = _classify_failure(proc.returncode, stderr_tail, limits, cpu_s)
        raise SandboxError(code, message, detail=stderr_tail, duration_s=duration_s)
    size, count = _folder_usage(output_dir)
    if size > limits.output_bytes or count > limits.output_files:
        raise SandboxError("output_too_large", f"The script wrote more than {limits.output_bytes} bytes or "
                           f"{limits.output_files} files.", duration_s=duration_s)
    figures, plots = validate_output(output_dir, limits)
    return SandboxResult(figures=figures, plots=plots, duration_s=duration_s, cpu_s=cpu_s, stdout_tail=stdout_tail)


def validate_output(output_dir: Path, limits: SandboxLimits) -> tuple[dict, tuple[Path, ...]]:
    """Check the output contract and return (figures, plot paths).

    ``figures.json`` must be a regular file holding one JSON object (at most ``figures_bytes``); plots are the
    regular ``*.png`` files at the top of the folder, each starting with the PNG signature (ISO/IEC 15948 §5.2)
    and at most ``plot_bytes``, at most ``plots`` of them, named with letters, digits, ``.``, ``_`` and ``-``. Links and other files are ignored, never followed.
    Raises :class:`SandboxError` with code ``bad_output``.
    """
    figures_path = output_dir / FIGURES_FILE
    if figures_path.is_symlink() or not figures_path.is_file():
        raise SandboxError("bad_output", f"The script wrote no {FIGURES_FILE}.")
    if figures_path.stat().st_size > limits.figures_bytes:
        raise SandboxError("bad_output", f"{FIGURES_FILE} is larger than {limits.figures_bytes} bytes.")
    try:
        figures = json.loads(figures_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SandboxError("bad_output", f"{FIGURES_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(figures, dict):
        raise SandboxError("bad_output", f"{FIGURES_FILE} must hold a JSON object.")
    plots = sorted(p for p in output_dir.glob("*.png") if not p.is_symlink() and p.is_file())
    if len(plots) > limits.plots:
        raise SandboxError("bad_output", f"The script wrote {len(plots)} plots; at most {limits.plots} are kept.")
    for plot in plots:
        if not _PLOT_NAME.fullmatch(plot.name):
            raise SandboxError("bad_output", f"The plot name {plot.name[:80]!r} is not allowed: use letters, digits, "
                               "'.', '_' and '-' (at most 100 characters).")
        if plot.stat().st_size > limits.plot_bytes:
            raise SandboxError("bad_output", f"The plot {plot.name} is larger than {limits.plot_bytes} bytes.")
        with plot.open("rb") as fh:
            if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise SandboxError("bad_output", f"{plot.name} is not a PNG image.")
    return figures, tuple(plots)


class _Spool:
    """A temporary file for a child's stdout/stderr that keeps only what is read back: the tail."""

    def __enter__(self):
        import tempfile

        self.file = tempfile.TemporaryFile()
        return self

    def read_tail(self, nbytes: int) -> bytes:
        self.file.flush()
        size = self.file.seek(0, os.SEEK_END)
        self.file.seek(max(0, size - nbytes))
        return self.file.read()

    def __exit__(self, *exc) -> None:
        self.file.close()

