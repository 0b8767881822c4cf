"""The API's error messages speak the request's language; ``str(exc)`` stays English for logs."""

from __future__ import annotations

import pytest
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from rest_framework.test import APIClient

from annotation.imaging.errors import N_, CorruptFileError
from portal.api_errors import ServiceError, error_message


@pytest.mark.django_db
def test_an_unauthenticated_request_is_refused_in_chinese_by_default_and_in_english_on_request():
    chinese = APIClient().get("/api/kg/entities/", {"q": "感冒"})
    english = APIClient().get("/api/kg/entities/", {"q": "感冒"}, HTTP_ACCEPT_LANGUAGE="en")

    assert chinese.json()["error"]["code"] == english.json()["error"]["code"] == "not_authenticated"
    assert chinese.json()["error"]["message"] == "身份认证信息未提供。"
    assert english.json()["error"]["message"] == "Authentication credentials were not provided."


def test_a_service_error_is_translated_when_read_and_english_in_logs():
    error = ServiceError(_("Label %(index)s has no name."), params={"index": 3}, code="bad_label_table")

    with translation.override("zh-hans"):
        chinese = error.message
    with translation.override("en"):
        english = error.message

    assert (chinese, english) == ("标签 3 没有名称。", "Label 3 has no name.")
    with translation.override("zh-hans"):
        assert str(error) == "Label 3 has no name."


def test_a_plain_python_error_keeps_its_template_and_is_translated_at_the_boundary():
    error = CorruptFileError(N_("%(instance_name)s: the pixel data are truncated"), params={"instance_name": "a.dcm"},
                             filename="a.dcm")

    wrapped = ServiceError.from_error(error)
    with translation.override("zh-hans"):
        chinese, wrapped_chinese = error_message(error), wrapped.message

    assert str(error) == error.message == "a.dcm: the pixel data are truncated"
    assert chinese == wrapped_chinese == "a.dcm：像素数据不完整"
    assert wrapped.code == "corrupt_file"
