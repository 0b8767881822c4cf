"""Reference ranges (issue 14): published normal ranges stored with their source, the range that fits the
patient's sex and age, the hospital's own cohort, the flag on a value outside the range, the study page's
box-plot data and the report's sentence.

Real data: MSD Task04 hippocampus crops (labels Anterior/Posterior, imported as labelled studies) and the
TotalSegmentator example CT segmented by the built-in ``ct-lung`` model. Expected values are read from the
stored measurements and reference rows, never typed in.
"""

from __future__ import annotations

import json
import re
import zipfile
from datetime import date
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from diagnosis import services
from diagnosis.measurements.reference import Z_P75, Z_P975, box_summary, normal_percentiles
from diagnosis.models import Measurement, ReferenceRange
from diagnosis.selectors_reference_ranges import (
    hospital_cohort_values,
    reference_range_for,
    study_figures,
    study_reference_comparison,
    study_reference_comparison_for,
)
from tests.conftest import shared_data
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

HIPPO = ReferenceRange.Measure.HIPPOCAMPUS_ML
DATA_FILE = Path(__file__).resolve().parents[2] / "diagnosis" / "data" / "reference_ranges.json"


def _hippocampus_root() -> Path:
    root = shared_data("msd_task04_hippocampus")
    if not (root / "labelsTr").is_dir():
        pytest.skip("MSD Task04 hippocampus data are absent")
    return root


def _import_hippocampus(user, tmp_path: Path, cases: list[str], prefix: str) -> dict[str, object]:
    """Import MSD cases (image + label) as studies of ``user``'s hospital and measure them; {case: study}."""
    from annotation.models import Segmentation

    root = _hippocampus_root()
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]
    path = tmp_path / f"{prefix}msd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Task04/dataset.json", json.dumps(meta))
        for c in cases:
            archive.write(root / "imagesTr" / f"{c}.nii.gz", f"Task04/imagesTr/{c}.nii.gz")
            archive.write(root / "labelsTr" / f"{c}.nii.gz", f"Task04/labelsTr/{c}.nii.gz")
    with open(path, "rb") as fh:
        response = api_client(user).post(reverse("dataset-import"), {"file": fh, "mrn_prefix": prefix}, format="multipart")
    assert response.status_code == 201, response.content
    studies = {}
    for seg_id in response.json()["segmentation_ids"]:
        segmentation = Segmentation.objects.select_related("series__study__patient").get(pk=seg_id)
        services.segmentation_measure(segmentation=segmentation)
        studies[segmentation.series.study.patient.mrn.removeprefix(prefix)] = segmentation.series.study
    return studies


def _set_patient(study, *, sex: str, birth_date: date | None = None, study_date: date | None = None):
    patient = study.patient
    patient.sex = sex
    patient.birth_date = birth_date
    patient.save()
    if study_date is not None:
        study.study_date = study_date
        study.save()
    study.refresh_from_db()
    return study


def _hippocampus_ml(study) -> float:
    """The study's hippocampus (anterior + posterior) volume, from its stored measurements."""
    rows = Measurement.objects.filter(segmentation__series__study=study)
    by_name = {m.label_name.lower(): m.volume_ml for m in rows}
    return by_name["anterior"] + by_name["posterior"]


@pytest.fixture
def hippocampus(doctor, tmp_path):
    """Cases 001 (2.95 mL), 015 (2.82 mL) and 024 (4.03 mL) of the doctor's hospital."""
    return _import_hippocampus(doctor, tmp_path, ["hippocampus_001", "hippocampus_015", "hippocampus_024"], "HIP-")


# --- the stored table -------------------------------------------------------------------------------


def test_migration_loads_every_published_row_with_its_source_and_derived_percentiles():
    published = json.loads(DATA_FILE.read_text())["rows"]
    assert len(published) >= 9
    for entry in published:
        row = ReferenceRange.objects.get(measure=entry["measure"], sex=entry["sex"], source=entry["source"],
                                         age_min_years=entry["age_min_years"], age_max_years=entry["age_max_years"])
        assert row.source_locator and row.source and row.derivation == ReferenceRange.Derivation.NORMAL
        assert (row.mean, row.sd, row.n) == (entry["mean"], entry["sd"], entry["n"])
        expected = normal_percentiles(entry["mean"], entry["sd"])
        for key, value in expected.items():
            assert getattr(row, key) == pytest.approx(value, abs=1e-3)
        assert "mean ± SD" in row.note and "normal" in row.note
    measures = set(ReferenceRange.objects.values_list("measure", flat=True))
    assert {ReferenceRange.Measure.LUNG_TOTAL_ML, ReferenceRange.Measure.LUNG_RIGHT_PCT,
            ReferenceRange.Measure.LUNG_LEFT_PCT, HIPPO} <= measures


