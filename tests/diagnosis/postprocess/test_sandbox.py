"""Hostile and benign scripts in the bubblewrap sandbox (plain Python, no Django).

Each hostile script must be stopped with the right error code while the test process (the "portal") stays
unharmed: its files intact, no connection reaching its listening socket, its secrets not in any output, no
process of the sandbox left behind. Limits are scaled down so the suite runs in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from diagnosis.postprocess.inputs import write_inputs
from diagnosis.postprocess.sandbox import (
    SandboxConfig,
    SandboxError,
    SandboxLimits,
    bwrap_command,
    package_binds,
    run_script,
)
from tests.conftest import shared_data

SANDBOX_PYTHON = f"/usr/bin/python3.{sys.version_info.minor}"
pytestmark = [
    pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(),
                       reason="bubblewrap is not installed (apt-get install bubblewrap)"),
    pytest.mark.skipif(not Path(SANDBOX_PYTHON).exists(),
                       reason=f"{SANDBOX_PYTHON} (the sandbox's interpreter, Debian's python3) is not installed"),
]

LIMITS = SandboxLimits(cpu_s=2, wall_s=3.0, memory_bytes=512 * 1024**2, processes=16,
                       output_bytes=1024**2, output_files=16, plots=4, plot_bytes=256 * 1024,
                       scratch_bytes=1024**2)
SECRET = "s3cr3t-db-password-for-the-test"


def _config(**limits) -> SandboxConfig:
    return SandboxConfig(python=SANDBOX_PYTHON,
                         packages=package_binds(["numpy", "SimpleITK", "PIL"]),
                         limits=SandboxLimits(**{**LIMITS.__dict__, **limits}))


@pytest.fixture
def run_dir():
    """A run folder the sandbox user can traverse: script, inputs (one small file) and an empty output."""
    root = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    root.chmod(0o711)
    (root / "in").mkdir(mode=0o755)
    (root / "out").mkdir()
    (root / "in" / "study.json").write_text(json.dumps({"spacing_mm": [1, 1, 1]}))
    (root / "in" / "study.json").chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def other_study(tmp_path):
    """Another study's file on the host, with content the script must never see or change."""
    folder = Path(tempfile.mkdtemp(prefix="other-study-"))
    folder.chmod(0o755)
    path = folder / "volume.nii.gz"
    path.write_text("OTHER-STUDY-CONTENT")
    path.chmod(0o666)  # even world-writable: the sandbox must not reach it at all
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def _run(run_dir: Path, code: str, **limits):
    script = run_dir / "script.py"
    script.write_text(textwrap.dedent(code))
    script.chmod(0o644)
    return run_script(script=script, inputs_dir=run_dir / "in", output_dir=run_dir / "out",
                      config=_config(**limits))


def _stopped(run_dir: Path, code: str, **limits) -> SandboxError:
    with pytest.raises(SandboxError) as info:
        _run(run_dir, code, **limits)
    return info.value


def _output_text(run_dir: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in (run_dir / "out").rglob("*")
                   if p.is_file() and not p.is_symlink())


def _sandbox_processes() -> list[int]:
    """Processes of the sandbox user left behind (only meaningful when the tests run as root, which drops
    to ``nobody``; as an ordinary user the sandbox shares the test's own uid)."""
    if os.geteuid() != 0:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == 65534:
                    found.append(int(entry))
            except FileNotFoundError:
                pass
    return found


# --- benign -------------------------------------------------------------------------------------------

def test_benign_script_returns_figures_and_a_png(run_dir):
    result = _run(run_dir, """
        import json, numpy as np, PIL.Image
        study = json.load(open("/in/study.json"))
        json.dump({"spacing": study["spacing_mm"], "sum": int(np.arange(10).sum())}, open("/out/figures.json", "w"))
        PIL.Image.fromarray(np.zeros((8, 8), np.uint8)).save("/out/plot.png")
    """)
    assert result.figures == {"spacing": [1, 1, 1], "sum": 45}
    assert [p.name for p in result.plots] == ["plot.png"]


