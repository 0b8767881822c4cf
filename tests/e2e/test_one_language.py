"""One language at a time (issue 16): a walk over the main pages in Chinese and in English — the
staff's at 1280×800 (worklist, study, report, patient timeline, follow-up inbox, QA page, federation
list), the patient's at 390×844 (我的检查, the chat, questionnaires) — finds no Chinese on an English
page and no English word on a Chinese page, apart from stored data and a short list of codes and units."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import wait_for_js
from tests.e2e.test_followup import browser, login  # noqa: F401  (the two-browser fixture)
from tests.e2e.test_patient_phone import DEMO_MRN, DESKTOP, PHONE, _api, _import_for_patient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff01-\uff5e]+")
WORD = re.compile(r"[A-Za-z][A-Za-z]+")

# Stored data, shown as stored in either language: the demo hospital's, users' and patient's names,
# the product's name, the language switcher's own names, identifiers typed by users.
STORED = ["医心相印示范医院 Yixin Demo Hospital", "医心相印", "Yixin Portal", "王医生", "李标注", "张三", "平台管理员", "简体中文", "English",
          DEMO_MRN, "doctor", "patient", "annotator"]

# Words a Chinese page may show: units, DICOM and imaging terms, codes of instruments and standards,
# key names, and the names of networks, libraries and algorithms.
ALLOWED_WORDS = {
    "CT", "MR", "MRI", "PET", "DICOM", "NIfTI", "HU", "mm", "cm", "ml", "mL", "px", "KB", "MB", "GB", "KiB", "MiB",
    "PDF", "CSV", "ZIP", "JSON", "ID", "MRN", "PACS", "FHIR", "SEG", "SR", "RTSTRUCT", "AE", "UID", "AI", "PHQ", "GAD",
    "RECIST", "Lung", "RADS", "WHO", "Dice", "RAS", "LPS", "nii", "gz", "vs", "Shift", "Ctrl", "Alt", "Esc", "PgUp",
    "PgDn", "MONAI", "UNet", "VNet", "SegResNet", "DynUNet", "AttentionUnet", "SwinUNETR", "RetinaNet", "TorchScript",
    "ONNX", "Flower", "FedAvg", "FedProx", "RTIFed", "SecAgg", "LocalDpMod", "Shapley",
}
# DICOM defined terms (Body Part Examined "CHEST") and identifiers (MRNs such as "LIDC-VIEWER") are
# upper case: codes, not words of the interface.
CODE = re.compile(r"^[A-Z0-9]+$")

# Text nodes shown on the page (visible elements only), option texts and placeholders, each with
# the id or class of its element, so a leak names its place.
VISIBLE_TEXTS = """() => {
    const out = [];
    const pageLanguage = document.documentElement.lang.toLowerCase().slice(0, 2);
    const where = (el) => {
        for (let e = el; e && e !== document.body; e = e.parentElement) {
            if (e.id) return '#' + e.id;
        }
        return el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '');
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const el = node.parentElement;
        const text = node.textContent.trim();
        if (!text || !el || el.closest('script, style, noscript, template, [data-stored]')) continue;
        // Text that declares its own language (a Chinese example question, an English citation).
        const declared = el.closest('[lang]');
        if (declared && declared !== document.documentElement && !declared.lang.toLowerCase().startsWith(pageLanguage)) {
            out.push(['@declared', text]);
            continue;
        }
        if (el.tagName === 'OPTION' || el.tagName === 'OPTGROUP') {
            const select = el.closest('select');
            if (select && select.checkVisibility()) out.push([where(select), text]);
            continue;
        }
        if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
        out.push([where(el), text]);
    }
    for (const el of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
        if (!el.checkVisibility() || el.closest('[data-stored]')) continue;
        for (const attr of ['placeholder', 'title', 'aria-label']) {
            const value = (el.getAttribute(attr) || '').trim();
            if (value) out.push([where(el) + '@' + attr, value]);
        }
    }
    return out;
}"""


def _strings(value) -> list[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _strip_stored(text: str, stored: list[str]) -> str:
    """``text`` without the stored values (``stored`` longest first) it contains."""
    for value in stored:
        if value in text:
            text = text.replace(value, " ")
    return text


def _leaks(page, language: str, stored: list[str]) -> list[tuple[str, str, str]]:
    """(page path, element, text) of each visible text in the other language."""
    found = []
    texts = page.evaluate(VISIBLE_TEXTS)
    # What the page itself marks as in another language may be quoted elsewhere on it (a placeholder
    # naming an example question).
    stored = sorted({*stored, *(text for place, text in texts if place == "@declared")}, key=len, reverse=True)
    for place, text in texts:
        if place == "@declared":
            continue
        rest = _strip_stored(text, stored)
        if language == "en":
            bad = HAN.findall(rest)
        else:
            bad = [w for w in WORD.findall(rest) if w not in ALLOWED_WORDS and not CODE.match(w)]
        if bad:
            found.append((page.url.split("/", 3)[-1], place, text[:120]))
    return found


def _visit(page, url: str, ready: str | None = None) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    if ready:
        wait_for_js(page, ready, timeout=120_000)


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_every_main_page_speaks_one_language(own_portal_server, starter_graph_loaded, browser, language):  # noqa: F811
    # A portal of this module's own: what other browser tests store (task names, messages, reports) can
    # neither fake a leak nor hide one.
    base, password = own_portal_server["url"], own_portal_server["password"]
    doctor = browser(DESKTOP)
    login(doctor, base, "doctor", password)
    doctor.context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    study_id = _import_for_patient(doctor, base)
    patient_id = next(p["id"] for p in _api(doctor, base, "GET", "/api/followup/patients/")["results"]
                      if p["mrn"] == DEMO_MRN)
    reports = _api(doctor, base, "GET", f"/api/studies/{study_id}/reports/")["results"]
    report = reports[0] if reports else _api(doctor, base, "POST", f"/api/studies/{study_id}/reports/", {})
    report_id = report.get("report_id", report.get("id"))
    me = int(doctor.evaluate("document.body.dataset.userId"))
    conversation = _api(doctor, base, "POST", "/api/followup/conversations/", {"patient_id": patient_id, "staff_ids": [me]})
    # Stored by the users of this portal (other browser tests write messages and names too): messages,
    # study and series descriptions, MRNs and names, and the knowledge graph's entity names.
    messages = _api(doctor, base, "GET", f"/api/followup/conversations/{conversation['id']}/messages/?limit=200")
    listing = _api(doctor, base, "GET", "/api/studies/?page_size=200")
    studies = listing["results"] if isinstance(listing, dict) else listing
    graph_names = [row["name"] for row in starter_graph_loaded.read("MATCH (n) RETURN DISTINCT n.name AS name")
                   if row["name"]]
    # The hospital's questionnaires are content authored in one language (their titles, items and the
    # severity bands of their scoring), stored and shown as written, like the graph's names.
    listing = _api(doctor, base, "GET", "/api/followup/questionnaires/")
    instruments = [_api(doctor, base, "GET", f"/api/followup/questionnaires/{q['id']}/")
                   for q in (listing["results"] if isinstance(listing, dict) else listing)]
    authored = [text for q in instruments for text in _strings(q) if HAN.search(text)]
    stored = [*STORED, *(m["body"] for m in messages["results"]), *graph_names, *authored,
              *(str(s.get(key) or "") for s in studies for key in ("description", "patient_mrn", "patient_name")),
              *(str(series.get("description") or "") for s in studies for series in s.get("series", []))]
    stored = [value for value in stored if value.strip()]

    leaks = []
    for url, ready in [
        (f"{base}/studies/", None),
        (f"{base}/studies/{study_id}/", "document.getElementById('viewer-loading').hidden"),
        (f"{base}/reports/{report_id}/", None),
        (f"{base}/patients/{patient_id}/", None),
        (f"{base}/followup/", None),
        (f"{base}/kg/", None),
        (f"{base}/federation/", None),
    ]:
        _visit(doctor, url, ready)
        leaks += _leaks(doctor, language, stored)

    phone = browser(PHONE, is_mobile=True, has_touch=True)
    login(phone, base, "patient", password)
    phone.context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    for url, ready in [
        (f"{base}/followup/me/studies/", None),
        (f"{base}/followup/conversations/{conversation['id']}/", None),
        (f"{base}/followup/me/questionnaires/", None),
    ]:
        _visit(phone, url, ready)
        leaks += _leaks(phone, language, stored)

    assert not leaks, "\n".join(" | ".join(leak) for leak in leaks)


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_the_chat_assistant_answers_on_the_phone_in_the_pages_language(portal_server, starter_graph_loaded, browser,  # noqa: F811
                                                                       language):
    base, password = portal_server["url"], portal_server["password"]
    doctor = browser(DESKTOP)
    login(doctor, base, "doctor", password)
    patient_id = next(p["id"] for p in _api(doctor, base, "GET", "/api/followup/patients/")["results"]
                      if p["mrn"] == DEMO_MRN)
    me = int(doctor.evaluate("document.body.dataset.userId"))
    conversation = _api(doctor, base, "POST", "/api/followup/conversations/", {"patient_id": patient_id, "staff_ids": [me]})

    phone = browser(PHONE, is_mobile=True, has_touch=True)
    login(phone, base, "patient", password)
    phone.context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    phone.goto(f"{base}/followup/conversations/{conversation['id']}/")
    phone.wait_for_selector('#connection-state[data-state="open"]')
    answers = phone.locator("#messages .fu-msg.assistant[data-id]")
    before = answers.count()

    # A question naming nothing the graph knows: said so, in the page's language, with examples.
    phone.fill("#message-input", "今天天气怎么样")
    phone.click("#ask-assistant")
    answers.nth(before).wait_for(timeout=30_000)
    unknown = answers.nth(before).inner_text()
    # A real question: the graph's names as stored, every sentence around them in the page's language.
    phone.fill("#message-input", "感冒吃什么药？")
    phone.click("#ask-assistant")
    answers.nth(before + 1).wait_for(timeout=30_000)
    drugs = answers.nth(before + 1).inner_text()

    assert "对乙酰氨基酚" in drugs  # a graph name, as stored
    if language == "zh-hans":
        assert "知识图谱助手" in unknown and "没有理解这个问题" in unknown and "您可以试着问" in unknown, unknown
        assert "您的医生会看到这段对话" in drugs, drugs
        assert not WORD.findall(unknown + drugs), WORD.findall(unknown + drugs)
    else:
        assert "Knowledge-graph assistant" in unknown and "I did not understand this question" in unknown, unknown
        assert "Your doctor sees this conversation" in drugs and "您的医生" not in drugs, drugs
        assert "understood in Chinese only" in unknown, unknown
