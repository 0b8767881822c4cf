"""Research pseudonyms and the per-patient de-identification of every research export.

The patient's seed is a keyed hash (HMAC-SHA256) of ``DEIDENTIFY_SECRET`` and the patient, so every
export of one patient gets the same pseudonym, date offset and remapped UIDs (PS3.15 Annex E with
the Modified Dates Option, :mod:`annotation.dicomnet.deidentify`); the pseudonym ↔ patient mapping
stays in the portal (``PatientPseudonym``), never in an export.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError

from ..dicomnet.deidentify import Deidentifier, date_offset
from ..models import Patient, PatientPseudonym


def patient_pseudonym_get_or_create(*, patient: Patient) -> PatientPseudonym:
    """Return the patient's research pseudonym, creating a random one (``YX`` + 10 hex digits) once."""
    existing = PatientPseudonym.objects.filter(patient=patient).first()
    if existing is not None:
        return existing
    for _attempt in range(5):
        try:
            with transaction.atomic():
                row = PatientPseudonym(patient=patient, pseudonym=f"YX{secrets.token_hex(5).upper()}")
                row.full_clean()
                row.save()
                return row
        except IntegrityError:
            existing = PatientPseudonym.objects.filter(patient=patient).first()
            if existing is not None:
                return existing
    raise ServiceError(_("Could not allocate a pseudonym."), code="pseudonym_collision", status_code=500)


def patient_deidentifier(*, patient: Patient) -> Deidentifier:
    """Return the :class:`~annotation.dicomnet.deidentify.Deidentifier` of ``patient``: its seed and
    pseudonym (created once, see :func:`patient_pseudonym_get_or_create`)."""
    return Deidentifier(seed=_patient_seed(patient), pseudonym=patient_pseudonym_get_or_create(patient=patient).pseudonym)


def _patient_seed(patient: Patient) -> str:
    message = f"{patient.hospital.code}\x00{patient.mrn}".encode()
    return hmac.new(settings.DEIDENTIFY_SECRET.encode(), message, hashlib.sha256).hexdigest()


def patient_date_offset(*, patient: Patient) -> datetime.timedelta:
    """Return the patient's research date offset: the (negative, whole-hour) shift that the DICOM
    de-identification of :func:`study_export_deidentified` applies to every date and time of this
    patient (PS3.15 Annex E, Modified Dates Option), so that other de-identified exports (the
    questionnaire CSV) shift their dates alike. Derived from the same secret per-patient seed."""
    return date_offset(_patient_seed(patient))
