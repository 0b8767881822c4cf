"""Post-processing scripts: a hospital admin uploads one, a doctor runs it on a study in the sandbox.

The run itself is :func:`diagnosis.postprocess.sandbox.run_script` (bubblewrap, no network, read-only
inputs, an empty environment, resource limits); this module builds its configuration from settings, writes
the study's inputs, stores the figures and PNG plots it returns, and records every failure on the run row.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from annotation.models import Segmentation, Series, Study
from annotation.storage import StoredKeys, segmentation_labelmap_load, series_volume_load
from portal.api_errors import ServiceError
from portal.models import AuditLog, Role, User
from portal.permissions import is_clinician
from portal.services import audit_record

from ..models import Finding, PostProcessingRun, PostProcessingScript
from ..postprocess.inputs import write_inputs
from ..postprocess.sandbox import SandboxConfig, SandboxError, SandboxLimits, package_binds, run_script
from .findings import finding_payload

logger = logging.getLogger(__name__)

# The sandbox's error codes, with the message the portal shows (the sandbox's own English text carries
# the figures; these are the translated summaries).
SANDBOX_ERROR_MESSAGES = {
    "sandbox_unavailable": _("The sandbox for scripts is not available on this server."),
    "timeout": _("The script ran longer than its time limit and was stopped."),
    "cpu_limit": _("The script used more CPU time than allowed and was stopped."),
    "memory_limit": _("The script needed more memory than allowed and was stopped."),
    "process_limit": _("The script started more processes than allowed and was stopped."),
    "output_too_large": _("The script wrote more output than allowed and was stopped."),
    "bad_output": _("The script's output does not follow the contract (figures.json and PNG plots)."),
    "script_failed": _("The script failed."),
    "worker_lost": _("The worker running the script was lost."),
}


def sandbox_config() -> SandboxConfig:
    """Build the sandbox configuration from the ``POSTPROCESS_*`` settings."""
    limits = SandboxLimits(
        cpu_s=settings.POSTPROCESS_CPU_S,
        wall_s=settings.POSTPROCESS_WALL_S,
        memory_bytes=settings.POSTPROCESS_MEMORY_MB * 1024**2,
        processes=settings.POSTPROCESS_PROCESSES,
        output_bytes=settings.POSTPROCESS_OUTPUT_MB * 1024**2,
        plots=settings.POSTPROCESS_PLOTS,
    )
    return SandboxConfig(
        bwrap=settings.POSTPROCESS_BWRAP,
        python=settings.POSTPROCESS_PYTHON,
        packages=package_binds(list(settings.POSTPROCESS_PACKAGES)),
        sandbox_uid=settings.POSTPROCESS_SANDBOX_UID,
        sandbox_gid=settings.POSTPROCESS_SANDBOX_UID,
        limits=limits,
    )


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------


def postprocessing_script_upload_allowed(*, user: User) -> None:
    """Refuse anyone but a hospital administrator of a hospital (403 ``not_hospital_admin``)."""
    if user.role != Role.HOSPITAL_ADMIN or user.hospital_id is None:
        raise ServiceError(_("Only a hospital administrator can upload post-processing scripts."),
                           code="not_hospital_admin", status_code=403)


def postprocessing_script_upload(*, user: User, name: str, code: str | bytes, description: str = "") -> PostProcessingScript:
    """Store a script for the uploader's hospital (hospital administrators only).

    Raises
    ------
    ServiceError
        403 ``not_hospital_admin`` for anyone else; 400 ``script_too_large``, ``script_not_utf8``,
        ``script_syntax`` (with the line) or ``name_required``.
    """
    postprocessing_script_upload_allowed(user=user)
    raw = code.encode("utf-8") if isinstance(code, str) else bytes(code)
    if len(raw) > settings.POSTPROCESS_SCRIPT_MAX_BYTES:
        raise ServiceError(_("The script is larger than %(max_bytes)s bytes."),
                           params={"max_bytes": settings.POSTPROCESS_SCRIPT_MAX_BYTES}, code="script_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError(_("The script is not UTF-8 text."), code="script_not_utf8") from None
    try:
        compile(text, name or "script.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise ServiceError(_("The script is not valid Python (line %(line)s: %(reason)s)."),
                           params={"line": getattr(exc, "lineno", None) or "?", "reason": getattr(exc, "msg", str(exc))},
                           code="script_syntax") from None
    if not name.strip():
        raise ServiceError(_("The script needs a name."), code="name_required")
    with transaction.atomic():
        script = PostProcessingScript(hospital_id=user.hospital_id, name=name.strip(), description=description,
                                      code=text, sha256=hashlib.sha256(raw).hexdigest(), uploaded_by=user)
        script.full_clean()
        script.save()
        audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="postprocessing_script",
                     target_id=script.pk, hospital=user.hospital, detail={"sha256": script.sha256})
    return script


def postprocessing_script_set_active(*, user: User, script: PostProcessingScript, active: bool) -> PostProcessingScript:
    """Switch a script on or off (hospital administrators of its hospital only)."""
    if user.role != Role.HOSPITAL_ADMIN or user.hospital_id != script.hospital_id:
        raise ServiceError(_("Only a hospital administrator can upload post-processing scripts."),
                           code="not_hospital_admin", status_code=403)
    with transaction.atomic():
        script.is_active = active
        script.save(update_fields=["is_active"])
        audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="postprocessing_script",
                     target_id=script.pk, hospital=user.hospital, detail={"active": active})
    return script


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def _series_for_run(study: Study, series: Series | None) -> Series:
    if series is not None:
        if series.study_id != study.pk:
            raise ServiceError(_("This series belongs to another study."), code="series_mismatch")
        return series
    first = study.series.order_by("series_number", "pk").first()
    if first is None:
        raise ServiceError(_("This study has no series to run the script on."), code="no_series")
    return first


def postprocessing_run_create(*, user: User, script: PostProcessingScript, study: Study, series: Series | None = None,
                              enqueue: bool = True) -> PostProcessingRun:
    """Queue a run of ``script`` on ``study`` (its first series unless ``series`` is given) for a doctor of the
    study's hospital; the worker picks it up after commit.

    Raises
    ------
    ServiceError
        403 ``not_clinician``; 404 ``script_not_found`` for a script of another hospital; 400 ``script_inactive``,
        ``series_mismatch``, ``no_series``.
    """
    if not is_clinician(user):
        raise ServiceError(_("Only doctors can run post-processing scripts."), code="not_clinician", status_code=403)
    if script.hospital_id != study.hospital_id:
        raise ServiceError(_("No such script."), code="script_not_found", status_code=404)
    if not script.is_active:
        raise ServiceError(_("This script is switched off."), code="script_inactive")
    series = _series_for_run(study, series)
    segmentation = (Segmentation.objects.filter(series=series, is_current=True).order_by("-created_at").first()
                    or Segmentation.objects.filter(series=series).order_by("-created_at").first())
    with transaction.atomic():
        run = PostProcessingRun(script=script, study=study, series=series, segmentation=segmentation,
                                requested_by=user)
        run.full_clean()
        run.save()
        audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="postprocessing_run", target_id=run.pk,
                     hospital=study.hospital, detail={"script": script.pk, "study": study.pk, "series": series.pk})
        if enqueue:
            run_id = run.pk
            transaction.on_commit(lambda: postprocessing_run_publish(run_id=run_id))
    return run


def postprocessing_run_publish(*, run_id: int) -> bool:
    """Hand a queued run to the broker; False (logged) when the broker does not take it."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from ..tasks import postprocessing_run_task

    try:
        postprocessing_run_task.apply_async((run_id,), retry=True,
                                            retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY)
    except (OperationalError, RedisError, OSError) as exc:
        logger.warning("post-processing run %s: the broker did not take the job (%s)", run_id, type(exc).__name__)
        return False
    PostProcessingRun.objects.filter(pk=run_id, status=PostProcessingRun.Status.QUEUED).update(
        published_at=timezone.now())
    return True


