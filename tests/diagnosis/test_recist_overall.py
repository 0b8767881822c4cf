"""RECIST 1.1 overall response (issue 14): the doctor's non-target judgement per follow-up, combined with the
target response and new lesions by Table 1 (Table 2 for non-target disease only); the finding chain RECIST
and Lung-RADS share; the volume doubling time of each paired nodule on the study page and the timeline.

The tables are Eisenhauer et al., Eur J Cancer 45:228–247, 2009, Tables 1 and 2. The studies are the derived
follow-up of the real LIDC-IDRI-0001 CT (``tests/diagnosis/longitudinal/followup_data``; skipped when
../shared/data is absent): the real nodule grows by a 3 mm dilation (known VDT), a 7 mm sphere resolves
and a 6 mm sphere is new.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import translation

from diagnosis import selectors, services
from diagnosis.longitudinal.recist import (
    CR,
    NE,
    NON_CR_NON_PD,
    PD,
    PR,
    SD,
    TABLE_1,
    TABLE_2,
    RecistError,
    table_1_overall,
    table_2_overall,
)
from diagnosis.models import Finding, FindingMatch, RecistSelection
from diagnosis.selectors_finding_chain import finding_chain
from portal.api_errors import ServiceError
from portal.models import AuditLog
from tests.diagnosis.longitudinal.followup_data import FOLLOW_UP_DATE
from tests.diagnosis.test_longitudinal import (  # noqa: F401 - the fixtures of the derived follow-up
    _findings_from_labels,
    _import,
    compared,
    nifti_files,
    pair,
    studies,
)
from tests.helpers import api_client

# --- RECIST 1.1 Table 1 and Table 2, row by row (plain Python) ---------------------------------------

# (target, non-target, new lesions, overall, row): every row of Table 1, each "any"/"non-PD" expanded.
TABLE_1_CASES = [
    (CR, CR, False, CR, 1),
    (CR, NON_CR_NON_PD, False, PR, 2),
    (CR, NE, False, PR, 3),
    (PR, CR, False, PR, 4), (PR, NON_CR_NON_PD, False, PR, 4), (PR, NE, False, PR, 4),
    (SD, CR, False, SD, 5), (SD, NON_CR_NON_PD, False, SD, 5), (SD, NE, False, SD, 5),
    (NE, CR, False, NE, 6), (NE, NON_CR_NON_PD, False, NE, 6), (NE, NE, False, NE, 6),
    *[(PD, nt, new, PD, 7) for nt in (CR, NON_CR_NON_PD, NE, PD) for new in (False, True)],
    *[(t, PD, new, PD, 8) for t in (CR, PR, SD, NE) for new in (False, True)],
    *[(t, nt, True, PD, 9) for t in (CR, PR, SD, NE) for nt in (CR, NON_CR_NON_PD, NE)],
]


@pytest.mark.parametrize("target,non_target,new,overall,row", TABLE_1_CASES)
def test_table_1_gives_each_rows_overall_response(target, non_target, new, overall, row):
    assert table_1_overall(target=target, non_target=non_target, new_lesions=new) == (overall, row)


def test_table_1_cases_cover_every_row_and_every_input():
    assert {c[4] for c in TABLE_1_CASES} == set(range(1, len(TABLE_1) + 1))
    inputs = {(t, nt, new) for t, nt, new, _o, _r in TABLE_1_CASES}
    assert len(inputs) == 5 * 4 * 2  # every target × non-target × new-lesion combination, once


@pytest.mark.parametrize("non_target,new,overall,row", [
    (CR, False, CR, 1),
    (NON_CR_NON_PD, False, NON_CR_NON_PD, 2),
    (NE, False, NE, 3),
    (PD, False, PD, 4), (PD, True, PD, 4),
    (CR, True, PD, 5), (NON_CR_NON_PD, True, PD, 5), (NE, True, PD, 5),
])
def test_table_2_gives_each_rows_overall_response(non_target, new, overall, row):
    assert table_2_overall(non_target=non_target, new_lesions=new) == (overall, row)
    assert row <= len(TABLE_2)


@pytest.mark.parametrize("call", [
    lambda: table_1_overall(target="SD", non_target="SD", new_lesions=False),  # SD is not a non-target response
    lambda: table_1_overall(target="non-CR/non-PD", non_target=CR, new_lesions=False),
    lambda: table_2_overall(non_target="PR", new_lesions=False),
])
def test_tables_refuse_unknown_responses(call):
    with pytest.raises(RecistError) as exc:
        call()
    assert exc.value.code == "bad_response"


# --- the doctor's non-target judgement on the real follow-up ------------------------------------------

def _point(study) -> dict:
    return selectors.recist_assessment(study=study)["time_points"][-1]


def _patch(user, study, response):
    return api_client(user).patch(reverse("study-recist", args=[study.pk]), {"non_target_response": response},
                                  format="json")


@pytest.mark.django_db
def test_the_doctors_non_target_judgement_is_stored_audited_and_combined_by_table_1(studies, compared, doctor):
    prior, study, (nodule, sphere), (_grown, new) = studies
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    services.finding_reject(user=doctor, finding=new)  # no new lesion: the non-target judgement decides
    derived = _point(study)
    # Target SD (the nodule grew ~9 %), the resolved sphere derives non-target CR: Table 1 row 5, SD.
    assert (derived["target_response"], derived["non_target_response"], derived["non_target_source"]) == (
        SD, CR, "derived")
    assert (derived["overall_response"], derived["table"], derived["table_row"]) == (SD, 1, 5)

    response = _patch(doctor, study, PD)  # unequivocal progression of the non-target disease
    assert response.status_code == 200, response.content
    judged = response.json()["assessment"]["time_points"][-1]
    assert (judged["non_target_response"], judged["non_target_source"], judged["non_target_derived"]) == (
        PD, "doctor", CR)
    assert (judged["overall_response"], judged["table_row"]) == (PD, 8)
    selection = RecistSelection.objects.get(study=prior)
    assert selection.non_target_responses[str(study.pk)]["response"] == PD
    assert selection.non_target_responses[str(study.pk)]["by"] == doctor.pk
    audit = AuditLog.objects.filter(actor=doctor, action=AuditLog.Action.UPDATE, target_type="recist_selection",
                                    target_id=str(selection.pk)).latest("pk")
    assert audit.detail == {"study": study.pk, "non_target_response": PD, "before": None}
    with translation.override("en"):
        assert selectors.recist_overall_rule_text(judged) == (
            "Target SD, non-target PD (the doctor's judgement), new lesions: no → overall PD "
            "(RECIST 1.1 Table 1, row 8).")

    # The unlinked nodule counts as gone (target CR): the judgement then gives Table 1 rows 2 and 3.
    services.finding_match_unlink(user=doctor, match=compared.matches.get(status=FindingMatch.Status.MATCHED))
    services.finding_reject(user=doctor, finding=Finding.objects.get(pk=_grown.pk))
    for given, overall, row in ((NON_CR_NON_PD, PR, 2), (NE, PR, 3), (CR, CR, 1)):
        services.recist_non_target_set(user=doctor, study=study, response=given)
        point = _point(study)
        assert (point["target_response"], point["non_target_response"]) == (CR, given)
        assert (point["overall_response"], point["table_row"]) == (overall, row), given
    # Cleared: the derived response applies again.
    assert _patch(doctor, study, None).status_code == 200
    assert _point(study)["non_target_source"] == "derived"
    assert str(study.pk) not in RecistSelection.objects.get(study=prior).non_target_responses

    # Re-choosing the same non-targets keeps a judgement; another set of non-targets voids it (audited).
    services.recist_non_target_set(user=doctor, study=study, response=PD)
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    assert _point(study)["non_target_source"] == "doctor"
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}])
    assert RecistSelection.objects.get(study=prior).non_target_responses == {}
    assert AuditLog.objects.filter(target_type="recist_selection", action=AuditLog.Action.UPDATE).latest(
        "pk").detail["non_target_responses_cleared"] is True


@pytest.mark.django_db
def test_non_target_disease_only_follows_table_2(studies, compared, doctor):
    prior, study, (_nodule, sphere), (_grown, new) = studies
    services.recist_selection_set(user=doctor, study=prior, targets=[], non_targets=[{"finding": sphere.pk}])
    point = _point(study)
    # The new 6 mm sphere: PD by Table 2 row 5, though the non-target sphere resolved (derived CR).
    assert (point["target_response"], point["sum_mm"], point["non_target_response"]) == (None, None, CR)
    assert (point["overall_response"], point["table"], point["table_row"]) == (PD, 2, 5)
    services.finding_reject(user=doctor, finding=new)
    assert (_point(study)["overall_response"], _point(study)["table_row"]) == (CR, 1)
    services.recist_non_target_set(user=doctor, study=study, response=NON_CR_NON_PD)
    point = _point(study)
    assert (point["overall_response"], point["table_row"]) == (NON_CR_NON_PD, 2)
    with translation.override("en"):
        assert "RECIST 1.1 Table 2, row 2: non-target disease only" in selectors.recist_rule_text(point)
    services.recist_non_target_set(user=doctor, study=study, response=NE)
    assert (_point(study)["overall_response"], _point(study)["table_row"]) == (NE, 3)
    services.recist_non_target_set(user=doctor, study=study, response=PD)
    assert (_point(study)["overall_response"], _point(study)["table_row"]) == (PD, 4)


@pytest.mark.django_db
def test_the_judgement_is_refused_across_hospitals_roles_and_rules(studies, compared, doctor, annotator,
                                                                   other_doctor, patient_user):
    prior, study, (nodule, sphere), _ = studies
    assert _patch(doctor, study, PD).json()["error"]["code"] == "no_recist_selection"
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}])
    assert _patch(doctor, study, PD).json()["error"]["code"] == "no_non_targets"
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    audits = AuditLog.objects.filter(target_type="recist_selection", action=AuditLog.Action.UPDATE).count()
    assert _patch(other_doctor, study, PD).status_code == 404
    assert _patch(annotator, study, PD).status_code == 403
    assert _patch(patient_user, study, PD).status_code == 403
    baseline = _patch(doctor, prior, PD)
    assert baseline.status_code == 400 and baseline.json()["error"]["code"] == "not_a_follow_up"
    bad = _patch(doctor, study, SD)  # SD is a target response, not a non-target one
    assert bad.status_code == 400
    with pytest.raises(ServiceError) as exc:
        services.recist_non_target_set(user=doctor, study=study, response=SD)
    assert exc.value.code == "bad_response"
    zh = api_client(doctor).patch(reverse("study-recist", args=[prior.pk]), {"non_target_response": PD},
                                  format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "基线" in zh.json()["error"]["message"]
    assert RecistSelection.objects.get(study=prior).non_target_responses == {}
    assert AuditLog.objects.filter(target_type="recist_selection", action=AuditLog.Action.UPDATE).count() == audits


@pytest.mark.django_db
def test_the_study_page_records_the_judgement_and_shows_the_rule_and_the_report_too(client, studies, compared,
                                                                                    doctor, annotator):
    prior, study, (nodule, sphere), _ = studies
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    client.force_login(doctor)
    url = reverse("annotation:study-detail", args=[study.pk])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="recist-non-target-form"' in page and "Derived from the lesions followed (CR)" in page
    assert "(RECIST 1.1 Table 1, row 9)" in page  # the new sphere
    assert 'id="recist-non-target-form"' not in client.get(
        reverse("annotation:study-detail", args=[prior.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    response = client.post(reverse("diagnosis:study-recist-set", args=[study.pk]), {"non_target_response": PD})
    assert response.status_code == 302
    assert RecistSelection.objects.get(study=prior).non_target_responses[str(study.pk)]["response"] == PD
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Target SD, non-target PD (the doctor&#x27;s judgement), new lesions: yes → overall PD (RECIST 1.1 " \
           "Table 1, row 8)." in page
    assert '<option value="PD" selected>' in page
    zh = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "医生判断" in zh and "RECIST 1.1 表 1 第 8 行" in zh

    client.force_login(annotator)  # the form writes for clinicians only
    assert client.post(reverse("diagnosis:study-recist-set", args=[study.pk]),
                       {"non_target_response": CR}).status_code == 403
    assert RecistSelection.objects.get(study=prior).non_target_responses[str(study.pk)]["response"] == PD

    report = services.report_create_draft(user=doctor, study=study)
    client.force_login(doctor)
    page = client.get(reverse("diagnosis:report-detail", args=[report.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="report-recist"' in page and "(RECIST 1.1 Table 1, row 8)" in page


# --- one finding chain for RECIST and Lung-RADS --------------------------------------------------------

@pytest.mark.django_db
def test_the_chain_follows_a_finding_over_two_comparisons_as_recist_and_lung_rads_do(pair, nifti_files, studies,
                                                                                      compared, hospital, doctor):
    prior, study, (nodule, sphere), (grown, new) = studies
    # A third time point: the follow-up imaged again 4 months later, compared with the follow-up.
    later = _import(nifti_files[1], hospital, FOLLOW_UP_DATE + dt.timedelta(days=120))
    grown_again, new_again = _findings_from_labels(later, pair.follow_up_labels)
    services.study_compare(user=doctor, study=later, prior=study, working_spacing_mm=6.0)

    chain = finding_chain(finding=grown_again)
    assert [p["study_id"] for p in chain] == [prior.pk, study.pk, later.pk]
    assert [p["finding_id"] for p in chain] == [nodule.pk, grown.pk, grown_again.pk]
    assert [p["study_date"] for p in chain][-1] == (FOLLOW_UP_DATE + dt.timedelta(days=120)).isoformat()
    assert chain[0]["registration_id"] is None and chain[1]["registration_id"] == compared.pk
    assert chain[0]["volume_ml"] == pytest.approx(nodule.volume_ml)
    assert chain[1]["long_axis_mm"] == pytest.approx(grown.long_axis_mm)
    assert chain[2]["short_axis_mm"] == pytest.approx(grown_again.short_axis_mm)
    assert chain[0]["centroid_lps_mm"] == pytest.approx(nodule.centroid_lps_mm)
    # The new sphere was new at the follow-up: its chain starts there.
    assert [p["finding_id"] for p in finding_chain(finding=new_again)] == [new.pk, new_again.pk]

    # RECIST follows the target through the same pairings: its history is the chain, and the nadir is the
    # smallest sum before each time point.
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": nodule.pk}],
                                  non_targets=[{"finding": sphere.pk}])
    body = selectors.recist_assessment(study=later)
    [target] = [le for le in body["lesions"] if le["role"] == "target"]
    assert target["current_finding_id"] == grown_again.pk and target["history"] == chain
    sums = [p["sum_mm"] for p in body["time_points"]]
    assert [p["study_id"] for p in body["time_points"]] == [prior.pk, study.pk, later.pk]
    assert body["time_points"][2]["nadir_mm"] == pytest.approx(min(sums[:2]), abs=0.05)
    # Lung-RADS names the same prior finding at each step.
    for f in (grown, grown_again, nodule, sphere, new):
        services.finding_edit(user=doctor, finding=Finding.objects.get(pk=f.pk), composition="solid")
    nodules = {n["finding_id"]: n for n in selectors.lung_rads_suggestion(user=doctor, study=later)["nodules"]}
    assert nodules[grown_again.pk]["matched_prior_finding_id"] == chain[-2]["finding_id"]


# --- the volume doubling time on the pages ------------------------------------------------------------

@pytest.mark.django_db
def test_the_study_page_and_the_timeline_show_each_paired_nodules_vdt(client, studies, compared, doctor):
    prior, study, _prior_findings, (grown, _new) = studies
    [match] = selectors.study_comparison_payload(compared)["matches"]
    assert match["finding_id"] == grown.pk and match["vdt_days"] and match["growth_category"] == "fast"
    client.force_login(doctor)
    page = client.get(reverse("annotation:study-detail", args=[study.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    row = page[page.index('class="prior-match"'):]
    row = row[:row.index("</tr>")]
    assert f"<td>{match['vdt_days']:.0f}</td>" in row and "fast growth" in row

    timeline = client.get(reverse("patient-timeline", args=[study.patient_id]),
                          HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"nodule #{grown.pk}: VDT {match['vdt_days']:.0f} days (fast growth)" in timeline
    zh = client.get(reverse("patient-timeline", args=[study.patient_id]), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert f"结节 #{grown.pk}：体积倍增时间 {match['vdt_days']:.0f} 天" in zh.content.decode()


def test_a_point_signed_before_the_table_rows_were_kept_shows_no_table_rule():
    old = {"target_response": SD, "non_target_response": CR, "new_lesions": False, "overall_response": SD}
    assert selectors.recist_overall_rule_text(old) == ""
    assert selectors.recist_overall_rule_text({**old, "overall_response": None, "table_row": None}) == ""
