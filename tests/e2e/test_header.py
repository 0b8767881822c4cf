"""The portal header at a radiologist's 1280×800 in both languages (issue 16): every link and the
logout are on screen — not scrolled out of the header's overflow — and the page has no horizontal
scroll. The English labels are longer than the Chinese ones, which is what this guards."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e]

DESKTOP = {"width": 1280, "height": 800}

# The header's geometry as the browser laid it out.
GEOMETRY = """() => {
  const header = document.querySelector('.site-header').getBoundingClientRect();
  const nav = document.querySelector('.site-nav');
  const logout = document.querySelector('#logout').getBoundingClientRect();
  const items = [...nav.children].map((el) => el.getBoundingClientRect());
  return {
    headerBottom: header.bottom, headerHeight: header.height,
    navOverflow: nav.scrollWidth - nav.clientWidth,
    pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
    logout: {left: logout.left, right: logout.right, top: logout.top, bottom: logout.bottom},
    tops: items.map((r) => Math.round(r.top + r.height / 2)),
    rights: items.map((r) => r.right),
  };
}"""


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("username", ["doctor", "admin"])
def test_the_header_fits_at_1280_with_logout_visible(portal_server, browser_page, language, username):
    page = browser_page
    page.set_viewport_size(DESKTOP)
    base = portal_server["url"]
    page.context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", portal_server["password"])
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/studies/")
    assert page.evaluate("document.documentElement.lang") == language

    box = page.evaluate(GEOMETRY)
    assert page.locator("#logout").is_visible()
    assert box["navOverflow"] <= 0, f"the navigation overflows by {box['navOverflow']} px: logout is scrolled away"
    assert box["pageOverflow"] <= 0, f"the page scrolls sideways by {box['pageOverflow']} px"
    assert 0 <= box["logout"]["left"] and box["logout"]["right"] <= DESKTOP["width"]
    assert box["logout"]["bottom"] <= box["headerBottom"]
    # One row: every item of the navigation sits on the same line (centres within a few pixels).
    assert max(box["tops"]) - min(box["tops"]) <= 4, box["tops"]
    # The logout button is reachable with a click (nothing covers it).
    page.click("#logout")
    page.wait_for_load_state("networkidle")
    assert "/login/" in page.url or page.locator("#id_username").count() == 1
