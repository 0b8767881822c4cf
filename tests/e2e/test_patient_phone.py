"""The patient's phone (issue 16), at 390×844 in Chinese and in English: key images at full width and
not black, a compact header without staff links, a bottom tab bar that includes the studies and marks
the page shown, and a study whose report is not signed yet explains when it will be visible."""

from __future__ import annotations

import re

import pytest

from tests.conftest import shared_data
from tests.e2e.test_followup import browser, bubble, login, send  # noqa: F401  (the two-browser fixture)

pytestmark = [pytest.mark.e2e]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
DEMO_MRN = "DEMO-0001"

_imported: dict[str, int] = {}


def _import_for_patient(page, base) -> int:
    """The doctor imports the small real CT for the demo patient (once per portal)."""
    if base in _imported:
        return _imported[base]
    path = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{base}/api/studies/import/", headers={"X-CSRFToken": csrf},
        multipart={"patient_mrn": DEMO_MRN, "modality": "CT",
                   "files": {"name": path.name, "mimeType": "application/gzip", "buffer": path.read_bytes()}},
    )
    assert response.status == 201, response.text()
    _imported[base] = response.json()["study_ids"][0]
    return _imported[base]


def _image_stats(page, selector):
    """Rendered size and pixel spread of each image (drawn onto a canvas in the page)."""
    return page.eval_on_selector_all(selector, """imgs => imgs.map((img) => {
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width || 1, c.height || 1).data;
        let lo = 255, hi = 0;
        for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
        const r = img.getBoundingClientRect();
        return {width: r.width, height: r.height, natural: img.naturalWidth, lo, hi, complete: img.complete};
    })""")


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_patient_phone_pages(portal_server, browser, language):  # noqa: F811
    base, password = portal_server["url"], portal_server["password"]
    doctor = browser(DESKTOP)
    login(doctor, base, "doctor", password)
    study_id = _import_for_patient(doctor, base)

    phone = browser(PHONE, is_mobile=True, has_touch=True)
    login(phone, base, "patient", password)
    phone.context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    phone.goto(f"{base}/followup/me/studies/")
    phone.wait_for_load_state("networkidle")
    card = phone.locator(f"#study-{study_id}")
    card.scroll_into_view_if_needed()
    phone.wait_for_function("() => [...document.querySelectorAll('.fu-keyimages img')].every(i => i.complete)")
    stats = _image_stats(phone, f"#study-{study_id} .fu-keyimages img")
    assert len(stats) == 3
    for s in stats:
        assert s["natural"] > 0, s
        assert s["width"] >= 0.8 * PHONE["width"] - 40, s  # full width of the card, one image a row
        assert s["hi"] - s["lo"] > 100, s  # an image, not a black square
    # Not signed yet: explained.
    pending = card.locator(".fu-report-pending")
    assert pending.is_visible()
    assert pending.inner_text().strip() == ("报告审核后可见" if language == "zh-hans" else "Visible after the doctor's review")

    # Compact header: no staff links, logout reachable.
    nav_links = phone.locator(".site-header a").all_inner_texts()
    staff = ["Upload", "上传", "Label sets", "标注集", "Federated", "联邦", "Admin", "管理"]
    assert not [t for t in nav_links if any(s in t for s in staff)], nav_links
    assert phone.locator("#logout").is_visible()
    header = phone.locator(".site-header").bounding_box()
    assert header["height"] <= 64, header

    # Tab bar: includes the studies and marks this page.
    tabbar = phone.locator("#fu-tabbar")
    active = tabbar.locator("a.active")
    assert active.count() == 1
    assert active.get_attribute("href").endswith("/followup/me/studies/")
    assert active.get_attribute("aria-current") == "page"
    phone.goto(f"{base}/followup/me/reports/")
    assert phone.locator("#fu-tabbar a.active").get_attribute("href").endswith("/followup/me/reports/")
    page_text = phone.locator("body").inner_text()
    if language == "en":
        assert not re.search(r"[\u4e00-\u9fff]", page_text.replace("医心相印", "").replace("简体中文", "")), page_text


def _api(page, base, method, path, data=None):
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.fetch(f"{base}{path}", method=method, headers={"X-CSRFToken": csrf}, data=data)
    assert response.ok, response.text()
    return response.json()


