"""The review threshold is each hospital's (issue 18): a hospital administrator sets the segment
confidence under which one-click segmentations are flagged "needs review"; the portal's
``SEGMENT_CONFIDENCE_REVIEW_THRESHOLD`` applies until they do."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from annotation import services
from annotation.models import Segmentation
from portal.models import AuditLog, Hospital, Role
from portal.selectors import hospital_review_threshold
from tests.factories import HospitalFactory, UserFactory

pytestmark = pytest.mark.django_db

LABELS = [{"index": 1, "name": "body", "color": "#e6550d"}]


def _client(user, language="en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


@pytest.fixture
def hospital_admin(hospital):
    return UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)


def _store_with_confidence(series, confidence: float) -> Segmentation:
    """Store a one-segment label map on the real CT's grid whose uncertainty map gives the segment
    ``confidence`` (1 - mean normalised entropy), as a network run would."""
    shape = tuple(series.shape)
    label_map = np.zeros(shape, dtype=np.uint8)
    label_map[:, shape[1] // 4: shape[1] // 2, shape[2] // 4: shape[2] // 2] = 1
    uncertainty = np.full(shape, 1.0 - confidence, dtype=np.float32)
    return services.segmentation_create(series=series, label_map=label_map, label_table=LABELS, name="model",
                                        source=Segmentation.Source.MODEL, uncertainty_map=uncertainty)


def test_the_portal_default_applies_until_the_hospital_sets_its_own(small_ct_study, settings):
    settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = 0.8
    series = small_ct_study.series.get()

    flagged = _store_with_confidence(series, 0.7)

    assert hospital_review_threshold(small_ct_study.hospital) == 0.8
    assert flagged.label_confidence["1"] == pytest.approx(0.7, abs=1e-3) and flagged.needs_review is True


def test_the_hospitals_threshold_decides_what_is_flagged(hospital_admin, small_ct_study, settings):
    settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = 0.8
    series = small_ct_study.series.get()
    response = _client(hospital_admin).post(reverse("annotation:review-threshold"), {"threshold": "0.6"})
    assert response.status_code == 302

    passed = _store_with_confidence(series, 0.7)
    flagged = _store_with_confidence(series, 0.5)

    assert passed.needs_review is False and flagged.needs_review is True
    # The measurement table marks low confidence against the same threshold.
    from diagnosis import services as diagnosis_services
    from tests.helpers import api_client

    diagnosis_services.segmentation_measure(segmentation=passed)
    segments = api_client(hospital_admin).get(
        reverse("segmentation-measurements", args=[passed.pk])).json()["segments"]
    assert segments and segments[0]["confidence"] == pytest.approx(0.7, abs=1e-3)
    assert segments[0]["low_confidence"] is False


def test_another_hospital_keeps_the_portal_default(hospital_admin, settings):
    settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = 0.8
    other = HospitalFactory()

    _client(hospital_admin).post(reverse("annotation:review-threshold"), {"threshold": "0.25"})

    assert hospital_review_threshold(hospital_admin.hospital_id) == 0.25
    assert hospital_review_threshold(other) == 0.8


def test_setting_is_audited_and_shown_and_empty_goes_back_to_the_default(hospital_admin, settings):
    settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = 0.8
    client = _client(hospital_admin)

    client.post(reverse("annotation:review-threshold"), {"threshold": "0.65"})
    page = client.get(reverse("annotation:model-list")).content.decode()
    audit = AuditLog.objects.filter(target_type="hospital", action=AuditLog.Action.UPDATE).latest("created_at")
    client.post(reverse("annotation:review-threshold"), {"threshold": ""})

    assert 'id="review-threshold-form"' in page and 'value="0.65"' in page
    assert audit.actor == hospital_admin and audit.hospital == hospital_admin.hospital
    assert audit.detail == {"segment_confidence_review_threshold": 0.65, "previous": None}
    hospital = Hospital.objects.get(pk=hospital_admin.hospital_id)
    assert hospital.segment_confidence_review_threshold is None and hospital_review_threshold(hospital) == 0.8


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan", "inf"])
def test_a_value_outside_zero_to_one_is_refused_and_changes_nothing(hospital_admin, value):
    Hospital.objects.filter(pk=hospital_admin.hospital_id).update(segment_confidence_review_threshold=0.7)

    response = _client(hospital_admin).post(reverse("annotation:review-threshold"), {"threshold": value})

    assert response.status_code == 400
    assert "The review threshold must be a number from 0 to 1." in response.content.decode()
    assert Hospital.objects.get(pk=hospital_admin.hospital_id).segment_confidence_review_threshold == 0.7
    assert not AuditLog.objects.filter(target_type="hospital").exists()


def test_the_refusal_is_in_chinese_for_a_chinese_browser(hospital_admin):
    response = _client(hospital_admin, language="zh-hans").post(reverse("annotation:review-threshold"),
                                                                {"threshold": "2"})

    assert response.status_code == 400 and "复核阈值必须是 0 到 1 之间的数。" in response.content.decode()


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.ANNOTATOR])
def test_only_the_hospital_admin_may_set_it(hospital, role):
    user = UserFactory(role=role, hospital=hospital)

    response = _client(user).post(reverse("annotation:review-threshold"), {"threshold": "0.5"})
    page = _client(user).get(reverse("annotation:model-list")).content.decode()

    assert response.status_code == 403
    assert Hospital.objects.get(pk=hospital.pk).segment_confidence_review_threshold is None
    assert 'id="review-threshold"' in page and 'id="review-threshold-form"' not in page


def test_another_hospitals_admin_cannot_set_ours(hospital):
    from portal.api_errors import ServiceError
    from portal.services import hospital_review_threshold_set

    theirs = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=HospitalFactory())

    with pytest.raises(ServiceError) as refused:
        hospital_review_threshold_set(user=theirs, hospital=hospital, threshold=0.5)
    # Through the page an administrator can only ever reach their own hospital.
    _client(theirs).post(reverse("annotation:review-threshold"), {"threshold": "0.5"})

    assert refused.value.status_code == 403
    assert Hospital.objects.get(pk=hospital.pk).segment_confidence_review_threshold is None


def test_a_platform_admin_without_a_hospital_gets_403():
    admin = UserFactory(role=Role.PLATFORM_ADMIN, hospital=None)

    response = _client(admin).post(reverse("annotation:review-threshold"), {"threshold": "0.5"})

    assert response.status_code == 403


def test_get_is_not_allowed(hospital_admin):
    assert _client(hospital_admin).get(reverse("annotation:review-threshold")).status_code == 405


def test_a_change_in_the_django_admin_is_audited(hospital):
    admin = UserFactory(role=Role.PLATFORM_ADMIN, hospital=None)

    response = _client(admin).post(reverse("admin:portal_hospital_change", args=[hospital.pk]), {
        "code": hospital.code, "name": hospital.name, "report_patient_display": hospital.report_patient_display,
        "segment_confidence_review_threshold": "0.55"})

    assert response.status_code == 302
    assert Hospital.objects.get(pk=hospital.pk).segment_confidence_review_threshold == 0.55
    audit = AuditLog.objects.get(target_type="hospital", target_id=str(hospital.pk))
    assert audit.actor == admin and audit.detail["segment_confidence_review_threshold"] == 0.55
