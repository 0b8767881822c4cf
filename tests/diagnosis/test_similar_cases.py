"""Similar cases (issue 14): the plain similarity on constructed features, and on the database the hospital's
earlier signed cases ranked by its weights, shown on the study page and through the API, audit-logged.

The database cases are the real TotalSegmentator CT crop imported once per patient through the real
import service (skipped when the shared data are absent); findings, reports, signatures and the Lung-RADS
confirmation go through the diagnosis services.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from diagnosis.similarity import (
    DEFAULT_WEIGHTS,
    CaseFeatures,
    FindingFeatures,
    WeightsError,
    case_similarity,
    feature_similarities,
    finding_size_mm,
    leave_one_out_precision,
    precision_at_k,
    random_precision_at_k,
    rank_similar,
    validate_weights,
)

NODULE_8 = FindingFeatures(kind="lung_nodule", long_axis_mm=8.0, composition="solid", side="right", region="RUL")


# --- the plain functions ----------------------------------------------------------------------------------

def test_each_feature_similarity_follows_its_formula():
    a = CaseFeatures("a", findings=(NODULE_8, FindingFeatures(kind="lesion", long_axis_mm=4.0)),
                     segment_volumes_ml={"Lesion": 2.0}, age_years=60, sex="M", impression_code="4A",
                     questionnaire_scores={"phq-9": 9 / 27})
    b = CaseFeatures("b", findings=(FindingFeatures(kind="lung_nodule", long_axis_mm=20.0, composition="part_solid",
                                                    side="right", region="RLL"),),
                     segment_volumes_ml={"lesion": 1.0, "liver": 1500.0}, age_years=70, sex="F",
                     impression_code="2", questionnaire_scores={"phq-9": 18 / 27, "gad-7": 0.5})
    parts = feature_similarities(a, b)
    assert parts["kinds"] == pytest.approx(1 / 2)  # {nodule, lesion} vs {nodule}
    assert parts["size"] == pytest.approx(1 - 12 / 30)  # dominant 8 mm vs 20 mm, scale 30 mm
    assert parts["composition"] == pytest.approx(0.5)  # solid 1 vs part-solid 0.5
    assert parts["location"] == pytest.approx(1 / 3)  # {side:right, region:rul} vs {side:right, region:rll}
    assert parts["measurements"] == pytest.approx(0.5)  # only "lesion" is on both (names case-folded): 1/2
    assert parts["age"] == pytest.approx(math.exp(-1))
    assert parts["sex"] == 0.0
    assert parts["impression"] == pytest.approx(1 - 2 / 5)  # 4A is rank 3, 2 rank 1, of 6 ordered categories
    assert parts["questionnaire"] == pytest.approx(1 - 9 / 27)  # gad-7 only on b


def test_a_feature_missing_on_either_side_drops_its_weight_from_both_sums():
    a = CaseFeatures("a", findings=(NODULE_8,), age_years=50, sex="F")
    b = CaseFeatures("b", findings=(NODULE_8,), age_years=None, sex="M", impression_code="3")
    result = case_similarity(a, b, {"age": 5.0, "impression": 7.0})
    # Present on both: kinds 1, size 1, composition 1, location 1 (weights 2, 2, 1, 1) and sex 0 (0.5).
    assert set(result.parts) == {"kinds", "size", "composition", "location", "sex"}
    assert result.score == pytest.approx((2 + 2 + 1 + 1 + 0) / (2 + 2 + 1 + 1 + 0.5))


def test_cases_sharing_no_feature_have_no_score_and_are_not_ranked():
    a = CaseFeatures("a", age_years=40)
    b = CaseFeatures("b", sex="F")
    assert case_similarity(a, b).score is None
    assert rank_similar(a, [b]) == []


def test_a_zero_weight_leaves_its_feature_out():
    a = CaseFeatures("a", findings=(NODULE_8,), sex="F")
    b = CaseFeatures("b", findings=(NODULE_8,), sex="M")
    assert case_similarity(a, b).score < 1.0
    result = case_similarity(a, b, {"sex": 0.0})
    assert result.score == pytest.approx(1.0) and "sex" not in result.parts


def test_size_falls_back_to_the_diameter_of_the_sphere_of_the_volume():
    sphere_10mm_ml = math.pi / 6 * 10 ** 3 / 1000  # V = π d³ / 6
    assert finding_size_mm(FindingFeatures(kind="lesion", volume_ml=sphere_10mm_ml)) == pytest.approx(10.0)
    assert finding_size_mm(FindingFeatures(kind="lesion", long_axis_mm=7.0, volume_ml=99.0)) == 7.0
    assert finding_size_mm(FindingFeatures(kind="lesion")) is None


def test_weights_must_be_non_negative_known_and_not_all_zero():
    assert validate_weights({}) == dict(DEFAULT_WEIGHTS)
    assert validate_weights({"age": 3})["age"] == 3.0
    for weights, code in (({"age": -1}, "weight_negative"), ({"shoe_size": 1}, "weight_unknown"),
                          ({"age": float("nan")}, "weight_not_finite"),
                          ({name: 0 for name in DEFAULT_WEIGHTS}, "weights_all_zero")):
        with pytest.raises(WeightsError) as caught:
            validate_weights(weights)
        assert caught.value.code == code


def test_weights_change_the_ranking():
    query = CaseFeatures("q", findings=(NODULE_8,), age_years=60, sex="M")
    same_nodule = CaseFeatures("nodule", findings=(NODULE_8,), age_years=85, sex="F")
    same_person = CaseFeatures("person", findings=(FindingFeatures(kind="lesion", long_axis_mm=40.0),),
                               age_years=60, sex="M")
    assert [r.case_id for r in rank_similar(query, [same_person, same_nodule])] == ["nodule", "person"]
    by_person = {"kinds": 0, "size": 0, "composition": 0, "location": 0, "age": 1, "sex": 1}
    ranked = rank_similar(query, [same_nodule, same_person], weights=by_person)
    assert [r.case_id for r in ranked] == ["person", "nodule"]
    assert len(rank_similar(query, [same_nodule, same_person], k=1)) == 1


def test_precision_at_k_counts_relevant_items_among_the_first_k():
    assert precision_at_k([True, False, True, True], 1) == 1.0
    assert precision_at_k([True, False, True, True], 3) == pytest.approx(2 / 3)
    assert precision_at_k([True], 5) == pytest.approx(1 / 5)  # missing items count as not relevant
    with pytest.raises(ValueError):
        precision_at_k([True], 0)


def test_leave_one_out_precision_on_two_clear_groups():
    small = [CaseFeatures(f"s{n}", findings=(FindingFeatures(kind="lung_nodule", long_axis_mm=5.0 + n / 10),))
             for n in range(3)]
    large = [CaseFeatures(f"l{n}", findings=(FindingFeatures(kind="lung_nodule", long_axis_mm=25.0 + n / 10),))
             for n in range(3)]
    cases = small + large

    def same_group(a, b):
        return a.case_id[0] == b.case_id[0]

    result = leave_one_out_precision(cases, same_group, ks=(1, 2, 3))
    assert result[1] == 1.0 and result[2] == 1.0
    assert result[3] == pytest.approx(2 / 3)  # only 2 relevant others exist
    assert random_precision_at_k(cases, same_group) == pytest.approx(2 / 5)
    # Only the small cases as queries; the large ones stay candidates.
    mixed = cases + [CaseFeatures("s-far", findings=(FindingFeatures(kind="lung_nodule", long_axis_mm=29.0),))]
    only_small = leave_one_out_precision(mixed, same_group, ks=(3,), queries=lambda c: c.case_id in {"s0", "s1", "s2"})
    assert only_small[3] == pytest.approx(2 / 3)  # s-far is relevant but ranked below the large ones


# --- on the database ---------------------------------------------------------------------------------------

@pytest.fixture
def ct_path(small_ct_path):
    if not small_ct_path.exists():
        pytest.skip(f"the shared CT is absent: {small_ct_path}")
    return small_ct_path


def _case(*, doctor, hospital, mrn, path, date, findings, sex="", birth=None, category="", sign=True,
          impression="右肺结节"):
    """Import the CT as a new patient's study, add findings (accepted), and sign a report (or leave a draft)."""
    from annotation import services as annotation_services
    from annotation.models import Patient
    from diagnosis import services
    from diagnosis.models import Finding

    study = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn=mrn, paths=[path],
                                             modality="CT", study_date=date).studies[0]
    Patient.objects.filter(pk=study.patient_id).update(sex=sex, birth_date=birth)
    series = study.series.get()
    for fields in findings:
        finding = services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                          centroid_voxel=[15.0, 40.0, 40.0], **fields)
        services.finding_accept(user=doctor, finding=finding)
    report = services.report_create_draft(user=doctor, study=study)
    report = services.report_update(user=doctor, report=report, impression=impression)
    if category:
        report = services.report_lung_rads_confirm(user=doctor, report=report, category=category)
    if sign:
        services.report_finalize(user=doctor, report=report)
    study.refresh_from_db()
    return study


