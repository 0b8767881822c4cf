"""A study compared with its prior: ``manage.py compare``, the stored registration and matches, and the
doctor's re-linking over the API.

The two studies are derived from the real LIDC-IDRI-0001 CT (``tests/diagnosis/longitudinal/followup_data``):
the follow-up has the real nodule grown by a 3 mm smooth dilation, one sphere removed and one added, and
is moved by a known rigid transform; both are imported as NIfTI with ``import_study --study-date``.
"""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotation import services as annotation_services
from annotation.imaging.formats import write_nifti
from annotation.models import Segmentation, Study
from annotation.storage import series_volume_load
from diagnosis import selectors, services
from diagnosis.longitudinal.registration import transform_points
from diagnosis.measurements import measure_segments
from diagnosis.models import Finding, FindingMatch, StudyRegistration
from portal.models import AuditLog
from tests.conftest import shared_data
from tests.diagnosis.longitudinal.followup_data import (
    BASELINE_DATE,
    FOLLOW_UP_DATE,
    INTERVAL_DAYS,
    LIDC_NODULE_LPS_MM,
    build_pair,
)
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

MRN = "LIDC-IDRI-0001"


@pytest.fixture(scope="module")
def pair():
    return build_pair(shared_data("lidc_idri_0001_ct_nodules", "dicom"))


@pytest.fixture(scope="module")
def nifti_files(pair, tmp_path_factory):
    folder = tmp_path_factory.mktemp("followup")
    write_nifti(pair.baseline, folder / "baseline.nii.gz")
    write_nifti(pair.follow_up, folder / "follow_up.nii.gz")
    return folder / "baseline.nii.gz", folder / "follow_up.nii.gz"


def _import(path, hospital, date, mrn=MRN) -> Study:
    out = StringIO()
    call_command("import_study", str(path), "--hospital", hospital.code, "--patient", mrn, "--modality", "CT",
                 "--study-date", date.isoformat(), stdout=out)
    return Study.objects.get(pk=json.loads(out.getvalue())["study_ids"][0])


def _findings_from_labels(study: Study, labels: np.ndarray) -> list[Finding]:
    """A segmentation of the label map and one finding per segment, through the real services."""
    series = study.series.get()
    volume = series_volume_load(series)
    segmentation = annotation_services.segmentation_create(
        series=series, label_map=labels, source=Segmentation.Source.MANUAL, name="nodules",
        label_table=[{"index": 1, "name": "nodule", "color": "#ff0000"},
                     {"index": 2, "name": "sphere", "color": "#00ff00"}])
    findings = []
    for m in measure_segments(labels, volume.geometry, image=volume.array, labels=[1, 2]):
        findings.append(services.finding_create(
            user=None, series=series, source=Finding.Source.MANUAL, centroid_lps_mm=list(m.centroid_lps_mm),
            geometry=volume.geometry, segmentation=segmentation, segment_label=m.label, volume_ml=m.volume_ml,
            long_axis_mm=m.axial_long_mm, short_axis_mm=m.axial_short_mm, mean_hu=m.mean_intensity))
    return findings


@pytest.fixture
def studies(pair, nifti_files, hospital, doctor):
    """(prior, study, prior findings [nodule, resolved sphere], findings [grown nodule, new sphere])."""
    prior = _import(nifti_files[0], hospital, BASELINE_DATE)
    study = _import(nifti_files[1], hospital, FOLLOW_UP_DATE)
    return prior, study, _findings_from_labels(prior, pair.baseline_labels), _findings_from_labels(
        study, pair.follow_up_labels)


@pytest.fixture
def compared(studies, doctor):
    """The studies compared by the service on a coarse working grid (fast; accuracy is tested by the command)."""
    prior, study, _, _ = studies
    return services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)


# --- import_study --study-date ---------------------------------------------------------------

def test_import_study_stores_the_given_date_for_nifti(nifti_files, hospital):
    study = _import(nifti_files[0], hospital, BASELINE_DATE)
    assert Study.objects.get(pk=study.pk).study_date == BASELINE_DATE