def test_normal_percentiles_and_box_summary_follow_their_definitions():
    p = normal_percentiles(10.0, 2.0)
    assert p["p2_5"] == pytest.approx(10 - 2 * Z_P975) and p["p75"] == pytest.approx(10 + 2 * Z_P75)
    with pytest.raises(ValueError):
        normal_percentiles(1.0, 0.0)
    # 1..9 and an outlier: quartiles by linear interpolation, whisker at the last value within 1.5 IQR.
    s = box_summary([1, 2, 3, 4, 5, 6, 7, 8, 9, 40])
    assert (s.q1, s.median, s.q3) == (3.25, 5.5, 7.75) and s.whisker_high == 9 and s.outliers == (40.0,)
    assert box_summary([]) is None


# --- choosing the row -------------------------------------------------------------------------------


def test_the_row_follows_the_patients_age_band():
    right = ReferenceRange.Measure.HIPPOCAMPUS_RIGHT_ML
    child = reference_range_for(measure=right, sex="F", age_years=12)
    older = reference_range_for(measure=right, sex="M", age_years=60)
    assert (child.age_min_years, child.age_max_years) == (7, 18)
    assert (older.age_min_years, older.age_max_years) == (50, 77)
    assert reference_range_for(measure=right, sex="M", age_years=30) is None  # no published band holds 30
    assert reference_range_for(measure=right, sex="M", age_years=None) is None


def test_the_row_follows_the_patients_sex_and_flags_a_real_hippocampus_only_against_the_mans_range(hippocampus):
    study = hippocampus["hippocampus_001"]
    value = _hippocampus_ml(study)
    male = ReferenceRange.objects.get(measure=HIPPO, sex="M")
    female = ReferenceRange.objects.get(measure=HIPPO, sex="F")
    # Case 001 lies between the two published lower limits: the patient's sex decides the flag.
    assert female.p2_5 <= value < male.p2_5

    [as_man] = study_reference_comparison_for(study=_set_patient(study, sex="M"))
    [as_woman] = study_reference_comparison_for(study=_set_patient(study, sex="F"))
    [unknown] = study_reference_comparison_for(study=_set_patient(study, sex=""))

    assert as_man["measure"] == HIPPO and as_man["value"] == pytest.approx(value, abs=1e-3)
    assert as_man["reference"]["id"] == male.pk and as_man["outside"] is True and as_man["direction"] == "low"
    assert as_woman["reference"]["id"] == female.pk and as_woman["outside"] is False and as_woman["direction"] == ""
    assert unknown["reference"] is None and unknown["outside"] is None  # no either-sex hippocampus row is stored


def test_flag_for_a_value_outside_versus_inside_the_range(hippocampus):
    small, large = hippocampus["hippocampus_015"], hippocampus["hippocampus_024"]
    [low] = study_reference_comparison_for(study=_set_patient(small, sex="F"))
    [normal] = study_reference_comparison_for(study=_set_patient(large, sex="F"))
    female = ReferenceRange.objects.get(measure=HIPPO, sex="F")

    assert _hippocampus_ml(small) < female.p2_5 and low["outside"] is True and low["direction"] == "low"
    assert female.p2_5 <= _hippocampus_ml(large) <= female.p97_5 and normal["outside"] is False


def test_an_age_banded_row_an_admin_adds_applies_at_the_age_on_the_study_date(hippocampus):
    study = hippocampus["hippocampus_024"]
    banded = ReferenceRange.objects.create(
        measure=HIPPO, unit="mL", sex="M", age_min_years=60, age_max_years=90, mean=5.0, sd=0.3,
        **normal_percentiles(5.0, 0.3), derivation=ReferenceRange.Derivation.NORMAL,
        source="test row", source_locator="test")
    # Born 1950-06-01: 69 on 2020-05-31, 70 the next day; 39 in 1990.
    [old] = study_reference_comparison_for(study=_set_patient(study, sex="M", birth_date=date(1950, 6, 1),
                                                              study_date=date(2020, 6, 1)))
    [young] = study_reference_comparison_for(study=_set_patient(study, sex="M", birth_date=date(1950, 6, 1),
                                                                study_date=date(1990, 5, 31)))
    assert old["age_years"] == 70 and old["reference"]["id"] == banded.pk
    assert old["outside"] is True  # 4.03 mL is below this (test) band's 2.5th percentile
    assert young["age_years"] == 39 and young["reference"]["id"] == ReferenceRange.objects.get(
        measure=HIPPO, sex="M", age_min_years=None).pk


# --- the hospital's cohort ---------------------------------------------------------------------------