NODULE = {"kind": "lung_nodule", "long_axis_mm": 8.0, "composition": "solid", "side": "right", "region": "RUL"}
MASS = {"kind": "lesion", "long_axis_mm": 45.0, "side": "left"}


@pytest.fixture
def cohort(db, hospital, doctor, other_doctor, ct_path):
    """Hospital A: the query study (2026-06-01, an 8 mm solid right nodule, man of 60, Lung-RADS 4A); an
    earlier same-nodule case of an older woman ("nodule"); an earlier different-lesion case of a man of 60
    ("person"); a later twin (after the query); an earlier twin whose report is only a draft. Hospital B: an
    earlier twin, signed."""
    man_60, woman_85 = dt.date(1966, 6, 1), dt.date(1941, 6, 1)
    common = {"doctor": doctor, "hospital": hospital, "path": ct_path}
    return {
        "query": _case(mrn="Q", date=dt.date(2026, 6, 1), findings=[NODULE], sex="M", birth=man_60, category="4A",
                       **common),
        "nodule": _case(mrn="N", date=dt.date(2026, 1, 10), findings=[NODULE], sex="F", birth=woman_85,
                        category="4A", impression="右上叶实性结节 8 mm", **common),
        "person": _case(mrn="P", date=dt.date(2026, 2, 10), findings=[MASS], sex="M", birth=man_60,
                        impression="左肺肿块", **common),
        "later": _case(mrn="L", date=dt.date(2026, 7, 1), findings=[NODULE], sex="M", birth=man_60, category="4A",
                       **common),
        "draft": _case(mrn="D", date=dt.date(2026, 3, 1), findings=[NODULE], sex="M", birth=man_60, sign=False,
                       **common),
        "elsewhere": _case(doctor=other_doctor, hospital=other_doctor.hospital, path=ct_path, mrn="E",
                           date=dt.date(2026, 1, 1), findings=[NODULE], sex="M", birth=man_60, category="4A"),
    }


