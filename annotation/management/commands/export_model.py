"""python manage.py export_model NAME [--version V] --format onnx|torchscript|bundle [--int8] --out FILE"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import selectors, services
from annotation.models import SegmentationModel
from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = ("Export a registered segmentation network as ONNX (checked with onnx.checker; --int8 quantises its "
            "weights), TorchScript or a zipped MONAI bundle.")

    def create_parser(self, prog_name, subcommand, **kwargs):
        # The command's own --version (a model version) replaces Django's "print the Django version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("name", help="model name")
        parser.add_argument("--version", type=int, default=None, help="default: the newest active version")
        parser.add_argument("--format", required=True, choices=list(services.EXPORT_MODEL_FORMATS))
        parser.add_argument("--int8", action="store_true", help="ONNX only: int8 dynamic quantisation")
        parser.add_argument("--out", type=Path, required=True, help="file to write")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        try:
            model = selectors.segmentation_model_by_name(name=options["name"], version=options["version"])
        except SegmentationModel.DoesNotExist as exc:
            raise CommandError(str(exc)) from exc
        try:
            path = services.segmentation_model_export_file(
                model=model, fmt=options["format"], out_path=options["out"], int8=options["int8"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        out = {"model_id": model.pk, "name": model.name, "version": model.version, "format": options["format"],
               "int8": options["int8"], "path": str(path), "bytes": path.stat().st_size}
        self.stdout.write(json.dumps(out) if options["json"] else f"wrote {path}")
