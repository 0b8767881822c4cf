"""Reference ranges in the browser (issue 14): a doctor segments the lungs of a real CT that shows only the
lung bases; after reload the study page draws the patient's figures over box plots of the reference range
(chart.js box-plot plug-in) and the measurement table badges the lungs as outside the reference range."""

from __future__ import annotations

import re

import pytest

from tests.conftest import shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_reference_box_plots_and_the_outside_badge_on_the_study_page(portal_server, browser_page, tmp_path):
    ct = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    if not ct.exists():
        pytest.skip("the TotalSegmentator example CT is absent")
    page = browser_page
    base = portal_server["url"]
    page.goto(f"{base}/login/")
    page.fill("#id_username", "doctor")
    page.fill("#id_password", portal_server["password"])
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/studies/$"))

    page.goto(f"{base}/studies/upload/")
    page.fill("#patient-mrn", "REF-RANGES-1")
    page.set_input_files("#file-input", [str(ct)])
    page.click("#upload-button")
    link = page.wait_for_selector("#upload-result a.study-link", timeout=180_000)
    study_url = base + link.get_attribute("href")
    page.goto(study_url)
    page.wait_for_selector("#viewer-loading", state="hidden", timeout=120_000)
    lung_model = page.eval_on_selector(
        "#model-select", "s => [...s.options].find(o => /lung|肺/i.test(o.textContent)).value")
    page.select_option("#model-select", value=lung_model)
    page.click("#start-segmentation")
    page.wait_for_selector('#run-progress[data-status="succeeded"]', timeout=300_000)

    page.goto(study_url)  # the reference section is rendered with the page
    data = page.evaluate("JSON.parse(document.getElementById('reference-range-data').textContent)")
    total = next(i for i in data["items"] if i["measure"] == "lung_total_volume_ml")
    assert total["outside"] is True and total["direction"] == "low"
    wait_for_js(page, "document.querySelectorAll('#reference-range-charts canvas').length > 0", timeout=30_000)
    assert page.evaluate("document.querySelectorAll('#reference-range-charts canvas').length") == len(data["items"])
    # Something is drawn on the total lung volume's canvas (the box plot and the patient's point).
    inked = page.evaluate("""() => {
      const c = document.querySelector('#reference-range-charts figure[data-measure="lung_total_volume_ml"] canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert inked > 500, inked
    badge = page.wait_for_selector('#measurement-table tr[data-label="1"] .reference-outside', timeout=60_000)
    assert badge.inner_text().strip() == "超出参考范围"
    # No script error (the browser's own 404 for /favicon.ico is not one).
    errors = [line for line in page.console_lines
              if line.startswith("pageerror") or (line.startswith("error") and "Failed to load resource" not in line)]
    assert not errors, errors
    page.screenshot(path=str(tmp_path / "reference-ranges.png"), full_page=True)
