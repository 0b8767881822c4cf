"""A report PDF renders without fetching anything: hostile URLs in any value of the report (a label
colour stored before colours were validated, the findings, the impression, a label name) reach no
server. A local HTTP server records every request and must see none."""

from __future__ import annotations

import numpy as np
import pytest

from annotation import services as annotation_services
from annotation.models import Segmentation
from diagnosis import services
from diagnosis.services import reports as report_services
from diagnosis.models import Report
from tests.helpers import recording_http_server

pytestmark = pytest.mark.django_db


def test_hostile_urls_in_a_report_fetch_nothing(doctor, small_ct_study):
    with recording_http_server() as (base, hits):
        series = small_ct_study.series.get()
        label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
        label_map[10:20, 30:50, 30:50] = 1
        segmentation = annotation_services.segmentation_create(
            series=series, label_map=label_map, name="lesion", source=Segmentation.Source.MANUAL,
            label_table=[{"index": 1, "name": "lesion", "name_zh": "病灶", "color": "#00ff00"}])
        # A row stored before colours were validated: written behind the validators' back.
        hostile_table = [{"index": 1, "name": f'<img src="{base}/name.png">', "name_zh": f"url({base}/name-zh.png)",
                          "color": f"red;background-image:url({base}/colour.png)"}]
        Segmentation.objects.filter(pk=segmentation.pk).update(label_table=hostile_table)
        segmentation.refresh_from_db()
        services.segmentation_measure(segmentation=segmentation)
        report = services.report_create_draft(user=doctor, study=small_ct_study, segmentation=segmentation)
        report = services.report_update(
            user=doctor, report=report,
            findings=f'<link rel="stylesheet" href="{base}/findings.css"><style>@import "{base}/import.css";</style>'
                     f'<div style="background:url({base}/findings.png)">',
            impression=f'"><img src="{base}/impression.png"> url({base}/impression-css.png)')

        content = services.report_content(report)
        pdf = services.report_render_pdf(report)
        final = services.report_finalize(user=doctor, report=report)

    assert pdf.startswith(b"%PDF")
    assert final.status == Report.Status.FINAL and final.pdf_file
    assert content["measurements"][0]["color"] == "#ff0000"  # the stored colour never reaches the style attribute
    assert hits == []


def test_the_fetcher_serves_the_key_images_it_rendered(doctor, small_ct_study):
    """The report's own key images (data: URIs) are drawn; they are the only thing fetched."""
    series = small_ct_study.series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[10:20, 30:50, 30:50] = 1
    segmentation = annotation_services.segmentation_create(
        series=series, label_map=label_map, name="lesion", source=Segmentation.Source.MANUAL,
        label_table=[{"index": 1, "name": "lesion", "color": "#00ff00"}])
    report = services.report_create_draft(user=doctor, study=small_ct_study, segmentation=segmentation)
    images = report_services.report_key_images(report)
    fetcher = report_services.report_url_fetcher(data_uris=images.values())
    from django.template.loader import render_to_string
    from weasyprint import HTML

    html = render_to_string("diagnosis/report_pdf.html", {"content": services.report_content(report), "images": images})
    HTML(string=html, url_fetcher=fetcher).write_pdf()

    assert len(images) == 3 and sorted(fetcher.served) == sorted(images.values())
    assert fetcher.refused == []
