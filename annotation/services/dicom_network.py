"""The DICOM network service's writes: peers, the import of a received series, routing rules.

The listener itself (pynetdicom, the spool) is plain Python in ``annotation.dicomnet``;
:func:`dicom_listener_build` builds it from settings. A complete series is imported by the same
``study_import`` as an upload (same grouping, validation, storage and audit), into the hospital of
the calling AE title, with the Patient ID (0010,0020) as the MRN; the matching routing rules then
queue one-click segmentations.
"""

from __future__ import annotations

import logging
import re
import threading

import pydicom
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from .. import selectors
from ..dicomnet.scp import DicomListener, ListenerConfig
from ..dicomnet.spool import SeriesSpool, SpooledSeries, completion_loop
from ..imaging.errors import ImagingError
from ..models import DicomPeer, DicomRoutingRule, InferenceRun, Series
from .imports import ImportResult, study_import
from .inference import inference_run_create

logger = logging.getLogger(__name__)


# --- peers ---------------------------------------------------------------------------------------

@transaction.atomic
def dicom_peer_create(
    *, hospital: Hospital, ae_title: str, host: str = "", port: int | None = None, description: str = "",
    query_retrieve: bool = False, stow_url: str = "", stow_user: str = "", stow_secret_env: str = "",
    transport: str | None = None, retrieve_method: str = DicomPeer.RetrieveMethod.C_MOVE, user: User | None = None,
) -> DicomPeer:
    """Map a calling AE title to ``hospital`` (and name where its results go, when ``host``/``port``
    or ``stow_url``).

    With ``query_retrieve`` the peer is also the hospital's query/retrieve source: its C-FIND / C-MOVE
    SCP at ``host``:``port`` is asked for a patient's priors (PS3.4 C.4, Study Root). With ``stow_url``
    results go by STOW-RS (PS3.18 10.5) to that DICOMweb base URL: the transport defaults to STOW-RS
    when a STOW-RS URL is given, to C-STORE otherwise. ``retrieve_method`` (``c_move`` or ``c_get``) says
    how priors are retrieved from a query/retrieve source.

    Raises
    ------
    portal.api_errors.ServiceError
        When the AE title is already mapped (409), only one of host and port is given, a
        query/retrieve source has neither (``query_source_needs_address``), a STOW-RS transport has no
        URL (``stow_needs_url``) or the URL carries credentials (``stow_url_credentials``).
    django.core.exceptions.ValidationError
        When the AE title, port, URL or secret variable name is malformed.
    """
    from urllib.parse import urlsplit

    ae_title, stow_url = ae_title.strip(), stow_url.strip().rstrip("/")
    if bool(host) != bool(port):
        raise ServiceError(_("Give both --host and --port for results, or neither."),
                           code="peer_destination_incomplete")
    if query_retrieve and not (host and port):
        raise ServiceError(_("A query/retrieve source needs --host and --port."), code="query_source_needs_address")
    if transport is None:
        transport = DicomPeer.Transport.STOW_RS if stow_url else DicomPeer.Transport.C_STORE
    if transport == DicomPeer.Transport.STOW_RS and not stow_url:
        raise ServiceError(_("A STOW-RS destination needs --stow-url."), code="stow_needs_url")
    if stow_url and (urlsplit(stow_url).username or urlsplit(stow_url).password):
        # The URL is shown and logged as the destination: credentials go in an environment variable.
        raise ServiceError(_("Put no credentials in the STOW-RS URL; use --stow-user and --stow-secret-env."),
                           code="stow_url_credentials")
    if DicomPeer.objects.filter(ae_title=ae_title).exists():
        raise ServiceError(_("AE title %(ae_title)s is already mapped to a hospital."),
                           params={"ae_title": ae_title}, code="peer_exists", status_code=409)
    peer = DicomPeer(hospital=hospital, ae_title=ae_title, host=host, port=port, description=description,
                     query_retrieve=query_retrieve, transport=transport, stow_url=stow_url, stow_user=stow_user,
                     stow_secret_env=stow_secret_env, retrieve_method=retrieve_method)
    peer.full_clean()
    peer.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="dicom_peer", target_id=peer.pk,
                 hospital=hospital, detail={"ae_title": ae_title, "query_retrieve": query_retrieve,
                                            "transport": transport, "retrieve_method": retrieve_method})
    return peer


