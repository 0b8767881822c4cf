"""PyTorch against ONNX Runtime (fp32 and int8) on the same held-out hippocampus cases, in one run.

Usage::

    python benchmarks/onnx_backends.py [--train-cases 60] [--test-cases 20] [--epochs 3] [--threads 2]
                                       [--checkpoint PATH] [--device auto|cpu|cuda]

Trains a MONAI UNet (the portal's default: channels 16–128, strides 2, 2 residual units) on the first
``--train-cases`` cases of MSD Task04 Hippocampus (``../shared/data/msd_task04_hippocampus``) for a few
epochs with :func:`annotation.ml.training.train_segmentation` (or loads ``--checkpoint`` when that file
exists, and saves it there otherwise), exports it with :func:`annotation.ml.exchange.export_onnx`,
quantises a copy with :func:`annotation.ml.exchange.quantize_onnx_int8`, then runs the three backends
through the same :class:`annotation.ml.inference.NetworkSegmenter` (sliding window, patch 48×64×48,
overlap 0.25) on the last ``--test-cases`` cases, which training never saw.

Prints, per backend: input voxels per second (all test cases / wall time, after one untimed warm-up
case), its ratio to PyTorch, mean Dice against the ground truth over labels 1 (anterior) and 2
(posterior) and all cases, the mean per-case Dice against PyTorch's own label map, and the file size.
The issue's bar: ONNX fp32 Dice within 0.01 of PyTorch's; the script exits with status 1 when it is not.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from annotation.imaging.formats import read_volume  # noqa: E402
from annotation.imaging.overlap import dice_per_label  # noqa: E402
from annotation.interop.msd import dataset_read  # noqa: E402
from annotation.ml.device import configure_threads, select_device  # noqa: E402
from annotation.ml.exchange import OnnxNetwork, export_onnx, quantize_onnx_int8  # noqa: E402
from annotation.ml.inference import NetworkSegmenter, Preprocessing, load_network  # noqa: E402
from annotation.ml.training import TrainingConfig, save_checkpoint, train_segmentation  # noqa: E402

SHARED_DATA = Path(os.environ.get("YIXIN_SHARED_DATA", REPO_DIR.parent / "shared" / "data"))
PATCH = (48, 64, 48)
LABELS = (1, 2)


def train_or_load(cases, checkpoint: Path | None, *, epochs: int, device: torch.device):
    """Return (network in eval mode, Preprocessing) trained on ``cases`` or read from ``checkpoint``."""
    preprocessing = Preprocessing(target_spacing_mm=None, intensity="zscore", patch_size=PATCH)
    if checkpoint is not None and checkpoint.exists():
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        preprocessing = Preprocessing.from_dict(payload["preprocessing"])
        print(f"loaded {checkpoint}")
    else:
        n_val = max(1, len(cases) // 8)
        config = TrainingConfig(architecture="unet", preprocessing=preprocessing, epochs=epochs, batch_size=4)
        start = time.perf_counter()
        result = train_segmentation(cases[n_val:], cases[:n_val], labels={1: "anterior", 2: "posterior"},
                                    config=config, device=device)
        print(f"trained {epochs} epochs on {result.num_train} cases in {time.perf_counter() - start:.0f} s "
              f"on {device}; validation Dice {result.mean_dice:.3f} ({result.num_val} cases)")
        checkpoint = checkpoint or Path(tempfile.mkdtemp(prefix="onnx-bench-")) / "unet.pt"
        save_checkpoint(result, checkpoint)
    network = load_network(architecture="unet", network_config={}, num_classes=3, weights_path=checkpoint,
                           device=torch.device("cpu"))
    return network.eval(), preprocessing


def run_backend(name, segmenter, cases):
    """Segment every case; return (voxels/s, [label maps], warm-up excluded from the timing)."""
    segmenter(cases[0][0])  # warm-up: session/graph initialisation, allocator, thread pools
    outputs, voxels = [], 0
    start = time.perf_counter()
    for volume, _truth in cases:
        outputs.append(segmenter(volume))
        voxels += volume.array.size
    elapsed = time.perf_counter() - start
    return voxels / elapsed, outputs


def mean_dice(predictions, references) -> float:
    return float(np.mean([np.mean(list(dice_per_label(p, r, LABELS).values()))
                          for p, r in zip(predictions, references)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-cases", type=int, default=60)
    parser.add_argument("--test-cases", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="load this checkpoint, or save the trained one here")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (training and the PyTorch backend)")
    args = parser.parse_args()

    root = SHARED_DATA / "msd_task04_hippocampus"
    if not root.exists():
        print(f"data missing: {root}", file=sys.stderr)
        return 2
    configure_threads(args.threads)
    device = select_device(args.device)
    cases = list(dataset_read(root).cases)
    if args.train_cases + args.test_cases > len(cases):
        print(f"only {len(cases)} cases", file=sys.stderr)
        return 2
    network, preprocessing = train_or_load(cases[: args.train_cases], args.checkpoint, epochs=args.epochs,
                                           device=device)
    test = [(read_volume(c.image, modality="MR"), read_volume(c.label).array.astype(np.uint8))
            for c in cases[-args.test_cases:]]
    print(f"{len(test)} held-out cases, {sum(v.array.size for v, _ in test) / 1e6:.2f} M voxels; patch "
          f"{'x'.join(map(str, PATCH))}; {args.threads} CPU threads; torch {torch.__version__}")

    workdir = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    fp32, int8 = workdir / "unet.onnx", workdir / "unet-int8.onnx"
    export_onnx(network, fp32, patch_size=PATCH)
    quantize_onnx_int8(fp32, int8)
    torch_weights = workdir / "unet-state.pt"
    torch.save(network.state_dict(), torch_weights)

    backends = [
        ("PyTorch", NetworkSegmenter(network, preprocessing, device=device), torch_weights),
        ("ONNX fp32", NetworkSegmenter(OnnxNetwork(fp32, device=device, num_threads=args.threads), preprocessing,
                                       device=device), fp32),
        ("ONNX int8", NetworkSegmenter(OnnxNetwork(int8, device=device, num_threads=args.threads), preprocessing,
                                       device=device), int8),
    ]
    truths = [t for _, t in test]
    rows, reference = [], None
    for name, segmenter, file in backends:
        where = getattr(segmenter.network, "providers", (str(device),))[0]
        rate, outputs = run_backend(name, segmenter, test)
        reference = reference or outputs
        rows.append((name, where, rate, mean_dice(outputs, truths), mean_dice(outputs, reference),
                     file.stat().st_size / 1e6))

    base = rows[0][2]
    print(f"{'backend':<10} {'runs on':<22} {'voxels/s':>11} {'× PyTorch':>9} {'Dice GT':>8} "
          f"{'Dice vs PT':>10} {'MB':>6}")
    for name, where, rate, dice_gt, dice_pt, size in rows:
        print(f"{name:<10} {where:<22} {rate:>11,.0f} {rate / base:>9.2f} {dice_gt:>8.4f} {dice_pt:>10.4f} "
              f"{size:>6.2f}")
    difference = abs(rows[1][3] - rows[0][3])
    verdict = "within" if difference <= 0.01 else "NOT within"
    print(f"ONNX fp32 Dice − PyTorch Dice: {rows[1][3] - rows[0][3]:+.4f} ({verdict} 0.01)")
    print(f"ONNX int8 Dice − PyTorch Dice: {rows[2][3] - rows[0][3]:+.4f}")
    return 0 if difference <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
