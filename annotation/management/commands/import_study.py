"""python manage.py import_study PATH [PATH ...] --hospital CODE --patient MRN [--study-date YYYY-MM-DD]"""

import datetime
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.imaging.errors import ImagingError
from portal.api_errors import ServiceError
from portal.models import Hospital


class Command(BaseCommand):
    help = "Import DICOM files/folders/zips, NIfTI, MetaImage or NRRD as a study; print one JSON object."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--hospital", required=True, help="hospital code")
        parser.add_argument("--patient", required=True, help="the patient's medical record number (MRN)")
        parser.add_argument("--patient-name", default="")
        parser.add_argument("--modality", default="", help="modality for non-DICOM files (CT, MR, ...)")
        parser.add_argument("--study-date", default=None,
                            help="YYYY-MM-DD: the study date of files that carry none (NIfTI, NRRD, MetaImage)")

    def handle(self, *args, **options):
        hospital = Hospital.objects.filter(code=options["hospital"]).first()
        if hospital is None:
            raise CommandError(f"no hospital with code {options['hospital']!r}")
        study_date = None
        if options["study_date"] is not None:
            try:
                study_date = datetime.date.fromisoformat(options["study_date"])
            except ValueError:
                raise CommandError(f"--study-date must be a date YYYY-MM-DD, got {options['study_date']!r}") from None
            if len(options["study_date"]) != 10:
                raise CommandError(f"--study-date must be a date YYYY-MM-DD, got {options['study_date']!r}")
        missing = [str(p) for p in options["paths"] if not p.exists()]
        if missing:
            raise CommandError(f"no such file or folder: {', '.join(missing)}")
        try:
            result = services.study_import(
                user=None, hospital=hospital, patient_mrn=options["patient"], patient_name=options["patient_name"],
                paths=list(options["paths"]), modality=options["modality"], study_date=study_date,
            )
        except (ImagingError, ServiceError) as exc:
            raise CommandError(f"{getattr(exc, 'code', 'error')}: {exc}") from exc
        self.stdout.write(json.dumps({
            "study_ids": [s.pk for s in result.studies],
            "series_ids": [s.pk for s in result.series],
            "skipped": result.skipped,
        }))