# --- the listener --------------------------------------------------------------------------------

def _peer_titles() -> list[str]:
    # Called in pynetdicom's association thread: its database connection is closed again at once.
    try:
        return selectors.dicom_peer_titles_active()
    finally:
        connections.close_all()


def dicom_spool() -> SeriesSpool:
    """Return the spool of received instances under ``settings.DICOM_SPOOL_DIR``."""
    return SeriesSpool(settings.DICOM_SPOOL_DIR)


def dicom_listener_build(*, ae_title: str | None = None, port: int | None = None, host: str | None = None,
                         spool: SeriesSpool | None = None) -> DicomListener:
    """Build the C-ECHO / C-STORE SCP from settings (``DICOM_AE_TITLE``, ``DICOM_PORT``, ``DICOM_BIND``)."""
    config = ListenerConfig(
        ae_title=ae_title or settings.DICOM_AE_TITLE,
        host=host or settings.DICOM_BIND,
        port=settings.DICOM_PORT if port is None else port,
    )
    return DicomListener(config, spool=spool or dicom_spool(), peer_titles=_peer_titles)


def dicom_spool_failed_purge(*, spool: SeriesSpool | None = None, now: float | None = None) -> int:
    """Delete the refused series kept in the spool's ``failed/`` folder for longer than
    ``DICOM_FAILED_RETENTION_DAYS`` days (default 7), with one audit record and one log line that
    name the calling AE titles and counts, never a patient or a UID.

    Returns the number of series folders removed (0 when the retention is 0: keep them forever).
    Called by the listener's housekeeping and by the ``annotation.dicom_spool_purge`` beat task.
    """
    days = float(settings.DICOM_FAILED_RETENTION_DAYS)
    if days <= 0:
        return 0
    spool = spool or dicom_spool()
    purged = spool.failed_purge(max_age_s=days * 86400.0, now=now)
    if not purged:
        return 0
    by_ae: dict[str, int] = {}
    for item in purged:
        by_ae[item.calling_ae_title] = by_ae.get(item.calling_ae_title, 0) + 1
    audit_record(actor=None, action=AuditLog.Action.DELETE, target_type="dicom_spool_failed", target_id="",
                 channel="dicom",
                 detail={"removed": len(purged), "retention_days": days, "calling_ae_titles": by_ae,
                         "oldest_age_days": round(max(item.age_s for item in purged) / 86400.0, 2)})
    logger.info("removed %d refused series older than %g days from the DICOM spool (by calling AE title: %s)",
                len(purged), days, by_ae)
    return len(purged)


def dicom_completion_start(*, spool: SeriesSpool, stop: threading.Event, quiet_s: float | None = None,
                           poll_s: float = 1.0) -> threading.Thread:
    """Start the thread that imports each complete series (``DICOM_SERIES_COMPLETE_S`` by default) and,
    every ``DICOM_FAILED_PURGE_INTERVAL_S`` seconds, removes old refused series
    (:func:`dicom_spool_failed_purge`)."""

    def handle(spooled: SpooledSeries) -> None:
        close_old_connections()
        try:
            dicom_received_series_import(spooled=spooled, spool=spool)
        finally:
            close_old_connections()

    def housekeeping() -> None:
        close_old_connections()
        try:
            dicom_spool_failed_purge(spool=spool)
        finally:
            close_old_connections()

    thread = threading.Thread(
        target=completion_loop, name="dicom-series-completion", daemon=True,
        kwargs={"spool": spool, "quiet_s": settings.DICOM_SERIES_COMPLETE_S if quiet_s is None else quiet_s,
                "handle": handle, "stop": stop, "poll_s": poll_s, "housekeeping": housekeeping,
                "housekeeping_every_s": settings.DICOM_FAILED_PURGE_INTERVAL_S},
    )
    thread.start()
    return thread


