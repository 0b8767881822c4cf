"""Figures over time (issue 14): per matched finding and segment, volume, axes and mean HU at each time
point with their change, served to clinicians (live) and to the patient (as signed), and drawn as SVG line
charts with a real time axis in the signed PDF, frozen with the snapshot.

Data: the follow-up derived from the real LIDC-IDRI-0001 CT with the nodule grown by a known dilation and
a known rigid transform (``tests/diagnosis/longitudinal/followup_data``), compared by the real service.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Segmentation
from annotation.storage import series_volume_load
from diagnosis import selectors, services
from diagnosis.models import Finding, Report
from diagnosis.reporting.growth_chart import LINE_GID, render_growth_chart_svg
from diagnosis.selectors_growth import study_growth_series
from portal.models import AuditLog
from tests.diagnosis.longitudinal.followup_data import BASELINE_DATE, FOLLOW_UP_DATE, INTERVAL_DAYS
from tests.diagnosis.test_longitudinal import compared, nifti_files, pair, studies  # noqa: F401
from tests.diagnosis.test_reports import _pdf_text
from tests.helpers import api_client

DAY_MS = 86_400_000


# --- the SVG chart (plain Python, matplotlib) ---------------------------------------------------

def _circle_xs(svg: str) -> list[float]:
    """The x of each vertex of the drawn line (its markers sit on them)."""
    path = re.search(rf'<g id="{LINE_GID}">.*?<path d="([^"]+)"', svg, flags=re.S).group(1)
    return [float(x) for x in re.findall(r"[ML] ([-\d.]+) [-\d.]+", path)]


def test_points_sit_at_their_dates_distance_not_at_even_steps():
    svg = render_growth_chart_svg([(0, 1.0), (30 * DAY_MS, 2.0), (120 * DAY_MS, 4.0)], title="t", y_label="mL",
                                  x_label="date", date_label=lambda t: f"d{t // DAY_MS}")
    xs = _circle_xs(svg)
    assert len(xs) == 3
    # 30 days then 90 days: the second gap is three times the first (a category axis would make them equal).
    assert (xs[2] - xs[1]) == pytest.approx(3 * (xs[1] - xs[0]), abs=0.2)
    assert "d0" in svg and "d120" in svg and svg.startswith("<svg ")


def test_a_chart_escapes_its_text_and_leaves_out_missing_values():
    svg = render_growth_chart_svg([(0, 1.0), (DAY_MS, None), (None, 3.0), (2 * DAY_MS, 2.0)], title="<b>&",
                                  y_label="mL", x_label="date", date_label=str)
    assert "&lt;b&gt;&amp;" in svg and "<b>" not in svg
    assert len(_circle_xs(svg)) == 2


def test_a_chart_needs_two_dated_values():
    with pytest.raises(ValueError, match="two dated values"):
        render_growth_chart_svg([(0, 1.0), (DAY_MS, None)], title="t", y_label="y", x_label="x", date_label=str)


# --- the series of a compared study ------------------------------------------------------------

@pytest.mark.django_db
def test_the_grown_nodule_is_charted_over_its_two_dates_with_its_change(studies, compared):  # noqa: F811
    prior, study, prior_findings, findings = studies
    body = study_growth_series(study=study)
    nodules = [s for s in body["series"] if s["kind"] == "finding"]
    # One matched pair (the nodule): the new and the resolved sphere have a single time point, no chart.
    assert len(nodules) == 1
    nodule = nodules[0]
    before, after = nodule["points"]
    assert (before["study_id"], after["study_id"]) == (prior.pk, study.pk)
    assert (before["study_date"], after["study_date"]) == (BASELINE_DATE.isoformat(), FOLLOW_UP_DATE.isoformat())
    assert after["t_ms"] - before["t_ms"] == INTERVAL_DAYS * DAY_MS
    assert before["volume_ml"] == pytest.approx(prior_findings[0].volume_ml, rel=1e-3)
    assert after["volume_ml"] == pytest.approx(findings[0].volume_ml, rel=1e-3)
    assert after["long_axis_mm"] == pytest.approx(findings[0].long_axis_mm, abs=0.01)
    assert after["mean_hu"] == pytest.approx(findings[0].mean_hu, abs=0.1)
    # The change agrees with the comparison's own figure (the nodule grew).
    payload = selectors.study_comparison_payload(compared)
    match = next(m for m in payload["matches"] if m["kind"] == "finding")
    assert after["volume_ml_change_pct"] == pytest.approx(match["volume_change_pct"], abs=0.1)
    assert after["volume_ml_change"] > 0 and before["volume_ml_change"] is None
    assert nodule["total"]["volume_ml"]["change"] == after["volume_ml_change"]


@pytest.mark.django_db
def test_lung_segments_are_charted_by_name(studies, doctor):  # noqa: F811
    from annotation.ml.lung import LUNG_LABEL_TABLE, segment_lungs

    prior, study, _, _ = studies
    volumes = {}
    for row in (prior, study):
        series = row.series.get()
        segmentation = annotation_services.segmentation_create(
            series=series, label_map=segment_lungs(series_volume_load(series)), label_table=LUNG_LABEL_TABLE,
            name="lungs", source=Segmentation.Source.MANUAL)
        volumes[row.pk] = {m.label_name: m.volume_ml for m in services.segmentation_measure(segmentation=segmentation)}
    services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)
    segments = {s["name"]: s for s in study_growth_series(study=study)["series"] if s["kind"] == "segment"}
    assert set(segments) == {"right lung", "left lung"}
    assert {s["name_zh"] for s in segments.values()} == {"右肺", "左肺"}  # from the label table, for Chinese pages
    for name, series in segments.items():
        assert [p["volume_ml"] for p in series["points"]] == [
            pytest.approx(volumes[prior.pk][name], rel=1e-3), pytest.approx(volumes[study.pk][name], rel=1e-3)]


@pytest.mark.django_db
def test_a_study_never_compared_has_no_series(studies):  # noqa: F811
    _, study, _, _ = studies
    assert study_growth_series(study=study)["series"] == []


# --- the API: clinicians live, the patient as signed ------------------------------------------

@pytest.mark.django_db
def test_clinicians_read_the_live_series_and_the_view_is_audited(studies, compared, doctor):  # noqa: F811
    _, study, _, _ = studies
    response = api_client(doctor).get(reverse("study-growth", args=[study.pk]))
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "live" and [s["kind"] for s in body["series"]] == ["finding"]
    assert AuditLog.objects.filter(target_type="study_growth", target_id=str(study.pk), actor=doctor).exists()


@pytest.mark.django_db
def test_the_patient_reads_only_what_a_signed_report_froze(studies, compared, doctor, patient_user):  # noqa: F811
    _, study, _, findings = studies
    study.patient.user = patient_user
    study.patient.save()
    client = api_client(patient_user)
    url = reverse("study-growth", args=[study.pk])
    assert client.get(url).status_code == 404  # no signed report yet: nothing to show

    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression="结节增大。")
    services.report_finalize(user=doctor, report=report)
    signed = client.get(url).json()
    assert signed["source"] == "signed_report" and signed["report_id"] == report.pk
    volume = signed["series"][0]["points"][-1]["volume_ml"]

    # A later change of the finding does not reach the patient until a report is signed again.
    Finding.objects.filter(pk=findings[0].pk).update(volume_ml=volume * 3)
    assert client.get(url).json()["series"][0]["points"][-1]["volume_ml"] == volume
    assert api_client(doctor).get(url).json()["series"][0]["points"][-1]["volume_ml"] == pytest.approx(volume * 3,
                                                                                                     rel=1e-3)


@pytest.mark.django_db
def test_refusals_another_hospital_another_patient_and_annotators(studies, compared, other_doctor, annotator,
                                                                 patient_user):  # noqa: F811
    _, study, _, _ = studies
    url = reverse("study-growth", args=[study.pk])
    assert api_client(other_doctor).get(url).status_code == 404
    assert api_client(annotator).get(url).status_code == 403
    assert api_client(patient_user).get(url).status_code == 404  # not this patient's study
    assert api_client(other_doctor).get(reverse("study-growth", args=[999_999])).status_code == 404


# --- the signed PDF --------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_signed_pdf_holds_the_comparison_and_the_growth_charts_frozen(studies, compared, doctor,
                                                                         tmp_path):  # noqa: F811
    _, study, _, findings = studies
    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression="结节增大。")
    services.report_finalize(user=doctor, report=report)
    report.refresh_from_db()
    frozen = report.snapshot["growth"]
    assert [s["kind"] for s in frozen["series"]] == ["finding"]

    signed = services.report_pdf_bytes(user=doctor, report=report, language="zh-hans")
    text = _pdf_text(signed, tmp_path)
    assert "前次检查比较" in text and "变化 (%)" in text  # the comparison section, its headings in Chinese
    assert "随时间变化" in text and "检查日期" in text  # the charts' titles and time axis
    assert BASELINE_DATE.isoformat() in text and FOLLOW_UP_DATE.isoformat() in text

    # The finding changes after signing: the snapshot, the signed PDF and the English PDF (rendered from
    # the snapshot on first request) keep the signed figures.
    Finding.objects.filter(pk=findings[0].pk).update(volume_ml=999.0)
    report = Report.objects.get(pk=report.pk)
    assert report.snapshot["growth"] == frozen
    assert services.report_pdf_bytes(user=doctor, report=report, language="zh-hans") == signed
    english = _pdf_text(services.report_pdf_bytes(user=doctor, report=report, language="en"), tmp_path)
    assert "over time" in english and "Study date" in english
    # The PDF prints the study's DICOM UIDs, whose random digits may hold "999": left out of the check.
    assert "999" not in re.sub(r"\d+(?:\.\d+){4,}", "", english)


@pytest.mark.django_db
def test_a_report_without_a_compared_prior_has_no_chart_section(studies, doctor, tmp_path):  # noqa: F811
    _, study, _, _ = studies
    report = services.report_create_draft(user=doctor, study=study)
    assert services.report_content(report)["growth"] is None
    text = _pdf_text(services.report_render_pdf(report, "zh-hans"), tmp_path)
    assert "随时间变化" not in text


# --- the pages ---------------------------------------------------------------------------------

def _growth_json(html: str, section_id: str) -> dict:
    import json

    match = re.search(rf'<section class="card growth-section" id="{section_id}">.*?'
                      r'<script type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no growth section {section_id}"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_study_timeline_and_report_pages_carry_the_chart_data_in_the_readers_language(client, studies, compared,
                                                                                      doctor):  # noqa: F811
    _, study, _, findings = studies
    client.force_login(doctor)
    pages = [reverse("annotation:study-detail", args=[study.pk]), reverse("patient-timeline", args=[study.patient_id])]
    for url in pages:
        html = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
        data = _growth_json(html, f"growth-charts-{study.pk}")
        assert data["labels"]["x"] == "检查日期" and data["labels"]["figures"]["volume_ml"] == "体积 (mL)"
        assert data["series"][0]["label"].startswith("肺结节") and "build/growth.js" in html
    english = client.get(pages[0], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert _growth_json(english, f"growth-charts-{study.pk}")["labels"]["figures"]["long_axis_mm"] == "Long axis (mm)"

    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression="结节增大。")
    services.report_finalize(user=doctor, report=report)
    Finding.objects.filter(pk=findings[0].pk).update(volume_ml=999.0)
    html = client.get(reverse("diagnosis:report-detail", args=[report.pk])).content.decode()
    data = _growth_json(html, f"growth-charts-{study.pk}-{report.pk}")
    assert data["series"][0]["points"][-1]["volume_ml"] != 999.0  # the signed figures
    assert "以签署报告时的数据为准" in html


@pytest.mark.django_db
def test_the_patients_own_reports_and_studies_pages_chart_only_signed_figures(client, studies, compared, doctor,
                                                                  patient_user):  # noqa: F811
    _, study, _, _ = studies
    study.patient.user = patient_user
    study.patient.save()
    client.force_login(patient_user)
    url = reverse("followup:my-reports")
    draft = services.report_create_draft(user=doctor, study=study)
    studies_url = reverse("followup:my-studies")
    assert "growth-section" not in client.get(url).content.decode()  # a draft shows nothing
    assert "growth-section" not in client.get(studies_url).content.decode()
    services.report_update(user=doctor, report=draft, impression="结节增大。")
    services.report_finalize(user=doctor, report=draft)
    html = client.get(url).content.decode()
    data = _growth_json(html, f"growth-charts-{study.pk}-{draft.pk}")
    assert [s["kind"] for s in data["series"]] == ["finding"] and len(data["series"][0]["points"]) == 2
    mine = _growth_json(client.get(studies_url).content.decode(), f"growth-charts-{study.pk}-mine")
    assert mine["source"] == "signed_report" and mine["series"] == data["series"]
    # The clinicians' pages are not the patient's: the study page shows the patient no live chart.
    page = client.get(reverse("annotation:study-detail", args=[study.pk]))
    assert page.status_code != 200 or f'id="growth-charts-{study.pk}"' not in page.content.decode()
