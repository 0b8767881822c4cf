"""Time NetworkSegmenter end to end against bare MONAI sliding-window inference, in the same run.

Usage::

    python benchmarks/inference.py [--crop K,J,I] [--repeats N] [--threads N] [--device auto|cpu|cuda]
                                   [--volume lidc|example]

Both runs use the same randomly initialised MONAI UNet (channels 16–256, strides 2, 2 residual units,
4.8 M parameters; the network of NOTES.md), patch 96³, overlap 0.25, one window per batch:

- ``NetworkSegmenter(volume)``: Volume → MetaTensor, orientation, HU window, sliding window, argmax,
  inverse transforms back onto the input grid (nearest neighbour), numpy uint8 label map;
- ``sliding_window_inference`` alone, on a tensor of the same preprocessed size made beforehand.

Prints voxels per second for both (input voxels / wall time, best of ``--repeats`` alternated runs,
2 by default), the overhead ratio (ours / bare), the time in each stage of ours (MONAI's final
blending of the windows counts as postprocessing), and the peak resident memory
(``resource.getrusage``), plus ``torch.cuda.max_memory_allocated`` on CUDA. A warm-up forward pass
runs first and is not timed.

Data: the LIDC-IDRI-0001 chest CT (133×512×512, read with SimpleITK) or, with ``--volume example``,
TotalSegmentator's example CT (112×101×122). No resampling (``target_spacing_mm=None``). The whole
34.9 M-voxel LIDC volume runs by default (about 75 s for the script on 2 CPU cores shared with other
work); ``--crop K,J,I`` times a centre crop instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from annotation.imaging.volume import Geometry, Volume, volume_from_sitk  # noqa: E402
from annotation.ml.device import configure_threads, select_device  # noqa: E402
from annotation.ml.inference import NetworkSegmenter, Preprocessing, count_window_batches  # noqa: E402
from annotation.ml.networks import build_network  # noqa: E402

SHARED_DATA = Path(os.environ.get("YIXIN_SHARED_DATA", REPO_DIR.parent / "shared" / "data"))
PATCH = (96, 96, 96)
OVERLAP = 0.25
NETWORK_CONFIG = {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2), "num_res_units": 2}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_volume(name: str) -> tuple[Volume, str]:
    import SimpleITK as sitk

    if name == "lidc":
        folder = SHARED_DATA / "lidc_idri_0001_ct_nodules" / "dicom"
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return volume_from_sitk(reader.Execute(), modality="CT"), "LIDC-IDRI-0001 chest CT"
    path = SHARED_DATA / "totalsegmentator_example" / "example_ct.nii.gz"
    return volume_from_sitk(sitk.ReadImage(str(path)), modality="CT"), "TotalSegmentator example CT"


def centre_crop(volume: Volume, size: tuple[int, int, int]) -> Volume:
    """Crop the centre ``size`` voxels (k, j, i), keeping the geometry exact (origin moved to the first voxel)."""
    start = [max(0, (n - s) // 2) for n, s in zip(volume.array.shape, size)]
    stop = [min(n, a + s) for n, a, s in zip(volume.array.shape, start, size)]
    array = volume.array[tuple(slice(a, b) for a, b in zip(start, stop))]
    g = volume.geometry
    geometry = Geometry(
        shape=array.shape, spacing_mm=g.spacing_mm, origin_mm=tuple(g.index_to_lps(np.asarray(start, float))),
        direction=g.direction,
    )
    return Volume(np.ascontiguousarray(array), geometry, modality=volume.modality)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volume", choices=["lidc", "example"], default="lidc")
    parser.add_argument("--crop", default=None, help="time a centre crop K,J,I instead of the whole volume")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="best of N alternated runs (default 2)")
    args = parser.parse_args()

    device = select_device(args.device)
    configure_threads(args.threads)
    volume, description = load_volume(args.volume)
    full_shape = volume.array.shape
    if args.crop:
        volume = centre_crop(volume, tuple(int(v) for v in args.crop.split(",")))
    voxels = volume.array.size
    print(f"volume: {description}, {'x'.join(map(str, full_shape))}"
          f"{', centre crop ' + 'x'.join(map(str, volume.array.shape)) if args.crop else ''}"
          f" ({voxels / 1e6:.1f} M voxels); device {device}, {torch.get_num_threads()} threads")

    torch.manual_seed(0)
    network = build_network("unet", in_channels=1, out_channels=3, config=NETWORK_CONFIG).to(device).eval()
    parameters = sum(p.numel() for p in network.parameters())
    preprocessing = Preprocessing(
        target_spacing_mm=None, intensity="hu_window", hu_window=(-1000.0, 400.0), patch_size=PATCH
    )
    segmenter = NetworkSegmenter(network, preprocessing, device=device, overlap=OVERLAP, sw_batch_size=1)
    windows = count_window_batches(volume.array.shape, PATCH, OVERLAP, 1)
    print(f"network: MONAI UNet 16-256, {parameters / 1e6:.2f} M parameters; patch {PATCH}, overlap {OVERLAP}, "
          f"{windows} windows")
    rss_before = peak_rss_mib()

    from monai.inferers import sliding_window_inference

    with torch.no_grad():  # warm-up: first-call kernel selection is not what we measure
        network(torch.zeros(1, 1, *PATCH, device=device))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    # Ours end to end (the time in each stage from the progress callback), then the bare sliding window
    # on a tensor of the preprocessed size made outside the timed region; alternated and best-of-N, as
    # other processes share the machine.
    image = segmenter.pre_transforms(volume)["image"].as_tensor()[None].to(device)
    ours_s = bare_s = float("inf")
    stage_s: dict[str, float] = {}
    rss_ours = cuda_ours = cuda_bare = None
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        marks: list[tuple[float, str]] = []
        started = time.perf_counter()
        labels = segmenter(volume, lambda percent, stage: marks.append((time.perf_counter(), stage)))
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        assert labels.shape == volume.array.shape
        if elapsed < ours_s:
            ours_s, stage_s, previous = elapsed, {}, started
            for stamp, stage in marks:
                stage_s[stage] = stage_s.get(stage, 0.0) + stamp - previous
                previous = stamp
        rss_ours = peak_rss_mib() if rss_ours is None else rss_ours
        if device.type == "cuda":
            cuda_ours = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        with torch.no_grad():
            sliding_window_inference(image, PATCH, 1, network, overlap=OVERLAP)
        if device.type == "cuda":
            torch.cuda.synchronize()
            cuda_bare = torch.cuda.max_memory_allocated() / 2**20
        bare_s = min(bare_s, time.perf_counter() - started)

    print(f"NetworkSegmenter end to end:    {ours_s:7.2f} s  {voxels / ours_s / 1e6:6.2f} M voxels/s  "
          f"(preprocessing {stage_s.get('preprocessing', 0):.2f} s, inference {stage_s.get('inference', 0):.2f} s, "
          f"postprocessing {stage_s.get('postprocessing', 0):.2f} s)")
    print(f"bare sliding_window_inference:  {bare_s:7.2f} s  {voxels / bare_s / 1e6:6.2f} M voxels/s")
    print(f"overhead ratio (ours / bare):   {ours_s / bare_s:.2f}x")
    print(f"peak RSS: {rss_before:.0f} MiB after loading, {rss_ours:.0f} MiB after the first NetworkSegmenter run, "
          f"{peak_rss_mib():.0f} MiB at the end")
    if device.type == "cuda":
        print(f"CUDA max memory allocated: {cuda_ours:.0f} MiB (ours), {cuda_bare:.0f} MiB (bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
