"""Federated training on real hippocampus MRIs split across non-IID hospitals.

Splits MSD Task04 (220 labelled MRIs, ../shared/data) deterministically into four hospitals of
different sizes and label balance (federation.fl.data.split_non_iid), a coordinator validation set
(used by RTIFed's Shapley contributions only) and a held-out test set, and prints held-out Dice of:

  (a) each hospital training alone (same number of epochs as the federation's rounds × local epochs);
  (b) FedAvg and (c) RTIFed, each through the real Flower deployment engine (SuperLink + one SuperNode
      per hospital as processes on 127.0.0.1, TLS, authenticated clients);
  (d) all hospitals' data pooled centrally;

then repeats (b) and (c) with one hospital's label maps scrambled and prints RTIFed's reputation of it
and both strategies' Dice loss. Finally it runs FedAvg with secure aggregation (Flower's SecAgg+) and
Flower's own FedAvg strategy (flwr.serverapp.strategy.FedAvg) over the same ClientApp, model and data
and prints the coordination overhead per round (round time minus the slowest client's training time)
of each coordinator as a ratio to Flower's, and two ratios: (a) the portal FedAvg's overhead to Flower's
(whose ClientApps train in fresh processes, as a default Flower app does, while the portal's use each
site's warm trainer, federation.fl.warm_trainer) and (b) a SecAgg+ round's mean time to a plain FedAvg
round's. ``--overhead-only`` runs just the last three.

For FedAvg and RTIFed it also prints the held-out Dice after every round and the first round (and the
local epochs per hospital so far) at which it reaches 0.95 × pooled. The pooled reference trains on all
140 hospital cases for the same number of epochs as each hospital trains in the federation (rounds ×
local epochs). ``--server-optimizer`` (with ``--server-lr``, ``--server-momentum``) sets the coordinator's
optimiser of the aggregate (:mod:`federation.fl.server_opt`); ``--dice-only`` runs just pooled, FedAvg
and RTIFed on the clean split (``--skip-rtifed``: FedAvg and pooled).

CPU-feasible: a 3-level UNet with 8–32 channels on whole crops padded to 48×64×48 voxels.

Run: ``python benchmarks/federated.py [--rounds 4] [--local-epochs 1] [--out DIR] [--overhead-only | --dice-only
[--skip-rtifed]] [--server-optimizer fedavgm] [--server-lr 1] [--server-momentum 0.9]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from federation.fl.server_opt import SERVER_OPTIMIZERS, ServerOptimizer  # noqa: E402  (plain NumPy)

DATA = ROOT.parent / "shared" / "data" / "msd_task04_hippocampus"
SIZES = (60, 40, 25, 15)
HELD_OUT = 60  # every 4th of these goes to the coordinator's validation set, the rest is the test set
CORRUPT = 1  # the 40-case hospital


def _federate(name, split_dirs, validation_dir, work: Path, *, strategy, rounds, epochs, spec, secure=False,
              server: dict | None = None) -> dict:
    from federation.fl.certs import create_federation_material
    from federation.fl.flower_app import encode_json, load_arrays
    from federation.fl.launcher import LocalFederation, free_port

    clients = [f"hospital-{i}" for i in range(len(split_dirs))]
    paths = create_federation_material(work / "pki", clients)
    outbox = work / f"outbox-{name}"
    if (outbox / "done.json").exists():  # finished in an earlier invocation with the same --out
        return _collect(name, outbox, strategy, rounds, total_s=float("nan"))
    if outbox.exists():
        import shutil

        shutil.rmtree(outbox)
    # Flower's baseline runs no warm trainers (its ClientApps train in their own processes anyway) and
    # Flower's own flower-supernode (3 s idle polling; the portal's nodes poll every 0.2 s).
    fed = LocalFederation(paths=paths, work_dir=work / f"run-{name}", port=free_port(), python_path=str(ROOT),
                          warm_trainers=strategy != "flower-fedavg", short_polling=strategy != "flower-fedavg")
    started = time.perf_counter()
    try:
        fed.start_superlink()
        for i, (c, d) in enumerate(zip(clients, split_dirs)):
            fed.register(c)
            fed.start_supernode(c, d, i)
        fed.run({"task-id": name, "num-rounds": rounds, "local-epochs": epochs, "strategy": strategy,
                 "min-clients": len(clients), "outbox": str(outbox), "validation-dir": str(validation_dir),
                 "spec": encode_json(dataclasses.asdict(spec)), "round-timeout-s": 1800.0, "secure-aggregation": secure,
                 # The baseline is a default Flower app: every ClientApp trains in its own fresh process.
                 "in-process-training": strategy == "flower-fedavg", **(server or {})})
        while not (outbox / "done.json").exists():
            if (outbox / "failed.json").exists():
                raise RuntimeError((outbox / "failed.json").read_text())
            if fed.superlink.poll() is not None:
                raise RuntimeError("SuperLink exited:\n" + fed.log_text("superlink")[-3000:])
            for c, process in fed.supernodes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"SuperNode {c} exited:\n" + fed.log_text(f"supernode-{c}")[-3000:])
            time.sleep(1)
    finally:
        fed.stop()
    return _collect(name, outbox, strategy, rounds, total_s=time.perf_counter() - started)


def _collect(name, outbox: Path, strategy: str, rounds: int, *, total_s: float) -> dict:
    from federation.fl.flower_app import load_arrays

    if strategy == "flower-fedavg":
        done = json.loads((outbox / "done.json").read_text())
        rounds_info = [json.loads((outbox / f"flower-round-{r:04d}.json").read_text()) for r in range(1, rounds + 1)]
        marks = [done["started"]] + [r["mark"] for r in rounds_info]
        overheads = [marks[i + 1] - marks[i] - rounds_info[i]["slowest_train_s"] for i in range(rounds)]
        return {"overhead_s": overheads, "total_s": total_s}
    records = [json.loads((outbox / f"round-{r:04d}.json").read_text()) for r in range(1, rounds + 1)]
    return {"arrays": load_arrays(outbox / f"round-{rounds:04d}.npz"), "records": records, "total_s": total_s,
            "overhead_s": [r["timing"]["overhead_s"] for r in records], "round_s": [r["timing"]["round_s"] for r in records],
            "round_arrays": [outbox / f"round-{r:04d}.npz" for r in range(1, rounds + 1)]}


def _print_rounds(label: str, per_round: list[float], pooled: float, local_epochs: int) -> None:
    """Print held-out Dice per round and the first round at which it reaches 0.95 × pooled."""
    target = 0.95 * pooled
    print(f"  {label:7} Dice per round: " + " ".join(f"{d:.3f}" for d in per_round))
    hit = next((r for r, d in enumerate(per_round, 1) if d >= target), None)
    if hit is None:
        print(f"  {label:7} did not reach 0.95 × pooled ({target:.3f}) within {len(per_round)} rounds "
              f"(best {max(per_round):.3f} = {max(per_round) / pooled:.2f} × pooled)")
    else:
        print(f"  {label:7} reached 0.95 × pooled ({target:.3f}) at round {hit}: {per_round[hit - 1]:.3f} = "
              f"{per_round[hit - 1] / pooled:.2f} × pooled, after {hit * local_epochs} local epoch(s) per hospital")


def _print_dice(results: dict, runs: dict, per_round: dict, *, local_epochs: int, server: str) -> None:
    print("\nHeld-out Dice (mean of anterior and posterior hippocampus):")
    for i, size in enumerate(SIZES):
        if f"alone-{i}" in results:
            print(f"  (a) hospital {i} alone ({size} cases): {results[f'alone-{i}']:.3f}")
    best = max((results[f"alone-{i}"] for i in range(len(SIZES)) if f"alone-{i}" in results), default=math.nan)
    pooled = results["pooled"]
    for key, label, tag in (("fedavg", "FedAvg", "(b)"), ("rtifed", "RTIFed", "(c)")):
        if key in results:
            print(f"  {tag} {label + ':':8} {results[key]:.3f}   ratio to best single hospital {results[key] / best:.2f}, "
                  f"to pooled {results[key] / pooled:.2f}   (server optimizer {server})")
    print(f"  (d) pooled:  {pooled:.3f}   (all 140 cases, the same number of epochs as each hospital trains in the federation)")
    print("\nRounds to 0.95 × pooled:")
    for key, label in (("fedavg", "FedAvg"), ("rtifed", "RTIFed")):
        if key in per_round:
            _print_rounds(label, per_round[key], pooled, local_epochs)
    if "rtifed-corrupt" not in runs:
        return
    last = runs["rtifed-corrupt"]["records"][-1]["clients"]
    print(f"\nHospital {CORRUPT} with scrambled labels:")
    print("  RTIFed reputation after the last round: " + ", ".join(f"{c} {v.get('reputation', float('nan')):.2f}" for c, v in sorted(last.items())))
    print(f"  FedAvg  Dice {results['fedavg']:.3f} → {results['fedavg-corrupt']:.3f} (loss {results['fedavg'] - results['fedavg-corrupt']:+.3f})")
    print(f"  RTIFed  Dice {results['rtifed']:.3f} → {results['rtifed-corrupt']:.3f} (loss {results['rtifed'] - results['rtifed-corrupt']:+.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the coordination overhead: FedAvg, FedAvg with SecAgg+ and Flower's FedAvg")
    parser.add_argument("--dice-only", action="store_true",
                        help="only the Dice part: pooled, FedAvg and RTIFed on the clean split (no hospital "
                             "alone, no scrambled-label or overhead runs)")
    parser.add_argument("--skip-rtifed", action="store_true", help="with --dice-only: FedAvg and pooled only")
    parser.add_argument("--server-optimizer", default=None, choices=SERVER_OPTIMIZERS,
                        help=f"optimiser of the aggregate at the coordinator (default {ServerOptimizer().name}; "
                             "federation.fl.server_opt)")
    parser.add_argument("--server-lr", type=float, default=None, help=f"server learning rate (default {ServerOptimizer().learning_rate})")
    parser.add_argument("--server-momentum", type=float, default=None, help=f"FedAvgM's β (default {ServerOptimizer().momentum})")
    args = parser.parse_args()
    if args.overhead_only and args.dice_only:
        parser.error("--overhead-only and --dice-only exclude each other")
    server = {k: v for k, v in (("server-optimizer", args.server_optimizer), ("server-lr", args.server_lr),
                                ("server-momentum", args.server_momentum)) if v is not None}
    optimizer = ServerOptimizer.from_run_config(server)  # checks the values before anything runs
    if not DATA.is_dir():
        raise SystemExit(f"real data not available: {DATA} is missing")

    import numpy as np
    import torch

    torch.set_num_threads(2)
    from federation.fl.data import HospitalSplit, load_cases, split_non_iid, write_msd_subset
    from federation.fl.flower_app import load_arrays
    from federation.fl.local import ModelSpec, evaluate_dice, initial_arrays, train_local

    work = args.out or Path(tempfile.mkdtemp(prefix="fed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec()
    if not (work / "test").exists():
        split_non_iid(DATA, work / "clean", sizes=SIZES, held_out=HELD_OUT)
        split_non_iid(DATA, work / "corrupt", sizes=SIZES, held_out=HELD_OUT, corrupt=[CORRUPT])
        held = sorted(p.name for p in (work / "clean" / "held-out" / "imagesTr").iterdir())
        write_msd_subset(DATA, work / "coordinator-validation", held[::4])
        write_msd_subset(DATA, work / "test", [n for i, n in enumerate(held) if i % 4])
    clean = HospitalSplit(hospitals=tuple(work / "clean" / f"hospital-{i}" for i in range(len(SIZES))), held_out=work / "clean" / "held-out")
    corrupt = HospitalSplit(hospitals=tuple(work / "corrupt" / f"hospital-{i}" for i in range(len(SIZES))), held_out=work / "corrupt" / "held-out")
    held = sorted(p.name for p in (clean.held_out / "imagesTr").iterdir())
    validation, test = work / "coordinator-validation", work / "test"
    test_cases = load_cases(test, patch_size=spec.patch_size)
    epochs_total = args.rounds * args.local_epochs
    print(f"hospitals {list(SIZES)} cases, coordinator validation {len(held[::4])}, held-out test {len(test_cases)}; "
          f"{args.rounds} rounds × {args.local_epochs} local epoch(s); UNet {spec.network_config}; "
          f"server optimizer {optimizer}")

    def dice(arrays):
        return evaluate_dice(arrays, test_cases, spec)["dice"]

    init = initial_arrays(spec)
    results = {}
    def baselines() -> None:
        t0 = time.perf_counter()
        cache = work / f"baselines-{epochs_total}-epochs.json"  # alone/pooled train rounds × local epochs
        if cache.exists():
            results.update(json.loads(cache.read_text()))
        for i, d in enumerate([] if args.overhead_only or args.dice_only else clean.hospitals):
            if f"alone-{i}" in results:
                continue
            data = load_cases(d, patch_size=spec.patch_size)
            results[f"alone-{i}"] = dice(train_local(init, data, spec, epochs=epochs_total, seed=i).arrays)
        if "pooled" not in results and not args.overhead_only:
            from federation.fl.data import CaseArrays

            pooled = [load_cases(d, patch_size=spec.patch_size) for d in clean.hospitals]
            pooled = CaseArrays(images=torch.cat([p.images for p in pooled]), labels=torch.cat([p.labels for p in pooled]))
            results["pooled"] = dice(train_local(init, pooled, spec, epochs=epochs_total, seed=0).arrays)
        cache.write_text(json.dumps(results))
        print(f"local baselines took {time.perf_counter() - t0:.0f} s", flush=True)

    if not args.dice_only:  # --dice-only trains the pooled reference after the federation (a failure shows sooner)
        baselines()

    runs = {}
    plan = [("fedavg", clean.hospitals, "fedavg"), ("rtifed", clean.hospitals, "rtifed"),
            ("fedavg-corrupt", corrupt.hospitals, "fedavg"), ("rtifed-corrupt", corrupt.hospitals, "rtifed"),
            ("fedavg-secagg", clean.hospitals, "fedavg"), ("flower-fedavg", clean.hospitals, "flower-fedavg")]
    if args.overhead_only:
        plan = [p for p in plan if p[0] in ("fedavg", "fedavg-secagg", "flower-fedavg")]
    if args.dice_only:
        plan = [p for p in plan if p[0] == "fedavg" or (p[0] == "rtifed" and not args.skip_rtifed)]
    tag = "-".join(f"{k.removeprefix('server-')}{v}" for k, v in sorted(server.items()))
    per_round = {}
    for name, dirs, strategy in plan:
        # One outbox per rounds × epochs × server optimizer, so a rerun with other settings starts afresh.
        run_name = f"{name}-r{args.rounds}e{args.local_epochs}" + (f"-{tag}" if tag else "")
        runs[name] = _federate(run_name, dirs, validation, work, strategy=strategy, rounds=args.rounds,
                               epochs=args.local_epochs, spec=spec, secure=name.endswith("-secagg"), server=server)
        if "arrays" in runs[name]:
            results[name] = dice(runs[name]["arrays"])
            if name in ("fedavg", "rtifed"):
                per_round[name] = [dice(load_arrays(p)) for p in runs[name]["round_arrays"]]
                print(f"{name}: held-out Dice per round " + " ".join(f"{d:.3f}" for d in per_round[name]), flush=True)
        print(f"{name}: {runs[name]['total_s']:.0f} s" + (f", held-out Dice {results[name]:.3f}" if name in results else ""), flush=True)

    if args.dice_only:
        baselines()
    if not args.overhead_only:
        _print_dice(results, runs, per_round, local_epochs=args.local_epochs, server=str(optimizer))
    if "flower-fedavg" not in runs:
        _write_results(work, results, runs, per_round)
        return
    theirs = float(np.mean(runs["flower-fedavg"]["overhead_s"]))
    print("\nCoordination overhead per round (round time − slowest client's training), mean over rounds:")
    print(f"  Flower's own FedAvg strategy:          {theirs:.1f} s")
    for name, label, note in (("fedavg", "FedAvg", ""), ("fedavg-secagg", "FedAvg + SecAgg+", "; four protocol stages"),
                              ("rtifed", "RTIFed", "; includes Shapley evaluation")):
        if name in runs:
            ours = float(np.mean(runs[name]["overhead_s"]))
            print(f"  portal coordinator, {label + ':':18} {ours:.1f} s  (ratio to Flower's {ours / theirs:.2f}{note})")
    ratio_a = float(np.mean(runs["fedavg"]["overhead_s"])) / theirs
    ratio_b = float(np.mean(runs["fedavg-secagg"]["round_s"])) / float(np.mean(runs["fedavg"]["round_s"]))
    print("\nRatios (same run; the portal's clients train on warm site trainers, Flower's in fresh ClientApp processes):")
    print(f"  (a) coordination overhead, portal FedAvg / Flower's FedAvg: {ratio_a:.2f}  (target ≤ 0.5)")
    print(f"  (b) round time, FedAvg + SecAgg+ / plain FedAvg:          {ratio_b:.2f}  (target ≤ 1.5; "
          f"{np.mean(runs['fedavg-secagg']['round_s']):.1f} s / {np.mean(runs['fedavg']['round_s']):.1f} s)")
    if "fedavg-secagg" in results:
        print(f"\nHeld-out Dice, FedAvg {results['fedavg']:.3f} and FedAvg + SecAgg+ {results['fedavg-secagg']:.3f} "
              f"(SecAgg+ sums the same updates, up to its quantisation step)")
    _write_results(work, results, runs, per_round,
                   {"overhead_portal_to_flower": ratio_a, "secagg_to_plain_round": ratio_b})


def _write_results(work: Path, results: dict, runs: dict, per_round: dict, ratios: dict | None = None) -> None:
    last = runs["rtifed-corrupt"]["records"][-1]["clients"] if "rtifed-corrupt" in runs else {}
    (work / "results.json").write_text(json.dumps({"dice": results, "dice_per_round": per_round,
                                                   "overhead_s": {k: v["overhead_s"] for k, v in runs.items()},
                                                   "round_s": {k: v["round_s"] for k, v in runs.items() if "round_s" in v},
                                                   "ratios": ratios or {},
                                                   "rtifed_corrupt_last_round": last}, indent=1, default=str))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