def test_label_volumes_and_histogram_on_a_real_ct(run_dir):
    """A cropped real CT with a thresholded label map: the script's mL and histogram match numpy's."""
    import SimpleITK as sitk

    from annotation.imaging.volume import volume_from_sitk

    image = sitk.ReadImage(str(shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")))
    volume = volume_from_sitk(image)
    array = volume.array[:40]
    from annotation.imaging import Geometry, Volume

    geometry = Geometry(shape=array.shape, spacing_mm=volume.geometry.spacing_mm,
                        origin_mm=volume.geometry.origin_mm, direction=volume.geometry.direction)
    cropped = Volume(array=array, geometry=geometry)
    labels = np.zeros(array.shape, np.uint8)
    labels[array > 200] = 1     # bone
    labels[array < -500] = 2    # air and lung
    (run_dir / "in" / "study.json").unlink()
    write_inputs(run_dir / "in", volume=cropped, label_map=labels, label_names={1: "bone", 2: "air"},
                 findings=[{"id": 7, "kind": "nodule"}])

    result = _run(run_dir, """
        import json, numpy as np, SimpleITK as sitk, PIL.Image
        study = json.load(open("/in/study.json"))
        ct = sitk.GetArrayFromImage(sitk.ReadImage("/in/volume.nii.gz"))
        lab = sitk.GetArrayFromImage(sitk.ReadImage("/in/labelmap.nii.gz"))
        voxel_ml = float(np.prod(study["spacing_mm"])) / 1000.0
        volumes = {name: float((lab == int(k)).sum()) * voxel_ml for k, name in study["labels"].items()}
        counts, edges = np.histogram(ct, bins=32, range=(-1024, 1024))
        img = (255 * counts / counts.max()).astype(np.uint8)
        plot = np.zeros((64, 32), np.uint8)
        for i, h in enumerate(img):
            plot[64 - h // 4:, i] = 255
        PIL.Image.fromarray(plot).save("/out/histogram.png")
        json.dump({"volume_ml": volumes, "histogram": counts.tolist(), "findings": len(study["findings"])},
                  open("/out/figures.json", "w"))
    """, wall_s=30.0, cpu_s=30, memory_bytes=2 * 1024**3)

    voxel_ml = float(np.prod(volume.geometry.spacing_mm)) / 1000.0
    assert result.figures["volume_ml"]["bone"] == pytest.approx((labels == 1).sum() * voxel_ml, rel=1e-9)
    assert result.figures["volume_ml"]["air"] == pytest.approx((labels == 2).sum() * voxel_ml, rel=1e-9)
    assert result.figures["volume_ml"]["bone"] > 1.0
    expected, _ = np.histogram(array, bins=32, range=(-1024, 1024))
    assert result.figures["histogram"] == expected.tolist()
    assert result.figures["findings"] == 1
    assert result.plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- hostile: reaching out ------------------------------------------------------------------------------

def test_network_connection_is_refused_and_never_reaches_the_host(run_dir):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        error = _stopped(run_dir, f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=1)
        """)
        assert error.code == "script_failed"
        assert "Network is unreachable" in error.detail or "Connection refused" in error.detail
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_dns_and_outside_network_are_unreachable(run_dir):
    error = _stopped(run_dir, """
        import socket
        socket.create_connection(("1.1.1.1", 53), timeout=1)
    """)
    assert error.code == "script_failed"
    assert "Network is unreachable" in error.detail


def test_etc_passwd_does_not_exist_inside(run_dir):
    error = _stopped(run_dir, """print(open("/etc/passwd").read())""")
    assert error.code == "script_failed"
    assert "FileNotFoundError" in error.detail
    assert "root:" not in error.detail


def test_settings_source_and_environment_secrets_are_absent(run_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgres://portal:{SECRET}@db/portal")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    settings_file = Path(__file__).resolve().parents[3] / "portal" / "settings" / "base.py"
    assert settings_file.exists()
    result = _run(run_dir, f"""
        import json, os
        seen = {{"env": dict(os.environ)}}
        for path in ({str(settings_file)!r}, "/proc/1/environ", "/proc/self/environ"):
            try:
                seen[path] = open(path, "rb").read().decode("latin-1")
            except OSError as exc:
                seen[path] = type(exc).__name__
        json.dump(seen, open("/out/figures.json", "w"))
    """)
    assert SECRET not in json.dumps(result.figures)
    assert result.figures[str(settings_file)] == "FileNotFoundError"
    assert "DATABASE_URL" not in result.figures["env"] and "AWS_SECRET_ACCESS_KEY" not in result.figures["env"]


def test_another_studys_files_cannot_be_read_or_written(run_dir, other_study):
    error = _stopped(run_dir, f"""
        import os
        print(os.listdir({str(other_study.parent)!r}))
    """)
    assert error.code == "script_failed" and "FileNotFoundError" in error.detail
    error = _stopped(run_dir, f"""open({str(other_study)!r}, "w").write("overwritten")""")
    assert error.code == "script_failed"
    assert other_study.read_text() == "OTHER-STUDY-CONTENT"


@pytest.mark.parametrize("target", ["/in/study.json", "/usr/evil.py", "/evil", "/sandbox/script.py",
                                    "/dev/shm/evil"])
def test_writing_outside_the_output_folder_fails(run_dir, target):
    before = (run_dir / "in" / "study.json").read_bytes()
    error = _stopped(run_dir, f"""open({target!r}, "w").write("x")""")
    assert error.code == "script_failed"
    assert "Read-only file system" in error.detail or "No such file" in error.detail
    assert (run_dir / "in" / "study.json").read_bytes() == before
    assert not Path("/usr/evil.py").exists()


def test_a_link_out_of_the_output_folder_is_not_followed(run_dir):
    error = _stopped(run_dir, """
        import json, os
        os.symlink("/etc/passwd", "/out/plot.png")
        os.symlink("/etc/passwd", "/out/figures.json")
    """)
    assert error.code == "bad_output"
    assert "root:" not in _output_text(run_dir)


# --- hostile: exhausting resources ------------------------------------------------------------------------

def test_fork_bomb_is_stopped_and_leaves_no_process(run_dir):
    error = _stopped(run_dir, """
        import os
        while True:
            os.fork()
    """)
    assert error.code in ("process_limit", "timeout")
    time.sleep(0.2)
    assert _sandbox_processes() == []
    assert subprocess.run(["true"]).returncode == 0  # the portal can still start processes


def test_endless_loop_hits_the_cpu_limit(run_dir):
    error = _stopped(run_dir, "while True:\n    pass\n", cpu_s=1, wall_s=10.0)
    assert error.code == "cpu_limit"
    assert error.duration_s < 10.0  # stopped by the CPU limit, not by the wall clock


def test_sleeping_script_hits_the_wall_clock_limit(run_dir):
    started = time.monotonic()
    error = _stopped(run_dir, "import time\nwhile True:\n    time.sleep(1)\n", wall_s=1.5)
    assert error.code == "timeout"
    assert time.monotonic() - started < 10  # stopped, not left sleeping
    time.sleep(0.2)
    assert _sandbox_processes() == []


def test_10_gb_allocation_hits_the_memory_limit(run_dir):
    error = _stopped(run_dir, """
        import numpy as np
        a = np.ones(10 * 1024**3, dtype=np.uint8)
    """)
    assert error.code == "memory_limit"
    assert "MemoryError" in error.detail


def test_1_gb_file_is_stopped_at_the_size_limit(run_dir):
    error = _stopped(run_dir, """
        chunk = b"x" * 1024**2
        with open("/out/big.bin", "wb") as fh:
            for _ in range(1024):
                fh.write(chunk)
    """)
    assert error.code == "output_too_large"
    assert (run_dir / "out" / "big.bin").stat().st_size <= 1024**2


def test_1_gb_in_many_small_files_is_stopped(run_dir):
    error = _stopped(run_dir, """
        chunk = b"x" * 512 * 1024
        for i in range(2048):
            with open(f"/out/part{i}.bin", "wb") as fh:
                fh.write(chunk)
    """, output_files=4096)
    assert error.code == "output_too_large"
    total = sum(p.stat().st_size for p in (run_dir / "out").iterdir())
    assert total < 200 * 1024**2  # stopped within a few polls, far from 1 GB


def test_1_gb_to_stdout_is_stopped(run_dir):
    error = _stopped(run_dir, """
        import sys
        chunk = "x" * 1024**2
        for _ in range(1024):
            sys.stdout.write(chunk)
    """)
    assert error.code == "output_too_large"


def test_filling_scratch_tmp_is_stopped(run_dir):
    error = _stopped(run_dir, """
        with open("/tmp/fill", "wb") as fh:
            for _ in range(64):
                fh.write(b"x" * 1024**2)
                fh.flush()
    """, output_bytes=256 * 1024**2)
    assert error.code == "output_too_large"


# --- output contract ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, message", [
    ("pass", "figures.json"),
    ("open('/out/figures.json', 'w').write('[1, 2]')", "JSON object"),
    ("open('/out/figures.json', 'w').write('{not json')", "not valid JSON"),
    ("open('/out/figures.json', 'w').write('{}'); open('/out/fake.png', 'w').write('GIF89a')", "not a PNG"),
    ("open('/out/figures.json', 'w').write('{}'); open('/out/<script>.png', 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n')",
     "not allowed"),
])
def test_output_that_breaks_the_contract_is_refused(run_dir, code, message):
    error = _stopped(run_dir, code)
    assert error.code == "bad_output"
    assert message in error.message


def test_too_many_plots_are_refused(run_dir):
    error = _stopped(run_dir, """
        import json, numpy as np, PIL.Image
        json.dump({}, open("/out/figures.json", "w"))
        for i in range(5):
            PIL.Image.fromarray(np.zeros((4, 4), np.uint8)).save(f"/out/p{i}.png")
    """)
    assert error.code == "bad_output" and "plots" in error.message


def test_failing_script_reports_its_stderr_without_host_paths(run_dir):
    error = _stopped(run_dir, """raise ValueError("bad spacing")""")
    assert error.code == "script_failed"
    assert "ValueError: bad spacing" in error.detail
    assert str(run_dir) not in error.detail and "/sandbox/script.py" in error.detail


def test_command_line_isolates_network_environment_and_root(run_dir):
    cmd = bwrap_command(config=_config(), script=run_dir / "s.py", inputs_dir=run_dir / "in",
                        output_dir=run_dir / "out")
    for flag in ("--unshare-all", "--die-with-parent", "--clearenv", "--new-session"):
        assert flag in cmd
    assert cmd[cmd.index("--remount-ro", cmd.index("--tmpfs")) + 1] in ("/dev", "/")
    assert ["--ro-bind", str(run_dir / "in"), "/in"] == cmd[cmd.index(str(run_dir / "in")) - 1:][:3]


def test_missing_bwrap_is_a_clear_error(run_dir):
    script = run_dir / "script.py"
    script.write_text("pass")
    config = SandboxConfig(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxError) as info:
        run_script(script=script, inputs_dir=run_dir / "in", output_dir=run_dir / "out", config=config)
    assert info.value.code == "sandbox_unavailable"
