"""Pages of the follow-up app.

Patients (mobile first, 390×844): home, my reports, my studies with key images, my plan and
reminders, my questionnaires (fill in with autosave), my conversations. Staff: the follow-up
dashboard (patients needing attention, inbox), a patient's follow-up (plans, questionnaires, score
charts), questionnaires (builder, cohort view, CSV export). Chat pages serve both.
"""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language
from django.views.decorators.http import require_POST
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Role, User
from portal.permissions import is_clinician, is_clinician_or_patient
from portal.services import audit_record

from . import selectors, services
from .plain_summary import report_summary

logger = logging.getLogger(__name__)


def _require_patient(request):
    if request.user.role != Role.PATIENT:
        raise PermissionDenied(_("This page is for patients."))
    return selectors.patient_of_user(user=request.user)


def _require_staff(request):
    """Let clinicians through: follow-up pages show mental-health data and patient contact, which
    annotators may not see (docs/permissions.md)."""
    if not is_clinician(request.user):
        raise PermissionDenied(_("This page is for doctors."))


def _require_clinician_or_patient(request):
    if not is_clinician_or_patient(request.user):
        raise PermissionDenied(_("This page is for doctors and patients."))


@login_required
def index(request):
    """Patients go to their own pages; staff to the follow-up dashboard."""
    if request.user.role == Role.PATIENT:
        return redirect("followup:me")
    _require_staff(request)
    services.instruments_install()
    return render(request, "followup/dashboard.html", {
        "attention": selectors.patients_needing_attention(user=request.user),
        "conversations": selectors.conversation_list(user=request.user),
        "notifications": selectors.notification_list(user=request.user, limit=10),
        "patients": selectors.patient_visible_queryset(request.user).order_by("mrn")[:200],
    })


@login_required
def me(request):
    patient = _require_patient(request)
    conversations = selectors.conversation_list(user=request.user)
    return render(request, "followup/me.html", {
        "tab": "home",
        "patient": patient,
        "upcoming": selectors.upcoming_occurrences(patient=patient, days=14)[:5],
        "open_questionnaires": [a for a in selectors.assignment_list_for_patient(patient=patient)
                                if a.status != a.Status.COMPLETED],
        "unread": sum(c.unread_count for c in conversations),
        "notifications": selectors.notification_list(user=request.user, limit=5),
    })


def _linked(paragraph: str) -> list[dict]:
    """Return a paragraph as knowledge-graph link segments; plain text when the graph cannot be reached."""
    from knowledge_graph.services import text_link_segments

    try:
        return text_link_segments(paragraph)
    except Exception:  # noqa: BLE001 - the report must show even while the graph is down
        logger.warning("knowledge graph unavailable for report links", exc_info=True)
        return [{"text": paragraph}]


@login_required
def my_reports(request):
    from diagnosis.selectors import report_visible_queryset
    from diagnosis.selectors_growth import growth_page_payload
    from diagnosis.services import report_content

    patient = _require_patient(request)
    reports = (report_visible_queryset(request.user).filter(study__patient=patient)
               .select_related("study", "study__hospital", "study__patient", "signed_by").order_by("-signed_at"))
    rows = [{"report": r, "content": report_content(r)} for r in reports]
    for row in rows:
        # Figures over time as the signed report froze them (a patient never sees unsigned figures).
        row["growth_page"] = growth_page_payload(row["content"].get("growth"))
    for row in rows:
        # Each paragraph as plain and linked pieces: terms the knowledge graph knows open its panel
        # in plain words (followup sits above knowledge_graph, so the linking is done here).
        row["summary"] = [_linked(paragraph) for paragraph in report_summary(row["content"])]
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="report_list", target_id=patient.pk,
                 detail={"reports": len(rows)})
    return render(request, "followup/my_reports.html", {"rows": rows, "tab": "reports"})