def test_score_charts_use_each_instruments_range_and_bands(portal_server, browser):  # noqa: F811
    import datetime as dt

    base, password = portal_server["url"], portal_server["password"]
    doctor = browser(DESKTOP)
    login(doctor, base, "doctor", password)
    patient_id = next(p["id"] for p in _api(doctor, base, "GET", "/api/followup/patients/")["results"]
                      if p["mrn"] == DEMO_MRN)
    instruments = {q["code"]: q["id"] for q in _api(doctor, base, "GET", "/api/followup/questionnaires/")["results"]}
    phone = browser(PHONE, is_mobile=True, has_touch=True)
    login(phone, base, "patient", password)
    for code in ("phq-9", "gad-7"):
        detail = _api(doctor, base, "GET", f"/api/followup/questionnaires/{instruments[code]}/")
        assigned = _api(doctor, base, "POST", f"/api/followup/questionnaires/{instruments[code]}/assign/",
                        {"patient_ids": [patient_id], "due_date": (dt.date.today() + dt.timedelta(days=3)).isoformat()})
        answers = {i["link_id"]: "1" for i in detail["definition"]["items"] if i["type"] == "single_choice"}
        _api(phone, base, "POST", f"/api/followup/assignments/{assigned['results'][0]['id']}/submit/", {"answers": answers})
    doctor.goto(f"{base}/followup/patients/{patient_id}/")
    doctor.wait_for_selector('body[data-chart="ready"]')
    charts = {f.get_attribute("data-instrument"): f for f in doctor.locator("#results-charts figure").all()}
    assert set(charts) == {"phq-9", "gad-7"}
    assert (charts["phq-9"].get_attribute("data-y-min"), charts["phq-9"].get_attribute("data-y-max")) == ("0", "27")
    assert (charts["gad-7"].get_attribute("data-y-min"), charts["gad-7"].get_attribute("data-y-max")) == ("0", "21")
    assert int(charts["phq-9"].get_attribute("data-bands")) == 5 and int(charts["gad-7"].get_attribute("data-bands")) == 4


def test_the_doctors_inbox_updates_live_with_previews_and_counts_drop_when_read(portal_server, browser):  # noqa: F811
    base, password = portal_server["url"], portal_server["password"]
    doctor = browser(DESKTOP)
    login(doctor, base, "doctor", password)
    patient_id = next(p["id"] for p in _api(doctor, base, "GET", "/api/followup/patients/")["results"]
                      if p["mrn"] == DEMO_MRN)
    me = int(doctor.evaluate("document.body.dataset.userId"))
    conversation = _api(doctor, base, "POST", "/api/followup/conversations/", {"patient_id": patient_id, "staff_ids": [me]})
    doctor.goto(f"{base}/followup/")
    row = doctor.locator(f'#inbox-list li[data-conversation="{conversation["id"]}"]')
    row.wait_for()
    # The conversation may be one an earlier browser test of this portal left with unread messages.
    unread_before = 0 if row.locator(".fu-count").is_hidden() else int(row.locator(".fu-count").inner_text())

    phone = browser(PHONE, is_mobile=True, has_touch=True)
    login(phone, base, "patient", password)
    phone.goto(f"{base}/followup/conversations/{conversation['id']}/")
    phone.wait_for_selector('#connection-state[data-state="open"]')
    send(phone, "今天头不疼了，谢谢医生")
    # The doctor's inbox shows the new message's preview and count without a reload, first in the list.
    row.locator(".fu-preview", has_text="今天头不疼了").wait_for()
    doctor.wait_for_function(
        "([id, n]) => document.querySelector(`#inbox-list li[data-conversation='${id}'] .fu-count`).textContent === String(n)",
        arg=[conversation["id"], unread_before + 1])
    assert doctor.locator("#inbox-list li[data-conversation]").first.get_attribute("data-conversation") == str(conversation["id"])
    doctor.wait_for_selector("#nav-followup-unread:not([hidden])")

    # The doctor reads it in another tab: the count drops on the dashboard, live.
    reader = doctor.context.new_page()
    reader.console_lines = []  # the fixture checks every page of its contexts for CSP violations
    reader.on("console", lambda msg: reader.console_lines.append(f"{msg.type}: {msg.text}"))
    reader.goto(f"{base}/followup/conversations/{conversation['id']}/")
    bubble(reader, "今天头不疼了").wait_for()
    doctor.wait_for_selector(f'#inbox-list li[data-conversation="{conversation["id"]}"] .fu-count[hidden]', state="attached")
