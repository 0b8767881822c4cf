"""python manage.py export_study STUDY_ID --deidentify --out FILE.zip"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.models import Study
from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = ("Write a study's research export: de-identified DICOM originals (PS3.15 Basic Profile, modified dates), "
            "its current segmentations as DICOM SEG and a manifest.")

    def add_arguments(self, parser):
        parser.add_argument("study_id", type=int)
        parser.add_argument("--deidentify", action="store_true", help="de-identify (required: the only mode of this command)")
        parser.add_argument("--out", required=True, type=Path, help="the zip file to write")

    def handle(self, *args, **options):
        if not options["deidentify"]:
            raise CommandError("export_study writes research exports only: add --deidentify "
                               "(identified segmentations: export_segmentation or the study page's export).")
        study = Study.objects.select_related("patient", "hospital").filter(pk=options["study_id"]).first()
        if study is None:
            raise CommandError(f"no study with id {options['study_id']}")
        out: Path = options["out"]
        if not out.parent.is_dir():
            raise CommandError(f"no such folder: {out.parent}")
        try:
            data = services.study_export_deidentified(user=None, study=study)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc}") from exc
        partial = out.with_name(out.name + ".part")
        partial.write_bytes(data)
        partial.replace(out)
        self.stdout.write(json.dumps({"out": str(out), "bytes": len(data)}))
