"""Issue 13's journey in the browser: a doctor opens the LIDC-IDRI-0001 chest CT (with its four readers'
reads), clicks find nodules, sees the nodules in the list and on the images, moves through them with the
keyboard, accepts the readers' nodule, sees the readers' agreement beside it, reads the Lung-RADS suggestion,
confirms it, signs the report and finds each accepted nodule with its key image in the PDF."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile

import pytest

from tests.conftest import shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_studies: dict[str, int] = {}


def _login(page, base, password):
    page.goto(f"{base}/login/")
    page.fill("#id_username", "doctor")
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/studies/$"))


def _csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


def _lidc_study(page, base) -> int:
    """Import LIDC-IDRI-0001 once per portal; another browser test may have done it (a second import is a 409)."""
    if base in _studies:
        return _studies[base]
    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, path.name)
    response = page.request.post(
        f"{base}/api/studies/import/", headers={"X-CSRFToken": _csrf(page)},
        multipart={"patient_mrn": "LIDC-IDRI-0001", "files": {"name": "lidc.zip", "mimeType": "application/zip",
                                                               "buffer": buffer.getvalue()}},
    )
    if response.status == 409:
        import pydicom

        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        listing = page.request.get(f"{base}/api/studies/").json()
        studies = listing["results"] if isinstance(listing, dict) else listing
        _studies[base] = next(s["id"] for s in studies if s["study_instance_uid"] == study_uid)
    else:
        assert response.status == 201, response.text()
        _studies[base] = response.json()["study_ids"][0]
    return _studies[base]


def _import_reads(page, base, study_id: int) -> None:
    """Store the four readers' LIDC reads on the series (already there from an earlier test is a 409)."""
    series_id = page.request.get(f"{base}/api/studies/{study_id}/").json()["series"][0]["id"]
    xml = shared_data("lidc_idri_0001_ct_nodules", "annotations", "069.xml").read_bytes()
    response = page.request.post(
        f"{base}/api/series/{series_id}/reads/lidc/", headers={"X-CSRFToken": _csrf(page)},
        multipart={"file": {"name": "069.xml", "mimeType": "application/xml", "buffer": xml}},
    )
    assert response.status in (201, 409), response.text()


def _finding(page, index: int) -> dict:
    return page.evaluate(f"window.yixinViewer.findings.findings[{index}]")


def _poppler(pdf_path) -> tuple[str, str]:
    if shutil.which("pdftotext") is None or shutil.which("pdfimages") is None:
        pytest.skip("pdftotext/pdfimages (poppler-utils) are not installed")
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True,
                          check=True).stdout
    images = subprocess.run(["pdfimages", "-list", str(pdf_path)], capture_output=True, text=True, check=True).stdout
    return text, images


