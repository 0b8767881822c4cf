"""Query/Retrieve SCU against the hospital's PACS (DICOM PS3.4 Annex C, Study Root), with pynetdicom.

:func:`find_studies` is a C-FIND at STUDY level (PS3.4 C.4.1, C.6.2 Study Root Query/Retrieve Information
Model - FIND): the matching key Patient ID (0010,0020), optionally Study Instance UID (0020,000D), and the
return keys Study Date (0008,0020), Modalities in Study (0008,0061), Study Description (0008,1030) and
Number of Study Related Instances (0020,1208).

:func:`move_study` is a C-MOVE at STUDY level (PS3.4 C.4.2, Study Root - MOVE) to a Move Destination
AE title: the PACS opens its own association to that AE (the portal's C-STORE SCP) and stores the
study's instances there as sub-operations. The final response counts the completed, failed and warning
sub-operations (PS3.4 C.4.2.1.6); the instances are filed by whoever runs that SCP.

:func:`get_study` is a C-GET at STUDY level (PS3.4 C.4.3, Study Root - GET) for a PACS that cannot open
an association to the portal: the PACS stores the study's instances as C-STORE sub-operations on the
portal's own association, which proposes the Storage SCP role for the image storage SOP classes it
accepts (SCP/SCU Role Selection, PS3.7 D.3.3.4); each instance goes to a callback that answers its
C-STORE status.

One association per call. A failure says what went wrong in a stable ``code`` and, where the PACS
answered, its DIMSE status. PHI: the Patient ID goes to the PACS only; errors and results name UIDs,
counts and statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: C-FIND / C-MOVE pending statuses (PS3.4 Table C.4-1, C.4-2).
_PENDING = {0xFF00, 0xFF01}
#: C-MOVE: Warning, sub-operations complete, one or more failures or warnings (PS3.4 Table C.4-2).
STATUS_SUBOPS_WARNING = 0xB000
#: C-MOVE: Refused, Move Destination unknown (PS3.4 Table C.4-2).
STATUS_MOVE_DESTINATION_UNKNOWN = 0xA801


class QueryRetrieveError(Exception):
    """A query or retrieve against the PACS failed.

    ``code`` is one of ``pacs_unreachable`` (no association: connection refused, timeout, or the PACS
    dropped it unanswered), ``association_rejected`` (rejected-transient, e.g. too many associations),
    ``association_rejected_permanent`` (rejected-permanent, PS3.8 Table 9-21: a wrong called AE title, or
    the PACS does not know the portal's calling AE title), ``model_not_accepted`` (the PACS accepts no
    Study Root FIND/MOVE/GET presentation context), ``find_failed`` / ``move_failed`` / ``get_failed`` (a
    failure status, in ``status``) and ``move_destination_unknown`` (0xA801: the PACS does not know the portal's AE title
    as a destination).
    """

    def __init__(self, message: str, *, code: str, status: int | None = None):
        self.message = message
        self.code = code
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class QueryRetrieveSource:
    """The PACS's C-FIND/C-MOVE SCP (host, port, called AE title) and the portal's own AE title, which
    calls and is the Move Destination."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = "YIXIN"
    timeout_s: float = 30.0


@dataclass(frozen=True)
class StudyMatch:
    """One study the PACS holds: Study Instance UID, Study Date (``YYYYMMDD`` or ``""``), Modalities in
    Study, Study Description and Number of Study Related Instances (None when the PACS left it empty)."""

    study_instance_uid: str
    study_date: str
    modalities: tuple[str, ...]
    description: str
    instances: int | None


@dataclass(frozen=True)
class MoveResult:
    """The final C-MOVE response: DIMSE ``status`` and the sub-operation counts (PS3.4 C.4.2.1.6), with the
    Failed SOP Instance UID List (0008,0058) when the PACS sent one."""

    status: int
    completed: int
    failed: int
    warning: int
    failed_sop_instance_uids: tuple[str, ...] = ()