@pytest.mark.parametrize("bad", ["2025-13-01", "20250110", "yesterday", "2025-02-30"])
def test_import_study_refuses_a_bad_date_and_stores_nothing(nifti_files, hospital, bad):
    with pytest.raises(CommandError, match="study-date"):
        call_command("import_study", str(nifti_files[0]), "--hospital", hospital.code, "--patient", MRN,
                     "--study-date", bad, stdout=StringIO())
    assert not Study.objects.exists()


# --- manage.py compare -----------------------------------------------------------------------

def test_compare_registers_matches_and_prints_growth(pair, studies):
    prior, study, (nodule, resolved), (grown, new) = studies
    out = StringIO()
    call_command("compare", str(study.pk), "--prior", str(prior.pk), "--json", stdout=out)
    body = json.loads(out.getvalue())

    registration = body["registration"]
    assert registration["method"] == "sitk-euler3d+affine-mattes-mi"
    assert registration["quality"]["mask_dice"] > 0.9
    # Landmarks: baseline points taken through the returned transform land within 2 mm of where the
    # known rigid transform put them.
    g = pair.baseline.geometry
    centre = g.index_to_lps((np.asarray(g.shape) - 1) / 2.0)
    points = np.array([LIDC_NODULE_LPS_MM, pair.resolved_centre_lps_mm, centre, centre + [80, 30, -60],
                       centre + [-80, -20, 60]])
    mapped = transform_points(np.asarray(registration["transform"]["matrix_lps_mm"]), points)
    assert np.linalg.norm(mapped - pair.to_follow_up(points), axis=1).max() <= 2.0

    assert body["interval_days"] == INTERVAL_DAYS
    [match] = body["matches"]
    assert match["kind"] == "finding" and (match["prior_finding_id"], match["finding_id"]) == (nodule.pk, grown.pk)
    for key in ("prior_volume_ml", "volume_ml", "volume_change_pct", "vdt_days", "prior_centroid_lps_mm",
                "centroid_lps_mm"):
        assert key in match
    assert match["prior_volume_ml"] == pytest.approx(pair.baseline_volume_ml, rel=1e-3)
    assert match["volume_ml"] == pytest.approx(pair.grown_volume_ml, rel=0.05)
    assert match["volume_change_pct"] == pytest.approx(
        (pair.grown_volume_ml / pair.baseline_volume_ml - 1) * 100, abs=5.0)
    # Known VDT from the volumes before resampling; the resampled mask differs by a few voxels: 5 %.
    assert match["vdt_days"] == pytest.approx(pair.known_vdt_days, rel=0.05)
    assert match["growth_category"] == "fast"
    assert np.linalg.norm(np.subtract(match["prior_centroid_registered_lps_mm"], match["centroid_lps_mm"])) < 3.0
    assert [n["finding_id"] for n in body["new"]] == [new.pk]
    assert [r["prior_finding_id"] for r in body["resolved"]] == [resolved.pk]

    stored = StudyRegistration.objects.get(study=study, prior=prior)
    assert stored.matches.filter(status=FindingMatch.Status.MATCHED).count() == 1
    # The report's "compared with prior" section reads the same comparison; the prior has none of its own.
    section = selectors.study_prior_comparison(study=study)
    assert section["prior_study_date"] == BASELINE_DATE.isoformat() and section["matches"] == body["matches"]
    assert selectors.study_prior_comparison(study=prior) is None
    assert AuditLog.objects.filter(target_type="study_registration", target_id=str(stored.pk)).exists()


def test_compare_refuses_unknown_studies(studies):
    prior, study, _, _ = studies
    with pytest.raises(CommandError, match="no study"):
        call_command("compare", "999999", "--prior", str(prior.pk), "--json", stdout=StringIO())
    with pytest.raises(CommandError, match="no prior study"):
        call_command("compare", str(study.pk), "--prior", "999999", "--json", stdout=StringIO())


def test_compare_refuses_the_study_as_its_own_prior(studies):
    _, study, _, _ = studies
    with pytest.raises(CommandError, match="same_study"):
        call_command("compare", str(study.pk), "--prior", str(study.pk), "--json", stdout=StringIO())


