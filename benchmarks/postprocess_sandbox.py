"""The cost of the bubblewrap sandbox for a post-processing script, against the same script run bare.

Runs one script (import numpy and SimpleITK, read a real CT from ../shared/data, compute a histogram, write
figures.json) five times through :func:`diagnosis.postprocess.sandbox.run_script` and five times as a plain
``python3 -S`` subprocess with the same interpreter and packages, and prints the best wall time of each and
their ratio (sandboxed / bare; 1.0 means no overhead). The difference is bwrap's namespace and mount set-up
and the parent's polling.

Run: ``python benchmarks/postprocess_sandbox.py``
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.postprocess.sandbox import SandboxConfig, SandboxLimits, package_binds, run_script  # noqa: E402

CT = ROOT.parent / "shared" / "data" / "totalsegmentator_example" / "example_ct_sm.nii.gz"
SCRIPT = """
import json, os, numpy as np, SimpleITK as sitk
src, dst = os.environ.get("SANDBOX_INPUT_DIR", "/in"), os.environ.get("SANDBOX_OUTPUT_DIR", "/out")
ct = sitk.GetArrayFromImage(sitk.ReadImage(src + "/volume.nii.gz"))
counts, _ = np.histogram(ct, bins=64, range=(-1024, 1024))
json.dump({"histogram": counts.tolist()}, open(dst + "/figures.json", "w"))
"""


def main() -> None:
    if not CT.exists():
        sys.exit(f"real data not available: {CT} is missing")
    python = f"/usr/bin/python3.{sys.version_info.minor}"
    packages = package_binds(["numpy", "SimpleITK"])
    config = SandboxConfig(python=python, packages=packages, limits=SandboxLimits())
    root = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    root.chmod(0o711)
    (root / "in").mkdir(mode=0o755)
    shutil.copy(CT, root / "in" / "volume.nii.gz")
    (root / "in" / "volume.nii.gz").chmod(0o644)
    script = root / "script.py"
    script.write_text(SCRIPT)
    script.chmod(0o644)
    site = root / "site"
    site.mkdir()
    for name, path in packages:
        (site / name).symlink_to(path)
    try:
        sandboxed, bare = [], []
        for i in range(5):
            out = root / f"out{i}"
            out.mkdir()
            started = time.perf_counter()
            run_script(script=script, inputs_dir=root / "in", output_dir=out, config=config)
            sandboxed.append(time.perf_counter() - started)
            bare_out = root / f"bare{i}"
            bare_out.mkdir()
            env = {"PYTHONPATH": str(site), "SANDBOX_INPUT_DIR": str(root / "in"), "SANDBOX_OUTPUT_DIR": str(bare_out),
                   "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
            started = time.perf_counter()
            subprocess.run([python, "-S", "-B", str(script)], env=env, check=True)
            bare.append(time.perf_counter() - started)
        print(f"script on a real CT ({CT.name}), best of 5:")
        print(f"  bare python      {min(bare) * 1000:8.1f} ms")
        print(f"  bubblewrap       {min(sandboxed) * 1000:8.1f} ms")
        print(f"  ratio sandboxed / bare: {min(sandboxed) / min(bare):.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
