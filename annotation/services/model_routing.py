""""One organ, one model": a hospital administrator names the model the one-click menu offers first
for a body part."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Role, User
from portal.services import audit_record

from ..models import OrganDefaultModel
from ..selectors import segmentation_model_list
from ..selectors_models import body_part_key

__all__ = ["organ_default_model_set"]


@transaction.atomic
def organ_default_model_set(*, user: User, body_part: str, model_id: int) -> OrganDefaultModel:
    """Make a model the default of the user's hospital for one body part (replacing the previous one).

    Parameters
    ----------
    user : User
        A hospital administrator; the default belongs to their hospital.
    body_part : str
        Compared with the model's and the series' body part case-insensitively; stored lower-case.
    model_id : int
        An active model offered to the hospital whose body part is ``body_part``.

    Raises
    ------
    portal.api_errors.ServiceError
        ``forbidden`` (403) for anyone but a hospital administrator; ``model_not_found`` (404) for a
        model the hospital is not offered; ``body_part_required`` and ``model_body_part_mismatch`` (400).
    """
    if user.role != Role.HOSPITAL_ADMIN or user.hospital_id is None:
        raise ServiceError(_("Only a hospital administrator may set the default model of an organ."),
                           code="forbidden", status_code=403)
    part = body_part_key(body_part)
    if not part:
        raise ServiceError(_("Name the body part the default model is for."), code="body_part_required")
    model = segmentation_model_list(user=user).filter(pk=model_id).first()
    if model is None:
        raise ServiceError(_("No such model is offered to your hospital."), code="model_not_found", status_code=404)
    if body_part_key(model.body_part) != part:
        raise ServiceError(
            _("%(model)s segments %(model_part)s, not %(body_part)s: choose a model made for this body part."),
            params={"model": str(model), "model_part": model.body_part or "-", "body_part": part},
            code="model_body_part_mismatch")
    default, created = OrganDefaultModel.objects.select_for_update().get_or_create(
        hospital_id=user.hospital_id, body_part=part, defaults={"segmentation_model": model, "set_by": user})
    previous = None if created else default.segmentation_model_id
    if not created:
        default.segmentation_model, default.set_by = model, user
    default.full_clean()
    default.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE if created else AuditLog.Action.UPDATE,
                 target_type="organ_default_model", target_id=default.pk,
                 detail={"body_part": part, "model": model.pk, "previous_model": previous})
    return default