def test_compare_refuses_another_hospitals_study(studies, nifti_files, other_doctor, hospital):
    prior, study, _, _ = studies
    elsewhere = _import(nifti_files[0], other_doctor.hospital, BASELINE_DATE)
    with pytest.raises(CommandError, match="other_hospital"):
        call_command("compare", str(study.pk), "--prior", str(elsewhere.pk), "--json", stdout=StringIO())
    with pytest.raises(CommandError, match="another hospital"):
        call_command("compare", str(study.pk), "--prior", str(prior.pk), "--hospital", other_doctor.hospital.code,
                     stdout=StringIO())
    assert not StudyRegistration.objects.exists()


def test_compare_refuses_a_prior_of_another_patient_or_a_later_date(studies, small_ct_path, hospital):
    prior, study, _, _ = studies
    someone_else = _import(small_ct_path, hospital, BASELINE_DATE, mrn="MRN-OTHER")
    with pytest.raises(CommandError, match="different_patient"):
        call_command("compare", str(study.pk), "--prior", str(someone_else.pk), "--json", stdout=StringIO())
    with pytest.raises(CommandError, match="prior_not_earlier"):
        call_command("compare", str(prior.pk), "--prior", str(study.pk), "--json", stdout=StringIO())
    assert not StudyRegistration.objects.exists()


# --- re-linking and unlinking ------------------------------------------------------------------

def test_unlink_then_link_by_hand_and_a_new_comparison_keeps_the_doctors_choice(studies, compared, doctor):
    prior, study, (nodule, resolved), (grown, new) = studies
    pair_row = compared.matches.get(status=FindingMatch.Status.MATCHED)
    assert (pair_row.prior_finding_id, pair_row.finding_id) == (nodule.pk, grown.pk)

    client = api_client(doctor)
    response = client.post(reverse("finding-match-unlink", args=[pair_row.pk]))
    assert response.status_code == 200
    body = response.json()
    assert body["matches"] == []
    assert {r["prior_finding_id"] for r in body["resolved"]} == {nodule.pk, resolved.pk}

    # The doctor pairs the resolved sphere with the new one (a judgement the rule would not make).
    response = client.post(reverse("study-comparison-link", args=[study.pk, prior.pk]),
                           {"prior_finding": resolved.pk, "finding": new.pk}, format="json")
    assert response.status_code == 201
    [manual] = response.json()["matches"]
    assert manual["origin"] == "manual" and manual["linked_by"] == doctor.pk
    assert (manual["prior_finding_id"], manual["finding_id"]) == (resolved.pk, new.pk)

    services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)
    kept = selectors.study_comparison_payload(StudyRegistration.objects.get(pk=compared.pk))
    assert [(m["prior_finding_id"], m["finding_id"]) for m in kept["matches"]] == [(resolved.pk, new.pk)]
    assert [r["prior_finding_id"] for r in kept["resolved"]] == [nodule.pk]
    assert [n["finding_id"] for n in kept["new"]] == [grown.pk]


def test_linking_breaks_the_old_pair_of_either_finding(studies, compared, doctor):
    prior, study, (nodule, resolved), (grown, new) = studies
    services.finding_match_link(user=doctor, registration=compared, prior_finding=nodule, finding=new)
    rows = {(m.status, m.prior_finding_id, m.finding_id) for m in compared.matches.all()}
    assert rows == {("matched", nodule.pk, new.pk), ("resolved", resolved.pk, None), ("new", None, grown.pk)}


def test_comparison_reads_for_staff_only_of_the_same_hospital(studies, compared, doctor, other_doctor,
                                                              patient_user):
    prior, study, _, _ = studies
    url = reverse("study-comparison", args=[study.pk, prior.pk])
    response = api_client(doctor).get(url)
    assert response.status_code == 200
    assert response.json()["registration_id"] == compared.pk and len(response.json()["matches"]) == 1
    assert AuditLog.objects.filter(actor=doctor, action=AuditLog.Action.VIEW, target_type="study_registration").exists()
    # The command's text form of the same comparison names the pair, its VDT and the unpaired findings.
    from diagnosis.management.commands.compare import text_lines

    lines = text_lines(response.json())
    assert "120 days" in lines[0] and "VDT" in lines[1] and lines[-1].startswith("  new: [")
    assert api_client(other_doctor).get(url).status_code == 404
    assert api_client(patient_user).get(url).status_code == 403
    assert api_client(doctor).get(reverse("study-comparison", args=[prior.pk, study.pk])).status_code == 404


