"""The plain-Python parts of DICOMweb: QIDO-RS query checking (PS3.4 C.2.2.2 matching) and multipart/related."""

from __future__ import annotations

import datetime as dt

import pytest

from annotation.dicomweb.multipart import (
    MultipartError, content_type_parse, multipart_decode, multipart_encode_stream,
)
from annotation.dicomweb.qido import QidoError, date_range_parse, qido_query_parse, wildcard_regex


def test_date_ranges_open_and_closed():
    assert date_range_parse("20000101") == (dt.date(2000, 1, 1), dt.date(2000, 1, 1))
    assert date_range_parse("20000101-") == (dt.date(2000, 1, 1), None)
    assert date_range_parse("-20001231") == (None, dt.date(2000, 12, 31))
    assert date_range_parse("19990101-20001231") == (dt.date(1999, 1, 1), dt.date(2000, 12, 31))


@pytest.mark.parametrize("value", ["-", "2000", "20000230", "20001231-20000101", "2000-01-01"])
def test_bad_dates_are_refused(value):
    with pytest.raises(QidoError):
        date_range_parse(value)


def test_wildcards_match_as_ps3_4_defines():
    import re

    pattern = re.compile(wildcard_regex("LIDC-?DRI*"))
    assert pattern.match("LIDC-IDRI-0001") and not pattern.match("XLIDC-IDRI") and not pattern.match("LIDC-DRI")
    assert re.compile(wildcard_regex("a.b")).match("a.b") and not re.compile(wildcard_regex("a.b")).match("axb")


def test_query_by_tag_and_keyword_with_paging_and_includefield():
    query = qido_query_parse([("00100020", "P1"), ("StudyInstanceUID", "1.2.3,1.2.4"), ("limit", "5"),
                              ("offset", "10"), ("includefield", "StudyTime"), ("includefield", "00081030")],
                             level="studies", within=False)

    assert query.match == {"PatientID": "P1", "StudyInstanceUID": ["1.2.3", "1.2.4"]}
    assert query.limit == 5 and query.offset == 10
    assert query.include == {"StudyTime", "StudyDescription"} and not query.all_fields


def test_study_keys_are_refused_inside_a_study_and_accepted_across_studies():
    assert qido_query_parse([("PatientID", "P1")], level="series", within=False).match == {"PatientID": "P1"}
    with pytest.raises(QidoError, match="not a matching key"):
        qido_query_parse([("PatientID", "P1")], level="series", within=True)


@pytest.mark.parametrize("params", [
    [("PatientName", "X")], [("Bogus", "1")], [("99990010", "1")], [("limit", "1001")], [("limit", "0")],
    [("offset", "x")], [("PatientID", "a"), ("PatientID", "b")], [("PatientID", "")],
    [("StudyInstanceUID", "1..2")], [("fuzzymatching", "true")], [("includefield", "NotAnAttribute")],
])
def test_bad_parameters_are_refused(params):
    with pytest.raises(QidoError):
        qido_query_parse(params, level="studies", within=False)


def test_content_type_parameters_are_read_with_quotes():
    media, params = content_type_parse('Multipart/Related; type="application/dicom"; boundary="a b"')

    assert media == "multipart/related" and params == {"type": "application/dicom", "boundary": "a b"}


def test_multipart_round_trip_keeps_bytes_exactly():
    parts = [b"\r\n--x\r\nfirst\r\n", b"\x00" * 10, b""]
    body = b"".join(multipart_encode_stream(parts, content_type="application/dicom", boundary="bnd"))

    decoded = multipart_decode(body, "bnd")

    assert [p.data for p in decoded] == parts
    assert {p.content_type for p in decoded} == {"application/dicom"}


@pytest.mark.parametrize("body", [b"", b"no boundary here", b"--bnd\r\nContent-Type: a/b\r\n\r\ndata",
                                  b"--bnd\r\nContent-Type: a/b data\r\n--bnd--\r\n"])
def test_malformed_multipart_is_refused(body):
    with pytest.raises(MultipartError):
        multipart_decode(body, "bnd")
