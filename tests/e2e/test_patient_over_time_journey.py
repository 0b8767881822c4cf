"""Issue 14, "done when": a follow-up chest CT of a patient with a prior, in the browser.

The two studies are derived from the real LIDC-IDRI-0001 CT (``tests/diagnosis/longitudinal/followup_data``:
the nodule grown by a known 3 mm dilation, a known rigid transform, one sphere resolved and one new).
What other tests already drive through the UI (import, segmenting, comparing, choosing RECIST targets,
uploading and running a script) is set up here through the same services; the browser then opens the
study, the comparison view, the growth charts with the VDT, the RECIST table, the lung volumes on box
plots, a post-processing script's plot, signs the report, finds the similar cases with their impressions
and checks that the signed PDF holds the comparison section and the growth charts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.diagnosis.postprocess.test_postprocessing import LABEL_VOLUMES_SCRIPT
from tests.diagnosis.test_longitudinal import _findings_from_labels, _import, nifti_files, pair  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DAY_MS = 86_400_000


@pytest.fixture
def reference_ranges():
    """The published reference ranges, loaded again by their data migration's own function (idempotent)
    when an earlier transactional test flushed them. (serialized_rollback would restore them, but it
    re-inserts content types under other keys after a flush, a duplicate-key error.)"""
    from importlib import import_module

    from django.apps import apps

    import_module("diagnosis.migrations.0011_reference_range_data").load(apps, None)


def _segment_lungs(study):
    from annotation import services as annotation_services
    from annotation.ml.lung import LUNG_LABEL_TABLE, segment_lungs
    from annotation.models import Segmentation
    from annotation.storage import series_volume_load
    from diagnosis import services

    series = study.series.get()
    segmentation = annotation_services.segmentation_create(
        series=series, label_map=segment_lungs(series_volume_load(series)), label_table=LUNG_LABEL_TABLE,
        name="lungs", source=Segmentation.Source.MANUAL)
    services.segmentation_measure(segmentation=segmentation)
    return segmentation


def _sign(doctor, study, impression):
    from diagnosis import services

    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression=impression)
    return services.report_finalize(user=doctor, report=report)


def _accept(doctor, findings):
    from diagnosis import services

    for finding in findings:
        services.finding_accept(user=doctor, finding=finding)


def test_a_follow_up_chest_ct_read_against_its_prior_from_study_page_to_signed_pdf(
        live_server, pair, nifti_files, hospital, doctor, reference_ranges, tmp_path):  # noqa: F811
    from diagnosis import selectors, services
    from diagnosis.models import Report
    from portal.models import Role
    from tests.diagnosis.longitudinal.followup_data import BASELINE_DATE, FOLLOW_UP_DATE, INTERVAL_DAYS
    from tests.e2e.conftest import CHROMIUM, csp_violations, wait_for_js
    from tests.factories import UserFactory

    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    if not (Path(settings.BASE_DIR) / "static" / "build" / "growth.js").exists():
        pytest.skip("the front-end bundle is not built (npm ci && npm run build)")
    sandbox = Path("/usr/bin/bwrap").exists() and Path(f"/usr/bin/python3.{sys.version_info.minor}").exists()
    if not sandbox:
        pytest.skip("the post-processing sandbox (bubblewrap, Debian's python3) is not installed")

    # --- data through the services -----------------------------------------------------------------
    # An earlier case of another patient of the hospital, signed: what "similar cases" will suggest.
    other = _import(nifti_files[0], hospital, BASELINE_DATE.replace(year=BASELINE_DATE.year - 1), mrn="SIMILAR-0001")
    _accept(doctor, _findings_from_labels(other, pair.baseline_labels))
    _sign(doctor, other, "右肺上叶实性结节，建议12个月后复查低剂量CT。")
    prior = _import(nifti_files[0], hospital, BASELINE_DATE)
    study = _import(nifti_files[1], hospital, FOLLOW_UP_DATE)
    prior_findings = _findings_from_labels(prior, pair.baseline_labels)
    findings = _findings_from_labels(study, pair.follow_up_labels)
    _accept(doctor, prior_findings + findings)
    for row in (prior, study):
        _segment_lungs(row)
    services.recist_selection_set(user=doctor, study=prior, targets=[{"finding": prior_findings[0].pk}])
    comparison = selectors.study_comparison_payload(
        services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0))
    nodule = next(m for m in comparison["matches"] if m["kind"] == "finding")
    assert nodule["volume_change_pct"] > 0 and nodule["vdt_days"] > 0
    admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    script = services.postprocessing_script_upload(user=admin, name="label volumes", code=LABEL_VOLUMES_SCRIPT)
    run = services.postprocessing_run_create(user=doctor, script=script, study=study, enqueue=False)
    run = services.postprocessing_run_execute(run_id=run.pk)
    assert run.status == "succeeded", (run.error_code, run.error_message)
    report = services.report_create_draft(user=doctor, study=study)
    services.report_update(user=doctor, report=report, impression="右肺结节较前增大，体积倍增时间缩短，建议进一步检查。")

    client = Client()
    client.force_login(doctor)
    cookie = {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
              "url": live_server.url}
    timeline_url = live_server.url + reverse("patient-timeline", args=[study.patient_id])
    study_url = live_server.url + reverse("annotation:study-detail", args=[study.pk])
    messages: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"])
        try:
            context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            context.add_cookies([cookie])
            page = context.new_page()
            page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))

            # The study page: the comparison with its VDT, the growth charts, RECIST, box plots, the plot.
            page.goto(study_url)
            row = page.locator("#prior-comparison-table tr.prior-match").first
            assert f"{nodule['vdt_days']:.0f}" in row.inner_text()
            section = f"#growth-charts-{study.pk}"
            wait_for_js(page, f"document.querySelectorAll('{section} canvas').length >= 4", timeout=30_000)
            series_key = f"finding-{findings[0].pk}"
            axis = page.evaluate(f"""() => {{
              const c = document.querySelector('{section} .growth-series[data-series="{series_key}"]'
                + ' figure[data-figure="volume_ml"] canvas').yixinChart;
              const x = c.scales.x;
              return {{type: x.type, ticks: x.ticks.map(t => [t.value, t.label]), title: x.options.title.text,
                       points: c.getDatasetMeta(0).data.map(p => p.x)}}; }}""")
            assert axis["type"] == "linear" and axis["title"] == "检查日期"
            assert [t[1] for t in axis["ticks"]] == [BASELINE_DATE.isoformat(), FOLLOW_UP_DATE.isoformat()]
            assert axis["ticks"][1][0] - axis["ticks"][0][0] == INTERVAL_DAYS * DAY_MS
            # The lung segments are charted too, beside the nodule.
            segments = page.locator(f'{section} .growth-series[data-kind="segment"] h3').all_inner_texts()
            assert sorted(segments) == ["右肺", "左肺"]  # the label table's Chinese names on a Chinese page
            assert page.locator("#recist .recist-table .recist-target").count() == 1
            wait_for_js(page, "document.querySelectorAll('#reference-range-charts canvas').length > 0", timeout=30_000)
            measures = page.evaluate("[...document.querySelectorAll('#reference-range-charts figure')]"
                                     ".map(f => f.dataset.measure)")
            assert "lung_total_volume_ml" in measures
            plot = page.locator(f"#postprocessing-run-{run.pk} .postprocessing-plot img")
            plot.scroll_into_view_if_needed()
            wait_for_js(page, f"(() => {{ const i = document.querySelector('#postprocessing-run-{run.pk} "
                              f".postprocessing-plot img'); return i && i.complete && i.naturalWidth > 0; }})()",
                        timeout=30_000)

            # The comparison view: both panes load on the study's grid.
            page.click("#compare-view-link")
            page.wait_for_selector('#compare-status[data-state="ready"]', timeout=120_000)

            # The patient's timeline charts the same series, with readable axes in either language.
            page.goto(timeline_url)
            wait_for_js(page, f"document.querySelectorAll('{section} canvas').length >= 4", timeout=30_000)
            page.locator(section).screenshot(path=str(tmp_path / "growth-zh.png"))
            context.add_cookies([{"name": "django_language", "value": "en", "url": live_server.url}])
            page.goto(timeline_url)
            wait_for_js(page, f"document.querySelectorAll('{section} canvas').length >= 4", timeout=30_000)
            english = page.evaluate(f"""() => {{
              const c = document.querySelector('{section} .growth-series[data-series="{series_key}"]'
                + ' figure[data-figure="long_axis_mm"] canvas').yixinChart;
              return [c.scales.x.options.title.text, c.scales.y.options.title.text, c.scales.x.ticks.map(t => t.label)]; }}""")
            assert english == ["Study date", "Long axis (mm)", [f"{d.day} {d:%b} {d.year}" for d in (BASELINE_DATE, FOLLOW_UP_DATE)]]
            page.locator(section).screenshot(path=str(tmp_path / "growth-en.png"))
            context.add_cookies([{"name": "django_language", "value": "zh-hans", "url": live_server.url}])

            # Sign the report on its page; its charts are drawn from the signed snapshot.
            page.goto(live_server.url + reverse("diagnosis:report-detail", args=[report.pk]))
            page.click("#finalize-report")
            page.wait_for_selector("#report-impression", timeout=120_000)  # the signed, read-only report
            wait_for_js(page, f"document.querySelectorAll('#growth-charts-{study.pk}-{report.pk} canvas').length >= 4",
                        timeout=30_000)
            with page.expect_download() as download:
                page.click("#download-pdf")
            pdf = tmp_path / "signed.pdf"
            download.value.save_as(str(pdf))

            # Similar cases, now that the study has a signed report: the earlier case with its impression.
            page.goto(study_url)
            similar = page.locator(f'#similar-cases tr[data-study="{other.pk}"]')
            assert "建议12个月后复查低剂量CT" in similar.inner_text()
        finally:
            browser.close()
    # Django's live server speaks no WebSocket: the study page's live-updates socket is refused there (the
    # page reconnects and reads state through the API), which is not a script error.
    errors = [m for m in messages if m.startswith("pageerror") or (
        m.startswith("error") and "Failed to load resource" not in m and "WebSocket connection" not in m)]
    assert not errors, errors
    assert not csp_violations(messages), messages

    # (The ORM is read outside the Playwright block: its event loop makes Django refuse synchronous queries.)
    report.refresh_from_db()
    assert report.status == Report.Status.FINAL and report.snapshot["growth"]["series"]
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "前次检查比较" in text and f"{nodule['vdt_days']:.0f}" in text  # the comparison section
    assert "随时间变化的测量值" in text and "随时间变化" in text and "检查日期" in text  # the growth charts
    assert pdf.read_bytes() == report.pdf_file.open("rb").read()  # the signed PDF, as stored
    assert np.isfinite(nodule["vdt_days"])