def test_doctor_finds_accepts_and_reports_the_lidc_nodule(portal_server, starter_graph_loaded, browser_page, tmp_path):
    page = browser_page
    # Software WebGL on a shared two-core machine: a redraw with overlays can keep the page busy for a while.
    page.set_default_timeout(120_000)
    base = portal_server["url"]
    _login(page, base, portal_server["password"])
    study_id = _lidc_study(page, base)
    _import_reads(page, base, study_id)

    page.goto(f"{base}/studies/{study_id}/")
    wait_for_js(page, "window.yixinViewer && window.yixinViewer.viewer && window.yixinViewer.viewer.base",
                timeout=120_000)
    page.wait_for_selector("#viewer-loading", state="hidden", timeout=120_000)
    # The axial plane alone (no 3-D rendering): the crosshair still holds all three coordinates.
    page.select_option("#layout-select", "axial")
    # The readers' consensus nodule is listed before any detection, with the agreement of its four readers.
    page.wait_for_selector('#finding-list li[data-finding-id] .finding-agreement[data-agreement="4"]',
                           timeout=30_000)

    # Find nodules: the detector runs as a one-click run; the list re-reads the findings when it ends.
    page.click("#find-nodules")
    page.wait_for_selector('#run-progress[data-status="succeeded"]', timeout=300_000)
    wait_for_js(page, "window.yixinViewer.findings.findings.some(f => f.source === 'detector')", timeout=60_000)
    count = int(page.get_attribute("#finding-list", "data-count"))
    assert count >= 2 and page.inner_text("#findings-count").strip() == str(count)

    # Clicking a finding centres the planes on its voxel (the axial slice is its k) and outlines it.
    first, second = _finding(page, 0), _finding(page, 1)
    before = page.evaluate("window.yixinViewer.viewer.crosshairVoxel()")
    page.click(f'#finding-list li[data-finding-id="{first["id"]}"] .finding-kind')
    wait_for_js(page, f"document.getElementById('findings-panel').dataset.selectedId === '{first['id']}'",
                timeout=10_000)
    wait_for_js(page, "window.yixinViewer.viewer.marker !== null", timeout=30_000)
    k, j, i = first["centroid_voxel"]
    assert page.evaluate("window.yixinViewer.viewer.crosshairVoxel()") == [i, j, k]
    # ... which is the finding's position in mm (LPS to NiiVue's RAS: x and y negated), within a voxel.
    ras = page.evaluate("[...window.yixinViewer.nv.frac2mm(window.yixinViewer.nv.scene.crosshairPos)]")
    x, y, z = first["centroid_lps_mm"]
    assert abs(ras[0] + x) < 1.0 and abs(ras[1] + y) < 1.0 and abs(ras[2] - z) < 2.6, (ras, first)
    assert before[2] != k or before[:2] != [i, j]
    assert page.evaluate("window.yixinViewer.viewer.marker.img.some(v => v === 1)")

    # ArrowDown moves the selection to the next finding, and the planes with it.
    page.keyboard.press("ArrowDown")
    wait_for_js(page, f"document.getElementById('findings-panel').dataset.selectedId === '{second['id']}'",
                timeout=10_000)
    k2, j2, i2 = second["centroid_voxel"]
    wait_for_js(page, f"JSON.stringify(window.yixinViewer.viewer.crosshairVoxel()) === '[{i2},{j2},{k2}]'",
                timeout=10_000)
    page.keyboard.press("ArrowUp")
    wait_for_js(page, f"document.getElementById('findings-panel').dataset.selectedId === '{first['id']}'",
                timeout=10_000)

    # Accept the detection that hits the readers' nodule; the readers' agreement stands beside it.
    hit_finding = page.evaluate(
        "(() => { const p = window.yixinViewer.findings;"
        " return p.findings.find(f => f.source === 'detector' && p.agreement.get(f.id) === 4); })()")
    assert hit_finding, "no detection on the four readers' nodule"
    hit_id = hit_finding["id"]
    page.click(f'#finding-list li[data-finding-id="{hit_id}"] button.finding-accept')
    accepted = page.wait_for_selector(f'#finding-list li[data-finding-id="{hit_id}"][data-status="accepted"]',
                                      timeout=10_000)
    assert "4" in accepted.query_selector(".finding-agreement").inner_text()

    # The draft report: the accepted nodule's row with its key image, and the Lung-RADS suggestion to confirm.
    page.click("#create-report")
    page.wait_for_selector("#report-findings")
    # The finding's kind links to the knowledge graph: its panel (description, checks, department).
    wait_for_js(page, "document.body.dataset.kgReady === '1'", timeout=60_000)
    page.locator("#report-finding-kinds .kg-term", has_text="肺结节").first.click()
    wait_for_js(page, "document.getElementById('kg-panel').dataset.kgLoaded === '肺结节'", timeout=60_000)
    knowledge = page.locator("#kg-panel").inner_text()
    assert "就诊科室" in knowledge and "胸部CT" in knowledge, knowledge
    page.keyboard.press("Escape")
    row = page.wait_for_selector(f'#report-findings tr[data-finding-id="{hit_id}"]')
    assert row.query_selector("img.finding-key-image") is not None
    suggested = page.inner_text("#lung-rads-suggested-category").strip()
    assert suggested in {"2", "3", "4A", "4B"}
    assert page.inner_text("#lung-rads-rule").strip()
    assert "Lung-RADS) v2022" in page.inner_text("#lung-rads-source")
    assert page.is_visible("#lung-rads-unconfirmed")  # never filled in without the doctor
    assert page.input_value("#lung-rads-category") == suggested
    page.click("#confirm-lung-rads")
    page.wait_for_selector("#lung-rads-confirmed")
    assert suggested in page.inner_text("#lung-rads-confirmed")

    page.fill("#id_impression", "右肺结节，Lung-RADS 见上。")
    page.click("#finalize-report")
    page.wait_for_selector('#report-status.badge-final')
    with page.expect_download() as download_info:
        page.click("#download-pdf")
    pdf_path = tmp_path / "report.pdf"
    download_info.value.save_as(pdf_path)
    assert pdf_path.read_bytes()[:5] == b"%PDF-"
    text, images = _poppler(pdf_path)
    long_mm, short_mm = hit_finding["long_axis_mm"], hit_finding["short_axis_mm"]
    # The accepted nodule's row (the kind cell wraps onto the lines around it in pdftotext's layout).
    table = text[text.index("已接受的发现"):text.index("Lung-RADS", text.index("已接受的发现"))]
    assert re.search(rf"^\s*{hit_id}\s+.*?{long_mm:.1f} × {short_mm:.1f}\s+{hit_finding['volume_ml']:.3f}", table,
                     re.MULTILINE), table
    assert "肺结节" in table
    assert re.search(rf"医师确认：\s*{re.escape(suggested)}", text), text
    # One key image per accepted finding: the 192-pixel crops (the three plane images are 384 pixels).
    key_images = [line for line in images.splitlines()[2:]
                  if line.split() and 192 in (int(line.split()[3]), int(line.split()[4]))]
    accepted = page.request.get(f"{base}/api/studies/{study_id}/findings/?status=accepted").json()["results"]
    assert hit_id in [f["id"] for f in accepted]
    assert len(key_images) == len(accepted), images