@login_required
def my_studies(request):
    from annotation.selectors import study_list

    from diagnosis.selectors import report_visible_queryset
    from diagnosis.selectors_growth import growth_page_payload, study_growth_for

    _require_patient(request)
    studies = list(study_list(user=request.user))
    # A patient sees signed reports only; a study without one says when its report will be visible.
    reported = set(report_visible_queryset(request.user).filter(study__in=studies).values_list("study_id", flat=True))
    for study in studies:
        study.has_signed_report = study.pk in reported
        # Figures over time as the study's latest signed report froze them (never live figures).
        study.growth_page = (growth_page_payload(study_growth_for(user=request.user, study_id=study.pk))
                             if study.has_signed_report else None)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="study_list", target_id="",
                 detail={"studies": len(studies)})
    return render(request, "followup/my_studies.html",
                  {"tab": "studies", "studies": studies, "planes": ("axial", "coronal", "sagittal")})


@login_required
def my_plan(request):
    patient = _require_patient(request)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="followup_plan", target_id=patient.pk)
    return render(request, "followup/my_plan.html", {
        "tab": "plan",
        "plans": selectors.plan_list_for_patient(user=request.user, patient=patient),
        "upcoming": selectors.upcoming_occurrences(patient=patient, days=60),
        "notifications": selectors.notification_list(user=request.user, limit=20),
        "contact": getattr(request.user, "followup_contact", None),
    })


@login_required
@require_POST
def occurrence_done(request, occurrence_id: int):
    occurrence = selectors.occurrence_get(user=request.user, occurrence_id=occurrence_id)
    try:
        services.occurrence_complete(actor=request.user, occurrence=occurrence)
    except ServiceError:
        pass
    return redirect(request.POST.get("next") or "followup:my-plan")


@login_required
def my_questionnaires(request):
    patient = _require_patient(request)
    return render(request, "followup/my_questionnaires.html",
                  {"tab": "questionnaires", "assignments": selectors.assignment_list_for_patient(patient=patient)})


@login_required
def my_questionnaire(request, assignment_id: int):
    _require_patient(request)
    assignment = selectors.assignment_get(user=request.user, assignment_id=assignment_id)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="questionnaire_assignment",
                 target_id=assignment.pk, hospital=assignment.patient.hospital)
    return render(request, "followup/questionnaire_fill.html", {
        "tab": "questionnaires",
        "assignment": assignment,
        "config": {"assignment_id": assignment.pk, "api": reverse("followup-api:assignment", args=[assignment.pk]),
                   "submit": reverse("followup-api:assignment-submit", args=[assignment.pk]),
                   "definition": assignment.questionnaire.definition, "answers": assignment.answers,
                   "status": assignment.status, "score": assignment.score},
    })


@login_required
def conversations(request):
    _require_clinician_or_patient(request)
    rows = selectors.conversation_list(user=request.user)
    staff_choices = []
    if request.user.role == Role.PATIENT:
        patient = selectors.patient_of_user(user=request.user)
        staff_choices = User.objects.filter(hospital_id=patient.hospital_id, role=Role.DOCTOR, is_active=True).order_by("pk")
    return render(request, "followup/conversations.html", {"tab": "chat", "conversations": rows, "staff_choices": staff_choices})


@login_required
@require_POST
def conversation_start(request):
    """Open a direct conversation: a patient with a doctor of their hospital, or a doctor with a patient."""
    try:
        if request.user.role == Role.PATIENT:
            patient = selectors.patient_of_user(user=request.user)
            doctor = User.objects.filter(pk=int(request.POST.get("doctor_id", 0)), hospital_id=patient.hospital_id,
                                         role=Role.DOCTOR).first()
            if doctor is None:
                raise ServiceError(_("Choose a doctor."), code="invalid_request")
            conversation = services.conversation_create(actor=request.user, patient=patient, staff=[doctor])
        else:
            _require_staff(request)
            patient = selectors.patient_get(user=request.user, patient_id=int(request.POST.get("patient_id", 0)))
            staff = [request.user] + list(User.objects.filter(pk__in=[int(x) for x in request.POST.getlist("staff_ids")
                                                                       if x.isdigit()]).exclude(pk=request.user.pk))
            kind = "care_team" if len(staff) > 1 else "direct"
            conversation = services.conversation_create(actor=request.user, patient=patient, staff=staff, kind=kind,
                                                        title=request.POST.get("title", ""))
    except (ServiceError, ValueError) as exc:
        from django.contrib import messages

        messages.error(request, getattr(exc, "message", str(exc)))
        return redirect("followup:conversations")
    return redirect("followup:conversation", conversation.pk)


