"""python manage.py dicom_peer add … as hospital IT runs it."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotation.models import DicomPeer

pytestmark = pytest.mark.django_db


def test_dicom_peer_add_maps_an_ae_title_with_its_destination(hospital):
    out = StringIO()
    call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "ORTHANC", "--host", "pacs.local",
                 "--port", "4242", stdout=out)
    peer = DicomPeer.objects.get(ae_title="ORTHANC")
    assert (peer.hospital, peer.host, peer.port) == (hospital, "pacs.local", 4242)
    assert json.loads(out.getvalue())["id"] == peer.pk


def test_dicom_peer_add_refuses_a_mapped_ae_title(hospital):
    call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "CT1", stdout=StringIO())
    with pytest.raises(CommandError, match="peer_exists"):
        call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "CT1")
    assert DicomPeer.objects.count() == 1


@pytest.mark.parametrize("args, message", [
    (["--ae-title", "A" * 17], "invalid"),
    (["--ae-title", "BAD\\AE"], "invalid"),
    (["--ae-title", "CT2", "--host", "pacs.local"], "peer_destination_incomplete"),
    (["--ae-title", "CT3", "--host", "pacs.local", "--port", "70000"], "invalid"),
])
def test_dicom_peer_add_refuses_bad_input(hospital, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("dicom_peer", "add", "--hospital", hospital.code, *args)
    assert not DicomPeer.objects.exists()


def test_dicom_peer_add_refuses_an_unknown_hospital():
    with pytest.raises(CommandError, match="no hospital"):
        call_command("dicom_peer", "add", "--hospital", "nowhere", "--ae-title", "CT1")


def test_dicom_peer_add_names_a_c_get_query_retrieve_source(hospital):
    out = StringIO()
    call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "PACS", "--host", "pacs.local",
                 "--port", "104", "--query-retrieve", "--retrieve", "c-get", stdout=out)
    peer = DicomPeer.objects.get(ae_title="PACS")
    assert (peer.query_retrieve, peer.retrieve_method) == (True, DicomPeer.RetrieveMethod.C_GET)
    assert json.loads(out.getvalue())["retrieve_method"] == "c_get"
    call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "CT9", stdout=StringIO())
    assert DicomPeer.objects.get(ae_title="CT9").retrieve_method == DicomPeer.RetrieveMethod.C_MOVE  # the default


def test_an_unknown_retrieve_method_is_refused_and_nothing_stored(hospital):
    from django.core.exceptions import ValidationError

    from annotation import services

    with pytest.raises(CommandError):
        call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "PACS", "--retrieve", "c-fetch")
    with pytest.raises(ValidationError):
        services.dicom_peer_create(hospital=hospital, ae_title="PACS", retrieve_method="c_fetch")
    assert not DicomPeer.objects.exists()