def test_link_refusals(studies, compared, doctor, other_doctor, patient_user):
    prior, study, (nodule, resolved), (grown, new) = studies
    url = reverse("study-comparison-link", args=[study.pk, prior.pk])
    client = api_client(doctor)
    already = client.post(url, {"prior_finding": nodule.pk, "finding": grown.pk}, format="json")
    assert already.status_code == 409 and already.json()["error"]["code"] == "already_linked"
    wrong_side = client.post(url, {"prior_finding": grown.pk, "finding": nodule.pk}, format="json")
    assert wrong_side.status_code == 400 and wrong_side.json()["error"]["code"] == "finding_not_in_comparison"
    assert client.post(url, {"prior_finding": nodule.pk}, format="json").status_code == 400
    assert client.post(url, {"prior_finding": 999999, "finding": grown.pk}, format="json").status_code == 404
    services.finding_reject(user=doctor, finding=new)
    rejected = client.post(url, {"prior_finding": resolved.pk, "finding": new.pk}, format="json")
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "finding_not_in_comparison"
    body = {"prior_finding": resolved.pk, "finding": grown.pk}
    assert api_client(other_doctor).post(url, body, format="json").status_code == 404
    assert api_client(patient_user).post(url, body, format="json").status_code == 403
    pair_row = compared.matches.get(status=FindingMatch.Status.MATCHED)
    assert (pair_row.prior_finding_id, pair_row.finding_id) == (nodule.pk, grown.pk)


def test_unlink_refusals(studies, compared, doctor, other_doctor, patient_user):
    pair_row = compared.matches.get(status=FindingMatch.Status.MATCHED)
    lone = compared.matches.filter(status=FindingMatch.Status.NEW).first()
    response = api_client(doctor).post(reverse("finding-match-unlink", args=[lone.pk]))
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_linked"
    url = reverse("finding-match-unlink", args=[pair_row.pk])
    assert api_client(other_doctor).post(url).status_code == 404
    assert api_client(patient_user).post(url).status_code == 403
    assert FindingMatch.objects.filter(pk=pair_row.pk, status=FindingMatch.Status.MATCHED).exists()




def test_measured_lung_segments_are_paired_by_name_with_their_change(studies, doctor):
    from annotation.ml.lung import LUNG_LABEL_TABLE, segment_lungs

    prior, study, _, _ = studies
    volumes = {}
    for row in (prior, study):
        series = row.series.get()
        volume = series_volume_load(series)
        lungs = segment_lungs(volume)
        segmentation = annotation_services.segmentation_create(
            series=series, label_map=lungs, label_table=LUNG_LABEL_TABLE, name="lungs",
            source=Segmentation.Source.MANUAL)
        volumes[row.pk] = {m.label_name: m.volume_ml for m in services.segmentation_measure(segmentation=segmentation)}

    body = selectors.study_comparison_payload(
        services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0))

    segments = {m["name"]: m for m in body["matches"] if m["kind"] == "segment"}
    assert set(segments) == {"right lung", "left lung"}
    for name, m in segments.items():
        assert m["prior_volume_ml"] == pytest.approx(volumes[prior.pk][name], rel=1e-3)
        assert m["volume_ml"] == pytest.approx(volumes[study.pk][name], rel=1e-3)
        # The same lungs moved rigidly (the nodule grew into a few mL of the left lung): small change.
        assert abs(m["volume_change_pct"]) < 5.0
        assert np.linalg.norm(np.subtract(m["prior_centroid_registered_lps_mm"], m["centroid_lps_mm"])) < 5.0
    # The nodule finding is still the one finding pair: the lung segmentations are organs, not lesions.
    assert [m["kind"] for m in body["matches"]].count("finding") == 1


# --- the report's "compared with prior" section ----------------------------------------------