def test_cohort_summarises_the_other_patients_of_the_same_hospital_only(doctor, other_doctor, hippocampus, tmp_path):
    elsewhere = _import_hippocampus(other_doctor, tmp_path, ["hippocampus_003"], "ELS-")["hippocampus_003"]
    study = hippocampus["hippocampus_001"]

    values = hospital_cohort_values(study=study, measure=HIPPO, model_id=None, modality="MR")
    [item] = study_reference_comparison_for(study=study)

    expected = sorted(_hippocampus_ml(hippocampus[c]) for c in ("hippocampus_015", "hippocampus_024"))
    assert sorted(values) == pytest.approx(expected)
    assert _hippocampus_ml(elsewhere) not in values and _hippocampus_ml(study) not in values
    cohort = item["cohort"]
    assert cohort["n"] == 2 and cohort["min"] == pytest.approx(expected[0]) and cohort["max"] == pytest.approx(expected[1])
    # The other hospital's cohort holds only its own patient... none other than the study's: empty.
    [theirs] = study_reference_comparison_for(study=elsewhere)
    assert theirs["cohort"] is None


def test_the_comparison_costs_a_fixed_number_of_queries_whatever_the_cohort(django_assert_max_num_queries, doctor,
                                                                            hippocampus, tmp_path):
    study = hippocampus["hippocampus_001"]
    # study_figures, the reference rows, one cohort query per (model, modality); the patient is loaded.
    with django_assert_max_num_queries(3):
        first = study_reference_comparison_for(study=study)
    _import_hippocampus(doctor, tmp_path, ["hippocampus_003", "hippocampus_007"], "MORE-")
    with django_assert_max_num_queries(3):
        second = study_reference_comparison_for(study=study)
    assert (first[0]["cohort"]["n"], second[0]["cohort"]["n"]) == (2, 4)


def test_the_selector_refuses_a_study_of_another_hospital_and_patients(other_doctor, patient_user, hippocampus):
    from django.http import Http404

    study = hippocampus["hippocampus_001"]
    with pytest.raises(Http404):
        study_reference_comparison(user=other_doctor, study_id=study.pk)
    with pytest.raises(Http404):
        study_reference_comparison(user=patient_user, study_id=study.pk)


# --- CT lungs: the built-in model on a real CT ------------------------------------------------------


@pytest.fixture
def lung_segmented_ct(small_ct_study, ct_lung_model):
    """The 30-slice TotalSegmentator crop segmented by ``ct-lung``: only the lung bases are in view."""
    out = StringIO()
    series = small_ct_study.series.get()
    call_command("segment", str(series.pk), "--model", "ct-lung", "--inline", stdout=out)
    assert json.loads(out.getvalue())["status"] == "succeeded"
    return small_ct_study


def test_a_ct_with_only_the_lung_bases_is_flagged_below_the_total_lung_range(lung_segmented_ct):
    figures = {f["measure"]: f for f in study_figures(study=lung_segmented_ct)}
    rows = {m.label_name: m.volume_ml for m in Measurement.objects.filter(segmentation__series__study=lung_segmented_ct)}
    total = rows["right lung"] + rows["left lung"]
    assert figures[ReferenceRange.Measure.LUNG_TOTAL_ML]["value"] == pytest.approx(total)
    assert figures[ReferenceRange.Measure.LUNG_RIGHT_PCT]["value"] == pytest.approx(100 * rows["right lung"] / total)

    items = {i["measure"]: i for i in study_reference_comparison_for(study=lung_segmented_ct)}
    reference = ReferenceRange.objects.get(measure=ReferenceRange.Measure.LUNG_TOTAL_ML)
    assert total < reference.p2_5
    assert items[ReferenceRange.Measure.LUNG_TOTAL_ML]["outside"] is True
    assert items[ReferenceRange.Measure.LUNG_TOTAL_ML]["direction"] == "low"
    share = items[ReferenceRange.Measure.LUNG_RIGHT_PCT]
    assert share["outside"] is (not share["reference"]["p2_5"] <= share["value"] <= share["reference"]["p97_5"])
    # No right/left lung volume in mL is stored (no verified source): shown with the cohort, never flagged.
    assert items[ReferenceRange.Measure.LUNG_RIGHT_ML]["reference"] is None
    assert items[ReferenceRange.Measure.LUNG_RIGHT_ML]["outside"] is None


# --- the study page, the report, the admin ------------------------------------------------------------


