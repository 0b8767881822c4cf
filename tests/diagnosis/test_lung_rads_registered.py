"""Lung-RADS v2022 "new / growing" from the stored comparison (issue 14): each nodule's prior nodule is the
one its FindingMatch row names (the registered matching, with the doctor's unlink and re-link), and each
paired nodule reports its volume doubling time (Schwartz 1961) and growth category beside its category.

The two studies are the derived follow-up of the real LIDC-IDRI-0001 CT (``tests/diagnosis/longitudinal/
followup_data``; skipped when ../shared/data is absent): the real nodule grows by a 3 mm dilation (known
VDT), a 7 mm sphere resolves and a 6 mm sphere is new, and the follow-up is moved by a known rigid transform.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis import selectors, services
from diagnosis.measurements.lung_rads import LungRadsNodule, lung_rads_suggest, mean_diameter_mm
from diagnosis.models import FindingMatch
from tests.diagnosis.longitudinal.followup_data import BASELINE_DATE
from tests.diagnosis.test_longitudinal import (  # noqa: F401 - the fixtures of the derived follow-up
    _import,
    nifti_files,
    pair,
    studies,
)
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def assessed(studies, doctor):
    """The studies with every finding a solid lung nodule the doctor has assessed (edited: composition)."""
    prior, study, prior_findings, findings = studies
    edit = [services.finding_edit(user=doctor, finding=f, composition="solid") for f in prior_findings + findings]
    return prior, study, edit[:2], edit[2:]


def _suggest(doctor, study, prior=None) -> dict:
    response = api_client(doctor).get(reverse("study-lung-rads", args=[study.pk]),
                                      {"prior": prior.pk} if prior is not None else {})
    assert response.status_code == 200, response.content
    return response.json()


def _by_finding(body: dict) -> dict:
    return {n["finding_id"]: n for n in body["nodules"]}


def test_the_stored_comparison_decides_growing_and_new_with_the_known_vdt(pair, assessed, doctor):
    prior, study, (nodule, resolved), (grown, new) = assessed
    row = services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)

    body = _suggest(doctor, study, prior)
    assert body["matching"] == "registered" and body["registration_id"] == row.pk
    assert body["prior_study_id"] == prior.pk and body["prior_interval_months"] == 3.9
    nodules = _by_finding(body)
    g, n = nodules[grown.pk], nodules[new.pk]
    # The grown nodule: mean diameter up by far more than 1.5 mm (Lung-RADS v2022 growth), its VDT the
    # known one from the volumes before resampling (the resampled masks differ by a few voxels: 5 %).
    assert (g["course"], g["matched_prior_finding_id"], g["matching"]) == ("growing", nodule.pk, "registered")
    assert g["mean_diameter_mm"] - mean_diameter_mm(nodule.long_axis_mm, nodule.short_axis_mm) > 1.5
    assert g["vdt_days"] == pytest.approx(pair.known_vdt_days, rel=0.05)
    assert g["growth_category"] == "fast"
    assert (n["course"], n["matched_prior_finding_id"], n["vdt_days"], n["growth_category"]) == ("new", None, None,
                                                                                               None)
    # The same figures as the comparison shows.
    [match] = selectors.study_comparison_payload(row)["matches"]
    assert (match["vdt_days"], match["growth_category"]) == (g["vdt_days"], g["growth_category"])
    # Without a prior given, the latest compared prior is used; the report's suggestion is the same.
    assert _suggest(doctor, study) == body
    report = services.report_create_draft(user=doctor, study=study)
    assert selectors.report_lung_rads_suggestion(report=report)["category"] == body["category"]


def test_the_doctors_unlink_makes_the_nodule_new_and_a_re_link_overrides_the_distance(assessed, doctor):
    prior, study, (nodule, resolved), (grown, new) = assessed
    row = services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)
    client = api_client(doctor)
    pair_row = row.matches.get(status=FindingMatch.Status.MATCHED)
    assert client.post(reverse("finding-match-unlink", args=[pair_row.pk])).status_code == 200

    g = _by_finding(_suggest(doctor, study, prior))[grown.pk]
    assert (g["course"], g["matched_prior_finding_id"], g["vdt_days"]) == ("new", None, None)
    assert g["rule_code"].startswith("solid_new")

    # The doctor pairs the new sphere with the resolved one on the other side of the chest: far beyond
    # the distance rule, yet the same nodule by the doctor's judgement, so not new.
    response = client.post(reverse("study-comparison-link", args=[study.pk, prior.pk]),
                           {"prior_finding": resolved.pk, "finding": new.pk}, format="json")
    assert response.status_code == 201, response.content
    body = _suggest(doctor, study, prior)
    n = _by_finding(body)[new.pk]
    assert n["course"] in ("growing", "stable") and n["matched_prior_finding_id"] == resolved.pk
    assert n["vdt_days"] is not None and n["growth_category"] is not None
    far = lung_rads_suggest(
        [LungRadsNodule(n["mean_diameter_mm"], "solid", centre_lps_mm=new.centroid_lps_mm, key=new.pk)],
        prior=[LungRadsNodule(7.0, "solid", centre_lps_mm=resolved.centroid_lps_mm, key=resolved.pk)])
    assert far.nodules[0].course == "new"  # what the distance rule alone would say


def test_without_a_comparison_the_distance_rule_still_decides(assessed, doctor):
    prior, study, prior_findings, findings = assessed
    body = _suggest(doctor, study, prior)
    assert body["matching"] == "distance" and body["registration_id"] is None

    def nodule(f):
        return LungRadsNodule(mean_diameter_mm(f.long_axis_mm, f.short_axis_mm), "solid",
                              centre_lps_mm=f.centroid_lps_mm, key=f.pk)

    old = lung_rads_suggest([nodule(f) for f in findings], prior=[nodule(f) for f in prior_findings],
                            prior_interval_months=3.9)
    assert body["category"] == old.category and body["rule_code"] == old.rule_code
    assert [(n["finding_id"], n["course"], n["category"]) for n in body["nodules"]] == [
        (n.key, n.course, n.category) for n in old.nodules]
    assert all(n["matching"] == "distance" for n in body["nodules"])
    # No prior given and none compared: every nodule at baseline, as before.
    baseline = _suggest(doctor, study)
    assert baseline["matching"] is None and {n["course"] for n in baseline["nodules"]} == {"baseline"}


def test_a_prior_of_another_patient_is_refused(assessed, doctor, nifti_files, hospital):
    prior, study, _, _ = assessed
    services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)
    other = _import(nifti_files[0], hospital, BASELINE_DATE, mrn="LIDC-OTHER")
    response = api_client(doctor).get(reverse("study-lung-rads", args=[study.pk]), {"prior": other.pk})
    assert response.status_code == 400 and response.json()["error"]["code"] == "prior_mismatch"