def test_the_report_compares_with_the_prior_on_the_page_and_in_the_signed_pdf(client, studies, compared, doctor,
                                                                                tmp_path):
    from tests.diagnosis.test_reports import _pdf_text

    _, study, _, _ = studies
    payload = selectors.study_comparison_payload(compared)
    nodule = next(m for m in payload["matches"] if m["kind"] == "finding")
    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression="结节增大。")
    content = services.report_content(report)["prior_comparison"]
    assert content["prior_study_date"] == BASELINE_DATE.isoformat() and content["interval_days"] == payload["interval_days"]
    assert {m["volume_ml"] for m in content["matches"]} >= {nodule["volume_ml"]}
    assert len(content["new"]) == len(payload["new"]) == 1 and len(content["resolved"]) == 1

    client.force_login(doctor)
    page = client.get(reverse("diagnosis:report-detail", args=[report.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    from django.utils import formats, translation

    with translation.override("en"):
        shown_date = formats.date_format(BASELINE_DATE, "DATE_FORMAT")
    assert f"Compared with the prior of {shown_date}" in page
    assert f"{payload['interval_days']} days between the studies." in page
    assert f"{nodule['vdt_days']:.0f}" in page and "(new)" in page and "(resolved)" in page

    services.report_finalize(user=doctor, report=report)
    report.refresh_from_db()
    assert report.snapshot["prior_comparison"]["matches"] == content["matches"]  # frozen with the signature
    text = _pdf_text(services.report_pdf_bytes(user=doctor, report=report, language="zh-hans"), tmp_path)
    assert "前次检查比较" in text and "体积倍增时间" in text and f"{nodule['vdt_days']:.0f}" in text


# --- comparing from the study page and the API -------------------------------------------------

def test_the_study_page_offers_the_prior_and_the_api_queues_the_comparison(client, studies, doctor, annotator,
                                                                           other_doctor):
    from unittest import mock

    prior, study, _, _ = studies
    assert selectors.study_prior_candidates(study=study) == [prior]
    assert selectors.study_prior_candidates(study=prior) == []  # nothing earlier than the baseline

    client.force_login(doctor)
    page = client.get(reverse("annotation:study-detail", args=[study.pk])).content.decode()
    assert f'data-prior="{prior.pk}"' in page and 'id="prior-comparison"' in page

    url = f"/api/studies/{study.pk}/comparisons/{prior.pk}/"
    with mock.patch("diagnosis.tasks.study_compare_task.delay") as delay:
        queued = api_client(doctor).post(url)
        same = api_client(doctor).post(f"/api/studies/{study.pk}/comparisons/{study.pk}/")
        backwards = api_client(doctor).post(f"/api/studies/{prior.pk}/comparisons/{study.pk}/")
        by_annotator = api_client(annotator).post(url)
        other_hospital = api_client(other_doctor).post(url)
    assert queued.status_code == 202 and queued.json() == {"queued": True, "study_id": study.pk,
                                                            "prior_study_id": prior.pk}
    delay.assert_called_once_with(study.pk, prior.pk, doctor.pk)
    assert same.status_code == 400 and same.json()["error"]["code"] == "same_study"
    assert backwards.status_code == 400 and backwards.json()["error"]["code"] == "prior_not_earlier"
    assert by_annotator.status_code == 403 and other_hospital.status_code == 404
    assert AuditLog.objects.filter(target_type="study_registration", detail__queued=True).count() == 1
    assert not StudyRegistration.objects.exists()


def test_the_study_page_shows_the_stored_comparison(client, studies, compared, doctor):
    prior, study, _, _ = studies
    payload = selectors.study_comparison_payload(compared)
    client.force_login(doctor)
    page = client.get(reverse("annotation:study-detail", args=[study.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="prior-comparison-table"' in page
    assert page.count('class="prior-match"') == len(payload["matches"])
    assert page.count('class="prior-new"') == 1 and page.count('class="prior-resolved"') == 1


def test_a_broken_queue_is_a_503_and_nothing_is_stored(studies, doctor):
    from unittest import mock

    prior, study, _, _ = studies
    with mock.patch("diagnosis.tasks.study_compare_task.delay", side_effect=OSError("broker down")):
        response = api_client(doctor).post(f"/api/studies/{study.pk}/comparisons/{prior.pk}/")
    assert response.status_code == 503 and response.json()["error"]["code"] == "queue_unavailable"
    assert not StudyRegistration.objects.exists()
    assert not AuditLog.objects.filter(target_type="study_registration", detail__queued=True).exists()
