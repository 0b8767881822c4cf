"""Questionnaires: definitions and versions, patient groups, assignment, autosave and submission with
scoring, FHIR R4 import and export, and the research CSV.

Definitions, answers and scores are checked by the plain-Python :mod:`followup.questionnaires`.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from annotation.models import Patient
from portal.api_errors import ServiceError, message_translate
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import Notification, PatientGroup, PlanOccurrence, Questionnaire, QuestionnaireAssignment
from ..questionnaires import AnswerError, DefinitionError, answers_validate, definition_validate, score_response
from .common import clinician_check
from .notifications import notification_create


def _answer_errors_text(exc: AnswerError):
    """The answer errors of ``exc`` as one lazy text, translated when the response is rendered."""
    def text() -> str:
        return "; ".join(f"{link_id}: {message_translate(template, params).strip()}"
                         for link_id, (template, params) in exc.templates.items())
    return lazy(text, str)()


def _definition_or_error(definition: dict) -> dict:
    try:
        return definition_validate(definition)
    except DefinitionError as exc:
        raise ServiceError.from_error(exc, code="invalid_definition") from None


@transaction.atomic
def questionnaire_create(*, actor: User | None, code: str, title: str, definition: dict, description: str = "",
                         hospital=None, is_standard: bool = False) -> Questionnaire:
    """Save a questionnaire; a code already used by the hospital gets the next version.

    Raises
    ------
    ServiceError
        400 when the definition is invalid (the message says where).
    """
    definition = _definition_or_error(definition)
    if actor is not None and hospital is None and not is_standard:
        hospital = actor.hospital
    latest = (Questionnaire.objects.filter(hospital=hospital, code=code).aggregate(m=Max("version"))["m"] or 0)
    questionnaire = Questionnaire(hospital=hospital, code=code, version=latest + 1, title=title, description=description,
                                  definition=definition, is_standard=is_standard, created_by=actor)
    try:
        questionnaire.full_clean()
    except ValidationError as exc:
        raise ServiceError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()),
                           code="invalid_input") from None
    questionnaire.save()
    if actor is not None:
        audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="questionnaire", target_id=questionnaire.pk)
    return questionnaire


def instruments_install() -> list[Questionnaire]:
    """Install the shipped standard instruments (PHQ-9, GAD-7) once (idempotent)."""
    from ..instruments import instruments_load

    rows = []
    for instrument in instruments_load():
        existing = Questionnaire.objects.filter(hospital=None, code=instrument["code"],
                                                version=instrument["version"]).first()
        if existing is None:
            existing = Questionnaire.objects.create(
                hospital=None, code=instrument["code"], version=instrument["version"], title=instrument["title"],
                description=instrument["description"], definition=definition_validate(instrument["definition"]),
                is_standard=True)
        rows.append(existing)
    return rows


@transaction.atomic
def group_create(*, actor: User, name: str, patients: list[Patient]) -> PatientGroup:
    """Create a named cohort of patients of the actor's hospital.

    Raises
    ------
    ServiceError
        400 when a patient is of another hospital or the name is taken.
    """
    if any(p.hospital_id != actor.hospital_id for p in patients):
        raise ServiceError(_("Every patient must be of your hospital."), code="wrong_hospital")
    if PatientGroup.objects.filter(hospital_id=actor.hospital_id, name=name).exists():
        raise ServiceError(_("A group with this name exists."), code="duplicate_name")
    group = PatientGroup(hospital_id=actor.hospital_id, name=name)
    group.full_clean()
    group.save()
    group.patients.set(patients)
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="patient_group", target_id=group.pk,
                 detail={"patients": len(patients)})
    return group


@transaction.atomic
def questionnaire_assign(*, actor: User, questionnaire: Questionnaire, due_date: dt.date,
                         patients: list[Patient] = (), group: PatientGroup | None = None) -> list[QuestionnaireAssignment]:
    """Assign a questionnaire to patients or to every patient of a group, due on ``due_date``.

    Raises
    ------
    ServiceError
        403 when the actor is not a doctor of every patient's hospital; 400 when nobody is chosen or
        the due date is in the past.
    """
    targets = list(patients) + (list(group.patients.all()) if group is not None else [])
    targets = list({p.pk: p for p in targets}.values())
    if not targets:
        raise ServiceError(_("Choose a patient or a group."), code="no_patients")
    if due_date < timezone.localdate():
        raise ServiceError(_("The due date is in the past."), code="invalid_due_date")
    rows = []
    for patient in targets:
        clinician_check(actor, patient)
        assignment = QuestionnaireAssignment(questionnaire=questionnaire, patient=patient, group=group,
                                             assigned_by=actor, due_date=due_date)
        assignment.full_clean()
        assignment.save()
        rows.append(assignment)
        if patient.user_id:
            notification_create(user_id=patient.user_id, kind=Notification.Kind.QUESTIONNAIRE,
                                title_msgid=gettext_noop("Please fill in the questionnaire: %(title)s (by %(due)s)"),
                                title_params={"title": questionnaire.title, "due": due_date.isoformat()},
                                url=f"/followup/me/questionnaires/{assignment.pk}/",
                                dedupe_key=f"assign:{assignment.pk}")
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="questionnaire_assignment",
                 target_id=questionnaire.pk, detail={"patients": len(rows), "group": group.pk if group else None})
    return rows


def _check_patient_owns(user: User, assignment: QuestionnaireAssignment) -> None:
    if assignment.patient.user_id != user.pk:
        raise ServiceError(_("Only the patient fills in their questionnaire."), code="forbidden", status_code=403)


@transaction.atomic
def assignment_autosave(*, user: User, assignment: QuestionnaireAssignment, answers: dict) -> QuestionnaireAssignment:
    """Save partial answers (merged into what is stored; ``None`` clears an answer).

    Raises
    ------
    ServiceError
        403 for anyone but the patient; 409 once submitted; 400 for an answer of the wrong form
        (what is stored stays as it was).
    """
    _check_patient_owns(user, assignment)
    assignment = QuestionnaireAssignment.objects.select_for_update().select_related("questionnaire").get(pk=assignment.pk)
    if assignment.status == QuestionnaireAssignment.Status.COMPLETED:
        raise ServiceError(_("This questionnaire has been submitted."), code="already_submitted", status_code=409)
    if not isinstance(answers, dict):
        raise ServiceError(_("Answers are an object of question → answer."), code="invalid_answers")
    merged = {**assignment.answers, **answers}
    merged = {k: v for k, v in merged.items() if v not in (None, "", [])}
    definition = assignment.questionnaire.definition
    try:
        # Keep answers of questions that are hidden now: the patient may change their mind back.
        answers_validate(definition, merged, complete=False)
        by_id = {i["link_id"] for i in definition["items"]}
        unknown = [k for k in merged if k not in by_id]
        if unknown:
            raise AnswerError({k: "no such question" for k in unknown})
    except AnswerError as exc:
        raise ServiceError(_answer_errors_text(exc), code="invalid_answers") from None
    assignment.answers = merged
    assignment.status = QuestionnaireAssignment.Status.IN_PROGRESS
    assignment.save(update_fields=["answers", "status", "updated_at"])
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="questionnaire_assignment",
                 target_id=assignment.pk, detail={"answers": len(merged)})
    return assignment


def assignment_submit(*, user: User, assignment: QuestionnaireAssignment, answers: dict | None = None) -> QuestionnaireAssignment:
    """Submit (with any last answers), score with the questionnaire's rules and notify the doctor
    when the score asks for attention.

    Raises
    ------
    ServiceError
        403 for anyone but the patient; 409 when already submitted; 400 when a required visible
        question is unanswered or an answer is invalid.
    """
    if answers:
        # Saved on their own: a submission refused for a missing answer keeps what was typed.
        assignment = assignment_autosave(user=user, assignment=assignment, answers=answers)
    _check_patient_owns(user, assignment)
    with transaction.atomic():
        return _assignment_submit_locked(user=user, assignment=assignment)


def _assignment_submit_locked(*, user: User, assignment: QuestionnaireAssignment) -> QuestionnaireAssignment:
    assignment = QuestionnaireAssignment.objects.select_for_update().select_related("questionnaire", "patient").get(
        pk=assignment.pk)
    if assignment.status == QuestionnaireAssignment.Status.COMPLETED:
        raise ServiceError(_("This questionnaire has been submitted."), code="already_submitted", status_code=409)
    definition = assignment.questionnaire.definition
    try:
        kept = answers_validate(definition, assignment.answers, complete=True)
    except AnswerError as exc:
        raise ServiceError(_answer_errors_text(exc), code="incomplete_answers") from None
    result = score_response(definition, kept)
    assignment.answers = kept
    assignment.score = result.to_dict()
    assignment.status = QuestionnaireAssignment.Status.COMPLETED
    assignment.submitted_at = timezone.now()
    assignment.save()
    if assignment.plan_item_id:
        PlanOccurrence.objects.filter(item_id=assignment.plan_item_id, status__in=[
            PlanOccurrence.Status.PENDING, PlanOccurrence.Status.OVERDUE], due_date__lte=assignment.due_date).update(
            status=PlanOccurrence.Status.DONE, completed_at=timezone.now())
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="questionnaire_assignment",
                 target_id=assignment.pk, hospital=assignment.patient.hospital, detail={"submitted": True})
    if result.attention and assignment.assigned_by_id:
        notification_create(user_id=assignment.assigned_by_id, kind=Notification.Kind.QUESTIONNAIRE,
                            title_msgid=gettext_noop("Questionnaire result needs attention: %(mrn)s · %(title)s"),
                            title_params={"mrn": assignment.patient.mrn, "title": assignment.questionnaire.title},
                            url=f"/followup/patients/{assignment.patient_id}/",
                            dedupe_key=f"assign:{assignment.pk}:attention", send_external=False)
    return assignment


def questionnaire_import_fhir(*, actor: User, resource: dict) -> Questionnaire:
    """Create a questionnaire from a FHIR R4 Questionnaire (validated with fhir.resources).

    Raises
    ------
    ServiceError
        400 when the resource is not valid FHIR or uses an unsupported item type.
    """
    from ..questionnaires.fhir import FhirError, questionnaire_from_fhir

    try:
        parsed = questionnaire_from_fhir(resource)
    except (FhirError, DefinitionError) as exc:
        raise ServiceError.from_error(exc, code="invalid_fhir") from None
    return questionnaire_create(actor=actor, code=parsed["code"], title=parsed["title"][:200],
                                description=parsed["description"], definition=parsed["definition"])


def questionnaire_fhir_url(questionnaire: Questionnaire) -> str:
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}/fhir/Questionnaire/{questionnaire.code}"


def questionnaire_export_fhir(questionnaire: Questionnaire) -> dict:
    from ..questionnaires.fhir import questionnaire_to_fhir

    resource = questionnaire_to_fhir(questionnaire.definition, code=questionnaire.code, title=questionnaire.title,
                                     version=questionnaire.version, url=questionnaire_fhir_url(questionnaire),
                                     description=questionnaire.description)
    resource["id"] = str(questionnaire.pk)
    return resource


def assignment_export_fhir(*, user: User, assignment: QuestionnaireAssignment) -> dict:
    """Return the assignment's answers as a FHIR R4 QuestionnaireResponse (audited as an export)."""
    from ..questionnaires.fhir import response_to_fhir

    questionnaire = assignment.questionnaire
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="questionnaire_assignment",
                 target_id=assignment.pk, hospital=assignment.patient.hospital, detail={"format": "fhir"})
    resource = response_to_fhir(
        questionnaire.definition, assignment.answers,
        questionnaire_url=f"{questionnaire_fhir_url(questionnaire)}|{questionnaire.version}",
        status="completed" if assignment.status == QuestionnaireAssignment.Status.COMPLETED else "in-progress",
        authored=(assignment.submitted_at or assignment.updated_at).isoformat(),
        subject_reference=f"Patient/{assignment.patient_id}", score=assignment.score.get("total"))
    resource["id"] = str(assignment.pk)
    return resource


