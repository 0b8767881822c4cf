"""The viewer right at first sight (issue 16), at 1280×800 on the real LIDC-IDRI-0001 chest CT: it opens
in the series' own lung window, the one-click panel shows the latest run's true state after a reload,
the mouse wheel over the image moves slices and never the page, and the radiology keys work."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from tests.conftest import shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}


def _login(page, base, password, user="doctor"):
    page.goto(f"{base}/login/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/studies/$"))


_imported: dict[str, int] = {}


def _upload_lidc(page, base) -> int:
    """Import LIDC-IDRI-0001 once per portal (a second import of a series is refused)."""
    if base in _imported:
        return _imported[base]
    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, path.name)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{base}/api/studies/import/", headers={"X-CSRFToken": csrf},
        multipart={"patient_mrn": "LIDC-VIEWER", "files": {"name": "lidc.zip", "mimeType": "application/zip",
                                                            "buffer": buffer.getvalue()}},
    )
    if response.status == 409:
        # Another browser test of this portal imported the series already: open that study.
        import pydicom

        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        listing = page.request.get(f"{base}/api/studies/").json()
        studies = listing["results"] if isinstance(listing, dict) else listing
        _imported[base] = next(s["id"] for s in studies if s["study_instance_uid"] == study_uid)
        return _imported[base]
    assert response.status == 201, response.text()
    _imported[base] = response.json()["study_ids"][0]
    return _imported[base]


def _open_study(page, base, study_id):
    page.goto(f"{base}/studies/{study_id}/")
    wait_for_js(page, "window.yixinViewer && window.yixinViewer.viewer && window.yixinViewer.viewer.base",
                           timeout=120_000)
    page.wait_for_selector("#viewer-loading", state="hidden", timeout=120_000)


def _window(page):
    return page.eval_on_selector("#wl-readout", "o => [Number(o.dataset.center), Number(o.dataset.width), "
                                                 "document.getElementById('wl-preset').value]")


def _crosshair(page):
    return page.evaluate("[...window.yixinViewer.nv.scene.crosshairPos]")


def test_chest_ct_opens_in_its_lung_window_and_keys_and_wheel_work(portal_server, browser_page):
    page = browser_page
    page.set_viewport_size(DESKTOP)
    base = portal_server["url"]
    _login(page, base, portal_server["password"])
    study_id = _upload_lidc(page, base)

    _open_study(page, base, study_id)

    # The series' DICOM window (0028,1050/1051) is -600/1600: a lung window, shown as such.
    center, width, preset = _window(page)
    assert (center, width, preset) == (-600, 1600, "dicom")
    assert page.locator("#wl-preset option[value=lung]").count() == 1

    # The wheel over the image moves the slice, never the page.
    page.evaluate("window.scrollTo(0, 40)")
    scroll_before = page.evaluate("window.scrollY")
    box = page.locator("#viewer-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    before = _crosshair(page)
    page.mouse.wheel(0, 300)
    page.wait_for_timeout(300)  # let the wheel event be handled (not a timing assertion)
    assert page.evaluate("window.scrollY") == scroll_before
    assert _crosshair(page) != before

    # Number keys pick the window menu's entries in order: 1 auto, 2 DICOM, 3 lung, 4 mediastinum.
    page.keyboard.press("4")
    assert _window(page)[2] == "mediastinum" and _window(page)[:2] == [50, 350]
    page.keyboard.press("3")
    assert _window(page) == [-600, 1500, "lung"]

    # PgDn / PgUp and arrows move one slice.
    z0 = _crosshair(page)[2]
    page.keyboard.press("PageDown")
    z1 = _crosshair(page)[2]
    page.keyboard.press("ArrowUp")
    assert z1 != z0 and _crosshair(page)[2] == pytest.approx(z0)

    # R resets to the opening window and the middle slice; ? shows the help.
    page.keyboard.press("r")
    assert _window(page) == [-600, 1600, "dicom"] and _crosshair(page) == [0.5, 0.5, 0.5]
    assert page.locator("#viewer-help").is_hidden()
    page.keyboard.press("Shift+?")
    assert page.locator("#viewer-help").is_visible()
    assert "PgUp" in page.inner_text("#viewer-help")


def test_one_click_panel_shows_the_latest_run_after_a_reload(portal_server, browser_page):
    page = browser_page
    page.set_viewport_size(DESKTOP)
    base = portal_server["url"]
    _login(page, base, portal_server["password"])
    study_id = _upload_lidc(page, base)
    _open_study(page, base, study_id)
    # The panel opens in the state of the series' latest run: none on a fresh portal, or the run of
    # another browser test of this portal that imported the same series first.
    runs_before = page.request.get(f"{base}/api/studies/{study_id}/").json()["inference_runs"]
    latest_before = max(runs_before, key=lambda r: r["id"]) if runs_before else None
    assert page.locator("#run-panel").get_attribute("data-status") == (latest_before["status"] if latest_before else "")

    lung_model = page.eval_on_selector(
        "#model-select", "s => [...s.options].find(o => /lung|肺/i.test(o.textContent)).value")
    page.select_option("#model-select", value=lung_model)
    page.click("#start-segmentation")
    newest_id = latest_before["id"] if latest_before else 0
    for _ in range(600):  # this run, not an earlier one, must have succeeded (up to 300 s)
        runs = page.request.get(f"{base}/api/studies/{study_id}/").json()["inference_runs"]
        if any(r["id"] > newest_id and r["status"] == "succeeded" for r in runs):
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError("the new run did not succeed in 300 s")

    page.reload(wait_until="domcontentloaded", timeout=120_000)  # _open_study waits for the viewer itself
    _open_study(page, base, study_id)
    page.wait_for_selector("#run-panel[data-status=\"succeeded\"]", state="attached", timeout=120_000)
    assert page.inner_text("#run-status").strip() in ("已完成", "Succeeded")
    assert "尚未运行" not in page.inner_text("#run-panel")
    assert page.eval_on_selector("#run-progress", "p => p.value") == 100
