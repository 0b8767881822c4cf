"""The review workflow: assigning studies, moving versions through draft → submitted → approved /
rejected, and comments."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import ReviewStatus, Segmentation, Study


def study_assign(*, user: User, study: Study, annotator: User, review_only: bool = False):
    """Assign a study to an annotator (or doctor) of the same hospital; idempotent per person.

    Raises ServiceError ``bad_annotator`` for a user of another hospital or a patient.
    """
    from portal.models import STAFF_ROLES

    from ..models import StudyAssignment

    if annotator.role not in STAFF_ROLES or annotator.hospital_id != study.hospital_id:
        raise ServiceError(_("Studies can be assigned only to staff of the study's hospital."), code="bad_annotator")
    with transaction.atomic():
        assignment, created = StudyAssignment.objects.get_or_create(
            study=study, annotator=annotator, defaults={"assigned_by": user, "review_only": review_only})
        if not created and assignment.review_only != review_only:
            assignment.review_only = review_only
            assignment.save(update_fields=["review_only"])
        audit_record(actor=user, action=AuditLog.Action.CREATE if created else AuditLog.Action.UPDATE,
                     target_type="study_assignment", target_id=assignment.pk, hospital=study.hospital,
                     detail={"annotator": annotator.pk})
    return assignment


_TRANSITIONS = {
    "submit": ({"draft", "rejected"}, "submitted"),
    "approve": ({"submitted"}, "approved"),
    "reject": ({"submitted"}, "rejected"),
}


def segmentation_review(*, user: User, segmentation: Segmentation, decision: str, text: str = ""):
    """Move a version through draft → submitted → approved / rejected and record the comment.

    Annotators and doctors submit; only doctors and hospital administrators (clinicians) approve or
    reject, and not their own version. A rejection needs a comment.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_decision``; ``invalid_transition`` (409) from the current status; ``not_reviewer``
        (403); ``comment_required``.
    """
    from portal.permissions import is_clinician

    from ..models import ReviewComment, StudyAssignment

    if decision not in _TRANSITIONS:
        raise ServiceError(_("The decision must be submit, approve or reject."), code="bad_decision")
    allowed_from, target = _TRANSITIONS[decision]
    if decision in ("approve", "reject"):
        if not is_clinician(user):
            raise ServiceError(_("Only doctors review segmentations."), code="not_reviewer", status_code=403)
        if segmentation.created_by_id == user.pk:
            raise ServiceError(_("A version is reviewed by someone other than its author."),
                               code="not_reviewer", status_code=403)
    if decision == "reject" and not text.strip():
        raise ServiceError(_("Say why the version is rejected."), code="comment_required")
    with transaction.atomic():
        current = Segmentation.objects.select_for_update().get(pk=segmentation.pk)
        if current.review_status not in allowed_from:
            raise ServiceError(_("A version with status “%(status)s” cannot become “%(target)s”."),
                               params={"status": ReviewStatus(current.review_status).label,
                                       "target": ReviewStatus(target).label},
                               code="invalid_transition", status_code=409)
        current.review_status = target
        current.save(update_fields=["review_status"])
        study = segmentation.series.study
        comment = ReviewComment.objects.create(study=study, segmentation=current, author=user,
                                               decision=decision, text=text[:4000])
        if decision == "submit":
            StudyAssignment.objects.filter(study=study, annotator=user).update(status=StudyAssignment.Status.SUBMITTED)
        elif decision == "approve" and current.created_by_id:
            StudyAssignment.objects.filter(study=study, annotator_id=current.created_by_id).update(
                status=StudyAssignment.Status.DONE)
        audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="segmentation", target_id=current.pk,
                     hospital=study.hospital, detail={"review": decision})
    segmentation.review_status = target
    return comment


def review_comment_add(*, user: User, study: Study, text: str):
    """Add a plain comment on a study. Raises ServiceError ``comment_required`` for empty text."""
    from ..models import ReviewComment

    if not text.strip():
        raise ServiceError(_("The comment is empty."), code="comment_required")
    comment = ReviewComment.objects.create(study=study, author=user, text=text[:4000])
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="review_comment", target_id=comment.pk,
                 hospital=study.hospital)
    return comment
