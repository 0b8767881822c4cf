"""The part of Bolt's PackStream and message framing that the Bolt gate reads and writes. No Django.

Source: the Bolt protocol documentation, https://neo4j.com/docs/bolt/current/ — "PackStream"
(markers below) and "Message transfer encoding" (chunking). Every integer is big-endian.

=====================  ===============================================================
marker                 value
=====================  ===============================================================
0x00–0x7F, 0xF0–0xFF   TINY_INT −16…127 in the marker itself
0xC8 / C9 / CA / CB    INT_8 / 16 / 32 / 64, signed, 1/2/4/8 bytes follow
0xC0, 0xC2, 0xC3       null, false, true
0xC1                   FLOAT_64, 8 bytes IEEE 754
0xCC / CD / CE         BYTES, length in 1/2/4 bytes, then the bytes
0x80–0x8F, D0/D1/D2    STRING, length in the low nibble or in 1/2/4 bytes, then UTF-8
0x90–0x9F, D4/D5/D6    LIST, item count likewise, then the items
0xA0–0xAF, D8/D9/DA    MAP, entry count likewise, then key (a string), value, …
0xB0–0xBF              STRUCTURE with 0–15 fields, then a tag byte, then the fields
=====================  ===============================================================

A message is one structure (its tag is the message type), sent as chunks: a two-byte size, that
many bytes, …, then a zero-size chunk that ends the message. A zero-size chunk on its own is a
NOOP (Bolt 4.1+).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32

# Request tags (client → server)
HELLO, GOODBYE, LOGON, LOGOFF, RESET, RUN = 0x01, 0x02, 0x6A, 0x6B, 0x0F, 0x10
# Response tags (server → client)
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F


class PackStreamError(ValueError):
    """Bytes that are not valid PackStream (truncated, an unknown marker, nested too deeply)."""


@dataclass(frozen=True)
class Structure:
    """A PackStream structure: its tag byte and its fields."""

    tag: int
    fields: tuple[Any, ...]


def unpack(data: bytes) -> Any:
    """Decode one complete PackStream value that fills ``data``.

    Raises
    ------
    PackStreamError
        When ``data`` is not exactly one valid value, or nests deeper than :data:`MAX_DEPTH`.
    """
    value, end = _unpack(memoryview(data), 0, 0)
    if end != len(data):
        raise PackStreamError(f"{len(data) - end} trailing bytes after the value")
    return value


def _take(data: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(data):
        raise PackStreamError("truncated value")
    return bytes(data[pos:pos + n]), pos + n


def _size(data: memoryview, pos: int, marker: int, base: int) -> tuple[int, int]:
    width = {0: 1, 1: 2, 2: 4}[marker - base]
    raw, pos = _take(data, pos, width)
    return int.from_bytes(raw, "big"), pos


def _unpack(data: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise PackStreamError(f"values nested deeper than {MAX_DEPTH}")
    raw, pos = _take(data, pos, 1)
    m = raw[0]
    if m <= 0x7F:
        return m, pos
    if m >= 0xF0:
        return m - 0x100, pos
    if m == 0xC0:
        return None, pos
    if m in (0xC2, 0xC3):
        return m == 0xC3, pos
    if m == 0xC1:
        raw, pos = _take(data, pos, 8)
        return struct.unpack(">d", raw)[0], pos
    if 0xC8 <= m <= 0xCB:
        width = 1 << (m - 0xC8)
        raw, pos = _take(data, pos, width)
        return int.from_bytes(raw, "big", signed=True), pos
    if 0xCC <= m <= 0xCE:
        n, pos = _size(data, pos, m, 0xCC)
        return _take(data, pos, n)
    if 0x80 <= m <= 0x8F or 0xD0 <= m <= 0xD2:
        n, pos = (m & 0x0F, pos) if m <= 0x8F else _size(data, pos, m, 0xD0)
        raw, pos = _take(data, pos, n)
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError as exc:
            raise PackStreamError("a string is not valid UTF-8") from exc
    if 0x90 <= m <= 0x9F or 0xD4 <= m <= 0xD6:
        n, pos = (m & 0x0F, pos) if m <= 0x9F else _size(data, pos, m, 0xD4)
        items = []
        for _ in range(n):
            item, pos = _unpack(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if 0xA0 <= m <= 0xAF or 0xD8 <= m <= 0xDA:
        n, pos = (m & 0x0F, pos) if m <= 0xAF else _size(data, pos, m, 0xD8)
        entries = {}
        for _ in range(n):
            key, pos = _unpack(data, pos, depth + 1)
            if not isinstance(key, str):
                raise PackStreamError("a map key is not a string")
            entries[key], pos = _unpack(data, pos, depth + 1)
        return entries, pos
    if 0xB0 <= m <= 0xBF:
        raw, pos = _take(data, pos, 1)
        fields = []
        for _ in range(m & 0x0F):
            item, pos = _unpack(data, pos, depth + 1)
            fields.append(item)
        return Structure(raw[0], tuple(fields)), pos
    raise PackStreamError(f"unknown marker 0x{m:02X}")


def _sized(n: int, tiny: int, base: int) -> bytes:
    if n < 16 and tiny is not None:
        return bytes([tiny | n])
    if n < 0x100:
        return bytes([base]) + n.to_bytes(1, "big")
    if n < 0x10000:
        return bytes([base + 1]) + n.to_bytes(2, "big")
    return bytes([base + 2]) + n.to_bytes(4, "big")


def pack_string(text: str) -> bytes:
    """Encode a string (TINY_STRING or STRING_8/16/32)."""
    raw = text.encode("utf-8")
    return _sized(len(raw), 0x80, 0xD0) + raw


def pack(value: Any) -> bytes:
    """Encode ``value`` (None, bool, int, float, str, bytes, list, dict with str keys, :class:`Structure`).

    Raises
    ------
    PackStreamError
        For any other type, an integer outside 64 bits, or a structure of more than 15 fields.
    """
    if value is None:
        return b"\xC0"
    if isinstance(value, bool):
        return b"\xC3" if value else b"\xC2"
    if isinstance(value, int):
        if -16 <= value <= 127:
            return (value & 0xFF).to_bytes(1, "big")
        for marker, width in ((0xC8, 1), (0xC9, 2), (0xCA, 4), (0xCB, 8)):
            if -(1 << (8 * width - 1)) <= value < (1 << (8 * width - 1)):
                return bytes([marker]) + value.to_bytes(width, "big", signed=True)
        raise PackStreamError("an integer outside 64 bits")
    if isinstance(value, float):
        return b"\xC1" + struct.pack(">d", value)
    if isinstance(value, str):
        return pack_string(value)
    if isinstance(value, bytes):
        return _sized(len(value), None, 0xCC) + value
    if isinstance(value, (list, tuple)):
        return _sized(len(value), 0x90, 0xD4) + b"".join(pack(v) for v in value)
    if isinstance(value, dict):
        return _sized(len(value), 0xA0, 0xD8) + b"".join(pack_string(k) + pack(v) for k, v in value.items())
    if isinstance(value, Structure):
        if len(value.fields) > 15:
            raise PackStreamError("a structure of more than 15 fields")
        return bytes([0xB0 | len(value.fields), value.tag]) + b"".join(pack(v) for v in value.fields)
    raise PackStreamError(f"cannot encode {type(value).__name__}")


def chunk(message: bytes) -> bytes:
    """Frame one message as chunks of at most 65535 bytes followed by the end marker ``00 00``."""
    out = bytearray()
    for start in range(0, len(message), 65535):
        part = message[start:start + 65535]
        out += len(part).to_bytes(2, "big") + part
    return bytes(out + b"\x00\x00")


def failure_message(code: str, text: str) -> bytes:
    """Return a chunked FAILURE message: ``B1 7F`` and its metadata map.

    The map carries both forms: ``code`` and ``message`` (Bolt before 5.7) and ``neo4j_code``,
    ``gql_status`` and ``description`` (5.7 on; the driver maps ``neo4j_code`` to its exception
    class). ``50N42`` is GQL's "general processing exception".
    """
    entries = {"code": code, "message": text, "neo4j_code": code, "gql_status": "50N42",
               "description": f"error: general processing exception - {text}"}
    body = bytearray([0xB1, FAILURE, 0xA0 | len(entries)])
    for key, value in entries.items():
        body += pack_string(key) + pack_string(value)
    return chunk(bytes(body))


def ignored_message() -> bytes:
    """Return a chunked IGNORED message (``B0 7E``)."""
    return chunk(bytes([0xB0, IGNORED]))
