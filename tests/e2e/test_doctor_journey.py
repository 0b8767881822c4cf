"""What a doctor does: log in, upload the LIDC-IDRI-0001 chest CT, run one-click lung segmentation,
watch it finish, see the overlay, read the volume, and find it in the downloaded PDF report."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_doctor_segments_measures_and_reports_a_chest_ct(portal_server, browser_page, tmp_path):
    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))
    page = browser_page
    base = portal_server["url"]

    page.goto(f"{base}/login/")
    page.fill("#id_username", "doctor")
    page.fill("#id_password", portal_server["password"])
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/studies/$"))

    page.goto(f"{base}/studies/upload/")
    page.fill("#patient-mrn", "LIDC-IDRI-0001")
    page.set_input_files("#file-input", [str(p) for p in files])
    page.click("#upload-button")
    link = page.wait_for_selector("#upload-result a.study-link", timeout=180_000)
    page.goto(base + link.get_attribute("href"))

    wait_for_js(page, "window.yixinViewer && window.yixinViewer.nv", timeout=60_000)
    # As a doctor would, wait for the image: while the browser decodes it the page answers no clicks, and on
    # a loaded machine that took longer than a click's 30 s.
    page.wait_for_selector("#viewer-loading", state="hidden", timeout=120_000)
    lung_model = page.eval_on_selector(
        "#model-select", "s => [...s.options].find(o => /lung|肺/i.test(o.textContent)).value")
    page.select_option("#model-select", value=lung_model)
    page.click("#start-segmentation")
    page.wait_for_selector('#run-progress[data-status="succeeded"]', timeout=300_000)
    wait_for_js(page, "document.body.dataset.overlayLoaded", timeout=120_000)

    cell = page.wait_for_selector('#measurement-table tr[data-label="1"] td.volume-ml', timeout=60_000)
    volume_text = cell.inner_text().strip()
    volume_ml = float(volume_text)
    assert 800 < volume_ml < 4500, volume_text

    page.click("#create-report")
    page.wait_for_selector("#id_impression")
    page.fill("#id_impression", "双肺体积见测量表。")
    page.click("#save-report")
    page.wait_for_selector("#download-pdf")
    with page.expect_download() as download_info:
        page.click("#download-pdf")
    pdf_path = tmp_path / "report.pdf"
    download_info.value.save_as(pdf_path)
    assert pdf_path.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True).stdout
    assert volume_text in text
    assert "影像诊断报告" in text
