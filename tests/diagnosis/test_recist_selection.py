"""RECIST 1.1 stored and shown (issue 14): the doctor's target lesions on the baseline, refused when they
break a rule, followed to the follow-up through the stored comparison, over the API, on the study page and
in the report.

The two studies are the derived follow-up of the real LIDC-IDRI-0001 CT (``tests/diagnosis/longitudinal/
followup_data``; skipped when ../shared/data is absent): the real nodule grows by a 3 mm dilation, a 7 mm
sphere resolves and a 6 mm sphere is new.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from diagnosis import selectors, services
from diagnosis.models import Finding, FindingMatch, RecistLesion, RecistSelection
from portal.models import AuditLog
from tests.diagnosis.longitudinal.followup_data import BASELINE_DATE
from tests.diagnosis.test_longitudinal import (  # noqa: F401 - the fixtures of the derived follow-up
    _import,
    compared,
    nifti_files,
    pair,
    studies,
)
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def _extra(study, region: str, long_mm: float, kind=Finding.Kind.LESION) -> Finding:
    """A finding placed by hand on the study's series (the centre voxel), with its long axis in mm."""
    series = study.series.get()
    centre = [(n - 1) / 2.0 for n in series.shape]
    return services.finding_create(user=None, series=series, source=Finding.Source.MANUAL, kind=kind,
                                   centroid_voxel=centre, region=region, long_axis_mm=long_mm,
                                   short_axis_mm=long_mm * 0.7)


def _stored(study) -> list[tuple]:
    return sorted(RecistLesion.objects.filter(selection__study=study).values_list("finding_id", "role", "organ"))


# --- the choice and its refusals ----------------------------------------------------------------

