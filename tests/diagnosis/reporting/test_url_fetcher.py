"""The PDF renderer's URL fetcher serves the portal's static files and the report's own images only.

A local HTTP server records every request: rendered through the fetcher, HTML full of hostile URLs
(CSS ``url()``, ``<img>``, ``<link>``, ``@import``) makes it receive nothing, while weasyprint's own
fetcher on the same HTML does reach it (so the server would see a leak).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

weasyprint = pytest.importorskip("weasyprint")

from diagnosis.reporting.fetcher import StaticOnlyURLFetcher  # noqa: E402
from tests.helpers import recording_http_server  # noqa: E402

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture
def recording_server():
    with recording_http_server() as server:
        yield server


def _hostile_html(base: str, outside: Path) -> str:
    return f"""<html><head>
<link rel="stylesheet" href="{base}/link.css">
<style>@import url("{base}/import.css"); body {{ background: url({base}/body.png); }}</style>
</head><body>
<span style="background: red;background-image:url({base}/colour.png)">x</span>
<img src="{base}/img.png"><img src="{outside.as_uri()}">
<img src="data:image/png;base64,{base64.b64encode(PNG).decode()}">
<div style="list-style-image: url('{base}/list.png')"><ul><li>a</li></ul></div>
</body></html>"""


def test_hostile_urls_fetch_nothing_through_the_report_fetcher(recording_server, tmp_path, caplog):
    base, hits = recording_server
    outside = tmp_path / "secret.png"
    outside.write_bytes(PNG)
    static = tmp_path / "static"
    static.mkdir()
    fetcher = StaticOnlyURLFetcher(static_roots=[static])

    pdf = weasyprint.HTML(string=_hostile_html(base, outside), url_fetcher=fetcher).write_pdf()

    assert pdf.startswith(b"%PDF")
    assert hits == []
    assert fetcher.served == []
    assert any(u.startswith(base) for u in fetcher.refused)
    assert outside.as_uri() in fetcher.refused
    assert any(u.startswith("data:") for u in fetcher.refused)  # a data: URI it did not generate


def test_the_default_fetcher_would_have_reached_the_server(recording_server, tmp_path):
    """The control: the same HTML through weasyprint's own fetcher requests the server."""
    base, hits = recording_server
    weasyprint.HTML(string=_hostile_html(base, tmp_path / "none.png")).write_pdf()
    assert hits


def test_static_files_and_generated_images_are_served(tmp_path):
    static = tmp_path / "static"
    (static / "img").mkdir(parents=True)
    logo = static / "img" / "logo.png"
    logo.write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    generated = "data:image/png;base64," + base64.b64encode(PNG).decode()
    fetcher = StaticOnlyURLFetcher(static_roots=[static], data_uris=[generated])
    escape = (static / "img" / ".." / ".." / "outside.png").as_uri()

    html = f'<img src="{logo.as_uri()}"><img src="{generated}"><img src="{escape}">'
    weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()

    assert fetcher.served == [logo.as_uri(), generated]
    assert fetcher.refused == [escape]
