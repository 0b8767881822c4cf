"""The permission matrix of docs/permissions.md, walked over the API and the pages with real users.

The test parses the Markdown tables, so the document and the code cannot drift: every row is requested
by a user of each role on real records (a real CT imported twice, reports signed, findings, plans,
questionnaires, conversations with attachments), and every follow-up and diagnosis API route must have
a row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.helpers import api_client

DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
ROLES = ("platform admin", "hospital admin", "doctor", "annotator", "patient", "other hospital's staff")
CELLS = {"allowed", "denied", "own-only"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DENIED_STATUSES = {403, 404}
NOT_THROUGH = {401, 403, 404, 405}
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82")


@dataclass(frozen=True)
class Row:
    method: str
    name: str
    path: str
    cells: dict[str, str]


def parse_section(heading: str) -> list[Row]:
    """Return the rows of the matrix table under ``## heading`` of docs/permissions.md."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/permissions.md has no '## {heading}' section"
    header = None
    rows: list[Row] = []
    for line in match.group(1).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if cells[0] == "method":
            header = cells
            assert tuple(cells[3:]) == ROLES, f"the columns of '{heading}' are {cells[3:]}, expected {ROLES}"
            continue
        if set(cells[0]) <= {"-", " "}:
            continue
        assert header, f"a row before the header in '{heading}': {line}"
        assert cells[0] in METHODS, f"unknown method in {line}"
        assert set(cells[3:]) <= CELLS, f"a cell is not one of {sorted(CELLS)} in {line}"
        rows.append(Row(cells[0], cells[1], cells[2], dict(zip(ROLES, cells[3:], strict=True))))
    assert rows, f"no rows under '## {heading}'"
    return rows


def _api_routes() -> set[tuple[str, str]]:
    """Return (method, URL name) of every follow-up and diagnosis API route the resolver knows."""
    found: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str, namespace: str) -> None:
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                ns = namespace
                if entry.namespace:
                    ns = f"{namespace}{entry.namespace}:"
                walk(entry.url_patterns, route, ns)
            elif isinstance(entry, URLPattern):
                view_class = getattr(entry.callback, "view_class", None)
                if view_class is None or not route.startswith("api/"):
                    continue
                if not view_class.__module__.startswith(("followup.", "diagnosis.")):
                    continue
                assert entry.name, f"the API route {route} has no name"
                for method in METHODS:
                    if hasattr(view_class, method.lower()):
                        found.add((method, namespace + entry.name))

    walk(get_resolver().url_patterns, "", "")
    return found


def test_every_followup_and_diagnosis_api_route_has_a_row():
    routes = _api_routes()
    documented = {(r.method, r.name) for r in parse_section("API")}
    assert len(routes) > 50  # the resolver walk found the API (a broken walk must not pass silently)
    missing = sorted(routes - documented)
    assert not missing, f"API routes without a row in docs/permissions.md: {missing}"
    unknown = sorted(documented - routes)
    assert not unknown, f"rows of docs/permissions.md naming no follow-up/diagnosis API route: {unknown}"


# --- the world the matrix is walked in --------------------------------------------------------------

