"""The comparison view (issue 14): the prior registered onto the follow-up's grid, side by side with linked
crosshair, zoom and window. Data: the follow-up derived from the real LIDC-IDRI-0001 CT with a known rigid
transform (``tests/diagnosis/longitudinal/followup_data``)."""

from __future__ import annotations

import gzip
import io
import time

import nibabel as nib
import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from annotation.storage import series_volume_load
from diagnosis.longitudinal.registration import RegistrationError, resample_prior_onto
from portal.models import AuditLog
from tests.diagnosis.test_longitudinal import compared, nifti_files, pair, studies  # noqa: F401
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def _known_matrix(pair) -> np.ndarray:  # noqa: F811
    """The baseline → follow-up matrix (LPS mm) of the known rigid transform (the fixture's G maps the
    follow-up frame to the baseline's, so this is G⁻¹)."""
    g = np.eye(4)
    g[:3, :3] = np.asarray(pair.transform.GetMatrix()).reshape(3, 3)
    centre = np.asarray(pair.transform.GetCenter())
    g[:3, 3] = np.asarray(pair.transform.GetTranslation()) + centre - g[:3, :3] @ centre
    return np.linalg.inv(g)


def test_the_prior_resampled_through_the_known_transform_lies_on_the_follow_up(pair):  # noqa: F811
    resampled = resample_prior_onto(pair.baseline, pair.follow_up, _known_matrix(pair))

    assert resampled.array.shape == pair.follow_up.array.shape
    assert resampled.geometry == pair.follow_up.geometry
    # Away from the lesions that changed on purpose, the registered prior matches the follow-up voxel for
    # voxel far better than the unregistered one does.
    unchanged = (pair.follow_up_labels == 0) & (pair.follow_up.array > -900)
    registered = np.abs(resampled.array - pair.follow_up.array)[unchanged].mean()
    unregistered = np.abs(resample_prior_onto(pair.baseline, pair.follow_up, np.eye(4)).array
                          - pair.follow_up.array)[unchanged].mean()
    assert registered < 0.35 * unregistered, (registered, unregistered)


def test_a_matrix_that_is_not_an_invertible_affine_is_refused(pair):  # noqa: F811
    singular = np.eye(4)
    singular[2, 2] = 0
    projective = np.eye(4)
    projective[3, 0] = 0.1
    for matrix in (singular, projective):
        with pytest.raises(RegistrationError):
            resample_prior_onto(pair.baseline, pair.follow_up, matrix)


def test_the_api_serves_the_registered_prior_on_the_studys_grid_to_clinicians_only(
    compared, studies, doctor, annotator, other_doctor  # noqa: F811
):
    prior, study, _, _ = studies
    url = reverse("study-comparison-prior-volume", args=[study.pk, prior.pk])

    response = api_client(doctor).get(url)

    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    image = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    current = series_volume_load(study.series.get())
    assert image.shape[::-1] == current.array.shape  # NIfTI (i, j, k) vs the portal's (k, j, i)
    assert AuditLog.objects.filter(action="download", target_type="series",
                                   target_id=str(prior.series.get().pk)).exists()
    assert api_client(annotator).get(url).status_code == 403
    assert api_client(other_doctor).get(url).status_code == 404
    assert api_client(doctor).get(reverse("study-comparison-prior-volume", args=[prior.pk, study.pk])).status_code == 404


def test_the_study_page_links_the_side_by_side_view_which_carries_both_volumes(
    compared, studies, doctor, other_doctor  # noqa: F811
):
    prior, study, _, _ = studies
    client = Client()
    client.force_login(doctor)
    page = client.get(reverse("annotation:study-detail", args=[study.pk])).content.decode()
    view_url = reverse("diagnosis:study-compare-view", args=[study.pk, prior.pk])
    assert f'href="{view_url}"' in page

    view = client.get(view_url)

    assert view.status_code == 200
    html = view.content.decode()
    assert 'id="compare-config"' in html and 'id="compare-prior"' in html and 'id="compare-current"' in html
    assert reverse("study-comparison-prior-volume", args=[study.pk, prior.pk]) in html
    from diagnosis import selectors

    assert "build/compare.js" in html
    assert html.count('class="prior-match"') == len(selectors.study_comparison_payload(compared)["matches"]) > 0
    other = Client()
    other.force_login(other_doctor)
    assert other.get(view_url).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_in_chromium_both_panes_load_and_move_together(live_server, pair, nifti_files, hospital, doctor):  # noqa: F811
    from tests.diagnosis.test_longitudinal import _findings_from_labels, _import
    from tests.diagnosis.longitudinal.followup_data import BASELINE_DATE, FOLLOW_UP_DATE
    from tests.e2e.conftest import CHROMIUM, csp_violations

    from diagnosis import services

    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    prior = _import(nifti_files[0], hospital, BASELINE_DATE)
    study = _import(nifti_files[1], hospital, FOLLOW_UP_DATE)
    _findings_from_labels(prior, pair.baseline_labels)
    _findings_from_labels(study, pair.follow_up_labels)
    services.study_compare(user=doctor, study=study, prior=prior, working_spacing_mm=6.0)
    client = Client()
    client.force_login(doctor)
    cookie = {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
              "url": live_server.url}
    url = live_server.url + reverse("diagnosis:study-compare-view", args=[study.pk, prior.pk])
    messages: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"])
        try:
            context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
            context.add_cookies([cookie])
            page = context.new_page()
            page.on("console", lambda msg: messages.append(msg.text))
            page.goto(url)
            page.wait_for_selector('#compare-status[data-state="ready"]', timeout=120_000)
            dims = page.evaluate("() => [window.yixinCompare.prior.nv.volumes[0].dims.slice(1, 4),"
                                 " window.yixinCompare.current.nv.volumes[0].dims.slice(1, 4)]")
            assert dims[0] == dims[1]  # the prior arrives on the study's grid
            # The study's pane gets the focus (a click), then a new crosshair position (a slice) and window:
            # both reach the prior's pane (NiiVue syncs from the focused canvas).
            before = page.evaluate("() => Array.from(window.yixinCompare.prior.nv.scene.crosshairPos)")
            page.click("#compare-current", position={"x": 120, "y": 140})
            page.evaluate("() => { const c = window.yixinCompare.current.nv; c.scene.crosshairPos = [0.3, 0.6, 0.4];"
                          " c.volumes[0].cal_min = -1000; c.volumes[0].cal_max = 400; c.updateGLVolume();"
                          " c.drawScene(); }")
            deadline = time.monotonic() + 10
            while True:
                state = page.evaluate("() => { const p = window.yixinCompare.prior.nv, c = window.yixinCompare.current.nv;"
                                      " return [Array.from(p.scene.crosshairPos), Array.from(c.scene.crosshairPos),"
                                      " p.volumes[0].cal_min, p.volumes[0].cal_max]; }")
                if (np.allclose(state[0], state[1], atol=1e-3) and not np.allclose(state[1], before, atol=1e-3)
                        and state[2:] == [-1000, 400]):
                    break
                assert time.monotonic() < deadline, (before, state)
                time.sleep(0.2)
        finally:
            browser.close()
    assert not csp_violations(messages), messages
