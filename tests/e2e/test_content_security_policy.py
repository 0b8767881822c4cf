"""The Content-Security-Policy in a real browser: the portal's pages work under it (every e2e test
fails on a reported violation, see conftest), and it does block what it is meant to block."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_the_policy_blocks_an_injected_inline_script_and_the_language_menu_still_works(portal_server, browser_page):
    from tests.e2e.conftest import csp_violations

    page = browser_page
    lines = page.console_lines
    page.goto(portal_server["url"] + "/login/")
    page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__injected = true';
        document.body.appendChild(s);
    }""")
    for _ in range(50):  # the console report arrives asynchronously (up to 5 s on a loaded machine)
        if csp_violations(lines):
            break
        page.wait_for_timeout(100)
    assert page.evaluate("() => window.__injected === undefined")
    assert csp_violations(lines), "chromium reported no violation for an inline script"
    lines.clear()

    # The language menu submits through static/js/portal.js, not an inline handler.
    with page.expect_navigation():
        page.select_option("select[name=language]", "en")
    assert page.locator("html").get_attribute("lang") == "en"
    with page.expect_navigation():
        page.select_option("select[name=language]", "zh-hans")
    assert page.locator("html").get_attribute("lang") == "zh-hans"

