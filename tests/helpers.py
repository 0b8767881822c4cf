"""Helpers shared by the integration tests."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from rest_framework.test import APIClient

from portal.storage import s3_client


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def stored_keys() -> set[str]:
    """All object keys in the test bucket (to prove that failures store nothing)."""
    from django.conf import settings

    client = s3_client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def upload(client: APIClient, paths: list[Path], *, mrn: str = "MRN-1", **extra):
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post("/api/studies/import/", {"files": handles, "patient_mrn": mrn, **extra}, format="multipart")
    finally:
        for h in handles:
            h.close()


def contiguous_slices(folder: Path, count: int) -> list[Path]:
    """Return ``count`` DICOM files of a series that are neighbours along the slice axis."""
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    by_z = sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    return by_z[:count]


def api_schema() -> dict:
    """Generate the OpenAPI schema in-process, as ``manage.py spectacular`` does (warnings silenced)."""
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    with GENERATOR_STATS.silence():
        return SchemaGenerator().get_schema(request=None, public=True)


def _strict_json_schema(node):
    """Turn OpenAPI 3.0 schema objects into JSON Schema: ``nullable`` admits null, and an object whose
    properties are listed admits no other key (so an undocumented field in a response fails)."""
    if isinstance(node, list):
        return [_strict_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict_json_schema(v) for k, v in node.items()}
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if node.pop("nullable", False):
        node = {"anyOf": [node, {"type": "null"}]}
    return node


def assert_matches_schema(schema: dict, path: str, method: str, response) -> None:
    """Validate a JSON response against what the schema documents for ``path`` (the template, e.g.
    ``/api/followup/conversations/{conversation_id}/``), ``method`` and the response's status code."""
    import jsonschema

    operation = schema["paths"][path][method.lower()]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path} does not document status {response.status_code}"
    body_schema = documented["content"]["application/json"]["schema"]
    validator = jsonschema.Draft7Validator({**_strict_json_schema(body_schema),
                                            "components": _strict_json_schema(schema["components"])},
                                           format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {path} → {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors[:5])


@contextmanager
def recording_http_server():
    """Run a real HTTP server on a free loopback port; yield (base URL, list of the paths requested).

    For proving that something (the PDF renderer) fetches nothing: every GET is recorded and answered
    with a 1×1 PNG.
    """
    import http.server
    import threading

    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
           b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82")
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