def _associate(source: QueryRetrieveSource, contexts: list[str], *, storage_classes: tuple[str, ...] = (),
               evt_handlers: list | None = None):
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AE, build_role

    ae = AE(ae_title=source.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = source.timeout_s
    ae.connection_timeout = source.timeout_s
    for context in contexts:
        ae.add_requested_context(context)
    for sop_class in storage_classes:  # C-GET: the portal is the Storage SCP on its own association
        ae.add_requested_context(sop_class, list(AllTransferSyntaxes))
    roles = [build_role(sop_class, scp_role=True) for sop_class in storage_classes]
    where = f"{source.called_ae}@{source.host}:{source.port}"
    try:
        assoc = ae.associate(source.host, source.port, ae_title=source.called_ae, ext_neg=roles or None,
                             evt_handlers=evt_handlers)
    except OSError as exc:  # unresolvable host name
        raise QueryRetrieveError(f"no association with {where} ({type(exc).__name__})", code="pacs_unreachable") from None
    if assoc.is_established:
        return assoc
    primitive = getattr(assoc.acceptor, "primitive", None)
    if assoc.is_rejected:
        reason = ", ".join(str(getattr(primitive, name, "")) for name in ("result_str", "source_str", "reason_str")
                           if getattr(primitive, name, None))
        permanent = getattr(primitive, "result", None) == 0x01  # 0x01 rejected-permanent, 0x02 rejected-transient
        raise QueryRetrieveError(f"{where} rejected the association" + (f" ({reason})" if reason else ""),
                                 code="association_rejected_permanent" if permanent else "association_rejected")
    if primitive is not None and getattr(primitive, "result", None) == 0x00:
        raise QueryRetrieveError(f"{where} accepts none of the Study Root query/retrieve models", code="model_not_accepted")
    raise QueryRetrieveError(f"no association with {where}", code="pacs_unreachable")


def _text(identifier, keyword: str) -> str:
    value = identifier.get(keyword, "") if identifier is not None else ""
    return str(value or "").strip()


def find_studies(source: QueryRetrieveSource, *, patient_id: str, study_instance_uid: str = "") -> list[StudyMatch]:
    """C-FIND the PACS's studies of one patient (Study Root, STUDY level).

    Parameters
    ----------
    patient_id : str
        Patient ID (0010,0020) as the PACS stores it (single value matching: no wildcard is added).
    study_instance_uid : str, optional
        Restrict to one study (Study Instance UID (0020,000D), single value matching).

    Returns
    -------
    list of StudyMatch
        In the PACS's order; a study it returned twice is listed once.

    Raises
    ------
    QueryRetrieveError
        When no association is made, or the PACS answers with a failure status (``find_failed``).
    """
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    if not patient_id or any(c in patient_id for c in "*?\\"):
        # A wildcard or a multi-value would match other patients (PS3.4 C.2.2.2.4).
        raise QueryRetrieveError("Patient ID empty or holding a wildcard", code="find_failed")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = patient_id
    query.StudyInstanceUID = study_instance_uid or ""
    query.StudyDate = ""
    query.ModalitiesInStudy = ""
    query.StudyDescription = ""
    query.NumberOfStudyRelatedInstances = ""
    assoc = _associate(source, [StudyRootQueryRetrieveInformationModelFind])
    found: dict[str, StudyMatch] = {}
    try:
        if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelFind for cx in assoc.accepted_contexts):
            raise QueryRetrieveError("the PACS does not accept Study Root C-FIND", code="model_not_accepted")
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if status is None or "Status" not in status:
                raise QueryRetrieveError("no C-FIND response (timeout or aborted association)", code="pacs_unreachable")
            code = int(status.Status)
            if code in _PENDING:
                uid = _text(identifier, "StudyInstanceUID")
                # Only exact matches: a PACS that ignores the Patient ID key must not leak other patients.
                if not uid or (_text(identifier, "PatientID") not in ("", patient_id)):
                    continue
                modalities = identifier.get("ModalitiesInStudy", "") or ""
                if isinstance(modalities, str):
                    modalities = [m for m in modalities.split("\\") if m]
                count = _text(identifier, "NumberOfStudyRelatedInstances")
                found.setdefault(uid, StudyMatch(
                    study_instance_uid=uid, study_date=_text(identifier, "StudyDate"),
                    modalities=tuple(str(m).strip() for m in modalities if str(m).strip()),
                    description=_text(identifier, "StudyDescription"),
                    instances=int(count) if count.isdigit() else None,
                ))
            elif code != 0x0000:
                raise QueryRetrieveError(f"C-FIND failed with status 0x{code:04X}", code="find_failed", status=code)
    finally:
        if assoc.is_established:
            assoc.release()
    return list(found.values())


def move_study(source: QueryRetrieveSource, *, study_instance_uid: str, move_destination: str | None = None) -> MoveResult:
    """C-MOVE one study (Study Root, STUDY level) to ``move_destination`` (the portal's AE title by default).

    Returns
    -------
    MoveResult
        The final response: status 0x0000 (all sub-operations completed) or 0xB000 (some failed or
        warned); the counts come from the final response, else from the last pending one.

    Raises
    ------
    QueryRetrieveError
        When no association is made, the PACS does not know the destination (``move_destination_unknown``),
        or answers with another failure status (``move_failed``, e.g. 0xA701 out of resources, 0xA900
        identifier does not match SOP class, 0xC000-0xCFFF unable to process).
    """
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_instance_uid  # the unique key only (PS3.4 C.4.2.2.1)
    destination = move_destination or source.calling_ae
    assoc = _associate(source, [StudyRootQueryRetrieveInformationModelMove])
    try:
        if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelMove for cx in assoc.accepted_contexts):
            raise QueryRetrieveError("the PACS does not accept Study Root C-MOVE", code="model_not_accepted")
        final, counts, failed_uids = _final_response(
            assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove), operation="C-MOVE")
    finally:
        if assoc.is_established:
            assoc.release()
    if final is None:
        raise QueryRetrieveError("no final C-MOVE response", code="pacs_unreachable")
    if final == STATUS_MOVE_DESTINATION_UNKNOWN:
        raise QueryRetrieveError(f"the PACS does not know the move destination {destination}",
                                 code="move_destination_unknown", status=final)
    if final not in (0x0000, STATUS_SUBOPS_WARNING):
        raise QueryRetrieveError(f"C-MOVE failed with status 0x{final:04X} ({counts['completed']} completed, "
                                 f"{counts['failed']} failed sub-operations)", code="move_failed", status=final)
    return MoveResult(status=final, failed_sop_instance_uids=failed_uids, **counts)