def test_refused_selections_are_400_and_change_nothing(studies, doctor, other_doctor, nifti_files):
    prior, study, (nodule, sphere), (grown, _new) = studies
    url = reverse("study-recist", args=[prior.pk])
    client = api_client(doctor)
    ok = client.put(url, {"targets": [{"finding": nodule.pk}], "non_targets": [{"finding": sphere.pk}]},
                    format="json")
    assert ok.status_code == 200, ok.content
    before = _stored(prior)
    assert before == sorted([(nodule.pk, "target", "lung"), (sphere.pk, "non_target", "lung")])
    audits = AuditLog.objects.filter(target_type="recist_selection").exclude(action=AuditLog.Action.VIEW).count()

    organs = ["liver", "bone", "kidney", "brain", "spleen"]
    six = [nodule] + [_extra(prior, organ, 20.0) for organ in organs]
    lungs = [nodule] + [_extra(prior, "", 20.0, kind=Finding.Kind.LUNG_NODULE) for _ in range(2)]
    elsewhere = _import(nifti_files[0], other_doctor.hospital, BASELINE_DATE)
    foreign = _extra(elsewhere, "liver", 30.0)
    small = _extra(prior, "liver", 8.0)
    cases = [
        ({"targets": [{"finding": f.pk} for f in six]}, "too_many_targets"),
        ({"targets": [{"finding": f.pk} for f in lungs]}, "too_many_in_organ"),
        ({"targets": [{"finding": small.pk}]}, "not_measurable"),  # 8 mm long axis: < 10 mm
        ({"targets": [{"finding": grown.pk}]}, "finding_not_in_study"),  # the follow-up's finding
        ({"targets": [{"finding": foreign.pk}]}, "finding_not_in_study"),  # another hospital's
        ({"targets": []}, "no_targets"),
        ({"targets": [{"finding": nodule.pk}], "non_targets": [{"finding": nodule.pk}]}, "duplicate_target"),
    ]
    for body, code in cases:
        response = client.put(url, body, format="json")
        assert response.status_code == 400, (code, response.content)
        assert response.json()["error"]["code"] == code
    # The refusal is told in the reader's language.
    zh = client.put(url, cases[0][0], format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "RECIST 1.1" in zh.json()["error"]["message"] and "最多" in zh.json()["error"]["message"]
    assert _stored(prior) == before
    assert AuditLog.objects.filter(target_type="recist_selection").exclude(
        action=AuditLog.Action.VIEW).count() == audits


def test_five_targets_two_per_organ_are_stored_and_audited(studies, doctor):
    prior, _study, (nodule, _sphere), _ = studies
    chosen = [nodule, _extra(prior, "", 12.0, kind=Finding.Kind.LUNG_NODULE), _extra(prior, "liver", 15.0),
              _extra(prior, "Liver", 11.0), _extra(prior, "mediastinum", 25.0)]
    targets = [{"finding": f.pk} for f in chosen[:4]] + [{"finding": chosen[4].pk, "lymph_node": True,
                                                           "organ": "mediastinum"}]
    selection = services.recist_selection_set(user=doctor, study=prior, targets=targets)
    assert selection.lesions.filter(role="target").count() == 5
    assert sorted(selection.lesions.values_list("organ", flat=True)) == ["liver", "liver", "lung", "lung",
                                                                          "mediastinum"]
    assert AuditLog.objects.filter(target_type="recist_selection", target_id=str(selection.pk),
                                   action=AuditLog.Action.CREATE).exists()


# --- the response through the matched findings ------------------------------------------------------

def test_the_response_follows_the_target_through_the_comparison(studies, compared, doctor):
    prior, study, (nodule, sphere), (grown, new) = studies
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    body = selectors.recist_assessment(study=study)
    assert body["baseline_study_id"] == prior.pk and body["error"] is None
    baseline, follow_up = body["time_points"]
    assert baseline["sum_mm"] == pytest.approx(nodule.long_axis_mm, abs=0.05)
    assert follow_up["study_id"] == study.pk
    assert follow_up["diameters_mm"] == {str(nodule.pk): pytest.approx(grown.long_axis_mm, abs=0.05)}
    assert follow_up["sum_mm"] == pytest.approx(grown.long_axis_mm, abs=0.05)
    assert follow_up["nadir_mm"] == pytest.approx(nodule.long_axis_mm, abs=0.05)
    # The 40 mm nodule grew by a 3 mm dilation: its long axis by about 4 mm, 9 %: neither PR nor PD (SD);
    # the new sphere makes the time point PD overall (Table 1); the resolved sphere, the only non-target: CR.
    growth = grown.long_axis_mm - nodule.long_axis_mm
    assert 0 < growth < 5.0 and follow_up["change_from_baseline_pct"] == pytest.approx(
        growth / nodule.long_axis_mm * 100, abs=0.1)
    assert follow_up["target_response"] == "SD" and follow_up["non_target_response"] == "CR"
    assert follow_up["new_lesions"] is True and follow_up["overall_response"] == "PD"
    with translation.override("en"):
        rule = selectors.recist_assessment(study=study)["time_points"][1]["rule"]
    assert rule.startswith(f"Sum {grown.long_axis_mm:.1f} mm, {growth / nodule.long_axis_mm * 100:.0f} % above "
                           "baseline") and ": SD (neither ≥ 30 % decrease" in rule
    assert rule.endswith("Overall PD: a new lesion (RECIST 1.1 §4.3.3, Table 1).")

    # The doctor rejects the new sphere: no new lesion, overall SD as the targets.
    services.finding_reject(user=doctor, finding=new)
    rejected = selectors.recist_assessment(study=study)["time_points"][1]
    assert rejected["new_lesions"] is False and rejected["overall_response"] == "SD"
    services.finding_match_unlink(user=doctor, match=compared.matches.get(status=FindingMatch.Status.MATCHED))
    unlinked = selectors.recist_assessment(study=study)["time_points"][1]
    # The prior nodule is now "resolved" by the doctor's unlinking: 0 mm; the grown one is a new lesion.
    assert unlinked["diameters_mm"] == {str(nodule.pk): 0.0} and unlinked["target_response"] == "CR"
    assert unlinked["new_lesions"] is True and unlinked["overall_response"] == "PD"


# --- the API across tenants and roles ---------------------------------------------------------------

def test_the_api_reads_for_staff_and_writes_for_clinicians_of_the_hospital(studies, compared, doctor, annotator,
                                                                           other_doctor, patient_user):
    prior, study, (nodule, _sphere), _ = studies
    put = {"targets": [{"finding": nodule.pk}]}
    assert api_client(other_doctor).put(reverse("study-recist", args=[prior.pk]), put, format="json").status_code == 404
    assert api_client(annotator).put(reverse("study-recist", args=[prior.pk]), put, format="json").status_code == 403
    assert api_client(patient_user).put(reverse("study-recist", args=[prior.pk]), put, format="json").status_code == 403
    assert not RecistSelection.objects.exists()
    assert api_client(doctor).get(reverse("study-recist", args=[study.pk])).json() == {"study_id": study.pk,
                                                                                       "assessment": None}
    assert api_client(doctor).put(reverse("study-recist", args=[prior.pk]), put, format="json").status_code == 200

    url = reverse("study-recist", args=[study.pk])
    read = api_client(annotator).get(url)
    assert read.status_code == 200 and read.json()["assessment"]["time_points"][1]["overall_response"] == "PD"
    assert api_client(other_doctor).get(url).status_code == 404
    assert api_client(patient_user).get(url).status_code == 403
    assert AuditLog.objects.filter(actor=annotator, action=AuditLog.Action.VIEW,
                                   target_type="recist_selection").exists()


# --- the study page and the report ------------------------------------------------------------------

def test_the_study_page_chooses_and_shows_recist(client, studies, compared, doctor):
    prior, study, (nodule, sphere), _ = studies
    client.force_login(doctor)
    page = client.get(reverse("annotation:study-detail", args=[prior.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="recist-form"' in page and f'name="role_{nodule.pk}"' in page
    response = client.post(reverse("diagnosis:study-recist-set", args=[prior.pk]),
                           {f"role_{nodule.pk}": "target", f"organ_{nodule.pk}": "lung",
                            f"role_{sphere.pk}": "non_target", f"organ_{sphere.pk}": "lung"})
    assert response.status_code == 302
    assert _stored(prior) == sorted([(nodule.pk, "target", "lung"), (sphere.pk, "non_target", "lung")])
    small = _extra(prior, "liver", 8.0)
    refused = client.post(reverse("diagnosis:study-recist-set", args=[prior.pk]), {f"role_{small.pk}": "target"},
                          follow=True, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Not measurable" in refused
    assert _stored(prior) == sorted([(nodule.pk, "target", "lung"), (sphere.pk, "non_target", "lung")])

    page = client.get(reverse("annotation:study-detail", args=[study.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="recist"' in page and 'class="table recist-table"' in page
    assert page.count('class="recist-target"') == 1 and "Overall PD: a new lesion" in page and "(baseline)" in page


def test_the_report_shows_recist_on_the_page_and_in_the_signed_pdf(client, studies, compared, doctor, tmp_path):
    from tests.diagnosis.test_reports import _pdf_text

    prior, study, (nodule, sphere), _ = studies
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression="靶病灶进展。")
    content = services.report_content(report)["recist"]
    assert [p["overall_response"] for p in content["time_points"]] == [None, "PD"]
    client.force_login(doctor)
    page = client.get(reverse("diagnosis:report-detail", args=[report.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="report-recist"' in page and "Sum of diameters (mm)" in page and "RECIST 1.1 §4.3.1" in page

    services.report_finalize(user=doctor, report=report)
    report.refresh_from_db()
    assert report.snapshot["recist"]["time_points"] == content["time_points"]  # frozen with the signature
    text = _pdf_text(services.report_pdf_bytes(user=doctor, report=report, language="zh-hans"), tmp_path)
    assert "RECIST 1.1" in text and "靶病灶" in text and "PD" in text
