"""python manage.py register_detector --name NAME --weights CHECKPOINT.pt|BUNDLE.zip|BUNDLE_DIR [--json]"""

import json
import shutil
import tempfile
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.models import SegmentationModel

NODULE_LABELS = [{"index": 1, "name": "lung nodule", "name_zh": "肺结节", "color": "#d95f02"}]


class Command(BaseCommand):
    help = ("Register a trained lung-nodule detector (MONAI RetinaNet: a checkpoint holding its state_dict and "
            "config JSON, or a bundle with configs/retinanet.json and models/model.pt) as a detection model; "
            "`detect SERIES --model NAME` then runs it. A checkpoint that does not fit its config registers nothing.")

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="registry name (a new version when it exists)")
        parser.add_argument("--weights", type=Path, required=True, help="checkpoint .pt, bundle .zip or bundle folder")
        parser.add_argument("--config", type=Path, default=None,
                            help="RetinaNet config JSON (default: the one in the checkpoint or bundle)")
        parser.add_argument("--display-name", default="")
        parser.add_argument("--modality", default="CT")
        parser.add_argument("--body-part", default="chest")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        weights: Path = options["weights"]
        if not weights.exists():
            raise CommandError(f"{weights} does not exist")
        config = None
        if options["config"] is not None:
            try:
                config = json.loads(options["config"].read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the config {options['config']}: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="register-detector-") as tmp:
            if weights.is_dir():
                # The registry stores one file: a bundle folder travels as a zip of itself.
                weights = Path(shutil.make_archive(str(Path(tmp) / weights.name), "zip", weights.parent, weights.name))
            try:
                model = services.segmentation_model_register(
                    name=options["name"], display_name=options["display_name"], body_part=options["body_part"],
                    modality=options["modality"].upper(), architecture=SegmentationModel.Architecture.RETINANET,
                    kind=SegmentationModel.Kind.DETECTION, label_table=NODULE_LABELS, network_config=config,
                    weights_path=weights, provenance={"source": options["weights"].name},
                )
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        out = {"model_id": model.pk, "name": model.name, "version": model.version, "kind": model.kind,
               "architecture": model.architecture, "weights_sha256": model.weights_sha256}
        self.stdout.write(json.dumps(out) if options["json"] else f"registered {model.name} v{model.version}")
