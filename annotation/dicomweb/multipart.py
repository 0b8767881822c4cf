"""Reading and writing ``multipart/related`` bodies (RFC 2387) as DICOMweb uses them (PS3.18 8.6.1.2).

Plain Python: no Django.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["MultipartError", "Part", "content_type_parse", "multipart_decode", "multipart_encode_stream",
           "new_boundary"]


class MultipartError(ValueError):
    """A body that is not a well-formed ``multipart/related`` message."""


@dataclass(frozen=True)
class Part:
    """One body part: its media type (lower case, without parameters) and its bytes."""

    content_type: str
    data: bytes


_PARAM = re.compile(r';\s*([A-Za-z0-9_.+-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


def content_type_parse(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into the lower-case media type and its parameters (names lower case).

    ``'multipart/related; type="application/dicom"; boundary=x'`` → ``("multipart/related",
    {"type": "application/dicom", "boundary": "x"})`` (RFC 9110 8.3.1).
    """
    media, _sep, rest = (value or "").partition(";")
    params = {}
    for name, raw in _PARAM.findall(";" + rest):
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.lower()] = raw
    return media.strip().lower(), params


def multipart_decode(body: bytes, boundary: str) -> list[Part]:
    """Split a ``multipart/related`` body into its parts (RFC 2046 5.1.1).

    Parameters
    ----------
    body : bytes
        The message body.
    boundary : str
        The ``boundary`` parameter of the message's Content-Type.

    Raises
    ------
    MultipartError
        No boundary, no opening or closing delimiter, no part, or a part without its blank line
        between headers and content.
    """
    if not boundary or len(boundary) > 70:
        raise MultipartError("the Content-Type names no valid boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2:start] != b"\r\n"):
        raise MultipartError("the body does not start with the boundary")
    end = body.find(b"\r\n" + delimiter + b"--", start)
    if end < 0:
        raise MultipartError("the body has no closing boundary")
    chunks = body[start + len(delimiter):end].split(b"\r\n" + delimiter)
    parts = []
    for chunk in chunks:
        # Each chunk is: optional transport padding, CRLF, headers, CRLF CRLF, content.
        line_end = chunk.find(b"\r\n")
        if line_end < 0 or chunk[:line_end].strip(b" \t"):
            raise MultipartError("a boundary line is followed by other text")
        head_end = chunk.find(b"\r\n\r\n", line_end)
        if head_end == line_end:
            headers, data = b"", chunk[line_end + 4:]
        elif head_end < 0:
            raise MultipartError("a part has no blank line after its headers")
        else:
            headers, data = chunk[line_end + 2:head_end], chunk[head_end + 4:]
        content_type = "text/plain"  # RFC 2046 5.1's default for a part without Content-Type
        for line in headers.decode("latin-1").split("\r\n"):
            name, _sep, value = line.partition(":")
            if name.strip().lower() == "content-type":
                content_type = content_type_parse(value)[0]
        parts.append(Part(content_type=content_type, data=data))
    if not parts:
        raise MultipartError("the body has no part")
    return parts


def new_boundary() -> str:
    """Return a fresh random boundary."""
    return uuid.uuid4().hex


def multipart_encode_stream(parts: Iterable[bytes | Iterable[bytes]], *, content_type: str,
                            boundary: str) -> Iterator[bytes]:
    """Yield a ``multipart/related`` body whose parts all have ``content_type``.

    Each item of ``parts`` is the part's bytes or an iterable of byte chunks (streamed from storage).
    """
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")
    for part in parts:
        yield head
        if isinstance(part, bytes | bytearray):
            yield bytes(part)
        else:
            yield from part
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