def postprocessing_runs_sweep(*, republish_after_s: float | None = None, stale_after_s: float | None = None) -> dict:
    """End or restart runs that nothing will finish (Celery beat, every ``RUNS_SWEEP_INTERVAL_S``).

    - A run still "running" ``stale_after_s`` after it started (default: the sandbox's wall-clock limit plus
      ``POSTPROCESS_STALE_MARGIN_S``) lost its whole worker: the sandbox cannot outlive that limit. It fails
      with code ``worker_lost``.
    - A queued run the broker never took (``published_at`` empty, older than ``republish_after_s``, default
      ``RUNS_REPUBLISH_AFTER_S``) is published again.

    Returns ``{"failed": [ids], "republished": [ids]}``.
    """
    now = timezone.now()
    if stale_after_s is None:
        stale_after_s = settings.POSTPROCESS_WALL_S + settings.POSTPROCESS_STALE_MARGIN_S
    if republish_after_s is None:
        republish_after_s = settings.RUNS_REPUBLISH_AFTER_S
    stale = list(PostProcessingRun.objects.filter(status=PostProcessingRun.Status.RUNNING,
                                                  started_at__lt=now - timedelta(seconds=stale_after_s))
                 .values_list("pk", flat=True))
    failed = [pk for pk in stale if postprocessing_run_lost(
        run_id=pk, reason=f"the worker went silent: still running {stale_after_s:g} s after it started")]
    unpublished = PostProcessingRun.objects.filter(status=PostProcessingRun.Status.QUEUED, published_at__isnull=True,
                                                   created_at__lt=now - timedelta(seconds=republish_after_s))
    republished = [pk for pk in unpublished.values_list("pk", flat=True) if postprocessing_run_publish(run_id=pk)]
    return {"failed": failed, "republished": republished}