def test_only_earlier_signed_cases_of_the_same_hospital_are_ranked(cohort):
    from diagnosis.selectors_similar import similar_cases

    result = similar_cases(study=cohort["query"], k=5)
    ids = [c["study_id"] for c in result["cases"]]
    assert ids == [cohort["nodule"].pk, cohort["person"].pk]
    assert result["candidate_count"] == 2
    first = result["cases"][0]
    assert first["impression"] == "右上叶实性结节 8 mm" and first["lung_rads_category"] == "4A"
    assert first["recommendation"] and first["findings"][0]["kind"] == "lung_nodule"
    assert first["parts"]["kinds"] == 1.0 and first["parts"]["sex"] == 0.0


def test_the_hospitals_weights_change_the_ranking(cohort, hospital):
    from diagnosis import services
    from diagnosis.selectors_similar import similar_cases
    from portal.models import Role
    from tests.factories import UserFactory

    admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    services.similarity_weights_set(user=admin, hospital=hospital, weights={
        "kinds": 0, "size": 0, "composition": 0, "location": 0, "measurements": 0, "impression": 0,
        "age": 1, "sex": 1})
    ids = [c["study_id"] for c in similar_cases(study=cohort["query"], k=5)["cases"]]
    assert ids[0] == cohort["person"].pk


def test_weights_are_checked_and_only_the_hospitals_admin_sets_them(db, hospital, doctor):
    from diagnosis import services
    from diagnosis.models import SimilarityWeights
    from portal.api_errors import ServiceError
    from portal.models import AuditLog, Role
    from tests.factories import UserFactory

    admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    with pytest.raises(ServiceError) as caught:
        services.similarity_weights_set(user=admin, hospital=hospital, weights={"age": -1})
    assert caught.value.code == "weight_negative"
    with pytest.raises(ServiceError) as caught:
        services.similarity_weights_set(user=admin, hospital=hospital, weights=dict.fromkeys(DEFAULT_WEIGHTS, 0))
    assert caught.value.code == "weights_all_zero"
    with pytest.raises(ServiceError) as caught:
        services.similarity_weights_set(user=doctor, hospital=hospital, weights={"age": 2})
    assert caught.value.status_code == 403
    assert not SimilarityWeights.objects.filter(hospital=hospital).exists()
    row = services.similarity_weights_set(user=admin, hospital=hospital, weights={"age": 2})
    assert row.age == 2.0 and row.kinds == DEFAULT_WEIGHTS["kinds"]
    assert AuditLog.objects.filter(target_type="similarity_weights", target_id=str(row.pk), actor=admin).exists()