@pytest.fixture
def world(hospital, doctor, annotator, patient_user, other_doctor, small_ct_study, small_ct_path):
    """Two patients of one hospital with a study, a signed report, a finding, a plan, a questionnaire
    assignment and a conversation with an attachment each, and the users of every role."""
    from annotation import services as annotation_services
    from annotation.models import Patient, Segmentation
    from diagnosis import services as diagnosis_services
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotation.models import Series, Study
    from diagnosis.models import (
        Finding,
        FindingMatch,
        Measurement,
        PostProcessingRun,
        PostProcessingScript,
        StudyRegistration,
    )
    from followup import services as followup_services
    from followup.models import Conversation, Notification, PlanItem
    from portal.models import Role
    from tests.factories import UserFactory

    users = {
        "platform admin": UserFactory(role=Role.PLATFORM_ADMIN),
        "hospital admin": UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital),
        "doctor": doctor,
        "annotator": annotator,
        "patient": patient_user,
        "other hospital's staff": other_doctor,
    }
    second_doctor = UserFactory(role=Role.DOCTOR, hospital=hospital)
    second_patient_user = UserFactory(role=Role.PATIENT, hospital=hospital)
    second_study = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-2",
                                                    paths=[small_ct_path], modality="CT").studies[0]
    patient_1 = Patient.objects.get(hospital=hospital, mrn="MRN-1")
    patient_2 = Patient.objects.get(hospital=hospital, mrn="MRN-2")
    patient_2.user = second_patient_user
    patient_2.save()
    phq9 = followup_services.instruments_install()[0]
    questionnaire = followup_services.questionnaire_create(actor=doctor, code="matrix", title="权限测试问卷",
                                                           definition=phq9.definition)
    today = dt.date.today()

    def records(study, patient, conversation_staff, kind):
        series = study.series.get()
        label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
        label_map[10:20, 30:50, 30:50] = 1
        segmentation = annotation_services.segmentation_create(
            series=series, label_map=label_map, name="lesion", source=Segmentation.Source.MANUAL,
            label_table=[{"index": 1, "name": "lesion", "name_zh": "病灶", "color": "#ff0000"}])
        diagnosis_services.segmentation_measure(segmentation=segmentation)
        measurement = Measurement.objects.get(segmentation=segmentation)
        report = diagnosis_services.report_create_draft(user=doctor, study=study, segmentation=segmentation)
        report = diagnosis_services.report_update(user=doctor, report=report, impression="右肺结节")
        report = diagnosis_services.report_finalize(user=doctor, report=report)
        finding = diagnosis_services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                                    centroid_voxel=[15.0, 40.0, 40.0])
        plan = followup_services.plan_create(actor=doctor, patient=patient, title="随访")
        item = followup_services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION,
                                               title="阿司匹林", start_date=today, interval_days=7)
        assignment = followup_services.questionnaire_assign(actor=doctor, questionnaire=questionnaire,
                                                            due_date=today, patients=[patient])[0]
        conversation = followup_services.conversation_create(actor=conversation_staff[0], patient=patient,
                                                             staff=conversation_staff, kind=kind)
        message = followup_services.attachment_send(
            sender=conversation_staff[0], conversation=conversation,
            upload=SimpleUploadedFile("片子.png", PNG, content_type="image/png"))
        # A prior of the same patient with a stored comparison (one finding of the study is "new"), and a
        # post-processing run with a plot.
        prior = Study.objects.create(hospital=study.hospital, patient=study.patient, study_instance_uid=f"2.25.{study.pk}9",
                                     study_date=dt.date(2020, 1, 1))
        prior_series = Series.objects.get(pk=series.pk)  # a copy of the row (the images are not read here)
        prior_series.pk, prior_series.study, prior_series.series_instance_uid = None, prior, f"2.25.{study.pk}8"
        prior_series.save()
        Study.objects.filter(pk=study.pk).update(study_date=dt.date(2021, 1, 1))
        registration = StudyRegistration.objects.create(study=study, prior=prior, series=series,
                                                        prior_series=prior_series, method="test",
                                                        transform={"matrix_lps_mm": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                                                                                     [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]},
                                                        interval_days=366)
        match = FindingMatch.objects.create(registration=registration, finding=finding, status=FindingMatch.Status.NEW)
        script = PostProcessingScript.objects.create(hospital=study.hospital, name="volumes", code="pass",
                                                     sha256="0" * 64, uploaded_by=doctor)
        plot_key = default_storage.save(f"postprocessing/matrix-{study.pk}/plot.png", ContentFile(PNG))
        run = PostProcessingRun.objects.create(script=script, study=study, series=series, status="succeeded",
                                               plots=[{"name": "plot.png", "key": plot_key, "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}])
        return {"study_id": study.pk, "series_id": series.pk, "segmentation_id": segmentation.pk,
                "prior_id": prior.pk, "match_id": match.pk, "run_id": run.pk, "name": "plot.png",
                "report_id": report.pk, "finding_id": finding.pk, "patient_id": patient.pk, "plan_id": plan.pk,
                "occurrence_id": item.occurrences.get().pk, "assignment_id": assignment.pk,
                "conversation_id": conversation.pk, "attachment_id": message.attachment.pk,
                "questionnaire_id": questionnaire.pk, "plane": "axial",
                "observation_id": f"measurement-{measurement.pk}-volume"}

    own = records(small_ct_study, patient_1, [doctor, users["hospital admin"]], Conversation.Kind.CARE_TEAM)
    foreign = records(second_study, patient_2, [second_doctor], Conversation.Kind.DIRECT)
    notifications = {
        user.pk: followup_services.notification_create(user_id=user.pk, kind=Notification.Kind.MESSAGE,
                                                       title="新消息", send_external=False).pk
        for user in [*users.values(), second_doctor]
    }
    return {"users": users, "own": own, "foreign": foreign, "notifications": notifications,
            "someone_else": second_doctor}


def _kwargs(world, row: Row, role: str, which: str) -> dict:
    names = re.findall(r"<(\w+)>", row.path)
    user = world["users"][role]
    values = dict(world[which])
    values["notification_id"] = world["notifications"][user.pk if which == "own" else world["someone_else"].pk]
    return {name: values[name] for name in names}


def _request(row: Row, user, kwargs: dict, *, page: bool) -> int:
    url = reverse(row.name, kwargs=kwargs)
    if page:
        client = Client()
        client.force_login(user)
        return client.generic(row.method, url).status_code
    client = api_client(user)
    return getattr(client, row.method.lower())(url, {}, format="json").status_code if row.method != "GET" \
        else client.get(url).status_code


def _walk(world, rows: list[Row], *, page: bool) -> list[str]:
    failures = []
    # Reads first, so that a write (an amendment, a completed reminder) cannot hide a record from a read.
    for row in sorted(rows, key=lambda r: r.method != "GET"):
        for role, cell in row.cells.items():
            user = world["users"][role]
            status = _request(row, user, _kwargs(world, row, role, "own"), page=page)
            if cell == "denied":
                if status not in DENIED_STATUSES:
                    failures.append(f"{row.method} {row.name} as {role}: expected denied, got {status}")
                continue
            if status in NOT_THROUGH or status >= 500:
                failures.append(f"{row.method} {row.name} as {role}: expected {cell}, got {status}")
            if cell == "own-only" and re.search(r"<\w+>", row.path):
                other = _request(row, user, _kwargs(world, row, role, "foreign"), page=page)
                if other not in DENIED_STATUSES:
                    failures.append(f"{row.method} {row.name} as {role} on someone else's record: "
                                    f"expected denied, got {other}")
    return failures


@pytest.mark.django_db
def test_api_follows_the_permission_matrix(world):
    failures = _walk(world, parse_section("API"), page=False)
    assert not failures, "the API differs from docs/permissions.md:\n" + "\n".join(failures)


def test_every_fhir_route_has_a_row():
    fhir = next(e for e in get_resolver().url_patterns if isinstance(e, URLResolver) and e.namespace == "fhir")
    # The CapabilityStatement is open to anyone; unknown resource types answer 404 to everyone.
    routes = {f"fhir:{e.name}" for e in fhir.url_patterns if e.name not in ("metadata", "unknown")}
    documented = {r.name for r in parse_section("FHIR")}
    assert len(routes) == 8 and routes == documented


@pytest.mark.django_db
def test_fhir_follows_the_permission_matrix(world):
    failures = _walk(world, parse_section("FHIR"), page=False)
    assert not failures, "the FHIR endpoint differs from docs/permissions.md:\n" + "\n".join(failures)


@pytest.mark.django_db
def test_pages_follow_the_permission_matrix(world):
    failures = _walk(world, parse_section("Pages showing the same data"), page=True)
    assert not failures, "the pages differ from docs/permissions.md:\n" + "\n".join(failures)


@pytest.mark.django_db
def test_annotator_cannot_be_added_to_a_conversation(world, annotator):
    from followup.models import Conversation

    conversation = Conversation.objects.get(pk=world["own"]["conversation_id"])
    response = api_client(world["users"]["doctor"]).post(
        reverse("followup-api:conversation-members", args=[conversation.pk]), {"user_id": annotator.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_clinician"
    assert not conversation.members.filter(user=annotator).exists()


@pytest.mark.django_db
def test_an_annotator_member_stored_earlier_sees_nothing_of_the_conversation(world, annotator):
    """Memberships stored before annotators were kept out give no access (API and inbox)."""
    from followup.models import ConversationMember

    conversation_id = world["own"]["conversation_id"]
    ConversationMember.objects.create(conversation_id=conversation_id, user=annotator)
    client = api_client(annotator)

    assert client.get(reverse("followup-api:conversation", args=[conversation_id])).status_code == 403
    assert client.get(reverse("followup-api:messages", args=[conversation_id])).status_code == 403
    from followup import selectors

    assert selectors.conversation_list(user=annotator) == []
    assert not selectors.conversation_is_member(user=annotator, conversation_id=conversation_id)
