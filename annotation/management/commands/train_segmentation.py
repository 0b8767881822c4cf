"""python manage.py train_segmentation --data DIR --labels 1:anterior,2:posterior --architecture unet"""

import json
import random
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import services


def _parse_labels(text: str) -> dict[int, str]:
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        index, _, name = part.partition(":")
        if not index.isdigit() or int(index) < 1 or not name:
            raise CommandError(f"bad label {part!r}: use INDEX:NAME with INDEX ≥ 1, e.g. 1:anterior,2:posterior")
        labels[int(index)] = name
    return labels


def _triple(text: str | None, cast=float):
    if text is None:
        return None
    values = [cast(v) for v in text.split(",")]
    if len(values) != 3:
        raise CommandError(f"expected three comma-separated values (k,j,i), got {text!r}")
    return tuple(values)


def _pair(text: str | None):
    if not text:
        return None
    values = [float(v) for v in text.split(",")]
    if len(values) != 2 or values[0] >= values[1]:
        raise CommandError(f"expected LOW,HIGH with LOW < HIGH, got {text!r}")
    return tuple(values)


def _finite(value: float) -> float | None:
    """JSON (and PostgreSQL jsonb) has no NaN: a Dice that could not be computed is null."""
    return None if value is None or value != value else round(float(value), 4)


PALETTE = ["#e6550d", "#3182bd", "#31a354", "#756bb1", "#e7298a", "#d95f02", "#66a61e", "#e6ab02"]


class Command(BaseCommand):
    help = "Train a MONAI network on labelled volumes (MSD layout or images/labels NIfTI pairs) and register it."

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, required=True, help="MSD folder (dataset.json, imagesTr, labelsTr) or a folder with images/ and labels/")
        parser.add_argument("--labels", default="", help="INDEX:NAME,... (default: from dataset.json)")
        parser.add_argument("--architecture", default="unet", choices=["unet", "vnet", "segresnet", "dynunet", "attentionunet", "swinunetr"])
        parser.add_argument("--name", default=None, help="registry name (default: the dataset's name)")
        parser.add_argument("--modality", default=None)
        parser.add_argument("--body-part", default="")
        parser.add_argument("--epochs", type=int, default=10)
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--learning-rate", type=float, default=1e-3)
        parser.add_argument("--val-fraction", type=float, default=0.2)
        parser.add_argument("--max-cases", type=int, default=None, help="use at most this many cases (train + validation)")
        parser.add_argument("--patch", default=None, help="patch size k,j,i in voxels")
        parser.add_argument("--spacing", default=None, help="target spacing k,j,i in mm")
        parser.add_argument("--intensity", default=None, choices=["zscore", "hu_window", "none"])
        parser.add_argument("--hu-window", default=None, help="LOW,HIGH in HU for --intensity hu_window")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        from annotation.ml.device import select_device
        from annotation.ml.inference import Preprocessing
        from annotation.interop.msd import dataset_read, read_nifti_pairs
        from annotation.ml.training import TrainingConfig, save_checkpoint, train_segmentation

        data: Path = options["data"]
        if not data.is_dir():
            raise CommandError(f"{data} is not a folder")
        try:
            if (data / "dataset.json").exists():
                dataset = dataset_read(data)
                cases, labels, modality, name = list(dataset.cases), dict(dataset.label_names), dataset.modality, dataset.name
            else:
                cases = list(read_nifti_pairs(data / "images", data / "labels"))
                labels, modality, name = {}, "", data.name
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["labels"]:
            labels = _parse_labels(options["labels"])
        if not labels:
            raise CommandError("no labels: pass --labels INDEX:NAME,...")
        modality = (options["modality"] or modality or "OT").upper()
        modality = {"MRI": "MR", "CT SCAN": "CT"}.get(modality, modality)  # --modality as people write it → DICOM Modality
        rng = random.Random(options["seed"])
        rng.shuffle(cases)
        if options["max_cases"]:
            cases = cases[: options["max_cases"]]
        n_val = max(1, int(round(len(cases) * options["val_fraction"])))
        if len(cases) - n_val < 1:
            raise CommandError("too few cases to train and validate")
        val_cases, train_cases = cases[:n_val], cases[n_val:]
        defaults = Preprocessing(target_spacing_mm=None)
        preprocessing = Preprocessing(
            target_spacing_mm=_triple(options["spacing"]),
            intensity=options["intensity"] or ("hu_window" if modality.upper() == "CT" else "zscore"),
            hu_window=_pair(options["hu_window"]) or ((-1000.0, 1000.0) if modality.upper() == "CT" else None),
            patch_size=_triple(options["patch"], int) or defaults.patch_size,
        )
        try:
            config = TrainingConfig(
                architecture=options["architecture"], preprocessing=preprocessing, epochs=options["epochs"],
                batch_size=options["batch_size"], learning_rate=options["learning_rate"], seed=options["seed"],
            )
        except ValueError as exc:  # e.g. a SwinUNETR patch that is not a multiple of 32
            raise CommandError(str(exc)) from exc
        device = select_device("auto")

        def progress(percent: float, stage: str) -> None:
            if not options["json"]:
                self.stderr.write(f"\r{stage}: {percent:5.1f} %", ending="")

        result = train_segmentation(train_cases, val_cases, labels=labels, config=config, device=device, progress=progress)
        if not options["json"]:
            self.stderr.write("")
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = Path(tmp) / "model.pt"
            save_checkpoint(result, checkpoint)
            model = services.segmentation_model_register(
                name=(options["name"] or name).lower().replace(" ", "-").replace("_", "-")[:64],
                display_name=options["name"] or name,
                body_part=options["body_part"], modality=modality.upper(), architecture=options["architecture"],
                network_config=result.network_config,
                label_table=[{"index": i, "name": n, "color": PALETTE[(i - 1) % len(PALETTE)]} for i, n in sorted(labels.items())],
                preprocessing=result.preprocessing.to_dict() if hasattr(result.preprocessing, "to_dict") else dict(result.preprocessing),
                weights_path=checkpoint,
                validation_metrics={"dice_per_label": {str(k): _finite(v) for k, v in result.val_dice_per_label.items()},
                                    "mean_dice": _finite(result.mean_dice), "num_val": result.num_val},
                provenance={"data": data.name, "num_train": result.num_train, "epochs": options["epochs"],
                            "duration_s": round(result.duration_s, 1), "device": result.device, "seed": options["seed"]},
            )
        out = {"model_id": model.pk, "name": model.name, "version": model.version, "mean_dice": _finite(result.mean_dice),
               "dice_per_label": {str(k): _finite(v) for k, v in result.val_dice_per_label.items()},
               "num_train": result.num_train, "num_val": result.num_val, "duration_s": round(result.duration_s, 1)}
        self.stdout.write(json.dumps(out))