# --- a received series ---------------------------------------------------------------------------

def dicom_received_series_import(*, spooled: SpooledSeries, spool: SeriesSpool) -> ImportResult | None:
    """Import a complete received series into its peer's hospital and apply the routing rules.

    The spool folder is removed after a successful import and its routing, or moved to ``failed/`` with the reason
    (an unknown or deactivated peer, a series already imported, anything the import refuses).
    Returns the import's result, or None when it was refused.
    """
    peer = selectors.dicom_peer_by_ae_title(ae_title=spooled.calling_ae_title)
    files = spooled.files()
    if peer is None:
        return _refused(spool, spooled, "peer_unknown: the calling AE title is no longer an active peer")
    if not files:
        return _refused(spool, spooled, "empty: no instance was received")
    try:
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        patient_id = str(first.get("PatientID", "") or "")
    except Exception as exc:  # noqa: BLE001 - checked on receipt; a file changed since is refused here
        return _refused(spool, spooled, f"corrupt: {type(exc).__name__}")
    try:
        result = study_import(user=None, hospital=peer.hospital, patient_mrn=patient_id, paths=[spooled.folder])
    except (ImagingError, ServiceError) as exc:
        return _refused(spool, spooled, f"{getattr(exc, 'code', type(exc).__name__)}: {exc}")
    for series in result.series:
        audit_record(
            actor=None, action=AuditLog.Action.CREATE, target_type="dicom_receive", target_id=series.pk,
            hospital=peer.hospital, channel="dicom",
            detail={"calling_ae_title": peer.ae_title, "study": series.study_id, "instances": series.instance_count},
        )
    logger.info("received series imported from %s: %d series, %d instances",
                peer.ae_title, len(result.series), sum(s.instance_count for s in result.series))
    try:
        for series in result.series:
            dicom_routing_apply(series=series)
    finally:
        # Done with the spool only now: whoever waits for the listener to be idle (hospital IT, a test)
        # then finds the routed runs queued, not about to be.
        spool.finish(spooled)
    return result


def _refused(spool: SeriesSpool, spooled: SpooledSeries, reason: str) -> None:
    # Import messages name files and attributes, never patient names or IDs.
    folder = spool.finish(spooled, error=reason)
    logger.warning("received series from %s not imported (%s); kept in %s", spooled.calling_ae_title, reason, folder)
    return None


# --- routing rules -------------------------------------------------------------------------------

def dicom_routing_rule_matches(rule: DicomRoutingRule, *, series: Series) -> bool:
    """Return whether ``rule`` routes ``series``: same modality and body part (case-insensitive;
    empty = any) and the pattern found in its description (empty = any)."""
    if rule.modality and rule.modality.strip().upper() != series.modality.strip().upper():
        return False
    if rule.body_part and rule.body_part.strip().upper() != series.body_part.strip().upper():
        return False
    return not rule.series_description_pattern or re.search(rule.series_description_pattern, series.description) is not None


def dicom_routing_apply(*, series: Series) -> list[InferenceRun]:
    """Queue a one-click segmentation for each routing rule of the series' hospital that matches it
    (one run per model). A rule whose model refuses the series (another modality) is logged and skipped."""
    runs: list[InferenceRun] = []
    started: set[int] = set()
    for rule in selectors.dicom_routing_rules_for(hospital=series.study.hospital):
        if rule.model_id in started or not dicom_routing_rule_matches(rule, series=series):
            continue
        try:
            runs.append(inference_run_create(user=None, series=series, model=rule.model))
        except ServiceError as exc:
            logger.warning("routing rule %s did not start on series %s: %s", rule.pk, series.pk, exc.code)
            continue
        started.add(rule.model_id)
    return runs