def assignment_import_fhir(*, user: User, assignment: QuestionnaireAssignment, resource: dict) -> QuestionnaireAssignment:
    """Fill an assignment from a FHIR R4 QuestionnaireResponse (a completed one is submitted).

    Raises
    ------
    ServiceError
        400 for invalid FHIR or answers; 403/409 as :func:`assignment_autosave`.
    """
    from ..questionnaires.fhir import FhirError, response_from_fhir

    try:
        answers = response_from_fhir(assignment.questionnaire.definition, resource)
    except FhirError as exc:
        raise ServiceError.from_error(exc, code="invalid_fhir") from None
    if resource.get("status") == "completed":
        return assignment_submit(user=user, assignment=assignment, answers=answers)
    return assignment_autosave(user=user, assignment=assignment, answers=answers)


CSV_FIXED_COLUMNS = ["assignment_id", "patient_id", "mrn", "questionnaire", "version", "submitted_at", "total", "band"]
#: De-identified mode: the research pseudonym replaces the assignment id, patient id and MRN.
CSV_DEIDENTIFIED_COLUMNS = ["pseudonym", "questionnaire", "version", "submitted_at", "total", "band"]


def _deidentified_answer(item: dict, value, offset: dt.timedelta):
    """A date answer shifted like a DICOM DA (PS3.15 E.3.6); other answers as given (free text is left out)."""
    from annotation.dicomnet.deidentify import shift_date

    if item.get("type") == "date" and isinstance(value, str) and value:
        try:
            return shift_date(dt.date.fromisoformat(value), offset).isoformat()
        except ValueError:
            return ""
    return value


