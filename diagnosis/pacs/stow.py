"""Send DICOM instances to a PACS with STOW-RS (DICOM PS3.18 10.5), with the standard library's HTTP client.

One ``POST {base}/studies`` per call, a ``multipart/related; type="application/dicom"`` body with one part
per instance (PS3.18 10.5.1.2, 8.6.1.2), asking for the Store Instances Response Module as
``application/dicom+json`` (PS3.18 10.5.3, Table 10.5.3-1). Failures raise
:class:`diagnosis.pacs.scu.StoreError` with the codes of the C-STORE path, so the caller retries both
transports alike:

- no answer (connection refused, DNS, timeout) and HTTP 408, 429 and 5xx: ``peer_unreachable`` or
  ``stow_unavailable`` (transient);
- any other HTTP 4xx, and a redirect: ``stow_rejected`` (permanent: a wrong URL path, refused credentials,
  409 Conflict with every instance failed; a redirect is not followed, since following it would resend the
  credentials elsewhere and turn the POST into a GET);
- a 2xx answer whose Failed SOP Sequence (0008,1198) lists an instance: ``sop_class_not_accepted`` when
  its Failure Reason (0008,1197) is 0x0122 (SOP class not supported, PS3.4 Table B.2-1; permanent),
  ``store_failed`` with that reason as ``status`` otherwise (as a C-STORE failure status).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from .scu import StoreError

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"
SOP_CLASS_NOT_SUPPORTED = 0x0122
# HTTP statuses a later attempt may cure (PS3.18 8.5 leaves the rest of 4xx to the client's fault).
TRANSIENT_HTTP = {408, 429}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the 3xx answer is raised as an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class StowDestination:
    """A DICOMweb origin server's base URL (``POST {base_url}/studies``) and how to authenticate.

    ``password`` with ``username`` is HTTP basic authentication; ``token`` alone a bearer token.
    Neither appears in ``repr`` nor in any error message.
    """

    base_url: str
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    timeout_s: float = 30.0


def multipart_related(parts: Sequence[bytes], *, media_type: str = "application/dicom") -> tuple[bytes, str]:
    """Encode ``parts`` as a multipart/related body (RFC 2387, PS3.18 8.6.1.2).

    Returns
    -------
    (bytes, str)
        The body and its Content-Type header value, ``multipart/related; type="application/dicom";
        boundary=…``.
    """
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for part in parts:
        body.write(f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("ascii"))
        body.write(part)
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode("ascii"))
    return body.getvalue(), f'multipart/related; type="{media_type}"; boundary={boundary}'


def _encode(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # PS3.10 file format: the part carries its File Meta
    return buffer.getvalue()


def _uids(response: dict, keyword: str) -> list[tuple[str, int | None]]:
    """``[(SOP Instance UID, Failure Reason or None)]`` of one sequence of a DICOM JSON response."""
    items = (response.get(keyword) or {}).get("Value") or []
    found = []
    for item in items:
        uid = ((item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or [""])[0]
        reason = ((item.get(FAILURE_REASON) or {}).get("Value") or [None])[0]
        found.append((str(uid), int(reason) if reason is not None else None))
    return found


def _response_json(raw: bytes) -> dict:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {}
    if isinstance(parsed, list):  # some servers answer a one-element array
        parsed = parsed[0] if parsed else {}
    return parsed if isinstance(parsed, dict) else {}


def stow_instances(datasets: Sequence, destination: StowDestination) -> list[str]:
    """STOW-RS every dataset to ``destination`` in one request.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        Each with SOPClassUID, SOPInstanceUID and a file meta Transfer Syntax UID.
    destination : StowDestination

    Returns
    -------
    list of str
        The SOP Instance UIDs the server reports stored in its Referenced SOP Sequence (0008,1199),
        or every dataset's when it answers 2xx with an empty body.

    Raises
    ------
    StoreError
        See the module docstring for its codes; ``status`` is the HTTP status for an HTTP error, the
        Failure Reason for a failed instance.
    """
    body, content_type = multipart_related([_encode(ds) for ds in datasets])
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    if destination.username:
        pair = f"{destination.username}:{destination.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    elif destination.token:
        headers["Authorization"] = f"Bearer {destination.token}"
    url = destination.base_url.rstrip("/") + "/studies"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=destination.timeout_s) as response:
            answer = _response_json(response.read())
    except urllib.error.HTTPError as exc:
        status = exc.code
        failed = _uids(_response_json(exc.read() or b""), FAILED_SOP_SEQUENCE)
        detail = f"STOW-RS to {url} answered HTTP {status} {exc.reason}"
        if failed:
            detail += "; failed: " + ", ".join(f"{uid} (0x{reason or 0:04X})" for uid, reason in failed)
        transient = status in TRANSIENT_HTTP or status >= 500
        raise StoreError(detail, code="stow_unavailable" if transient else "stow_rejected", status=status) from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreError(f"no answer from {url}: {type(reason).__name__}: {reason}", code="peer_unreachable") from None
    failed = _uids(answer, FAILED_SOP_SEQUENCE)
    stored = [uid for uid, _reason in _uids(answer, REFERENCED_SOP_SEQUENCE)]
    if failed:
        uid, reason = failed[0]
        listed = ", ".join(f"{u} (0x{r or 0:04X})" for u, r in failed)
        code = "sop_class_not_accepted" if reason == SOP_CLASS_NOT_SUPPORTED else "store_failed"
        raise StoreError(f"STOW-RS to {url}: instances not stored: {listed}", code=code, status=reason,
                         sent=stored)
    return stored or [str(ds.SOPInstanceUID) for ds in datasets]
