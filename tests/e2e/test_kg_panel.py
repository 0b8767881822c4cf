"""Knowledge-graph links on a signed report (issue 13): the impression's terms become links, and one
opens the side panel with the entity's description, checks, department and related diseases."""

from __future__ import annotations

import re

import pytest

from tests.conftest import shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e]

IMPRESSION = "左肺上叶实性肺结节，约 22 mm，肺癌待排，建议胸外科会诊。"


def test_report_impression_terms_open_the_knowledge_panel(portal_server, starter_graph_loaded, browser_page):
    page = browser_page
    base = portal_server["url"]
    page.goto(f"{base}/login/")
    page.fill("#id_username", "doctor")
    page.fill("#id_password", portal_server["password"])
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/studies/$"))

    ct = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{base}/api/studies/import/", headers={"X-CSRFToken": csrf},
        multipart={"patient_mrn": "KG-PANEL-1", "modality": "CT",
                   "files": {"name": ct.name, "mimeType": "application/gzip", "buffer": ct.read_bytes()}},
    )
    assert response.status == 201, response.text()
    study_id = response.json()["study_ids"][0]

    page.goto(f"{base}/studies/{study_id}/")
    page.click("#create-report")
    page.wait_for_selector("#id_impression")
    page.fill("#id_impression", IMPRESSION)
    page.click("#finalize-report")
    page.wait_for_selector("#report-impression")

    wait_for_js(page, "document.body.dataset.kgReady === '1'", timeout=30_000)
    terms = page.locator("#report-impression .kg-term")
    assert {"肺结节", "肺癌", "胸外科"} <= set(terms.all_inner_texts())
    assert page.inner_text("#report-impression") == IMPRESSION  # the text reads as written

    page.locator("#report-impression .kg-term", has_text="肺癌").click()
    wait_for_js(page, "document.getElementById('kg-panel').dataset.kgLoaded === '肺癌'", timeout=30_000)
    panel = page.locator("#kg-panel")
    assert panel.is_visible()
    text = panel.inner_text()
    assert "肺癌是起源于支气管黏膜" in text and "胸部CT" in text and "胸外科" in text and "胸腔积液" in text
    assert "相关疾病" in text and "就诊科室" in text

    # A related disease opens in the same panel; Escape closes it.
    panel.locator(".kg-term", has_text="胸腔积液").first.click()
    wait_for_js(page, "document.getElementById('kg-panel').dataset.kgName === '胸腔积液'", timeout=30_000)
    page.keyboard.press("Escape")
    assert not panel.is_visible()
