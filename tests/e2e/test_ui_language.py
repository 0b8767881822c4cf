"""One language at a time in the browser (issue 16): the scripts' own strings come from /jsi18n/ and an
API refusal shows the server's message, both in the page's language — Chinese in the Chinese UI,
English in the English UI."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_followup import login

pytestmark = [pytest.mark.e2e]

HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_an_upload_refusal_and_the_widgets_strings_are_in_the_page_language(portal_server, browser_page, language):
    page, base = browser_page, portal_server["url"]
    login(page, base, "doctor", portal_server["password"])
    page.context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    page.goto(f"{base}/studies/upload/")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => typeof window.django?.gettext") == "function"

    # A script's own string (ngettext from the catalogue).
    page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}])
    summary = page.inner_text("#file-summary").strip()
    # Refused by the server: no image among the files.
    page.fill("#patient-mrn", "E2E-LANGUAGE")
    with page.expect_response(lambda r: r.url.endswith("/api/studies/import/")) as answer:
        page.click("#upload-button")
    response = answer.value
    page.wait_for_selector("#upload-error:not([hidden])")
    shown = page.inner_text("#upload-error span:first-child").strip()
    filename = page.locator("#upload-error .error-filename")

    assert response.status >= 400
    assert shown == response.json()["error"]["message"]  # the server's message, as it sent it
    if language == "zh-hans":
        assert summary.startswith("1 个文件，共 "), summary
        assert HAN.search(shown), shown
        if filename.count():
            assert filename.inner_text().strip() == "(文件：notes.txt)"
    else:
        assert summary.startswith("1 file, ") and summary.endswith(" in total"), summary
        assert not HAN.search(shown), shown
        assert re.search(r"[A-Za-z]{4,}", shown), shown
        if filename.count():
            assert filename.inner_text().strip() == "(file: notes.txt)"