@login_required
def conversation(request, conversation_id: int):
    from diagnosis.selectors import report_visible_queryset

    from annotation.selectors import study_visible_queryset

    _require_clinician_or_patient(request)
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="conversation", target_id=conv.pk,
                 hospital=conv.hospital)
    reports = (report_visible_queryset(request.user).filter(study__patient=conv.patient, status="final")
               .order_by("-pk")[:20])
    studies = study_visible_queryset(request.user).filter(patient=conv.patient).order_by("-pk")[:20]
    return render(request, "followup/conversation.html", {
        "tab": "chat",
        "hide_tabbar": True,  # the chat takes the whole phone screen; the header leads back
        "conversation": conv,
        "members": list(conv.members.select_related("user")),
        "links": [{"type": "report", "id": r.pk,
                   "label": _("Report v%(version)s #%(id)s") % {"version": r.version, "id": r.pk}} for r in reports]
                 + [{"type": "study", "id": s.pk,
                     "label": _("Study #%(id)s %(description)s") % {"id": s.pk, "description": s.description}}
                    for s in studies],
        "config": {"conversation_id": conv.pk, "user_id": request.user.pk,
                   "websocket": f"/ws/followup/conversations/{conv.pk}/",
                   "messages_api": reverse("followup-api:messages", args=[conv.pk]),
                   "attachments_api": reverse("followup-api:attachments", args=[conv.pk]),
                   "is_patient": request.user.role == Role.PATIENT,
                   "report_url": "/followup/me/reports/#report-" if request.user.role == Role.PATIENT else "/reports/",
                   "study_url": "/followup/me/studies/#study-" if request.user.role == Role.PATIENT else "/studies/"},
    })


@login_required
def patient_followup(request, patient_id: int):
    _require_staff(request)
    patient = selectors.patient_get(user=request.user, patient_id=patient_id)
    services.instruments_install()
    audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="followup_patient", target_id=patient.pk,
                 hospital=patient.hospital)
    return render(request, "followup/patient.html", {
        "patient": patient,
        "plans": selectors.plan_list_for_patient(user=request.user, patient=patient),
        "assignments": selectors.assignment_list_for_patient(patient=patient),
        "questionnaires": selectors.questionnaire_visible_queryset(request.user).order_by("code", "-version"),
        "results": selectors.results_over_time(patient=patient),
        "scales": selectors.score_scales(patient=patient, language=get_language() or "zh-hans"),
        "can_edit": is_clinician(request.user),
    })


@login_required
def questionnaires(request):
    _require_staff(request)
    services.instruments_install()
    return render(request, "followup/questionnaires.html", {
        "questionnaires": selectors.questionnaire_visible_queryset(request.user).order_by("code", "-version"),
        "groups": selectors.group_list(user=request.user),
        "can_edit": is_clinician(request.user),
    })


@login_required
def questionnaire_cohort(request, questionnaire_id: int):
    _require_staff(request)
    questionnaire = selectors.questionnaire_get(user=request.user, questionnaire_id=questionnaire_id)
    return render(request, "followup/cohort.html", {
        "questionnaire": questionnaire, "groups": selectors.group_list(user=request.user),
        "config": {"cohort_api": reverse("followup-api:questionnaire-cohort", args=[questionnaire.pk]),
                   "csv": reverse("followup-api:questionnaire-csv", args=[questionnaire.pk])},
    })


@login_required
def questionnaire_builder(request):
    _require_staff(request)
    if not is_clinician(request.user):
        raise PermissionDenied(_("This page is for doctors."))
    return render(request, "followup/builder.html", {
        "config": {"api": reverse("followup-api:questionnaires"),
                   "import_api": reverse("followup-api:questionnaire-import")}})