def test_the_study_page_carries_the_box_plot_data_and_the_badge(client, doctor, hippocampus):
    study = _set_patient(hippocampus["hippocampus_001"], sex="M")
    client.force_login(doctor)
    html = client.get(reverse("annotation:study-detail", args=[study.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    match = re.search(r'<script id="reference-range-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no reference-range JSON in the page"
    data = json.loads(match.group(1))
    [item] = data["items"]
    male = ReferenceRange.objects.get(measure=HIPPO, sex="M")
    assert item["value"] == pytest.approx(_hippocampus_ml(study), abs=1e-3)
    assert item["reference"]["p2_5"] == pytest.approx(male.p2_5) and item["reference"]["p97_5"] == pytest.approx(male.p97_5)
    assert item["cohort"]["n"] == 2
    assert data["flags"] == [{"segmentationId": item["segmentation_id"], "labels": item["labels"], "measure": HIPPO,
                              "name": item["name"], "direction": "low", "source": male.source}]
    assert "Below reference range" in html and 'id="reference-range-charts"' in html

    zh = client.get(reverse("annotation:study-detail", args=[study.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "低于参考范围" in zh and "参考范围" in zh


def test_patients_see_no_cohort_on_their_study_page(client, patient_user, hippocampus):
    study = hippocampus["hippocampus_001"]
    study.patient.user = patient_user
    study.patient.save()
    client.force_login(patient_user)
    html = client.get(reverse("annotation:study-detail", args=[study.pk])).content.decode()
    assert "reference-range-data" not in html


def test_the_report_states_outside_reference_range_with_the_source(client, doctor, hippocampus):
    study = _set_patient(hippocampus["hippocampus_015"], sex="F")
    report = services.report_create_draft(user=doctor, study=study)
    content = services.report_content(report)
    female = ReferenceRange.objects.get(measure=HIPPO, sex="F")

    [flag] = content["reference_flags"]
    assert flag["measure"] == HIPPO and flag["direction"] == "low" and flag["source"] == female.source
    client.force_login(doctor)
    en = client.get(reverse("diagnosis:report-detail", args=[report.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    zh = client.get(reverse("diagnosis:report-detail", args=[report.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert f"outside reference range ({female.source}; {female.source_locator})" in en
    assert f"超出参考范围（{female.source}；{female.source_locator}）" in zh

    # Inside the range: no sentence.
    normal = services.report_create_draft(user=doctor, study=_set_patient(hippocampus["hippocampus_024"], sex="F"))
    assert services.report_content(normal)["reference_flags"] == []


def test_the_signed_pdf_states_outside_reference_range_with_the_source(doctor, hippocampus, tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    study = _set_patient(hippocampus["hippocampus_015"], sex="M")
    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, findings="Small left hippocampus.",
                           impression="Hippocampal volume below the reference range.")
    signed = services.report_finalize(user=doctor, report=report)
    male = ReferenceRange.objects.get(measure=HIPPO, sex="M")
    assert [f["source"] for f in signed.snapshot["reference_flags"]] == [male.source]  # frozen at signing

    client = api_client(doctor)
    texts = {}
    for language in ("en", "zh-hans"):
        path = tmp_path / f"report-{language}.pdf"
        path.write_bytes(client.get(reverse("report-pdf", args=[signed.pk]), HTTP_ACCEPT_LANGUAGE=language).content)
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        texts[language] = " ".join(text.split())  # the long citation wraps across lines
    assert "outside reference range (" in texts["en"] and male.source_locator.split(":")[0] in texts["en"]
    assert "超出参考范围" in texts["zh-hans"]
    # The citation's first words survive the line wrapping in both languages.
    assert all(" ".join(male.source.split()[:4]) in t for t in texts.values())


def test_only_platform_admins_edit_reference_ranges_in_the_admin(client, doctor, hospital):
    from portal.models import Role
    from tests.factories import UserFactory

    row = ReferenceRange.objects.get(measure=HIPPO, sex="F")
    url = reverse("admin:diagnosis_referencerange_change", args=[row.pk])
    hospital_admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    hospital_admin.is_staff = True  # even let into the admin site, a hospital admin may not touch the table
    hospital_admin.save()

    client.force_login(doctor)
    assert client.get(url).status_code == 302  # not admin-site staff: sent to the login page
    client.force_login(hospital_admin)
    assert client.get(url).status_code == 403

    admin = UserFactory(role=Role.PLATFORM_ADMIN)
    client.force_login(admin)
    assert client.get(url).status_code == 200
    form = {f.name: getattr(row, f.attname) for f in ReferenceRange._meta.concrete_fields
            if f.editable and f.name not in ("id",)}
    form = {k: ("" if v is None else v) for k, v in form.items()}
    form.update(p97_5=row.p97_5 + 0.5, note=row.note + " Corrected.")
    form["is_active"] = "on"
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    row.refresh_from_db()
    assert row.note.endswith("Corrected.") and row.p97_5 == pytest.approx(
        normal_percentiles(row.mean, row.sd)["p97_5"] + 0.5, abs=1e-3)