def results_csv_rows(*, user: User, questionnaire: Questionnaire, assignments, deidentified: bool = False) -> list[list]:
    """Return CSV rows (header first) of completed assignments for research: one row per response,
    one column per question (multiple choice joined with ';'), then the total and band. Audited, with the mode.

    ``deidentified``: PS3.15 Annex E Basic Profile with the Modified Dates Option, as the DICOM research
    export (:func:`annotation.services.study_export_deidentified`) applies it: no assignment id, portal
    patient id, MRN or name; the patient column is the patient's research pseudonym
    (:func:`annotation.services.patient_pseudonym_get_or_create`, the one the study export writes as
    PatientID, so both join on it); ``submitted_at`` and date answers are shifted by the patient's DICOM
    date offset (:func:`annotation.services.patient_date_offset`); free-text questions are left out
    (they may name people, like the profile's comment attributes); rows are ordered by pseudonym.
    """
    from annotation.dicomnet.deidentify import shift_datetime
    from annotation.services import patient_date_offset, patient_pseudonym_get_or_create

    definition_items = questionnaire.definition["items"]
    if deidentified:
        definition_items = [i for i in definition_items if i.get("type") != "text"]
    items = [i["link_id"] for i in definition_items]
    rows: list[list] = [(CSV_DEIDENTIFIED_COLUMNS if deidentified else CSV_FIXED_COLUMNS) + items]
    body: list[list] = []
    patients: dict[int, tuple[str, dt.timedelta]] = {}
    for a in assignments:
        answers = [";".join(v) if isinstance(v, list) else ("" if v is None else v)
                   for v in (a.answers.get(i) for i in items)]
        if not deidentified:
            body.append([a.pk, a.patient_id, a.patient.mrn, a.questionnaire.code, a.questionnaire.version,
                         a.submitted_at.isoformat() if a.submitted_at else "", a.score.get("total", ""),
                         a.score.get("band") or "", *answers])
            continue
        if a.patient_id not in patients:
            patients[a.patient_id] = (patient_pseudonym_get_or_create(patient=a.patient).pseudonym,
                                      patient_date_offset(patient=a.patient))
        pseudonym, offset = patients[a.patient_id]
        answers = [_deidentified_answer(item, value, offset) for item, value in zip(definition_items, answers)]
        submitted = shift_datetime(timezone.localtime(a.submitted_at), offset) if a.submitted_at else None
        body.append([pseudonym, a.questionnaire.code, a.questionnaire.version, submitted.isoformat() if submitted else "",
                     a.score.get("total", ""), a.score.get("band") or "", *answers])
    if deidentified:
        body.sort(key=lambda row: (row[0], row[3]))
    rows.extend(body)
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="questionnaire", target_id=questionnaire.pk,
                 detail={"format": "csv", "rows": len(rows) - 1, "deidentified": deidentified})
    return rows
