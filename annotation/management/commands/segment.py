"""python manage.py segment SERIES_ID --model NAME [--wait] [--inline]"""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation import selectors, services
from annotation.models import InferenceRun, SegmentationModel, Series
from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = "Run one-click segmentation of a series with a registered model; print the result as JSON."

    def add_arguments(self, parser):
        parser.add_argument("series_id", type=int)
        parser.add_argument("--model", required=True, help="model name (newest active version)")
        parser.add_argument("--model-version", type=int, default=None)
        parser.add_argument("--wait", action="store_true", help="wait for the Celery worker to finish the run")
        parser.add_argument("--inline", action="store_true", help="run in this process instead of the worker")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")

    def handle(self, *args, **options):
        series = Series.objects.select_related("study").filter(pk=options["series_id"]).first()
        if series is None:
            raise CommandError(f"no series {options['series_id']}")
        try:
            model = selectors.segmentation_model_by_name(name=options["model"], version=options["model_version"])
        except SegmentationModel.DoesNotExist as exc:
            raise CommandError(str(exc)) from exc
        try:
            if options["inline"]:
                run = InferenceRun.objects.create(series=series, model=model)
                run = services.inference_run_execute(run_id=run.pk)
            else:
                run = services.inference_run_create(user=None, series=series, model=model)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        if options["wait"] and not options["inline"]:
            try:
                run = services.inference_run_wait(run, timeout_s=options["timeout"])
            except TimeoutError as exc:
                raise CommandError(str(exc)) from exc
        out = {"run_id": run.pk, "status": run.status, "segmentation_id": run.segmentation_id}
        if run.status == InferenceRun.Status.FAILED:
            out["error"] = run.error_message
        self.stdout.write(json.dumps(out))
        if run.status in (InferenceRun.Status.FAILED, InferenceRun.Status.CANCELLED):
            raise CommandError(f"run {run.pk} {run.status}")
