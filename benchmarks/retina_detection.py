"""A registered RetinaNet detector against the classical lung-nodule detector, on the same chest CT.

Reads LIDC-IDRI-0001 (133 × 512 × 512, ../shared/data), then runs in this process, on the CPU with
``--threads`` torch threads:

- the classical detector (``annotation.ml.nodules.NoduleDetector``, the baseline);
- a RetinaNet of the given width (``annotation.ml.retina``; untrained weights, so only its cost is
  measured, not its accuracy) through the same ``RetinaNetNoduleDetector`` the worker runs: the lung
  mask, the sliding-window network and the per-box segmentation.

Prints wall seconds (best of ``--repeats``), the network's parameter count and checkpoint size, and
the ratio RetinaNet / classical (< 1: the network path is faster). The lung mask is computed by both.

Run: ``python benchmarks/retina_detection.py [--fpn-channels 256] [--spacing 2.5,1.4,1.4]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fpn-channels", type=int, default=256, help="256 is MONAI's pyramid width")
    parser.add_argument("--inplanes", default="8,16,32,64", help="ResNet stage widths")
    parser.add_argument("--spacing", default="2.5,1.4,1.4", help="network grid spacing (k,j,i) in mm")
    parser.add_argument("--patch", default="64,128,128", help="sliding-window patch (k,j,i)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import torch

    from annotation.imaging.loader import load_inputs
    from annotation.ml.nodules import NoduleDetector
    from annotation.ml.retina import (
        RetinaNetConfig,
        RetinaNetNoduleDetector,
        build_retinanet_detector,
        save_retinanet_checkpoint,
    )

    torch.set_num_threads(args.threads)
    folder = ROOT.parent / "shared" / "data" / "lidc_idri_0001_ct_nodules" / "dicom"
    if not folder.exists():
        sys.exit(f"real data missing: {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        volume = load_inputs([folder], workdir=Path(tmp)).series[0].volume
        config = RetinaNetConfig.from_dict({
            "block_inplanes": [int(v) for v in args.inplanes.split(",")], "fpn_channels": args.fpn_channels,
            "preprocessing": {"target_spacing_mm": [float(v) for v in args.spacing.split(",")],
                              "intensity": "hu_window", "hu_window": [-1024.0, 500.0],
                              "patch_size": [int(v) for v in args.patch.split(",")]},
            "score_thresh": 0.0, "detections_per_img": 20,
        })
        torch.manual_seed(0)
        network = build_retinanet_detector(config)
        checkpoint = save_retinanet_checkpoint(network, config, Path(tmp) / "retina.pt")
        size_mb = checkpoint.stat().st_size / 1e6
        params = sum(p.numel() for p in network.network.parameters())
        retina = RetinaNetNoduleDetector(network, config, device=torch.device("cpu"))
        classical = NoduleDetector()
        classical_s, found = best_of(lambda: classical(volume), args.repeats)
        retina_s, boxes = best_of(lambda: retina(volume), args.repeats)
    print(f"volume {volume.array.shape}, spacing {tuple(round(s, 3) for s in volume.geometry.spacing_mm)} mm, "
          f"{args.threads} torch threads")
    print(f"classical detector:  {classical_s:7.2f} s, {len(found.label_table)} nodule(s)")
    print(f"RetinaNet detector:  {retina_s:7.2f} s, {len(boxes.label_table)} box(es); {params:,} parameters, "
          f"checkpoint {size_mb:.2f} MB (pyramid {args.fpn_channels} channels, grid {args.spacing} mm)")
    print(f"ratio RetinaNet / classical: {retina_s / classical_s:.2f}")


if __name__ == "__main__":
    main()
