"""python manage.py import_model FILE --name NAME --modality MR|CT --body-part PART --labels 1=name,2=name
[--backend onnx|torch]"""

import json
import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from annotation import services
from portal.api_errors import ServiceError

PALETTE = ["#e6550d", "#3182bd", "#31a354", "#756bb1", "#e7298a", "#d95f02", "#66a61e", "#e6ab02"]
_LABEL = re.compile(r"^\s*(\d+)\s*=\s*(\S.*?)\s*$")


def parse_labels(text: str) -> list[dict]:
    """Parse ``1=name,2=name`` into a label table with the palette's colours.

    Raises
    ------
    CommandError
        An entry that is not INDEX=NAME with INDEX from 1 to 65535, a repeated index, or no entry.
    """
    table, seen = [], set()
    for part in text.split(","):
        match = _LABEL.match(part)
        index = int(match.group(1)) if match else 0
        if not match or not 1 <= index <= 65535 or index in seen:
            raise CommandError(_("Bad label \"%(label)s\": write INDEX=NAME with distinct indices from 1 to 65535, "
                                 "e.g. 1=anterior,2=posterior.") % {"label": part.strip()})
        seen.add(index)
        table.append({"index": index, "name": match.group(2), "color": PALETTE[(index - 1) % len(PALETTE)]})
    return table


class Command(BaseCommand):
    help = ("Register an ONNX file, TorchScript file or MONAI bundle (a segmentation network made elsewhere); "
            "`segment SERIES_ID --model NAME` "
            "then runs it (an .onnx file through ONNX Runtime). A refused file registers nothing.")

    def create_parser(self, prog_name, subcommand, **kwargs):
        # The command's own --version (a model version) replaces Django's "print the Django version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path,
                            help=".onnx file, a TorchScript .pt/.ts file, or a MONAI bundle (.zip or folder)")
        parser.add_argument("--name", required=True, help="registry name (a slug); must be new unless --version")
        parser.add_argument("--modality", required=True, choices=["MR", "CT"])
        parser.add_argument("--body-part", required=True)
        parser.add_argument("--labels", required=True, help="INDEX=NAME,... e.g. 1=anterior,2=posterior")
        parser.add_argument("--backend", choices=["onnx", "torch"], default=None,
                            help="onnx: ONNX Runtime (TorchScript is converted); torch: PyTorch (TorchScript only). "
                                 "Default: onnx for an .onnx file, else torch")
        parser.add_argument("--version", type=int, default=None, help="register as this (new) version of NAME")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        labels = parse_labels(options["labels"])
        try:
            model = services.segmentation_model_import(
                path=options["file"], name=options["name"], modality=options["modality"],
                body_part=options["body_part"], label_table=labels, backend=options["backend"],
                version=options["version"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        out = {"model_id": model.pk, "name": model.name, "version": model.version,
               "architecture": model.architecture, "weights_sha256": model.weights_sha256}
        self.stdout.write(json.dumps(out) if options["json"] else f"registered {model.name} v{model.version} "
                          f"({model.architecture})")
