"""Lung-RADS on a report: the doctor's confirmation of a category (the suggestion itself is a read,
:func:`diagnosis.selectors.lung_rads_suggestion`, and is never stored by itself)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import Report

LUNG_RADS_CATEGORIES = ("0", "1", "2", "3", "4A", "4B", "4X")
"""Lung-RADS v2022 categories a doctor may record (0 and 4X are the doctor's own judgement)."""


@transaction.atomic
def report_lung_rads_confirm(*, user: User, report: Report, category: str, rule: str = "") -> Report:
    """Record the Lung-RADS category the doctor confirms (or chooses) on a draft report, audited.

    Parameters
    ----------
    category : str
        One of :data:`LUNG_RADS_CATEGORIES`, optionally followed by the ``S`` modifier (``"2S"``).
    rule : str
        The rule the category rests on (the suggestion's, or the doctor's own words).

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_category`` for an unknown category; ``report_final`` (409) for a signed report (amend it).
    """
    category = (category or "").strip().upper()
    base = category[:-1] if category.endswith("S") else category
    if base not in LUNG_RADS_CATEGORIES:
        raise ServiceError(_("Unknown Lung-RADS category %(category)r; use one of %(lung_rads_categories)s (with "
                             "S for significant other findings)."),
                           params={"category": category,
                                   "lung_rads_categories": ', '.join(LUNG_RADS_CATEGORIES)}, code="bad_category")
    report = Report.objects.select_for_update().select_related("study", "study__hospital").get(pk=report.pk)
    if report.status != Report.Status.DRAFT:
        raise ServiceError(_("A signed report never changes; amend it to record a Lung-RADS category."),
                           code="report_final", status_code=409)
    previous = report.lung_rads_category
    report.lung_rads_category = category
    report.lung_rads_rule = rule.strip()
    report.lung_rads_confirmed_by = user
    report.lung_rads_confirmed_at = timezone.now()
    report.full_clean()
    report.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="report", target_id=report.pk,
                 hospital=report.study.hospital, detail={"lung_rads": [previous, category]})
    return report
