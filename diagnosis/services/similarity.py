"""Similar cases (issue 14): the hospital admin's weights, and the audited read of a study's similar cases.

The ranking itself is read by :func:`diagnosis.selectors_similar.similar_cases` from the plain-Python
:mod:`diagnosis.similarity`; every read a user makes (the API, the study page's panel) goes through
:func:`similar_cases_read`, which writes its audit row.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from annotation.models import Study
from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, Role, User
from portal.services import audit_record

from ..models import SimilarityWeights
from ..selectors_similar import similar_cases
from ..similarity import FEATURES, WeightsError, validate_weights

__all__ = ["similar_cases_read", "similarity_weights_may_edit", "similarity_weights_set"]

_WEIGHT_MESSAGES = {
    "weight_unknown": _("Unknown similarity feature."),
    "weight_not_finite": _("Each weight must be a number."),
    "weight_negative": _("A weight cannot be negative."),
    "weights_all_zero": _("At least one weight must be above zero."),
}


def similarity_weights_may_edit(user: User, hospital: Hospital) -> bool:
    """Return True for the hospital's admins and platform admins."""
    if not user.is_authenticated:
        return False
    return user.is_platform_admin or (user.role == Role.HOSPITAL_ADMIN and user.hospital_id == hospital.pk)


@transaction.atomic
def similarity_weights_set(*, user: User, hospital: Hospital, weights: dict[str, float]) -> SimilarityWeights:
    """Store the hospital's similar-cases weights (features not named keep their current value).

    Raises
    ------
    ServiceError
        (403) ``not_allowed``: the user is not an admin of the hospital; (400) ``weight_unknown``,
        ``weight_not_finite``, ``weight_negative`` or ``weights_all_zero`` (:func:`validate_weights`).
    """
    if not similarity_weights_may_edit(user, hospital):
        raise ServiceError(_("Only the hospital's administrators can change the similar-cases weights."),
                           code="not_allowed", status_code=403)
    row = SimilarityWeights.objects.select_for_update().filter(hospital=hospital).first() \
        or SimilarityWeights(hospital=hospital)
    current = {name: float(getattr(row, name)) for name in FEATURES}
    try:
        table = validate_weights(current | dict(weights))
    except WeightsError as exc:
        raise ServiceError(_WEIGHT_MESSAGES[exc.code], code=exc.code) from None
    for name, value in table.items():
        setattr(row, name, value)
    row.updated_by = user
    row.full_clean()
    row.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="similarity_weights", target_id=row.pk,
                 hospital=hospital, detail={"weights": table})
    return row


def similar_cases_read(*, user: User, study: Study, k: int = 5, channel: str = "api") -> dict:
    """Return the study's similar cases (:func:`diagnosis.selectors_similar.similar_cases`) and audit the read.

    The audit row (action ``view``, target ``similar_cases`` = the study) names the cases shown, by study id.
    ``channel`` says where they were shown (``api`` or ``page``).

    Raises
    ------
    ServiceError
        As :func:`diagnosis.selectors_similar.similar_cases` (bad k, no signed report, no finding).
    """
    result = similar_cases(study=study, k=k)
    audit_record(actor=user, action=AuditLog.Action.VIEW, target_type="similar_cases", target_id=study.pk,
                 hospital=study.hospital, detail={"k": k, "via": channel,
                                                  "cases": [c["study_id"] for c in result["cases"]]})
    return result
