"""Unit tests of the plain-Python query/retrieve SCU (no Django) against pynetdicom's own Study Root
C-FIND / C-MOVE SCP on loopback, answering as a PACS may: matches, failure statuses, a destination it does
not know, sub-operations that fail (PS3.4 Table C.4-1 and C.4-2)."""

from __future__ import annotations

import socket

import pytest
from pydicom.dataset import Dataset

from diagnosis.pacs.qr import QueryRetrieveError, QueryRetrieveSource, find_studies, move_study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePacs:
    """pynetdicom's Study Root FIND/MOVE SCP answering from ``studies`` ({uid: (patient id, attributes)}),
    with ``find_status`` forced when set; it checks the called AE title. A move to an ``unknown_destination``
    gets no address (pynetdicom then answers 0xA801); any other moves no instance."""

    def __init__(self, studies: dict, *, find_status: int | None = None, unknown_destination: bool = False):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelMove,
        )

        self.queries: list[Dataset] = []
        self.moves: list[tuple[str, str]] = []

        def on_find(event):
            query = event.identifier
            self.queries.append(query)
            if find_status is not None:
                yield find_status, None
                return
            for uid, (patient_id, attributes) in studies.items():
                if query.PatientID not in ("", patient_id):
                    continue
                if query.get("StudyInstanceUID") and query.StudyInstanceUID != uid:
                    continue
                answer = Dataset()
                answer.QueryRetrieveLevel = "STUDY"
                answer.PatientID = patient_id
                answer.StudyInstanceUID = uid
                for keyword, value in attributes.items():
                    setattr(answer, keyword, value)
                yield 0xFF00, answer

        def on_move(event):
            self.moves.append((event.move_destination.decode().strip() if isinstance(event.move_destination, bytes)
                               else str(event.move_destination).strip(), str(event.identifier.StudyInstanceUID)))
            if unknown_destination:
                yield None, None  # no destination address: pynetdicom answers 0xA801 by itself
                return
            yield "127.0.0.1", _free_port()  # the destination's address (never contacted: no instance below)
            yield 0  # the number of sub-operations; pynetdicom sends the final response itself

        ae = AE(ae_title="FAKEPACS")
        ae.require_called_aet = True
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        self.port = _free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_MOVE, on_move)])

    def source(self, called_ae: str = "FAKEPACS") -> QueryRetrieveSource:
        return QueryRetrieveSource(host="127.0.0.1", port=self.port, called_ae=called_ae, calling_ae="YIXIN",
                                   timeout_s=5)

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fake_pacs():
    started: list[FakePacs] = []

    def start(studies=None, **kwargs) -> FakePacs:
        pacs = FakePacs(studies or {}, **kwargs)
        started.append(pacs)
        return pacs

    yield start
    for pacs in started:
        pacs.stop()


STUDIES = {
    "1.2.3.1": ("P1", {"StudyDate": "20240102", "ModalitiesInStudy": ["CT", "SR"], "StudyDescription": "Chest",
                       "NumberOfStudyRelatedInstances": "133"}),
    "1.2.3.2": ("P1", {"StudyDate": "", "ModalitiesInStudy": "MR", "StudyDescription": "",
                       "NumberOfStudyRelatedInstances": ""}),
    "1.2.3.9": ("P2", {"StudyDate": "20230101", "ModalitiesInStudy": "CT"}),
}


def test_find_returns_the_patients_studies_with_their_return_keys(fake_pacs):
    pacs = fake_pacs(STUDIES)

    found = find_studies(pacs.source(), patient_id="P1")

    assert [(m.study_instance_uid, m.study_date, m.modalities, m.description, m.instances) for m in found] == [
        ("1.2.3.1", "20240102", ("CT", "SR"), "Chest", 133), ("1.2.3.2", "", ("MR",), "", None)]
    [query] = pacs.queries
    assert query.QueryRetrieveLevel == "STUDY" and query.PatientID == "P1"
    for keyword in ("StudyDate", "ModalitiesInStudy", "StudyDescription", "NumberOfStudyRelatedInstances"):
        assert keyword in query  # asked for as return keys (PS3.4 C.2.2.1.2)
    assert [m.study_instance_uid for m in find_studies(pacs.source(), patient_id="P1",
                                                       study_instance_uid="1.2.3.2")] == ["1.2.3.2"]


