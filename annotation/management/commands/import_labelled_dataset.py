"""python manage.py import_labelled_dataset FOLDER --hospital CODE [--limit N] [--mrn-prefix P]"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import services
from portal.api_errors import ServiceError
from portal.models import Hospital


class Command(BaseCommand):
    help = ("Import a labelled dataset in the Medical Segmentation Decathlon / nnU-Net layout "
            "(dataset.json, imagesTr, labelsTr): one patient, study and segmentation per case; print JSON.")

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--hospital", required=True, help="hospital code")
        parser.add_argument("--limit", type=int, default=None, help="import only the first N cases")
        parser.add_argument("--mrn-prefix", default="", help="prefix for the case ids used as MRNs")

    def handle(self, *args, **options):
        hospital = Hospital.objects.filter(code=options["hospital"]).first()
        if hospital is None:
            raise CommandError(f"no hospital with code {options['hospital']!r}")
        if not options["folder"].is_dir():
            raise CommandError(f"no such folder: {options['folder']}")
        try:
            result = services.dataset_import(user=None, hospital=hospital, root=options["folder"],
                                             limit=options["limit"], mrn_prefix=options["mrn_prefix"])
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps({
            "study_ids": [s.pk for s in result.studies],
            "segmentation_ids": [s.pk for s in result.segmentations],
            "skipped": result.skipped,
        }))
