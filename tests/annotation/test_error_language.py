"""Import errors speak the request's language: Chinese by default, English on Accept-Language: en."""

from __future__ import annotations

import pytest

from tests.helpers import api_client, upload

pytestmark = pytest.mark.django_db


def test_a_file_that_is_not_an_image_is_refused_in_chinese_by_default_and_in_english_on_request(doctor, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")

    in_english = api_client(doctor)
    in_english.credentials(HTTP_ACCEPT_LANGUAGE="en")

    chinese = upload(api_client(doctor), [notes]).json()["error"]
    english = upload(in_english, [notes]).json()["error"]

    assert chinese["code"] == english["code"] == "unsupported_file"
    assert chinese["message"] == "notes.txt：不是医学影像文件（DICOM、NIfTI、MetaImage、NRRD）"
    assert english["message"] == "notes.txt: not a medical image (DICOM, NIfTI, MetaImage, NRRD)"
    assert chinese["filename"] == english["filename"] == "notes.txt"