def test_find_refuses_a_wildcard_patient_id_and_reports_a_failure_status(fake_pacs):
    with pytest.raises(QueryRetrieveError) as refused:
        find_studies(QueryRetrieveSource(host="127.0.0.1", port=1, called_ae="X"), patient_id="P*")
    assert refused.value.code == "find_failed"
    pacs = fake_pacs(STUDIES, find_status=0xC001)

    with pytest.raises(QueryRetrieveError) as failed:
        find_studies(pacs.source(), patient_id="P1")

    assert (failed.value.code, failed.value.status) == ("find_failed", 0xC001) and "0xC001" in failed.value.message


def test_unreachable_and_rejected_associations_have_their_codes(fake_pacs):
    with pytest.raises(QueryRetrieveError) as unreachable:
        find_studies(QueryRetrieveSource(host="127.0.0.1", port=_free_port(), called_ae="X", timeout_s=5),
                     patient_id="P1")
    assert unreachable.value.code == "pacs_unreachable"
    pacs = fake_pacs(STUDIES)
    with pytest.raises(QueryRetrieveError) as rejected:
        find_studies(pacs.source(called_ae="NOT-FAKEPACS"), patient_id="P1")
    assert rejected.value.code == "association_rejected_permanent" and "rejected" in rejected.value.message


def test_move_to_an_unknown_destination_is_refused_with_0xA801(fake_pacs):
    pacs = fake_pacs(STUDIES, unknown_destination=True)

    with pytest.raises(QueryRetrieveError) as refused:
        move_study(pacs.source(), study_instance_uid="1.2.3.1")

    assert (refused.value.code, refused.value.status) == ("move_destination_unknown", 0xA801)
    assert pacs.moves == [("YIXIN", "1.2.3.1")]  # the portal's own AE title is the Move Destination


def test_move_of_an_empty_study_completes_with_no_sub_operations(fake_pacs):
    pacs = fake_pacs(STUDIES)

    result = move_study(pacs.source(), study_instance_uid="1.2.3.2", move_destination="ELSEWHERE")

    assert (result.status, result.completed, result.failed, result.warning) == (0x0000, 0, 0, 0)
    assert pacs.moves == [("ELSEWHERE", "1.2.3.2")]


class FakeGetPacs:
    """pynetdicom's Study Root C-GET SCP that refuses every retrieve with ``status`` (no sub-operation)."""

    def __init__(self, status: int):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

        def on_get(event):
            yield 1  # the number of sub-operations comes first
            yield status, None

        ae = AE(ae_title="PACS")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        self.port = _free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)])

    def stop(self) -> None:
        self.server.shutdown()


def test_a_c_get_refused_by_the_pacs_fails_with_its_status_and_stores_nothing():
    from diagnosis.pacs.qr import get_study

    pacs = FakeGetPacs(0xA702)
    stored = []
    try:
        with pytest.raises(QueryRetrieveError) as refused:
            get_study(QueryRetrieveSource(host="127.0.0.1", port=pacs.port, called_ae="PACS", timeout_s=10),
                      study_instance_uid="1.2.3", storage_classes=("1.2.840.10008.5.1.4.1.1.2",),
                      on_store=lambda *args: stored.append(args) or 0)
    finally:
        pacs.stop()

    assert (refused.value.code, refused.value.status) == ("get_failed", 0xA702)
    assert "0xA702" in refused.value.message and stored == []


def test_a_c_get_to_a_pacs_without_study_root_get_is_model_not_accepted():
    from diagnosis.pacs.qr import get_study

    pacs = FakePacs({})  # FIND and MOVE only
    try:
        with pytest.raises(QueryRetrieveError) as refused:
            get_study(pacs.source(), study_instance_uid="1.2.3", storage_classes=("1.2.840.10008.5.1.4.1.1.2",),
                      on_store=lambda *args: 0)
    finally:
        pacs.stop()

    assert refused.value.code == "model_not_accepted"