def _finish(run: PostProcessingRun, *, status: str, **fields) -> PostProcessingRun:
    run.status = status
    run.finished_at = timezone.now()
    for key, value in fields.items():
        setattr(run, key, value)
    run.save()
    return run


def _run_work_dir() -> Path:
    """A fresh folder the sandbox user can traverse (not read) for one run's script, inputs and outputs."""
    base = Path(settings.POSTPROCESS_WORK_DIR)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    folder.chmod(0o711)
    return folder


def postprocessing_run_execute(*, run_id: int) -> PostProcessingRun:
    """Execute one queued run to the end (called by the Celery task; idempotent).

    The run is claimed atomically (queued → running); a run in another state is returned untouched. The
    series' volume, the current segmentation's label map and the study's findings are written to a fresh
    folder, the script runs in the sandbox, and the figures and plots (stored under
    ``postprocessing/<run id>/``) or the sandbox's error are recorded on the row. Never raises for a failed
    script; the folder is removed either way.
    """
    claimed = PostProcessingRun.objects.filter(pk=run_id, status=PostProcessingRun.Status.QUEUED).update(
        status=PostProcessingRun.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1)
    run = PostProcessingRun.objects.select_related("script", "study", "series", "segmentation").get(pk=run_id)
    if not claimed:
        return run
    folder = _run_work_dir()
    stored = StoredKeys()
    try:
        (folder / "in").mkdir(mode=0o755)
        (folder / "out").mkdir()
        script_path = folder / "script.py"
        script_path.write_text(run.script.code, encoding="utf-8")
        script_path.chmod(0o644)
        volume = series_volume_load(run.series)
        label_map, label_names = None, {}
        if run.segmentation is not None:
            label_map = segmentation_labelmap_load(run.segmentation)
            label_names = {int(row["index"]): row["name"] for row in run.segmentation.label_table}
        findings = [finding_payload(f) for f in Finding.objects.filter(series=run.series)
                    .exclude(status=Finding.Status.REJECTED).order_by("pk")]
        write_inputs(folder / "in", volume=volume, label_map=label_map, label_names=label_names, findings=findings,
                     study={"study_id": run.study_id, "series_id": run.series_id, "modality": run.series.modality,
                            "study_date": run.study.study_date.isoformat() if run.study.study_date else None})
        result = run_script(script=script_path, inputs_dir=folder / "in", output_dir=folder / "out",
                            config=sandbox_config())
        plots = []
        for path in result.plots:
            name, digest, size = stored.save(f"postprocessing/{run.pk}/{path.name}", path)
            plots.append({"name": path.name, "key": name, "size": size, "sha256": digest})
        with transaction.atomic():
            return _finish(run, status=PostProcessingRun.Status.SUCCEEDED, figures=result.figures, plots=plots,
                           duration_s=result.duration_s, cpu_s=result.cpu_s, error_code="", error_message="",
                           error_detail="")
    except SandboxError as exc:
        stored.delete_all()
        return _finish(run, status=PostProcessingRun.Status.FAILED, error_code=exc.code,
                       error_message=exc.message[:2000], error_detail=exc.detail[-4000:], duration_s=exc.duration_s)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        logger.exception("post-processing run %s failed", run.pk)
        stored.delete_all()
        return _finish(run, status=PostProcessingRun.Status.FAILED, error_code="internal_error",
                       error_message=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def postprocessing_run_lost(*, run_id: int, reason: str) -> PostProcessingRun | None:
    """Record that the worker process executing a run died (out of memory, a crash): the run fails with
    code ``worker_lost`` instead of staying "running" for ever. A script that kills its worker is not retried."""
    updated = PostProcessingRun.objects.filter(pk=run_id, status=PostProcessingRun.Status.RUNNING).update(
        status=PostProcessingRun.Status.FAILED, error_code="worker_lost", error_message=reason[:2000],
        finished_at=timezone.now())
    return PostProcessingRun.objects.filter(pk=run_id).first() if updated else None


def postprocessing_run_payload(run: PostProcessingRun) -> dict:
    """Return the JSON form of a run (the API's and the study page's)."""
    from django.urls import reverse

    return {
        "id": run.pk,
        "script": {"id": run.script_id, "name": run.script.name, "sha256": run.script.sha256},
        "study_id": run.study_id,
        "series_id": run.series_id,
        "segmentation_id": run.segmentation_id,
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "figures": run.figures,
        "plots": [{"name": p["name"], "size": p["size"],
                   "url": reverse("postprocessing-run-plot", args=[run.pk, p["name"]])} for p in run.plots],
        "error": None if not run.error_code else {
            "code": run.error_code,
            "message": str(SANDBOX_ERROR_MESSAGES.get(run.error_code, gettext("The script failed."))),
            "detail": run.error_message,
            "stderr_tail": run.error_detail,
        },
        "duration_s": run.duration_s,
        "cpu_s": run.cpu_s,
        "requested_by": run.requested_by_id,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
