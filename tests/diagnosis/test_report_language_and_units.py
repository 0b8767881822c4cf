"""The report in the reader's language, one language at a time (issue 16): the PDF and the page carry
Chinese or English headings, never both; surfaces in cm² on both, the intensity named HU on a CT; the
study field names the study; the key images of the PDF are on the page; the disclaimer never stands
alone on a page."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest
from django.urls import reverse

from diagnosis import services
from diagnosis.models import Measurement, Report
from tests.diagnosis.test_reports import measured_segmentation  # noqa: F401 (the measured lesion fixture)
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]+")
ZH_HEADINGS = ["影像诊断报告", "基本信息", "测量", "诊断意见", "报告医师", "生成时间"]
EN_HEADINGS = ["Diagnostic imaging report", "Patient and study", "Measurements", "Impression", "Signed by", "Generated"]


@pytest.fixture
def signed_report(doctor, small_ct_study, measured_segmentation):
    report = services.report_create_draft(user=doctor, study=small_ct_study, segmentation=measured_segmentation)
    services.report_update(user=doctor, report=report, findings="A box-shaped lesion in the liver.",
                           impression="Lesion of the liver, follow up in three months.")
    return services.report_finalize(user=doctor, report=report)


def _pages(pdf: bytes, tmp_path) -> list[str]:
    """The text of each page (poppler's pdftotext)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def test_the_pdf_is_in_the_readers_language_only(doctor, signed_report, tmp_path):
    client = api_client(doctor)
    url = reverse("report-pdf", args=[signed_report.pk])
    chinese = "\n".join(_pages(client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content, tmp_path))
    english = "\n".join(_pages(client.get(url, HTTP_ACCEPT_LANGUAGE="en").content, tmp_path))

    assert all(h in chinese for h in ZH_HEADINGS), chinese
    assert not [h for h in EN_HEADINGS if h in chinese], chinese
    assert all(h in english for h in EN_HEADINGS), english
    assert not [h for h in ZH_HEADINGS if h in english], english
    # Chinese in the English PDF only where the record itself is Chinese (hospital, patient names).
    content = services.report_content(signed_report)
    allowed = set(CJK.findall(content["hospital"]["name"])) | set(CJK.findall(str(content["patient"])))
    assert set(CJK.findall(english)) <= allowed, set(CJK.findall(english)) - allowed
    assert "lesion" in english and "病灶" in chinese  # the label's name in each language
    assert re.search(r"第\s*1\s*/\s*1\s*页", chinese) and re.search(r"Page\s*1\s*of\s*1", english)


def test_the_signed_chinese_pdf_stays_and_the_english_one_is_stored_once(doctor, signed_report):
    client = api_client(doctor)
    url = reverse("report-pdf", args=[signed_report.pk])
    signed_hash = signed_report.pdf_sha256
    first = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content
    signed_report.refresh_from_db()
    assert signed_report.pdf_file_en
    stored_name = signed_report.pdf_file_en.name
    second = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content
    signed_report.refresh_from_db()
    assert first == second and signed_report.pdf_file_en.name == stored_name
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content
    assert hashlib.sha256(chinese).hexdigest() == signed_hash == Report.objects.get(pk=signed_report.pk).pdf_sha256


def test_page_and_pdf_show_surfaces_in_cm2_and_name_hu_and_the_study(client, doctor, signed_report, tmp_path):
    measurement = Measurement.objects.get(segmentation=signed_report.segmentation, label=1)
    cm2 = f"{measurement.surface_area_mm2 / 100:.1f}"
    client.force_login(doctor)
    page = client.get(reverse("diagnosis:report-detail", args=[signed_report.pk]), HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    table = html[html.index('id="report-measurements"'):]
    assert "Surface (cm²)" in table and f'<td class="surface-cm2">{cm2}</td>' in table
    assert "Mean ± SD (HU)" in table
    # A NIfTI import has no description: the study is named by what it shows.
    assert re.search(r'<dd id="report-study">CT[^<]*</dd>', html), html[html.index("facts"):][:800]
    # The PDF's three key images are on the page too.
    images = re.findall(r'<section class="card" id="report-key-images">.*?</section>', html, flags=re.S)
    assert images and images[0].count('src="data:image/png;base64,') == 3
    pdf = "\n".join(_pages(api_client(doctor).get(reverse("report-pdf", args=[signed_report.pk]),
                                                  HTTP_ACCEPT_LANGUAGE="en").content, tmp_path))
    # Table headers wrap inside their cells: "Surface" over "(cm²)", "Mean ± SD" over "(HU)".
    assert "Surface" in pdf and "(cm²)" in pdf and cm2 in pdf and "(HU)" in pdf and "mm²" not in pdf
    assert re.search(r"Study\s+CT", pdf), pdf


def test_the_disclaimer_never_stands_alone_on_a_page(doctor, signed_report, tmp_path):
    """Lengthen the findings until the report needs a second page: at that point the second page holds
    the impression and the signature with the disclaimer, not the disclaimer alone."""
    draft = services.report_amend(user=doctor, report=signed_report)

    def pages_for(lines: int) -> list[str]:
        services.report_update(user=doctor, report=draft, findings="\n".join(f"Finding line {n}." for n in range(lines)))
        return _pages(services.report_render_pdf(Report.objects.get(pk=draft.pk), "en"), tmp_path)

    low, high = 0, 80
    assert len(pages_for(low)) == 1 and len(pages_for(high)) >= 2
    while high - low > 1:  # the fewest findings lines that need a second page
        middle = (low + high) // 2
        low, high = (middle, high) if len(pages_for(middle)) == 1 else (low, middle)
    last = pages_for(high)[-1]
    assert "Measurements are computed from the voxel spacing" in last
    assert "Impression" in last and "Signed by" in last, last
