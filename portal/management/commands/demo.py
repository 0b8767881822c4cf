"""python manage.py demo: a demo hospital with a study segmented, measured and reported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from portal.models import Hospital, Role, User

DEMO_USERS = [
    ("admin", Role.PLATFORM_ADMIN, "平台管理员"),
    ("doctor", Role.DOCTOR, "王医生"),
    ("annotator", Role.ANNOTATOR, "李标注"),
    ("patient", Role.PATIENT, "张三"),
]
DEMO_MRN = "DEMO-0001"
SHARED_DATA = Path(os.environ.get("YIXIN_SHARED_DATA", Path(settings.BASE_DIR).parent / "shared" / "data"))
LIDC_DIR = SHARED_DATA / "lidc_idri_0001_ct_nodules" / "dicom"


class Command(BaseCommand):
    help = "Create the demo hospital and users, import and segment a chest CT, measure it and draft the report."

    def add_arguments(self, parser):
        parser.add_argument("--password", default=os.environ.get("YIXIN_DEMO_PASSWORD", "yixin-demo"))
        parser.add_argument("--inline", action="store_true", help="segment in this process instead of the Celery worker")
        parser.add_argument("--timeout", type=float, default=1200.0)
        parser.add_argument("--users-only", action="store_true", help="create the hospital and users only")
        parser.add_argument("--phantom", action="store_true", help="use the generated phantom even when real data exists")

    def handle(self, *args, **options):
        from annotation import selectors as annotation_selectors
        from annotation import services as annotation_services
        from annotation.models import InferenceRun, Patient, Study
        from diagnosis import services as diagnosis_services
        from diagnosis.models import Report
        from portal.services import hospital_create, user_create
        from portal.storage import StorageUnavailable, storage_ensure_bucket

        try:
            storage_ensure_bucket()
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        hospital = Hospital.objects.filter(code="demo").first() or hospital_create(code="demo", name="医心相印示范医院 Yixin Demo Hospital")
        users = {}
        for username, role, display in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = user_create(username=username, password=options["password"], role=role, display_name=display,
                                   hospital=None if role == Role.PLATFORM_ADMIN else hospital)
            users[username] = user
        patient, _ = Patient.objects.get_or_create(hospital=hospital, mrn=DEMO_MRN, defaults={"name": "张三"})
        if patient.user_id is None:
            patient.user = users["patient"]
            patient.save(update_fields=["user"])
        if options["users_only"]:
            self._print_summary(None, options["password"])
            return

        study = Study.objects.filter(hospital=hospital, patient=patient).order_by("created_at").first()
        if study is None:
            study = self._import(hospital, patient, users["doctor"], options["phantom"])
        series = study.series.order_by("pk").first()
        segmentation = series.segmentations.filter(model__name="ct-lung").order_by("-created_at").first()
        if segmentation is None:
            model = annotation_selectors.segmentation_model_by_name(name="ct-lung")
            self.stdout.write("Segmenting the lungs (one-click, ct-lung) …")
            if options["inline"]:
                run = InferenceRun.objects.create(series=series, model=model, requested_by=users["doctor"])
                run = annotation_services.inference_run_execute(run_id=run.pk)
            else:
                run = annotation_services.inference_run_create(user=users["doctor"], series=series, model=model)
                run = self._wait(run, options["timeout"])
            if run.status != InferenceRun.Status.SUCCEEDED:
                raise CommandError(f"segmentation {run.status}: {run.error_message}")
            segmentation = run.segmentation
        if not Report.objects.filter(study=study).exists():
            report = diagnosis_services.report_create_draft(user=users["doctor"], study=study, segmentation=segmentation)
            diagnosis_services.report_update(
                user=users["doctor"], report=report,
                impression="双肺自动分割完成，体积见测量表。（演示报告，待医师审核）\nAutomatic lung segmentation; volumes in the table. (Demo draft, to be reviewed.)",
            )
        for row in segmentation.measurements.order_by("label"):
            self.stdout.write(f"  measured {row.label_name}: {row.volume_ml:.1f} mL, max diameter {row.max_diameter_mm:.1f} mm")
        try:
            call_command("kg_load_starter", verbosity=0)
        except Exception as exc:  # noqa: BLE001 - the QA assistant is optional for the imaging demo
            self.stderr.write(f"knowledge graph starter not loaded: {exc}")
        self._print_summary(study, options["password"])

    def _import(self, hospital, patient, doctor, force_phantom: bool):
        from annotation import services as annotation_services

        if LIDC_DIR.is_dir() and not force_phantom:
            self.stdout.write(f"Importing the LIDC-IDRI-0001 chest CT from {LIDC_DIR} …")
            result = annotation_services.study_import(
                user=doctor, hospital=hospital, patient_mrn=patient.mrn, paths=[LIDC_DIR]
            )
        else:
            from annotation.imaging.formats import write_nifti
            from annotation.phantom import PHANTOM_DESCRIPTION, make_chest_phantom

            self.stdout.write("Real data not found (../shared/data): importing a generated chest phantom instead.")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "chest-phantom.nii.gz"
                write_nifti(make_chest_phantom(), path)
                result = annotation_services.study_import(
                    user=doctor, hospital=hospital, patient_mrn=patient.mrn, paths=[path], modality="CT"
                )
            for series in result.series:
                series.description = PHANTOM_DESCRIPTION[:200]
                series.save(update_fields=["description"])
            for study in result.studies:
                study.description = PHANTOM_DESCRIPTION[:200]
                study.save(update_fields=["description"])
        return result.studies[0]

    def _wait(self, run, timeout: float):
        from annotation.services import inference_run_wait

        shown = set()

        def show(current) -> None:
            step = (current.status, current.stage, int(current.progress_percent))
            if step not in shown:
                shown.add(step)
                self.stdout.write(f"  {current.status} {current.stage} {current.progress_percent:.0f} %")

        try:
            return inference_run_wait(run, timeout_s=timeout, poll_s=1.0, on_update=show)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from exc

    def _print_summary(self, study, password: str) -> None:
        from diagnosis.models import Report

        base = settings.PORTAL_BASE_URL.rstrip("/")
        self.stdout.write("")
        self.stdout.write("Yixin Portal (医心相印) is running:")
        self.stdout.write(f"  Portal      {base}/")
        if study is not None:
            self.stdout.write(f"  Demo study  {base}/studies/{study.pk}/")
            report = Report.objects.filter(study=study).order_by("-version").first()
            if report is not None:
                self.stdout.write(f"  Report      {base}/reports/{report.pk}/ ({report.get_status_display()})")
        self.stdout.write(f"  API docs    {base}/api/docs/")
        self.stdout.write(f"  Admin       {base}/admin/")
        self.stdout.write(f"  Logins (password '{password}'): doctor, annotator, patient, admin")