def test_the_weights_form_refuses_all_zero_and_saves(client, db, hospital):
    from diagnosis.models import SimilarityWeights
    from portal.models import Role
    from tests.factories import UserFactory

    admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    client.force_login(admin)
    page = client.get("/reports/similarity-weights/")
    assert page.status_code == 200
    zero = dict.fromkeys(DEFAULT_WEIGHTS, "0")
    assert client.post("/reports/similarity-weights/", zero).status_code == 200  # shown again with the error
    assert not SimilarityWeights.objects.filter(hospital=hospital).exists()
    answer = client.post("/reports/similarity-weights/", dict(zero, age="1.5"))
    assert answer.status_code == 302
    assert SimilarityWeights.objects.get(hospital=hospital).age == 1.5


def test_the_weights_form_is_refused_to_a_doctor(client, db, doctor):
    client.force_login(doctor)
    assert client.get("/reports/similarity-weights/").status_code == 403


def test_the_api_answers_ranked_cases_and_audits_the_read(cohort, doctor, django_assert_max_num_queries):
    from portal.models import AuditLog
    from tests.helpers import api_client

    query = cohort["query"]
    with django_assert_max_num_queries(30):
        answer = api_client(doctor).get(f"/api/studies/{query.pk}/similar/?k=1")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert [c["study_id"] for c in body["cases"]] == [cohort["nodule"].pk]
    assert body["k"] == 1 and 0 < body["cases"][0]["similarity"] <= 1
    row = AuditLog.objects.filter(target_type="similar_cases", target_id=str(query.pk), actor=doctor).get()
    assert row.action == AuditLog.Action.VIEW and row.detail["cases"] == [cohort["nodule"].pk]


def test_the_api_refuses_bad_k_a_study_without_signed_report_and_other_users(cohort, doctor, annotator,
                                                                            other_doctor):
    from tests.helpers import api_client

    client = api_client(doctor)
    query = cohort["query"]
    for k in ("0", "21", "abc"):
        assert client.get(f"/api/studies/{query.pk}/similar/?k={k}").status_code == 400
    draft = client.get(f"/api/studies/{cohort['draft'].pk}/similar/")
    assert draft.status_code == 409 and draft.json()["error"]["code"] == "report_not_signed"
    assert api_client(other_doctor).get(f"/api/studies/{query.pk}/similar/").status_code == 404
    assert api_client(annotator).get(f"/api/studies/{query.pk}/similar/").status_code == 403


def test_the_study_page_shows_the_panel_and_audits_it(client, cohort, doctor):
    from django.utils import translation

    from portal.models import AuditLog

    query = cohort["query"]
    client.force_login(doctor)
    with translation.override("zh-hans"):
        page = client.get(f"/studies/{query.pk}/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="similar-cases"' in html and "右上叶实性结节 8 mm" in html and "相似病例" in html
    assert f'data-study="{cohort["elsewhere"].pk}"' not in html and f'data-study="{cohort["later"].pk}"' not in html
    row = AuditLog.objects.filter(target_type="similar_cases", target_id=str(query.pk), actor=doctor).get()
    assert row.detail["via"] == "page"


def test_questionnaire_scores_from_followup_are_a_feature(cohort, doctor, hospital):
    from django.utils import timezone

    from annotation.models import Patient
    from diagnosis.selectors_similar import similar_cases
    from followup import services as followup_services
    from portal.models import Role
    from tests.factories import UserFactory

    phq9 = next(q for q in followup_services.instruments_install() if q.code == "phq-9")
    for name, answer in (("query", "1"), ("nodule", "2")):
        patient = Patient.objects.get(pk=cohort[name].patient_id)
        patient.user = UserFactory(role=Role.PATIENT, hospital=hospital)
        patient.save()
        assignment = followup_services.questionnaire_assign(actor=doctor, questionnaire=phq9, patients=[patient],
                                                            due_date=timezone.localdate())[0]
        followup_services.assignment_submit(user=patient.user, assignment=assignment,
                                            answers={f"phq9_{n}": answer for n in range(1, 10)}
                                            | {"phq9_difficulty": "0"})
    result = similar_cases(study=cohort["query"], k=5)
    by_study = {c["study_id"]: c for c in result["cases"]}
    assert result["features"]["questionnaire"] is True
    assert by_study[cohort["nodule"].pk]["parts"]["questionnaire"] == pytest.approx(1 - 9 / 27, abs=1e-3)
    assert "questionnaire" not in by_study[cohort["person"].pk]["parts"]  # that patient answered none
