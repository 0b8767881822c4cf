"""python manage.py import_lidc_reads SERIES_ID XML_PATH [--json]"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Series
from diagnosis import services
from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = ("Import an LIDC-IDRI XML read of a series: one label map per reader, a finding per reader's nodule "
            "(with the nine LIDC characteristics), point findings for nodules < 3 mm and non-nodules, and the "
            "readers' marks grouped into nodules with their agreement and a consensus mask.")

    def add_arguments(self, parser):
        parser.add_argument("series_id", type=int)
        parser.add_argument("xml_path", type=Path)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        series = Series.objects.select_related("study", "study__hospital").filter(pk=options["series_id"]).first()
        if series is None:
            raise CommandError(f"no series {options['series_id']}")
        path: Path = options["xml_path"]
        if not path.is_file():
            raise CommandError(f"no file {path}")
        try:
            result = services.lidc_reads_import(user=None, series=series, xml_path=path)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        payload = services.reads_import_payload(series=series, result=result)
        if options["json"]:
            self.stdout.write(json.dumps(payload, ensure_ascii=False))
            return
        self.stdout.write(f"series {series.pk}: {len(payload['segmentations'])} segmentation(s), "
                          f"{len(payload['findings'])} finding(s), {len(payload['nodules'])} nodule(s) >= 3 mm")
        for nodule in payload["nodules"]:
            self.stdout.write(f"  finding #{nodule['finding_id']}: marked by {nodule['agreement']} reader(s) "
                              f"{nodule['readers']}, diameter {nodule['diameter_mm']} mm")