def _final_response(responses, *, operation: str) -> tuple[int | None, dict[str, int], tuple[str, ...]]:
    """Read a C-MOVE or C-GET's responses (pynetdicom's ``(status, identifier)`` pairs) to the final one.

    Returns its status (None when none came), the sub-operation counts of the final response, else of the
    last pending one (PS3.4 C.4.2.1.4 / C.4.3.1.4), and the Failed SOP Instance UID List (0008,0058).

    Raises
    ------
    QueryRetrieveError
        ``pacs_unreachable`` when a response is missing (timeout or aborted association).
    """
    from pydicom.multival import MultiValue

    counts = {"completed": 0, "failed": 0, "warning": 0}
    final: int | None = None
    failed_uids: tuple[str, ...] = ()
    for status, response_identifier in responses:
        if status is None or "Status" not in status:
            raise QueryRetrieveError(f"no {operation} response (timeout or aborted association)", code="pacs_unreachable")
        code = int(status.Status)
        for name, keyword in (("completed", "NumberOfCompletedSuboperations"),
                              ("failed", "NumberOfFailedSuboperations"),
                              ("warning", "NumberOfWarningSuboperations")):
            if status.get(keyword) is not None:
                counts[name] = int(status.get(keyword))
        if code in _PENDING:
            continue
        final = code
        if response_identifier is not None and "FailedSOPInstanceUIDList" in response_identifier:
            value = response_identifier.FailedSOPInstanceUIDList
            values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
            failed_uids = tuple(str(v) for v in values if v)
    return final, counts, failed_uids


#: C-GET: Refused, out of resources, unable to perform sub-operations (PS3.4 Table C.4-3).
STATUS_GET_SUBOPS_REFUSED = 0xA702


def get_study(source: QueryRetrieveSource, *, study_instance_uid: str, storage_classes: tuple[str, ...],
              on_store: Callable[[object, str, bytes], int]) -> MoveResult:
    """C-GET one study (Study Root, STUDY level): the PACS sends its instances on this association.

    Parameters
    ----------
    study_instance_uid : str
        The study's Study Instance UID (the unique key only, PS3.4 C.4.3.2.1).
    storage_classes : tuple of str
        The storage SOP Class UIDs the portal takes (each offered with every transfer syntax pydicom
        knows and the SCP role); an instance of another class cannot be sent and counts as a failed
        sub-operation at the PACS.
    on_store : callable
        Called as ``on_store(dataset, transfer_syntax_uid, part10_bytes)`` for each C-STORE sub-operation
        (the decoded dataset, and the instance encoded as a Part 10 file with its file meta), in
        pynetdicom's association thread; returns the C-STORE status (0x0000 stored, a PS3.4 B.2-1
        failure otherwise). An exception it raises answers 0xC000 (cannot understand).

    Returns
    -------
    MoveResult
        The final C-GET response: status 0x0000 (every sub-operation completed) or 0xB000 (some failed
        or warned), with the counts of the final response, else of the last pending one.

    Raises
    ------
    QueryRetrieveError
        When no association is made, the PACS accepts no Study Root C-GET (``model_not_accepted``) or
        answers with a failure status (``get_failed``, e.g. 0xA702 when it could not perform the
        sub-operations, 0xA900, 0xC000-0xCFFF).
    """
    from pydicom.dataset import Dataset
    from pynetdicom import evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    def handle_store(event):
        try:
            return on_store(event.dataset, str(event.context.transfer_syntax), event.encoded_dataset(include_meta=True))
        except Exception:  # noqa: BLE001 - the PACS gets a failure status, the retrieve goes on
            return 0xC000

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_instance_uid
    assoc = _associate(source, [StudyRootQueryRetrieveInformationModelGet], storage_classes=tuple(storage_classes),
                       evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet for cx in assoc.accepted_contexts):
            raise QueryRetrieveError("the PACS does not accept Study Root C-GET", code="model_not_accepted")
        final, counts, failed_uids = _final_response(
            assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet), operation="C-GET")
    finally:
        if assoc.is_established:
            assoc.release()
    if final is None:
        raise QueryRetrieveError("no final C-GET response", code="pacs_unreachable")
    if final not in (0x0000, STATUS_SUBOPS_WARNING):
        raise QueryRetrieveError(f"C-GET failed with status 0x{final:04X} ({counts['completed']} completed, "
                                 f"{counts['failed']} failed sub-operations)", code="get_failed", status=final)
    return MoveResult(status=final, failed_sop_instance_uids=failed_uids, **counts)
