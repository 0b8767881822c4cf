"""python manage.py detect SERIES_ID --model NAME [--wait] [--inline] [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from annotation.models import InferenceRun, SegmentationModel, Series
from diagnosis import selectors, services
from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = ("Run a registered detection model (e.g. ct-lung-nodule) on a series as a one-click run; "
            "print its findings (with --json: one JSON object with a 'findings' list).")

    def add_arguments(self, parser):
        parser.add_argument("series_id", type=int)
        parser.add_argument("--model", required=True, help="detection model name (newest active version)")
        parser.add_argument("--model-version", type=int, default=None)
        parser.add_argument("--wait", action="store_true", help="wait for the Celery worker to finish the run")
        parser.add_argument("--inline", action="store_true", help="run in this process instead of the worker")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        series = Series.objects.select_related("study").filter(pk=options["series_id"]).first()
        if series is None:
            raise CommandError(f"no series {options['series_id']}")
        try:
            model = annotation_selectors.segmentation_model_by_name(name=options["model"], version=options["model_version"])
        except SegmentationModel.DoesNotExist as exc:
            raise CommandError(str(exc)) from exc
        if model.kind != SegmentationModel.Kind.DETECTION:
            raise CommandError(f"model {model.name} is a {model.kind} model, not a detector; use `segment` for it")
        try:
            if options["inline"]:
                run = annotation_services.inference_run_create(user=None, series=series, model=model,
                                                               enqueue=False)
                run = annotation_services.inference_run_execute(run_id=run.pk)
            else:
                run = annotation_services.inference_run_create(user=None, series=series, model=model)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        if (options["wait"] or options["json"]) and not options["inline"]:
            try:
                run = annotation_services.inference_run_wait(run, timeout_s=options["timeout"])
            except TimeoutError as exc:
                raise CommandError(str(exc)) from exc
        findings = []
        if run.segmentation_id is not None:
            findings = [services.finding_payload(f)
                        for f in selectors.finding_list_for_segmentation(segmentation=run.segmentation)]
        out = {"run_id": run.pk, "status": run.status, "series_id": series.pk, "model": model.name,
               "model_version": model.version, "segmentation_id": run.segmentation_id, "findings": findings}
        if run.status == InferenceRun.Status.FAILED:
            out["error"] = run.error_message
        if options["json"]:
            self.stdout.write(json.dumps(out, ensure_ascii=False))
        else:
            self.stdout.write(f"run {run.pk}: {run.status}, {len(findings)} finding(s)")
            for f in findings:
                self.stdout.write(
                    f"  #{f['id']} {f['side'] or '?'} {f['long_axis_mm']} × {f['short_axis_mm']} mm, "
                    f"{f['volume_ml']} mL, {f['composition']}, confidence {f['confidence']}"
                )
        if run.status in (InferenceRun.Status.FAILED, InferenceRun.Status.CANCELLED):
            raise CommandError(f"run {run.pk} {run.status}: {run.error_message}")
