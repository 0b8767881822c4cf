"""python manage.py render_report STUDY_ID --out FILE.pdf"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from diagnosis import services
from diagnosis.models import Report


class Command(BaseCommand):
    help = "Write the newest report of a study as PDF (a draft is created when the study has none)."

    def add_arguments(self, parser):
        parser.add_argument("study_id", type=int)
        parser.add_argument("--out", type=Path, required=True)

    def handle(self, *args, **options):
        study = Study.objects.select_related("hospital", "patient").filter(pk=options["study_id"]).first()
        if study is None:
            raise CommandError(f"no study {options['study_id']}")
        report = Report.objects.filter(study=study).order_by("-version").first()
        if report is None:
            report = services.report_create_draft(user=None, study=study)
        pdf = services.report_pdf_bytes(user=None, report=report)
        options["out"].parent.mkdir(parents=True, exist_ok=True)
        options["out"].write_bytes(pdf)
        self.stdout.write(str(options["out"]))
